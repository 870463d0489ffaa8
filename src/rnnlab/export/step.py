"""The one-step function every export holds: token and flat state in, logits and flat
state out, the same signature for every registered architecture.

    fn = StepFunction(model)                     # a LanguageModel, put in eval mode
    logits, next_state = fn(token, state)        # token (B,) int64, state (B, S) float32

All of a core's state lives in one vector per sequence: per layer, bottom to top, the
fields of that layer's cell state in the cell's order (h and c for an LSTM, h for a GRU,
h and the step counter for a Clockwork RNN, h and m for a Grid LSTM layer). A zero vector
is the initial state. ``fn.layout`` names every field with its offset and size;
``to_flat`` / ``from_flat`` convert between the flat vector and the state form the core's
own forward takes, so the export can be checked against the model it came from.

The function calls each cell's ``step`` (and ``project_input``) directly, never a
sequence layer's forward, so it traces to a plain graph on any architecture. A Clockwork
counter is kept modulo the least common multiple of the periods (the same schedule, and a
float32 holds it exactly for ever); ``to_flat`` applies the same modulus.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from ..cells.base import Cell
from ..cells.clockwork import ClockworkStep
from ..cells.grid import GridState
from ..layers.grid import GridLSTM
from ..models.lm import LanguageModel


def core_cells(core: nn.Module) -> tuple[str, list[Cell]]:
    """How the core lays out its state ("layers": it says so itself, with ``cells``,
    ``split_state`` and ``join_state``; "grid": a Grid LSTM's GridState of (L, B, H)
    tensors, after an input projection) and its cells bottom to top."""
    if getattr(core, "bidirectional", False):
        raise ValueError("a bidirectional core cannot run one token at a time")
    if isinstance(core, GridLSTM):
        return "grid", [core.cell(k) for k in range(core.num_layers)]
    if hasattr(core, "split_state") and hasattr(core, "join_state"):
        cells = list(core.cells)
        if all(isinstance(c, Cell) for c in cells):
            return "layers", cells
    raise ValueError(f"cannot export a {type(core).__name__} core: expected a layer of "
                     f"cells (an rnnlab front, a stack of recurrent layers) or a Grid LSTM")


def _clock_modulus(cell: ClockworkStep) -> int:
    return math.lcm(*cell.periods)


class StepFunction(nn.Module):
    """One token through a LanguageModel with the state as one flat vector."""

    def __init__(self, model: LanguageModel) -> None:
        super().__init__()
        self.model = model
        # the wrapper itself in eval mode: torch.onnx.export restores the wrapper's mode
        # when it is done, and a wrapper left in training mode switched the model's dropout
        # back on (an int8 export of a model with dropout then failed its own check)
        self.eval()
        self.form, cells = core_cells(model.core)
        self.cells = nn.ModuleList(cells)
        self.layout: list[dict] = []
        offset = 0
        for k, cell in enumerate(cells):
            for name, shape in cell.state_shapes().items():
                size = math.prod(shape) if shape else 1
                entry = {"name": f"layer{k}.{name}", "offset": offset, "size": size}
                if isinstance(cell, ClockworkStep) and name == "t":
                    entry["note"] = (f"step counter modulo {_clock_modulus(cell)} "
                                     f"(lcm of the periods), stored as a float")
                self.layout.append(entry)
                offset += size
        self.state_size = offset

    # -- the flat state <-> per-cell states ----------------------------------------------
    def _cell_states(self, flat: Tensor) -> list:
        out, i = [], 0
        for cell in self.cells:
            fields = []
            for name, shape in cell.state_shapes().items():
                size = math.prod(shape) if shape else 1
                part = flat[:, i:i + size]
                if isinstance(cell, ClockworkStep) and name == "t":
                    part = part[:, 0].to(torch.long)
                fields.append(part)
                i += size
            out.append(cell.State(*fields))
        return out

    def _flatten(self, states: list) -> Tensor:
        parts = []
        for cell, s in zip(self.cells, states):
            for name, value in zip(cell.state_shapes(), s):
                if isinstance(cell, ClockworkStep) and name == "t":
                    value = (value % _clock_modulus(cell)).to(parts[-1].dtype)[:, None]
                parts.append(value)
        return torch.cat(parts, 1)

    def to_flat(self, state: Any) -> Tensor:
        """The core's own state form (as its forward returns it) -> (B, S)."""
        if self.form == "grid":
            states = [GridState(state.h[k], state.m[k]) for k in range(len(self.cells))]
        else:
            states = self.model.core.split_state(state)
        return self._flatten(states)

    def from_flat(self, flat: Tensor) -> Any:
        """(B, S) -> the core's own state form."""
        states = self._cell_states(flat)
        if self.form == "grid":
            return GridState(torch.stack([s.h for s in states]),
                             torch.stack([s.m for s in states]))
        return self.model.core.join_state(states)

    # -- one step ------------------------------------------------------------------------
    def forward(self, token: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """token (B,) int64, state (B, S) -> logits (B, V), next state (B, S)."""
        core = self.model.core
        x = self.model.embed(token)                                   # (B, E)
        if self.form == "grid":
            x = core.input_proj(x)
            if self.cells[0].carry_memory:
                x = torch.cat([x, torch.zeros_like(x)], -1)
        new = []
        for cell, s in zip(self.cells, self._cell_states(state)):
            x, s = cell.step(cell.project_input(x), s)
            new.append(s)
        if self.form == "grid":
            x = x[..., :core.hidden_size]
        return self.model.head(x), self._flatten(new)

