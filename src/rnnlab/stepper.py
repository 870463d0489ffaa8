"""Fast incremental inference: one token through a stacked recurrent core without
per-call setup cost (what a predictor does for every typed character or word).

``Stepper(core)`` looks at the core once (an ``rnnlab.LSTM``/``GRU``/``RNN`` front, a
``Stacked`` of ``Recurrent`` layers, or anything ``rnnlab.build`` returns) and prepares,
per layer, the fused weights [W_ih | W_hh] (GH, F+H) and the summed bias, so that a plain
LSTM or Elman layer costs one matrix-vector product that reads its weights once, plus a few
in-place elementwise ops on (B, GH) tensors:

    stepper = Stepper(core)
    out, state = stepper(x_t, state)     # x_t (B, F), state as the core's forward returns it

At batch 1 the time per token is bounded below by reading every weight once from memory;
``benchmarks/speed.py`` compares it with that bound and with ``torch.nn.LSTM`` called once
per token. Layers without a fused form here (GRU, LSTM variants, other cells) run their
cell's own ``step``: always correct, just without the fusion. Inference only (no_grad).
The state keeps the core's own form (torch's stacked (h, c) for the fronts), so the
stepper's state and the core's forward state are interchangeable.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor, nn

from .cells.base import Cell
from .cells.elman import ACTIVATIONS, ElmanStep
from .cells.lstm import LSTMState, LSTMStep
from .kernels import same_method


def _cells_of(core: nn.Module) -> list[Cell]:
    """The cells bottom to top. A steppable layer states its layout: ``cells`` (bottom to
    top), ``split_state(state) -> per-cell states`` and ``join_state(states)``."""
    if getattr(core, "bidirectional", False):
        raise ValueError("incremental stepping needs a unidirectional core")
    if isinstance(core, Cell):
        return [core]
    if hasattr(core, "split_state") and hasattr(core, "join_state"):
        cells = list(core.cells)
        if all(isinstance(c, Cell) for c in cells):
            return cells
    raise ValueError(f"cannot step a {type(core).__name__}: expected a unidirectional "
                     f"layer of cells (an rnnlab front, a Stacked of Recurrent layers) or a "
                     f"cell")


def _lstm_step(cell: LSTMStep) -> Callable:
    """Plain LSTM (optionally with proj_size): one GEMV over [x; h] per step."""
    H = cell.hidden_size
    w = torch.cat([cell.weight_ih, cell.weight_hh], 1).detach().t().contiguous()
    b = None if cell.bias_ih is None else (cell.bias_ih + cell.bias_hh).detach()
    w_hr = cell.weight_hr.detach().t() if cell.proj_size else None

    def step(x: Tensor, state: LSTMState):
        h, c = state
        xh = torch.cat([x, h], 1)                                       # (B, F+P)
        a = xh @ w if b is None else torch.addmm(b, xh, w)              # (B, 4H)
        a[:, :2 * H].sigmoid_()
        a[:, 3 * H:].sigmoid_()
        g = a[:, 2 * H:3 * H].tanh_()
        c = torch.addcmul(a[:, H:2 * H] * c, a[:, :H], g)
        h = a[:, 3 * H:] * torch.tanh(c)
        if w_hr is not None:
            h = h @ w_hr
        return h, LSTMState(h, c)
    return step


def _elman_step(cell: ElmanStep) -> Callable:
    w = torch.cat([cell.weight_ih, cell.weight_hh], 1).detach().t().contiguous()
    b = None if cell.bias_ih is None else (cell.bias_ih + cell.bias_hh).detach()
    act = ACTIVATIONS[cell.nonlinearity]

    def step(x: Tensor, state):
        xh = torch.cat([x, state.h], 1)
        h = act(xh @ w if b is None else torch.addmm(b, xh, w))
        return h, cell.State(h)
    return step


def _generic_step(cell: Cell) -> Callable:
    def step(x: Tensor, state):
        return cell.step(cell.project_input(x), state)
    return step


def make_step(cell: Cell) -> Callable:
    """The fastest correct single-step function for one cell; its ``kind`` attribute
    names the path ("lstm-fused", "elman-fused" or "cell.step")."""
    if isinstance(cell, LSTMStep) and cell.is_plain and same_method(
            cell, LSTMStep, "step", "project_input", "preactivation", "cell_update",
            "gate_activations", "normalise_cell"):
        step, kind = _lstm_step(cell), "lstm-fused"
    elif isinstance(cell, ElmanStep) and same_method(cell, ElmanStep, "step", "project_input",
                                                     "preactivation"):
        step, kind = _elman_step(cell), "elman-fused"
    else:
        step, kind = _generic_step(cell), "cell.step"
    step.kind = kind
    return step


class Stepper:
    """One token through every layer of ``core``: ``out, state = stepper(x_t, state)``.

    Build it once per set of weights (it copies the fused weights; rebuild after training
    updates them). ``state=None`` starts from zeros."""

    def __init__(self, core: nn.Module) -> None:
        self.core = core
        self.cells = _cells_of(core)
        self.bare = isinstance(core, Cell)
        #: the batch dimension of the core's state tensors (1 in torch's (L, B, H) form)
        self.batch_dim = 0 if self.bare else core.state_batch_dim
        with torch.no_grad():
            self.steps = [make_step(c) for c in self.cells]
        self.kinds = [s.kind for s in self.steps]

    def init_state(self, batch: int, *, device=None, dtype=None) -> Any:
        per_layer = [c.init_state(batch, device=device, dtype=dtype) for c in self.cells]
        if self.bare:
            return per_layer[0]
        return self.core.join_state(per_layer)

    def split(self, state: Any) -> list:
        return [state] if self.bare else self.core.split_state(state)

    @torch.no_grad()
    def __call__(self, x: Tensor, state: Any = None) -> tuple[Tensor, Any]:
        """x (B, F) -> out (B, O) of the top layer, the new state in the core's form.

        On CPU a step runs on one thread: it is a memory-bound matrix-vector product plus
        a few tiny elementwise ops, so more threads add fork/join waits but no bandwidth
        (measured here under load: 1.8 ms per token on one thread, 32 ms on two)."""
        n = torch.get_num_threads()
        if n == 1 or x.device.type != "cpu":
            return self._step(x, state)
        torch.set_num_threads(1)
        try:
            return self._step(x, state)
        finally:
            torch.set_num_threads(n)

    def _step(self, x: Tensor, state: Any) -> tuple[Tensor, Any]:
        if state is None:
            state = self.init_state(x.shape[0], device=x.device, dtype=x.dtype)
        finals = []
        for step, s in zip(self.steps, self.split(state)):
            x, s = step(x, s)
            finals.append(s)
        return x, (finals[0] if self.bare else self.core.join_state(finals))


__all__ = ["Stepper", "make_step"]
