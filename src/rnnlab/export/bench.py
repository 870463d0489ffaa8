"""The per-token step of every architecture near the memory limit, and what int8 costs.

    python benchmarks/export_step.py --out docs/results [--arch NAME ...] [--train-seconds 60]

Step (batch 1, one thread, state carried, ``--tokens`` tokens per round, interleaved
rounds, medians): the PyTorch predictor (``Predictor.step``: the fused one-token path where
there is one) against the exported graph in onnxruntime, float32 and int8, at ``rnnlab
train``'s default shape (embedding 128, 2 layers of 512, a 65-character vocabulary) and at
the keyboard shape (CIFG LSTM 670 projected to 96, tied 96-wide embedding, 10,000 words).
Bytes per step are the weights a step reads (every constant except the embedding table,
of which one row); their time at this machine's read bandwidth (the median time to sum a
256 MB tensor) is the floor a memory-bound step approaches.

Agreement (``--agree-steps`` > 0): the float export against PyTorch over that many steps
at batch 64 from a zero state, beside how far PyTorch float32 is from float64.

Loss (``--train-seconds`` > 0): each architecture trained that long at a small shape on
Tiny Shakespeare (characters), then the validation split scored by the float and int8
PyTorch models and the float and int8 exports.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from ..benchmark.measure import interleaved, median
from ..benchmark.speed import read_bandwidth
from ..data.text import Vocab, read_text, split_ids, tokenize
from ..errors import UserError
from ..experiments import atomic_write_text, machine_description
from ..infer import Predictor
from ..layers.registry import available
from ..models.lm import LanguageModel, LMConfig
from ..train import TrainConfig, Trainer, evaluate
from .exporter import export_model, measure
from .predictor import evaluate_export, load_predictor
from .runtime import Exported
from .step import StepFunction

DEFAULT = {"vocab": 65, "embedding": 128, "hidden": 512, "layers": 2}
KEYBOARD = {"vocab": 10_000, "embedding": 96, "hidden": 670, "layers": 1, "tie_weights": True,
            "proj_size": 96}
SMALL = {"embedding": 64, "hidden": 256, "layers": 2}           # trained 2 x 256, batch 16 x 64
TEXT = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "tinyshakespeare.txt"


def _vocab(n: int) -> Vocab:
    return Vocab("word", ["<unk>", "\n"] + [f"w{i}" for i in range(n - 2)])


def bench_step(arch: str, shape: dict, work: Path, tokens: int, reps: int, bw: float,
               agree_steps: int = 0) -> dict:
    """Seconds per token of the three steppers, bytes read per step, and (agree_steps > 0)
    the float export's largest difference from PyTorch over that many steps at batch 64."""
    torch.manual_seed(0)
    opts = {k: v for k, v in shape.items() if k != "vocab"}
    model = LanguageModel(shape["vocab"], arch, **opts).eval()
    vocab = _vocab(shape["vocab"])
    meta = {kind: export_model(model, vocab.to_json(), work / f"{arch}-{kind}",
                               int8=kind == "int8") for kind in ("float32", "int8")}
    pred = Predictor(model, vocab)
    sessions = {kind: Exported(work / f"{arch}-{kind}") for kind in meta}
    ids = torch.randint(2, shape["vocab"], (tokens,)).tolist()

    _, start = pred.step(pred.start_id, None)

    def pytorch():
        state = start
        for t in ids:
            _, state = pred.step(t, state)

    def onnx(kind):
        def run():
            sess = sessions[kind]
            state = sess.zero_state(1)
            for t in ids:
                _, state = sess.step([t], state)
        return run

    agree = measure(model, StepFunction(model), sessions["float32"], steps=agree_steps,
                    batch=64) if agree_steps else None
    fns = {"pytorch": pytorch, "onnx_float32": onnx("float32"), "onnx_int8": onnx("int8")}
    per = {k: median(v) / tokens for k, v in interleaved(fns, reps).items()}
    fbytes = meta["float32"]["weight_bytes_per_step"]
    ibytes = meta["int8"]["weight_bytes_per_step"]
    return {"arch": arch, "shape": shape, "params": sum(p.numel() for p in model.parameters()),
            "per_token_s": per, "weight_bytes_per_step": {"float32": fbytes, "int8": ibytes},
            "file_bytes": {k: (work / f"{arch}-{k}" / "model.onnx").stat().st_size
                           for k in meta},
            "vs_weight_read": {"pytorch": per["pytorch"] / (fbytes / bw),
                               "onnx_float32": per["onnx_float32"] / (fbytes / bw),
                               "onnx_int8": per["onnx_int8"] / (ibytes / bw)},
            "int8_speedup": per["onnx_float32"] / per["onnx_int8"], "agreement": agree,
            "onnx_vs_pytorch": per["pytorch"] / per["onnx_float32"]}


def loss_cost(arch: str, seconds: float, work: Path, text: Path, agree_steps: int = 0
              ) -> dict:
    """Validation nats per character, float and int8, PyTorch and exported; and the float
    export's agreement with the trained model over agree_steps steps at batch 64."""
    run = work / f"{arch}-run"
    cfg = TrainConfig(text=str(text), level="char", model=LMConfig(arch=arch, **SMALL),
                      batch=16, bptt=64, max_time=seconds, eval_every=0, save_every=0)
    Trainer(cfg, run, quiet=True).run()
    pred = Predictor.load(run)
    valid = pred.vocab.encode(split_ids(tokenize(read_text(text), "char"))[1])
    out = {"arch": arch, "train_seconds": seconds, "shape": SMALL, "tokens": len(valid)}
    out["pytorch_float32"] = evaluate(pred.model, valid, 16)
    out["pytorch_int8"] = evaluate(load_predictor(run, int8=True).model, valid, 16)
    for kind in ("float32", "int8"):
        folder = work / f"{arch}-loss-{kind}"
        export_model(pred.model, pred.vocab.to_json(), folder, int8=kind == "int8")
        out[f"onnx_{kind}"] = evaluate_export(Exported(folder), valid, 16)
        if kind == "float32" and agree_steps:
            out["agreement"] = measure(pred.model, StepFunction(pred.model), Exported(folder),
                                       steps=agree_steps, batch=64)
    out["int8_cost_pytorch"] = out["pytorch_int8"] - out["pytorch_float32"]
    out["int8_cost_onnx"] = out["onnx_int8"] - out["onnx_float32"]
    return out


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(1)
    names = args.arch or list(available())
    if args.train_seconds > 0 and not Path(args.text).is_file():
        raise UserError(f"--text {args.text}: no such file (Tiny Shakespeare, for the int8 "
                        f"loss); give its path, or --train-seconds 0 to skip that part")
    start, load0 = time.time(), os.getloadavg()
    result: dict = {"command": args.command, "machine": machine_description(),
                    "started_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(start)),
                    "loadavg_before": load0, "tokens_per_round": args.tokens,
                    "rounds": args.reps}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.skip_step:                   # keep the step part of an earlier run
            old = json.loads((Path(args.out) / "export.json").read_text())
            result.update({k: old[k] for k in ("read_bandwidth_Bps", "step", "keyboard")})
            result["step_run"] = old.get("step_run") or {
                k: old[k] for k in ("command", "started_utc", "seconds", "loadavg_before",
                                    "loadavg_after", "tokens_per_round", "rounds")}
        else:
            bw = read_bandwidth()
            result["read_bandwidth_Bps"] = bw
            result["step"] = [bench_step(a, DEFAULT, work, args.tokens, args.reps, bw,
                                         args.agree_steps) for a in names]
            result["keyboard"] = bench_step("lstm_cifg", KEYBOARD, work, args.tokens,
                                            args.reps, bw)
        if args.train_seconds > 0:
            result["loss"] = [loss_cost(a, args.train_seconds, work, Path(args.text),
                                        args.agree_steps) for a in names]
    result.update(seconds=time.time() - start, loadavg_after=os.getloadavg())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "export.json", json.dumps(result, indent=1) + "\n")
    atomic_write_text(out / "export.md", render(result))
    return result


def render(r: dict) -> str:
    """The results as a Markdown report."""
    bw = r["read_bandwidth_Bps"]
    lines = ["# Exported one-step models: time per token, bytes read, int8", "",
             (f"`{r['command']}`, {r['started_utc']}, {r['seconds']:.0f} s; {r['machine']}; "
             f"load average {r['loadavg_before'][0]:.1f} before, "
             f"{r['loadavg_after'][0]:.1f} after. Batch 1, one thread, medians of "
             f"{r['rounds']} interleaved rounds of {r['tokens_per_round']} tokens. Read "
             f"bandwidth {bw / 1e9:.1f} GB/s (sum of a 256 MB tensor)."), "",
             *([(f"Step timings from an earlier run: `{r['step_run']['command']}`, "
                f"{r['step_run']['started_utc']}, load average "
                f"{r['step_run']['loadavg_before'][0]:.1f} before, "
                f"{r['step_run']['loadavg_after'][0]:.1f} after."), ""]
               if r.get("step_run") else []),
             ("| arch | params | PyTorch µs | ORT f32 µs | ORT int8 µs | f32 MB/step | "
             "int8 MB/step | PyTorch / read | ORT f32 / read | ORT int8 / read | "
             "int8 speed-up | int8 file MB |"), "|" + "---|" * 12]
    for s in r["step"] + [r["keyboard"]]:
        p, v = s["per_token_s"], s["vs_weight_read"]
        name = s["arch"] + (" (keyboard)" if s is r["keyboard"] else "")
        lines.append(
            f"| {name} | {s['params'] / 1e6:.2f}M | {p['pytorch'] * 1e6:.0f} | "
            f"{p['onnx_float32'] * 1e6:.0f} | {p['onnx_int8'] * 1e6:.0f} | "
            f"{s['weight_bytes_per_step']['float32'] / 1e6:.2f} | "
            f"{s['weight_bytes_per_step']['int8'] / 1e6:.2f} | {v['pytorch']:.2f} | "
            f"{v['onnx_float32']:.2f} | {v['onnx_int8']:.2f} | {s['int8_speedup']:.2f}x | "
            f"{s['file_bytes']['int8'] / 1e6:.2f} |")
    agree = [s for s in r["step"] if s.get("agreement")]
    if agree:
        a0 = agree[0]["agreement"]
        lines += ["", (f"## Export vs PyTorch: {a0['steps']} steps at batch {a0['batch']} from "
                  "a zero state (float32)"), "",
                  ("Largest |logit difference| over all steps, relative to the largest |logit|; "
                  "beside it, how far PyTorch float32 itself is from float64 on the same steps."),
                  "", "| arch | onnxruntime vs PyTorch | PyTorch f32 vs f64 | max state diff |",
                  "|---|---|---|---|"]
        for s in agree:
            a = s["agreement"]
            lines.append(f"| {s['arch']} | {a['relative_logit_error']:.1e} | "
                         f"{a['pytorch_float32_vs_float64']:.1e} | "
                         f"{a['max_abs_state_error']:.1e} |")
    trained = [x for x in r.get("loss", []) if x.get("agreement")]
    if trained:
        a0 = trained[0]["agreement"]
        lines += ["", (f"## Export vs PyTorch on the trained models: {a0['steps']} steps at "
                  f"batch {a0['batch']}, random tokens, from a zero state"), "",
                  "| arch | onnxruntime vs PyTorch | PyTorch f32 vs f64 | max state diff |",
                  "|---|---|---|---|"]
        for x in trained:
            a = x["agreement"]
            lines.append(f"| {x['arch']} | {a['relative_logit_error']:.1e} | "
                         f"{a['pytorch_float32_vs_float64']:.1e} | "
                         f"{a['max_abs_state_error']:.1e} |")
    if r.get("loss"):
        lines += ["", "## What int8 costs (validation nats per character)", "",
                  ("| arch | PyTorch f32 | PyTorch int8 | ORT f32 | ORT int8 | cost PyTorch | "
                  "cost ORT |"), "|" + "---|" * 7]
        for x in r["loss"]:
            lines.append(f"| {x['arch']} | {x['pytorch_float32']:.4f} | "
                         f"{x['pytorch_int8']:.4f} | {x['onnx_float32']:.4f} | "
                         f"{x['onnx_int8']:.4f} | {x['int8_cost_pytorch']:+.4f} | "
                         f"{x['int8_cost_onnx']:+.4f} |")
    return "\n".join(lines) + "\n"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="docs/results", help="folder for export.json, export.md")
    p.add_argument("--arch", action="append", help="architecture (repeatable; default all)")
    p.add_argument("--tokens", type=int, default=100, help="tokens per timed round")
    p.add_argument("--reps", type=int, default=5, help="interleaved rounds (median)")
    p.add_argument("--agree-steps", type=int, default=512,
                   help="steps (batch 64) of the float export against PyTorch (0: skip)")
    p.add_argument("--train-seconds", type=float, default=60,
                   help="training time per architecture for the int8 loss (0: skip)")
    p.add_argument("--text", default=str(TEXT), help="text for the loss part")
    p.add_argument("--skip-step", action="store_true",
                   help="keep the step timings of the existing export.json in --out")


def main(argv=None) -> int:
    import sys
    p = argparse.ArgumentParser(prog="export_step", description=__doc__.split("\n\n")[0])
    add_arguments(p)
    args = p.parse_args(argv)
    args.command = " ".join([Path(sys.argv[0]).name] + (sys.argv[1:] if argv is None
                                                         else list(argv)))
    try:
        print(render(run(args)))
    except UserError as e:
        print(f"export_step: error: {e}", file=sys.stderr)
        return 2
    return 0
