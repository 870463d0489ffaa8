"""The gates at work: what each layer of a trained model keeps and discards, token by token.

    trace = trace_gates(core, x)            # x (T, B, F) -> per layer {gate: (T, B, H)}
    expl = explain_ids(model, ids, tokens)  # a LanguageModel over one text
    summary(expl); heatmap(expl, "gates.png"); html_page(expl)

Every cell exposes ``gate_values(xp, state) -> {name: (B, H)}``, the gates its ``step``
uses: input/forget/output for the LSTMs (Hochreiter & Schmidhuber 1997; Gers et al. 2000),
update/reset for the GRU (Cho et al. 2014), the depth gate of the Depth-Gated LSTM (Yao et
al. 2015), the active modules of the Clockwork RNN (Koutník et al. 2014), '<dim>.<gate>'
for Grid LSTM blocks, and the saturation of an Elman unit. ``trace_gates`` records them by
wrapping each cell's ``step`` for one forward pass (fused kernels are switched off for that
pass), so the values are exactly those of the computation, whatever container runs the cell.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .cells.base import Cell
from .kernels import use_kernels


@dataclass
class LayerTrace:
    """One cell's gates over a sequence: name -> (T, B, H)."""
    name: str
    cell: str
    gates: dict[str, Tensor]


@dataclass
class Explanation:
    """Gates of every layer for one text (batch of one): gates (T, H) per layer."""
    tokens: list[str]
    layers: list[LayerTrace]
    predictions: list[str] = field(default_factory=list)   # top next token after each


def _cells(core: nn.Module) -> list[tuple[str, Cell]]:
    found = []
    for n, m in core.named_modules():
        if isinstance(m, Cell) and hasattr(m, "gate_values"):
            found.append((n, m))
        elif hasattr(m, "split_state") and not hasattr(m, "layers"):   # torch.nn fronts
            found += [(f"{n + '.' if n else ''}cells.{k}", c) for k, c in enumerate(m.cells)]
    return found


def trace_gates(core: nn.Module, x: Tensor, state: Any = None) -> tuple[Tensor, list[LayerTrace]]:
    """Run ``core(x, state)`` step by step and record every cell's gate values.

    Returns the core's output and one LayerTrace per cell use (a cell shared by several
    layers gives one trace per layer), in the order the cells ran."""
    T = x.shape[0]
    records: dict[str, list[dict[str, Tensor]]] = {}
    patched = []
    for name, cell in _cells(core):
        log = records.setdefault(name, [])
        original = cell.step

        def step(xp, st, _cell=cell, _orig=original, _log=log):
            _log.append({k: v.detach().clone() for k, v in _cell.gate_values(xp, st).items()})
            return _orig(xp, st)
        cell.step = step
        patched.append(cell)
    try:
        with use_kernels(False):                         # every layer loops over step
            out, _ = core(x, state)
    finally:
        for cell in patched:
            del cell.step
    traces = []
    kinds = dict(_cells(core))
    for name, log in records.items():
        if not log or T == 0:
            continue
        for k in range(len(log) // T):
            part = log[k * T:(k + 1) * T]
            label = name if len(log) == T else f"{name}[{k}]"
            traces.append(LayerTrace(label, type(kinds[name]).__name__,
                                     {g: torch.stack([p[g] for p in part]) for g in part[0]}))
    return out, traces


@torch.no_grad()
def explain_ids(model: nn.Module, ids: list[int], tokens: list[str],
                vocab_tokens: list[str] | None = None, start_id: int | None = None
                ) -> Explanation:
    """Gates of a LanguageModel (embed -> core -> head) reading ``ids`` (one per token).
    With ``start_id`` the model first reads that token, as it does when predicting; its
    column is left out of the explanation."""
    if len(ids) != len(tokens) or not ids:
        raise ValueError(f"need one id per token and at least one token, received "
                         f"{len(ids)} ids for {len(tokens)} tokens")
    skip = 0 if start_id is None else 1
    seq = ([start_id] if skip else []) + list(ids)
    was = model.training
    model.eval()
    try:
        x = model.embed(torch.tensor(seq, dtype=torch.long)[:, None])  # (T, 1, E)
        out, traces = trace_gates(model.core, x)
        best = model.head(out[skip:, 0]).argmax(-1).tolist()             # (T,)
    finally:
        model.train(was)
    layers = [LayerTrace(f"layer {k + 1}", t.cell, {g: v[skip:, 0] for g, v in t.gates.items()})
              for k, t in enumerate(traces)]
    preds = [vocab_tokens[i] for i in best] if vocab_tokens else []
    return Explanation(list(tokens), layers, preds)


# -- the text summary ------------------------------------------------------------------------

# gate suffix -> what its mean over units says, and which end of the ranking to list
RULES = {
    "input": (("keeps (input gate highest: writes the token into memory)", True),
              ("discards (input gate lowest: the token barely enters memory)", False)),
    "forget": (("clears its memory at (forget gate lowest)", False),),
    "output": (("shows its memory most at (output gate highest)", True),),
    "update": (("keeps (update gate lowest: the new token replaces the state)", False),
               ("discards (update gate highest: the old state is kept instead)", True)),
    "reset": (("reads without its past at (reset gate lowest)", False),),
    "depth": (("passes the lower layer's memory up most at (depth gate highest)", True),),
    "active": (("updates the most modules at", True), ("updates the fewest modules at", False)),
    "saturation": (("is most saturated at (|h| nearest 1)", True),),
}


def visible(layer: LayerTrace) -> dict[str, Tensor]:
    """The layer's gates that the pictures show (those with a reading in RULES)."""
    return {g: v for g, v in layer.gates.items() if g.rpartition(".")[2] in RULES}


def show(token: str) -> str:
    """A token as text a reader can see (spaces and newlines made visible)."""
    return {" ": "␣", "\n": "⏎", "\t": "⇥"}.get(token, token)


def ranked(tokens: list[str], values: Tensor, highest: bool, k: int) -> list[str]:
    order = sorted(range(len(tokens)), key=lambda i: float(values[i]), reverse=highest)
    return [f"{show(tokens[i])} ({float(values[i]):.2f})" for i in order[:k]]


def summary(expl: Explanation, k: int | None = None) -> str:
    """Per layer and gate: the tokens at each end of the gate's mean over units."""
    T = len(expl.tokens)
    k = k or max(1, min(4, T // 4))
    lines = []
    for layer in expl.layers:
        H = next(iter(layer.gates.values())).shape[-1] if layer.gates else 0
        lines.append(f"{layer.name} ({layer.cell}, {H} units):")
        for gate, values in layer.gates.items():
            prefix, _, suffix = gate.rpartition(".")
            mean = values.mean(-1)                                     # (T,)
            for text, highest in RULES.get(suffix, ()):
                where = f"[{prefix}] " if prefix else ""
                lines.append(f"  {where}{text}: {', '.join(ranked(expl.tokens, mean, highest, k))}")
    return "\n".join(lines)


def token_means(expl: Explanation) -> dict[str, dict[str, list[float]]]:
    """{layer: {gate: mean over units per token}} for JSON."""
    return {layer.name: {g: [round(float(v), 4) for v in values.mean(-1)]
                         for g, values in layer.gates.items()} for layer in expl.layers}
