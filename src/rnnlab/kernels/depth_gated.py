"""Whole-sequence kernel for ``rnnlab.cells.depth_gated.DepthGatedLSTMStep`` (Yao et al.
2015, "Depth-Gated LSTM"), built on the LSTM kernel (``kernels.lstm``).

The depth gate only adds input-side terms and one diagonal recurrent term to an LSTM:

    d_t = σ(D_t + w_cd ⊙ c_{t-1}),   D_t = b_d + W_xd x_t + w_ld ⊙ l_t   (input side)
    c_t = f ⊙ c_{t-1} + i ⊙ g + d_t ⊙ l_t

so the cell's own ``project_input`` (one GEMM for all steps, under autograd) gives the gate
inputs, D and l, and the LSTM kernel runs the recurrence with the extra term, its
hand-derived backward returning dD and dl (autograd carries them to W_xd, w_ld and the
lower layer). A non-top layer also emits every step's cell, [h_t; c_t].
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..cells.depth_gated import DepthGatedLSTMStep
from ..cells.loop import run_steps
from ..cells.lstm import LSTMState
from . import STATS, recompute, register, same_method, step_mask
from .lstm import LSTMSequence, Params, Spec


@register(DepthGatedLSTMStep)
def run_sequence(cell, x: Tensor, state, lengths=None):
    """The Depth-Gated LSTM cell over x (T, B, F[+H]) from state; (out, LSTMState)."""
    if (cell.layer_norm or cell.proj_size
            or not same_method(cell, DepthGatedLSTMStep, "step", "project_input",
                               "activations")):
        return None
    STATS["depth_gated"] += 1
    H = cell.hidden_size
    GH = cell.gates * H
    xp = cell.project_input(x)                                # (T, B, GH [+ H + H])
    # one split, not three slices: its backward is one concatenation, where each slice's
    # would be a zero-filled (T, B, GH + 2H) tensor
    parts = xp.split([GH, H, H], -1) if xp.shape[-1] > GH else (xp,)
    extra: tuple = ()
    if cell.depth_gate:
        # (T, B, H) lower cell l_t, copied: a view would keep all of xp alive for backward
        low = parts[2].contiguous()
        extra = (parts[1] + cell.weight_ld * low, low, cell.weight_cd)
    mask, full = step_mask(lengths, x.shape[0], x)
    spec = Spec(cell.coupled, cell.peephole, False, full, depth=cell.depth_gate,
                emit_cell=cell.emit_cell)
    params = Params(None, cell.weight_hh, None, cell.bias_hh, None,
                    getattr(cell, "weight_peephole", None), None, None, None, None, *extra)
    ref, ref_in = recompute.reference(cell, x, state, lengths, _loop_outputs)
    res = LSTMSequence.apply(spec, parts[0], state.h, state.c, mask, *params, ref, *ref_in)
    out = torch.cat([res[0], res[3]], -1) if cell.emit_cell else res[0]
    return out, LSTMState(res[1], res[2])


def _loop_outputs(cell, x: Tensor, state, lengths) -> tuple:
    """What ``LSTMSequence`` returns here, by the step loop: (h of every step, h_T, c_T),
    and every step's c when the cell emits it (the loop's out is then [h; c])."""
    out, (h, c) = run_steps(cell, x, state, lengths)
    if not cell.emit_cell:
        return out, h, c
    H = cell.hidden_size
    return out[..., :H], h, c, out[..., H:]
