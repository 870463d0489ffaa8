"""Whole-sequence kernel for one layer of the 2-D (time × depth) Grid LSTM
(``rnnlab.cells.grid.GridLayerCell``; Kalchbrenner, Danihelka & Graves 2015, "Grid Long
Short-Term Memory"), built on the LSTM kernel (``kernels.lstm``).

At step t the block reads H = [h_time_{t-1}; h_depth_t]; h_depth_t and m_depth_t come from
the layer below and are known for every t before this layer runs. So (T time, B batch,
H hidden):

1. time dimension: an LSTM recurrence whose input part W_time[:, H:] h_depth + b is one
   hoisted GEMM over all steps; ``LSTMSequence`` runs it (recurrent weight W_time[:, :H],
   ``Spec.paper`` for the paper's h = tanh(o ⊙ m)), with its hand-derived backward.
2. depth dimension: nothing of it feeds back in time. Its transform reads the time h of
   the block (the new h_time_t when depth is the priority dimension, the default, else
   h_time_{t-1}), so after the loop it is one (TB, H) x (H, G) GEMM plus the block's own
   gate math on (T, B, G) tensors at once, under autograd (the tensors are large).

Supported: time kind "lstm"; depth kind "lstm", "none", "identity", "tanh" or "relu";
depth priority or no priority; shared or separate weights across dims; both output forms;
bias or not; ``lengths`` (masked state, zeroed padded outputs, as ``run_cell``'s loop).
Everything else (a non-LSTM time dimension, time as the only priority dimension, a
subclass that changes the step math) runs the cell's Python loop.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from . import STATS, kernels_enabled, same_method, step_mask
from .lstm import LSTMSequence, Params, Spec


def supported(cell) -> bool:
    """Whether the kernel computes exactly what ``cell``'s step loop computes."""
    from ..cells.grid import GridBlock, GridLayerCell

    block = cell.block
    pri = set(block.priority)
    return (block.dims == ("time", "depth") and block.kinds[0] == "lstm"
            and not ("time" in pri and "depth" not in pri)
            and same_method(cell, GridLayerCell, "step", "project_input", "_pairs")
            and same_method(block, GridBlock, "forward", "run", "_preact", "_transform",
                            "input_part", "transform_weight"))


def depth_reads_new_time(block) -> bool:
    """Depth is a priority dimension and time is not: depth reads the new h_time_t."""
    return "depth" in block.priority and "time" not in block.priority


def run_sequence(cell, x: Tensor, state, lengths=None):
    """The Grid layer cell over x (T, B, H or 2H) from state; (out, GridState)."""
    from ..cells.grid import GridState
    from ..layers import _loop

    if 0 in x.shape[:2] or not kernels_enabled() or not supported(cell):
        return _loop(cell, x, state, lengths)
    STATS["grid"] += 1
    block, d = cell.block, cell.hidden_size
    T = x.shape[0]
    h_depth = x[..., :d]                                           # (T, B, H)
    w_time, b_time = block.transform_weight(0)                     # (4H, 2H), (4H,)
    pre_time = F.linear(h_depth, w_time[:, d:], b_time)            # (T, B, 4H) hoisted
    mask, full = step_mask(lengths, T, x)
    spec = Spec(False, False, False, full, paper=block.output_form == "paper")
    params = Params(None, w_time[:, :d].contiguous(), None, None, None, None, None, None,
                    None, None)
    h_t, h_T, m_T = LSTMSequence.apply(spec, pre_time, state.h, state.m, mask, *params)
    out = _depth(cell, x, h_t, state.h)
    if mask is not None:
        out = out * mask
    return out, GridState(h_T, m_T)


def _depth(cell, x: Tensor, h_t: Tensor, h0: Tensor) -> Tensor:
    """What goes up from every step at once: (T, B, 2H) [h'; m'] or (T, B, H) h'.
    h_t: the time dimension's new h of every step (zero where masked)."""
    block, d = cell.block, cell.hidden_size
    if block.kinds[1] == "none":
        return h_t                                                  # h' = the time h
    if depth_reads_new_time(block):
        src = h_t
    else:                                                           # h_time_{t-1}
        src = torch.cat([h0.unsqueeze(0), h_t[:-1]])
    w, b = block.transform_weight(1)                                # (G, 2H), (G,)
    a = F.linear(x[..., :d], w[:, d:], b)                           # (T, B, G)
    T, B, G = a.shape
    a = torch.addmm(a.view(T * B, G), src.reshape(T * B, d), w[:, :d].t()).view(T, B, G)
    m_depth = x[..., d:] if cell.carry_memory else None
    up = block._transform(1, a, m_depth, None)
    return torch.cat([up.h, up.m], -1) if cell.carry_memory else up.h
