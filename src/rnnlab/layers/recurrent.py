"""Sequence layers: run any cell over time.

- ``run_cell(cell, x, state, lengths, reverse)`` is how every layer runs a cell over
  time: the cell's kernel where ``rnnlab.kernels.run`` has one, else the step loop
  ``rnnlab.cells.loop.run_steps``. With ``lengths`` the state stops changing after each sequence's
  last valid step and padded outputs are zero; ``reverse`` runs each sequence backwards
  from its own last valid step (what a bidirectional layer over padding needs).
- ``run_stack(layers, x, dropout, training, passed)`` is the one stack loop: every
  multi-layer architecture (``Stacked`` and its subclasses, the torch.nn fronts, the Grid
  LSTM) runs its layers through it, each with its own state layout around it.
- ``Recurrent(cell)``, ``Bidirectional(fwd, bwd)``, ``Stacked(layers, dropout)`` wrap it.

Shapes: x (T, B, F) time-major (or (B, T, F) with batch_first), out (T, B, O).
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

from .. import kernels
from ..cells.base import Cell, check_features, shape_str
from ..cells.loop import run_steps


def map_state(fn, state: Any) -> Any:
    """Apply fn to every tensor of a (nested) state, keeping its tuple types."""
    if isinstance(state, Tensor):
        return fn(state)
    if state is None:
        return None
    if isinstance(state, tuple) and hasattr(state, "_fields"):
        return type(state)(*(map_state(fn, s) for s in state))
    if isinstance(state, (tuple, list)):
        return type(state)(map_state(fn, s) for s in state)
    raise TypeError(f"cannot map over a state of type {type(state).__name__}")


def detach_state(state: Any) -> Any:
    """The same state cut from the autograd graph (truncated BPTT across windows)."""
    return map_state(lambda t: t.detach(), state)


def check_lengths(lengths: Tensor | Sequence[int], T: int, B: int) -> Tensor:
    """Validate per-sequence lengths: B integers in [1, T]; returns a CPU int64 tensor."""
    lengths = torch.as_tensor(lengths).to("cpu")
    if lengths.is_floating_point() or lengths.dtype == torch.bool:
        raise ValueError(f"lengths must be integers, received dtype {lengths.dtype}")
    if tuple(lengths.shape) != (B,):
        raise ValueError(f"lengths must have shape ({B},) (one per sequence), "
                         f"received {shape_str(lengths.shape)}")
    lengths = lengths.long()
    if B and (int(lengths.min()) < 1 or int(lengths.max()) > T):
        raise ValueError(f"lengths must lie in [1, {T}] (the sequence length), received "
                         f"min {int(lengths.min())}, max {int(lengths.max())}")
    return lengths


def reverse_padded(x: Tensor, lengths: Tensor | None) -> Tensor:
    """Reverse each sequence of x (T, B, ...) within its own length; padding stays put."""
    if lengths is None:
        return x.flip(0)
    T, B = x.shape[:2]
    t = torch.arange(T)[:, None]
    idx = torch.where(t < lengths[None, :], lengths[None, :] - 1 - t, t).to(x.device)
    idx = idx.view(T, B, *([1] * (x.dim() - 2))).expand_as(x)
    return x.gather(0, idx)


def run_cell(cell: Cell, x: Tensor, state: Any, lengths: Tensor | None = None,
             reverse: bool = False) -> tuple[Tensor, Any]:
    """Run cell over x (T, B, F) from state; returns out (T, B, O) and the final state."""
    if reverse:
        x = reverse_padded(x, lengths)
    res = kernels.run(cell, x, state, lengths)
    out, state = res if res is not None else run_steps(cell, x, state, lengths)
    if reverse:
        out = reverse_padded(out, lengths)
    return out, state


def run_stack(layers: Sequence[Callable[[Tensor], tuple[Tensor, Any]]], x: Tensor,
              dropout: float = 0.0, training: bool = False,
              passed: int | None = None) -> tuple[Tensor, list]:
    """The one stack loop: x (T, B, F) through ``layers`` bottom to top, each a function
    x -> (out, final state) that runs one layer (all its directions) from its own initial
    state. Between layers, in training, dropout with probability ``dropout`` acts on the
    layer's input: on all of it, or only on its first ``passed`` features when a layer
    also passes its memory up (Depth-Gated LSTM: [h; c], Grid LSTM: [h; m]), which then
    goes up unchanged: dropout regularises the hidden signal, and a masked memory cell
    would feed the depth gate and the upper memory a cell that never existed. Returns the
    top layer's out and the list of the layers' final states."""
    finals = []
    for i, layer in enumerate(layers):
        if i and dropout and training:
            if passed is None:
                x = F.dropout(x, dropout, True)
            else:
                x = torch.cat([F.dropout(x[..., :passed], dropout, True), x[..., passed:]], -1)
        x, state = layer(x)
        finals.append(state)
    return x, finals


def unpack_input(x: Tensor | PackedSequence, batch_first: bool, lengths):
    """Normalise a layer input to time-major padded form.

    Returns (x (T, B, F), lengths or None, packed template or None)."""
    if isinstance(x, PackedSequence):
        padded, lens = pad_packed_sequence(x, batch_first=False)
        return padded, lens.long(), x
    if not isinstance(x, Tensor):
        raise ValueError(f"input must be a Tensor or PackedSequence, received {type(x).__name__}")
    if x.dim() != 3:
        raise ValueError(f"input must be 3-D ({'B, T' if batch_first else 'T, B'}, F), "
                         f"received shape {shape_str(x.shape)}")
    if batch_first:
        x = x.transpose(0, 1)
    if lengths is not None:
        lengths = check_lengths(lengths, x.shape[0], x.shape[1])
    return x, lengths, None


def repack_output(out: Tensor, template: PackedSequence) -> PackedSequence:
    """Pack out (T, B, O) in the same order and batch sizes as the packed input."""
    order = template.sorted_indices
    out_sorted = out if order is None else out.index_select(1, order.to(out.device))
    bs = template.batch_sizes
    mask = torch.arange(out.shape[1])[None, :] < bs[:, None]          # (T, B) sorted
    data = out_sorted[: len(bs)][mask.to(out.device)]
    return PackedSequence(data, bs, template.sorted_indices, template.unsorted_indices)


class Recurrent(nn.Module):
    """Runs one cell over a sequence: forward(x, state=None, lengths=None) -> (out, state).

    ``Recurrent(cell, batch_first=False, reverse=False)``. x (T, B, F) (or (B, T, F), or a
    PackedSequence), state the cell's (None: zeros), lengths (B,) or None; out (T, B, O)
    in x's layout (a PackedSequence for one) and the final state. ``reverse`` reads each
    sequence backwards from its own last valid step."""

    def __init__(self, cell: Cell, batch_first: bool = False, reverse: bool = False) -> None:
        super().__init__()
        self.cell, self.batch_first, self.reverse = cell, batch_first, reverse

    @property
    def output_size(self) -> int:
        """Features of each output step (O)."""
        return self.cell.output_size

    def init_state(self, batch: int, **kw):
        """The zero state for ``batch`` sequences (``device=``, ``dtype=`` optional)."""
        return self.cell.init_state(batch, **kw)

    def forward(self, x, state=None, lengths=None):
        """(out, final state); see the class docstring."""
        x, lengths, packed = unpack_input(x, self.batch_first, lengths)
        out, state = self.run(x, state, lengths)
        if packed is not None:
            return repack_output(out, packed), state
        return (out.transpose(0, 1) if self.batch_first else out), state

    def run(self, x: Tensor, state, lengths):
        """Time-major core used by the containers: x (T, B, F)."""
        check_features(x, self.cell.input_size)
        B = x.shape[1]
        if state is None:
            state = self.cell.init_state(B, device=x.device, dtype=x.dtype)
        else:
            state = self.cell.check_state(state, B)
        return run_cell(self.cell, x, state, lengths, self.reverse)


class Bidirectional(Recurrent):
    """Two cells, one reading forwards and one backwards; outputs concatenated.

    ``Bidirectional(forward_cell, backward_cell, batch_first=False)``;
    forward(x, state=None, lengths=None) -> (out (T, B, O_f + O_b), (forward state,
    backward state)), as ``Recurrent``."""

    def __init__(self, forward_cell: Cell, backward_cell: Cell, batch_first: bool = False):
        nn.Module.__init__(self)
        self.batch_first = batch_first
        self.fwd = Recurrent(forward_cell)
        self.bwd = Recurrent(backward_cell, reverse=True)

    @property
    def output_size(self) -> int:
        """Features of each output step: both directions' together."""
        return self.fwd.output_size + self.bwd.output_size

    def init_state(self, batch: int, **kw):
        """(forward zero state, backward zero state) for ``batch`` sequences."""
        return (self.fwd.init_state(batch, **kw), self.bwd.init_state(batch, **kw))

    def run(self, x, state, lengths):
        sf, sb = (None, None) if state is None else state
        of, sf = self.fwd.run(x, sf, lengths)
        ob, sb = self.bwd.run(x, sb, lengths)
        return torch.cat([of, ob], dim=-1), (sf, sb)


class Stacked(Recurrent):
    """Layers (Recurrent or Bidirectional) on top of each other, with dropout between them
    (``run_stack``; ``passed``: drop out only the first ``passed`` features of what goes
    up). State: a tuple with one entry per layer.

    ``Stacked(layers, dropout=0.0, batch_first=False, passed=None)``;
    forward(x, state=None, lengths=None) -> (the top layer's out, tuple of final states),
    as ``Recurrent``."""

    def __init__(self, layers: Sequence[Recurrent], dropout: float = 0.0,
                 batch_first: bool = False, passed: int | None = None) -> None:
        nn.Module.__init__(self)
        self.layers = nn.ModuleList(layers)
        self.dropout, self.batch_first, self.passed = float(dropout), batch_first, passed

    @property
    def output_size(self) -> int:
        """Features of each output step: the top layer's."""
        return self.layers[-1].output_size

    def init_state(self, batch: int, **kw):
        """One zero state per layer, bottom to top."""
        return tuple(layer.init_state(batch, **kw) for layer in self.layers)

    @property
    def cells(self) -> list:
        """The cells bottom to top (layers that are single Recurrent cells)."""
        return [layer.cell for layer in self.layers]

    state_batch_dim = 0                 # every state tensor is (B, ...)

    def split_state(self, state) -> list:
        """The per-layer states (the stepper's view of the state layout)."""
        return list(state)

    def join_state(self, states: list) -> tuple:
        """The per-layer states -> this layer's state (the inverse of ``split_state``)."""
        return tuple(states)

    def run(self, x, state, lengths):
        if state is not None and len(state) != len(self.layers):
            cell = getattr(self.layers[0], "cell", None)
            what = cell.State.__name__ if cell is not None else "entry"
            raise ValueError(f"state must hold one {what} per layer ({len(self.layers)}), "
                             f"received {len(state)}")
        runs = [lambda x, i=i, layer=layer: layer.run(x, None if state is None else state[i],
                                                      lengths)
                for i, layer in enumerate(self.layers)]
        x, finals = run_stack(runs, x, self.dropout, self.training, self.passed)
        return x, tuple(finals)
