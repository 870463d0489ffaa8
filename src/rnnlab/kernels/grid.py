"""Whole-sequence kernel for one layer of the 2-D (time × depth) Grid LSTM
(``rnnlab.cells.grid.GridLayerStep``; Kalchbrenner, Danihelka & Graves 2015, "Grid Long
Short-Term Memory"), built on the LSTM kernel (``kernels.lstm``).

At step t the block reads H = [h_time_{t-1}; h_depth_t]; h_depth_t and m_depth_t come from
the layer below and are known for every t before this layer runs. So (T time, B batch,
H hidden):

1. time dimension: an LSTM recurrence over the input h_depth; ``LSTMSequence`` runs it
   with W_ih = W_time[:, H:] (one hoisted GEMM over all steps), W_hh = W_time[:, :H] and
   ``Spec.paper`` for the paper's h = tanh(o ⊙ m), with its hand-derived backward.
2. depth dimension: nothing of it feeds back in time. Its transform reads the time h of
   the block (the new h_time_t when depth is the priority dimension, the default, else
   h_time_{t-1}), so after the loop it runs for all steps at once: ``DepthLSTM``, the
   GEMMs over (TB, 2H) and the gate math with a hand-derived backward that keeps only the
   activations and the output (a non-LSTM depth kind: the block's own ops, autograd).

Supported: time kind "lstm"; depth kind "lstm", "none", "identity", "tanh" or "relu";
depth priority or no priority; shared or separate weights across dims; both output forms;
bias or not; ``lengths`` (masked state, zeroed padded outputs, as ``run_cell``'s loop).
Everything else (a non-LSTM time dimension, time as the only priority dimension, a
subclass that changes the step math) runs the cell's Python loop.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..cells.grid import GridBlock, GridLayerStep, GridState
from ..cells.loop import run_steps
from . import STATS, recompute, register, same_method, step_mask
from .lstm import LSTMSequence, Params, Spec


def supported(cell) -> bool:
    """Whether the kernel computes exactly what ``cell``'s step loop computes."""
    block = cell.block
    pri = set(block.priority)
    return (block.dims == ("time", "depth") and block.kinds[0] == "lstm"
            and not ("time" in pri and "depth" not in pri)
            and same_method(cell, GridLayerStep, "step", "project_input", "_pairs")
            and same_method(block, GridBlock, "forward", "run", "_preact", "_transform",
                            "input_part", "transform_weight"))


def depth_reads_new_time(block) -> bool:
    """Depth is a priority dimension and time is not: depth reads the new h_time_t."""
    return "depth" in block.priority and "time" not in block.priority


@register(GridLayerStep)
def run_sequence(cell, x: Tensor, state, lengths=None):
    """The Grid layer cell over x (T, B, H or 2H) from state; (out, GridState)."""
    if not supported(cell):
        return None
    STATS["grid"] += 1
    block, d = cell.block, cell.hidden_size
    T = x.shape[0]
    w_time, b_time = block.transform_weight(0)                     # (4H, 2H), (4H,)
    mask, full = step_mask(lengths, T, x)
    spec = Spec(False, False, False, full, paper=block.output_form == "paper")
    # the LSTM kernel with input h_depth (T, B, H): W_ih = W_time[:, H:], W_hh = W_time[:, :H]
    params = Params(w_time[:, d:], w_time[:, :d].contiguous(), b_time, None, None, None,
                    None, None, None, None)
    ref, ref_in = recompute.reference(cell, x, state, lengths, _time_outputs)
    h_t, h_T, m_T = LSTMSequence.apply(spec, x[..., :d], state.h, state.m, mask, *params,
                                       ref, *ref_in)
    return _depth(cell, x, h_t, state, mask, lengths), GridState(h_T, m_T)


def _time_outputs(cell, x: Tensor, state, lengths) -> tuple:
    """What the time dimension's ``LSTMSequence`` returns, by the step loop: (the time h
    of every step, zero where masked; h_T; m_T)."""
    states: list = []
    _, (h_T, m_T) = run_steps(cell, x, state, lengths, states)
    h_t = torch.stack([s.h for s in states])
    if lengths is not None:
        h_t = h_t * step_mask(lengths, x.shape[0], x)[0]
    return h_t, h_T, m_T


def _up_outputs(cell, x: Tensor, state, lengths) -> tuple:
    """What ``DepthLSTM`` returns, by the step loop: what goes up from every step."""
    return (run_steps(cell, x, state, lengths)[0],)


def _depth(cell, x: Tensor, h_t: Tensor, state, mask, lengths) -> Tensor:
    """What goes up from every step at once, zero where masked: (T, B, 2H) [h'; m'] or
    (T, B, H) h'. h_t: the time dimension's new h of every step (zero where masked)."""
    block, d = cell.block, cell.hidden_size
    if block.kinds[1] == "none":
        return h_t if mask is None else h_t * mask                  # h' = the time h
    if depth_reads_new_time(block):
        src = h_t
    else:                                                           # h_time_{t-1}
        src = torch.cat([state.h.unsqueeze(0), h_t[:-1]])
    w, b = block.transform_weight(1)                                # (G, 2H), (G,)
    if cell.carry_memory:                                           # an LSTM transform
        ref, ref_in = recompute.reference(cell, x, state, lengths, _up_outputs)
        return DepthLSTM.apply(block.output_form == "paper", src, x[..., :d], x[..., d:],
                               mask, w, b, ref, *ref_in)
    T, B, _ = x.shape
    a = _project(src.reshape(T * B, d), x[..., :d].reshape(T * B, d), w, b)
    up = block._transform(1, a.view(T, B, -1), None, None)         # identity/tanh/relu
    return up.h if mask is None else up.h * mask


def _project(src: Tensor, h_dep: Tensor, w: Tensor, b) -> Tensor:
    """W [src; h_dep] + b as the loop computes it: (TB, G)."""
    d = src.shape[1]
    a = h_dep @ w[:, d:].t() if b is None else torch.addmm(b, h_dep, w[:, d:].t())
    return a.addmm_(src, w[:, :d].t())


class DepthLSTM(torch.autograd.Function):
    """apply(paper, src, h_dep, m_dep, mask, w, b) -> (T, B, 2H) [h'; m'], the depth
    dimension's LSTM transform of every step (``GridBlock._transform``'s equations):
    a = W [src; h_dep] + b, i f o = σ, g = tanh, m' = f ⊙ m_dep + i ⊙ g,
    h' = tanh(o ⊙ m') (paper) or o ⊙ tanh(m'); rows where mask (T, B, 1) is 0 are zero.
    Keeps only the activations (TB, 4H) and its output for the backward. ``ref`` (a
    ``recompute.Reference`` or None) makes a create_graph backward exact."""

    @staticmethod
    def forward(ctx, paper: bool, src, h_dep, m_dep, mask, w, b, ref=None, *extra):
        T, B, H = src.shape
        a = _project(src.reshape(T * B, H), h_dep.reshape(T * B, H), w, b)   # (TB, 4H)
        a[:, :2 * H].sigmoid_()
        a[:, 2 * H:3 * H].tanh_()
        a[:, 3 * H:].sigmoid_()
        i, f, g, o = a.chunk(4, 1)
        out = a.new_empty(T, B, 2 * H)
        flat = out.view(T * B, 2 * H)
        m = torch.mul(f, m_dep.reshape(T * B, H)).addcmul_(i, g)
        h = torch.mul(o, m).tanh_() if paper else torch.tanh(m).mul_(o)
        flat[:, :H], flat[:, H:] = h, m
        if mask is not None:
            out.mul_(mask)
        ctx.paper = paper
        recompute.save(ctx, ref, (src, h_dep, m_dep, mask, w, a, out), extra)
        return out

    @staticmethod
    def backward(ctx, g_out):
        if recompute.twice(ctx):
            return recompute.recomputed(ctx, 8, (g_out,))
        src, h_dep, m_dep, mask, w, a, out = recompute.saved(ctx)
        T, B, H = src.shape
        g = (g_out * mask if mask is not None else g_out).reshape(T * B, 2 * H)
        gh, gm = g[:, :H], g[:, H:]
        h, m = out.view(T * B, 2 * H)[:, :H], out.view(T * B, 2 * H)[:, H:]
        i, f, gg, o = a.chunk(4, 1)
        da = torch.empty_like(a)
        di, df, dg, do = da.chunk(4, 1)
        if ctx.paper:                                               # h = tanh(o ⊙ m)
            k = gh * (1 - h * h)
            dm = torch.addcmul(gm, k, o)
            torch.mul(k, m, out=do)
        else:                                                       # h = o ⊙ tanh(m)
            tc = torch.tanh(m)
            dm = gm + gh * o * (1 - tc * tc)
            torch.mul(gh, tc, out=do)
        do.mul_(o * (1 - o))
        m_in = m_dep.reshape(T * B, H)
        torch.mul(dm, gg, out=di).mul_(i * (1 - i))
        torch.mul(dm, m_in, out=df).mul_(f * (1 - f))
        torch.mul(dm, i, out=dg).mul_(1 - gg * gg)
        need = ctx.needs_input_grad                      # paper src h_dep m_dep mask w b
        d_src = (da @ w[:, :H]).view(T, B, H) if need[1] else None
        d_dep = (da @ w[:, H:]).view(T, B, H) if need[2] else None
        d_m = (dm * f).view(T, B, H) if need[3] else None
        dw = None
        if need[5]:
            dw = torch.cat([da.t() @ src.reshape(T * B, H), da.t() @ h_dep.reshape(T * B, H)], 1)
        db = da.sum(0) if need[6] else None
        return (None, d_src, d_dep, d_m, None, dw, db, None) + (None,) * ctx.n_ref
