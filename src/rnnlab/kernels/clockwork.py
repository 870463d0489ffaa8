"""Whole-sequence forward and backward of the Clockwork RNN that touch only active modules.

The kernel of ``rnnlab.cells.clockwork.ClockworkStep`` (see there for the equations).
Modules are sorted fast -> slow and module i owns hidden units [a_i, b_i). With the
block-upper-triangular recurrent weight W (H, H), a module reads units [a_i, H), so any
contiguous run of active modules [a, b) is one GEMM on the rows W[a:b, a:]:

    pre[:, a:b] = xp[t, :, a:b] + h_{t-1}[:, a:] @ W[a:b, a:]^T

With exponential periods the active modules at step t are a prefix, so a step is one GEMM
on W[:b] (contiguous rows of the row-major weight). Inactive units copy h_{t-1}.

Backward through time (hand-derived; dpre = dh ⊙ act'(pre) on active units only):
    dh_{t-1} = dh_t on inactive units (the error is copied back in time), and
               dh_{t-1}[:, a:] += dpre @ W[a:b, a:] for each active run.
The input projection and all weight gradients are done per module over the steps where
that module is active (strided slices x[s::T_i]), so inactive modules cost nothing there
either: one GEMM per module for the whole sequence instead of one per step.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor

from ..cells.clockwork import ClockworkState, ClockworkStep
from ..cells.loop import run_steps
from . import STATS, recompute, register, same_method


@dataclass(frozen=True)
class Plan:
    """Which units update when, for T steps starting at counter t0.

    runs[t]: the contiguous unit ranges (a, b) active at step t.
    modules: per module (a, b, s, p): its units, its first active step s and its period p,
    so that its active steps are s, s + p, s + 2p, ... < T."""
    runs: tuple[tuple[tuple[int, int], ...], ...]
    modules: tuple[tuple[int, int, int, int], ...]


@lru_cache(maxsize=256)
def make_plan(bounds: tuple[tuple[int, int], ...], periods: tuple[int, ...],
              t0: int, T: int) -> Plan:
    runs = []
    for t in range(t0, t0 + T):
        active, cur = [], None
        for (a, b), p in zip(bounds, periods):
            if t % p == 0:
                if cur is not None and cur[1] == a:
                    cur = (cur[0], b)
                else:
                    if cur is not None:
                        active.append(cur)
                    cur = (a, b)
        if cur is not None:
            active.append(cur)
        runs.append(tuple(active))
    modules = tuple((a, b, (-t0) % p, p) for (a, b), p in zip(bounds, periods))
    return Plan(tuple(runs), modules)


class ClockworkSequence(torch.autograd.Function):
    """h_all (T, B, H) from x (T, B, F), h0 (B, H); w_hh must be block-upper-triangular.
    ``bias`` is b_ih + b_hh (or None); ``relu`` picks relu over tanh. ``ref`` (a
    ``recompute.Reference`` or None) makes a create_graph backward exact."""

    @staticmethod
    def forward(ctx, x: Tensor, h0: Tensor, w_ih: Tensor, bias: Tensor | None,
                w_hh: Tensor, plan: Plan, relu: bool, ref=None, *extra) -> Tensor:
        T, B, _ = x.shape
        H = h0.shape[1]
        xp = x.new_empty(T, B, H)                    # only active entries are written
        for a, b, s, p in plan.modules:
            if s < T:
                part = x[s::p] @ w_ih[a:b].t()       # (n, B, k)
                xp[s::p, :, a:b] = part if bias is None else part + bias[a:b]
        h_all = x.new_empty(T, B, H)
        h = h0
        for t in range(T):
            out = h_all[t]
            out.copy_(h)
            for a, b in plan.runs[t]:
                pre = torch.addmm(xp[t, :, a:b], h[:, a:], w_hh[a:b, a:].t())
                out[:, a:b] = pre.relu_() if relu else pre.tanh_()
            h = out
        recompute.save(ctx, ref, (x, h0, w_ih, w_hh, h_all), extra)
        ctx.plan, ctx.relu, ctx.has_bias = plan, relu, bias is not None
        return h_all

    @staticmethod
    def backward(ctx, g: Tensor):
        if recompute.twice(ctx):
            return recompute.recomputed(ctx, 8, (g,))
        x, h0, w_ih, w_hh, h_all = recompute.saved(ctx)
        plan = ctx.plan
        T, B, F = x.shape
        H = h0.shape[1]
        dpre = g.new_empty(T, B, H)                  # only active entries are written
        dh = g.new_zeros(B, H)
        for t in range(T - 1, -1, -1):
            dh += g[t]
            runs = plan.runs[t]
            parts = []
            for a, b in runs:
                y = h_all[t, :, a:b]
                d = dh[:, a:b] * ((y > 0).to(y.dtype) if ctx.relu else 1 - y * y)
                dpre[t, :, a:b] = d
                parts.append(d)
            for (a, b), d in zip(runs, parts):
                dh[:, a:b] = 0
            for (a, b), d in zip(runs, parts):
                dh[:, a:] += d @ w_hh[a:b, a:]
        dx, dw_ih, db, dw_hh = _weight_grads(ctx, x, h0, w_ih, h_all, dpre)
        return (dx, dh if ctx.needs_input_grad[1] else None, dw_ih,
                db if ctx.has_bias else None, dw_hh, None, None, None) + (None,) * ctx.n_ref


def _weight_grads(ctx, x, h0, w_ih, h_all, dpre):
    """Per module, over the steps where it is active: grads of x, W_ih, bias, W_hh."""
    T, B, F = x.shape
    H = h0.shape[1]
    need = ctx.needs_input_grad
    dx = x.new_zeros(T, B, F) if need[0] else None
    dw_ih, db, dw_hh = w_ih.new_zeros(H, F), w_ih.new_zeros(H), w_ih.new_zeros(H, H)
    h_prev = torch.cat([h0[None], h_all[:-1]])       # (T, B, H): the state each step reads
    for a, b, s, p in ctx.plan.modules:
        if s >= T:
            continue
        d = dpre[s::p, :, a:b].reshape(-1, b - a)    # (n B, k)
        dw_hh[a:b, a:] = d.t() @ h_prev[s::p, :, a:].reshape(-1, H - a)
        dw_ih[a:b] = d.t() @ x[s::p].reshape(-1, F)
        db[a:b] = d.sum(0)
        if dx is not None:
            dx[s::p] += (d @ w_ih[a:b]).view(-1, B, F)
    return dx, dw_ih, db, dw_hh


@register(ClockworkStep)
def run_sequence(cell, x: Tensor, state: ClockworkState, lengths: Tensor | None):
    """x (T, B, F) -> out (T, B, H), final state. One shared phase across the batch is
    needed for the kernel; rows out of phase decline (the layer loops)."""
    T, B = x.shape[:2]
    h0, t = state
    if bool((t != t[0]).any()) or not same_method(
            cell, ClockworkStep, "step", "project_input", "recurrent_weight", "active_mask"):
        return None
    STATS["clockwork"] += 1
    plan = make_plan(cell.bounds, cell.periods, int(t[0]), T)
    bias = cell.bias_ih + cell.bias_hh if cell.bias else None
    ref, extra = recompute.reference(cell, x, state, None, _loop_outputs)
    out = ClockworkSequence.apply(x, h0, cell.weight_ih, bias, cell.recurrent_weight(),
                                  plan, cell.nonlinearity == "relu", ref, *extra)
    if lengths is None:
        return out, ClockworkState(out[-1], t + T)
    lengths = lengths.to(x.device)
    h_last = out[lengths - 1, torch.arange(B, device=x.device)]
    mask = torch.arange(T, device=x.device)[:, None] < lengths[None, :]
    return out * mask[..., None].to(out.dtype), ClockworkState(h_last, t + lengths)


def _loop_outputs(cell, x: Tensor, state, lengths) -> tuple:
    """What ``ClockworkSequence`` returns, by the step loop: h of every step (no lengths:
    the kernel runs every row to T and masks afterwards)."""
    return (run_steps(cell, x, state, None)[0],)
