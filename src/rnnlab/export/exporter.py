"""Write an export folder from a trained LanguageModel.

    meta = export_model(model, vocab_json, "model-export", int8=False)

writes ``model.onnx`` (the one-step function of ``rnnlab.export.step``: inputs ``token``
int64 (B,) and ``state`` float32 (B, S); outputs ``logits`` (B, V) and ``next_state``
(B, S)), ``vocab.json`` and ``export.json`` (architecture, level, state size and layout,
opset, what was quantised, and the PyTorch-vs-onnxruntime difference measured on random
tokens before anything is written). An export that does not reproduce its model within
``TOLERANCE`` (relative to the logits' scale) is refused.

The graph comes from torch's TorchScript-based exporter (``dynamo=False``): it traces a
step in a fraction of a second (torch.export takes seconds) and folds every weight
expression (concatenations, transposes, Clockwork's mask) into plain constants; layer
norm, whose shape argument the cells take from the input, gets a symbolic of its own.
With ``int8=True`` the model's big matrices are first rounded to int8 per row in PyTorch
(``rnnlab.export.quant``), the float graph is exported, and then each constant matrix
that a MatMul, Gemm or Gather reads is stored as int8 with its per-row scales
(``rnnlab.export.graph_int8``).
"""
from __future__ import annotations

import contextlib
import copy
import io
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch

from ..checkpoint import atomic_write_bytes, write_json
from ..errors import UserError
from ..models.lm import LanguageModel
from .graph_int8 import quantise_graph, weight_bytes
from .quant import quantise_model_
from .runtime import FORMAT, VERSION, Exported
from .step import StepFunction

OPSET = 18
TOLERANCE = 1e-5            # float export: max |logit error| / max |logit|
INT8_TOLERANCE = 1e-2       # int8 graph (float products) vs the int8 PyTorch model: Grid's
                            # column blocks get their own per-row scales in the graph


def _layer_norm(g, x, shape, weight, bias, eps, cudnn_enable):
    """aten::layer_norm -> LayerNormalization when the normalised shape is traced from
    the input (``x.shape[-1:]``, as the cells write it) rather than a constant."""
    from torch.onnx import symbolic_helper as sh
    n = len(sh._unpack_list(shape))
    args = [x, weight] + ([] if sh._is_none(bias) else [bias])
    return g.op("LayerNormalization", *args, axis_i=-n, epsilon_f=sh._get_const(eps, "f", "eps"))


@contextlib.contextmanager
def _symbolics():
    torch.onnx.register_custom_op_symbolic("aten::layer_norm", _layer_norm, OPSET)
    try:
        yield
    finally:
        torch.onnx.unregister_custom_op_symbolic("aten::layer_norm", OPSET)


def trace(fn: StepFunction) -> onnx.ModelProto:
    """The one-step function as an ONNX graph with a dynamic batch dimension."""
    args = (torch.zeros(2, dtype=torch.long), torch.zeros(2, fn.state_size))
    axes = {k: {0: "batch"} for k in ("token", "state", "logits", "next_state")}
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad(), _symbolics():
        warnings.simplefilter("ignore")                # deprecation and tracer notices
        torch.onnx.export(fn, args, buf, dynamo=False, opset_version=OPSET,
                          input_names=["token", "state"], dynamic_axes=axes,
                          output_names=["logits", "next_state"], do_constant_folding=True)
    return onnx.load_from_string(buf.getvalue())


@torch.no_grad()
def measure(model: LanguageModel, fn: StepFunction, session: Exported, steps: int = 64,
            batch: int = 4, seed: int = 0) -> dict:
    """Step the model's own forward (``LanguageModel.step``, the core's state form) and the
    exported graph side by side on random tokens from a zero state."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)        # tiny steps: more threads only wait on each other
    try:
        return _measure(model, fn, session, steps, batch, seed)
    finally:
        torch.set_num_threads(threads)


def _measure(model, fn, session, steps, batch, seed) -> dict:
    gen = torch.Generator().manual_seed(seed)
    V = model.config.vocab_size
    wide = copy.deepcopy(model).double()            # how far float32 itself is from exact
    state_t, state_w, state_o = None, None, session.zero_state(batch)
    err = serr = scale = err32 = 0.0
    for _ in range(steps):
        tok = torch.randint(0, V, (batch,), generator=gen)
        logits_t, state_t = model.step(tok, state_t)
        logits_w, state_w = wide.step(tok, state_w)
        logits_o, state_o = session.step(tok.numpy(), state_o)
        err = max(err, float(np.abs(logits_o - logits_t.numpy()).max()))
        err32 = max(err32, float((logits_t.double() - logits_w).abs().max()))
        scale = max(scale, float(logits_t.abs().max()))
        serr = max(serr, float(np.abs(state_o - fn.to_flat(state_t).numpy()).max()))
    scale = max(scale, 1e-30)
    return {"steps": steps, "batch": batch, "max_abs_logit_error": err,
            "logit_scale": scale, "relative_logit_error": err / scale,
            "max_abs_state_error": serr, "pytorch_float32_vs_float64": err32 / scale}


def export_model(model: LanguageModel, vocab: dict, out: str | Path, *, int8: bool = False,
                 source: str = "") -> dict:
    """Write model.onnx, vocab.json and export.json to ``out``; returns export.json."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder; choose another --out")
    if out.is_dir() and any(out.iterdir()) and not (out / "export.json").exists():
        raise UserError(f"{out}: folder is not empty and holds no export; choose an empty "
                        f"or new --out (rnnlab only replaces its own exports)")
    model = model.eval()
    quantised: list[dict] = []
    if int8:
        model = copy.deepcopy(model)
        quantised = quantise_model_(model)
    fn = StepFunction(model)
    graph = trace(fn)
    stored = quantise_graph(graph) if int8 else []
    cfg = model.config
    meta = {"format": FORMAT, "version": VERSION, "source": source, "architecture": cfg.arch,
            "level": vocab.get("level"), "model": cfg.to_json(), "vocab_size": cfg.vocab_size,
            "state_size": fn.state_size, "state_layout": fn.layout, "opset": OPSET,
            "inputs": {"token": "int64 [batch]", "state": "float32 [batch, state_size]"},
            "outputs": {"logits": "float32 [batch, vocab_size]",
                        "next_state": "float32 [batch, state_size]"},
            "parameters": sum(p.numel() for p in model.parameters()),
            "int8": int8, "quantised": {"pytorch": quantised, "onnx": stored},
            **weight_bytes(graph)}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "model.onnx", graph.SerializeToString())
    write_json(out / "vocab.json", vocab)
    write_json(out / "export.json", meta)              # rewritten below with the check
    try:
        check = measure(model, fn, Exported(out, exact_int8=True))
        if int8:
            fast = measure(model, fn, Exported(out))
            check["default_session"] = {k: fast[k] for k in (
                "max_abs_logit_error", "relative_logit_error", "max_abs_state_error")}
    except BaseException:
        (out / "export.json").unlink(missing_ok=True)
        raise
    # float32 rounding differs between the two runtimes; where the model amplifies it
    # (layer norm of a nearly constant vector) allow what float32 itself is off by.
    limit = INT8_TOLERANCE if int8 else max(TOLERANCE, 4 * check["pytorch_float32_vs_float64"])
    meta["check"] = {**check, "against": "the int8 PyTorch model" if int8 else "PyTorch",
                     "tolerance": limit}
    if not check["relative_logit_error"] <= limit:
        (out / "export.json").unlink(missing_ok=True)
        raise UserError(f"the exported graph differs from PyTorch by "
                        f"{check['relative_logit_error']:.2e} of the logits' scale (limit "
                        f"{limit:.1e}); export.json was not written")
    write_json(out / "export.json", meta)
    return meta
