"""The reference time loop: a cell's ``step`` over a whole sequence.

``run_steps(cell, x, state, lengths)`` is what every path is tested against: the input
projection of all steps is one call (``cell.project_input``), then one ``cell.step`` per
step. With ``lengths`` the state stops changing after each sequence's last valid step and
padded outputs are zero. Kernels (``rnnlab.kernels``) are optimisations of this loop.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .base import Cell


def step_mask(lengths: Tensor, T: int, device) -> Tensor:
    """(T, B) bool: True where step t is inside sequence b."""
    return (torch.arange(T)[:, None] < lengths[None, :]).to(device)


def masked_update(mask_b: Tensor, new: Any, old: Any) -> Any:
    """Per batch row: new where mask_b else old, for every tensor of a state."""
    def pick(n: Tensor, o: Tensor) -> Tensor:
        return torch.where(mask_b.view(-1, *([1] * (n.dim() - 1))), n, o)
    return type(new)(*(pick(n, o) if isinstance(n, Tensor) else masked_update(mask_b, n, o)
                       for n, o in zip(new, old)))


def run_steps(cell: Cell, x: Tensor, state: Any, lengths: Tensor | None = None,
              states: list | None = None):
    """``cell`` over x (T, B, F) from ``state``: out (T, B, O) and the final state.
    A list given as ``states`` receives the state after every step."""
    T = x.shape[0]
    xp = cell.project_input(x)                                        # (T, B, G)
    full = T if lengths is None else int(lengths.min())               # steps valid for all
    mask = None if lengths is None else step_mask(lengths, T, x.device)
    outs = []
    for t in range(T):
        out, new = cell.step(xp[t], state)
        if t >= full:
            m = mask[t]
            new = masked_update(m, new, state)
            out = out * m[:, None].to(out.dtype)
        state = new
        outs.append(out)
        if states is not None:
            states.append(state)
    if not outs:
        return x.new_zeros(0, x.shape[1], cell.output_size), state
    return torch.stack(outs), state
