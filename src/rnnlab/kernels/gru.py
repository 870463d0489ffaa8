"""Whole-sequence GRU kernel for ``rnnlab.cells.GRUStep`` (torch.nn.GRU's form, gate order
r, z, n), with a hand-derived backward through time.

Forward (T time, B batch, F input, H hidden):
    A = X W_ihᵀ + b_ih + [b_hr, b_hz, 0]          one (TB, F) x (F, 3H) GEMM
    per step: G = h W_hhᵀ + [0, 0, b_hn]          one (B, H) x (H, 3H) GEMM
              r, z = σ(A_rz + G_rz)               in place on A_t
              n = tanh(A_n + r ⊙ G_n)             in place on A_t; G_n kept for backward
              h' = n + z ⊙ (h - n)
Backward per step: the pre-activation gradients overwrite A_t and G_n, and one GEMM carries
the gradient to h_{t-1}; after the loop dW_ih, dX and dW_hh are large GEMMs over all steps.

torch.nn.GRU on CPU has no oneDNN path (it loops over ATen ops with separate elementwise
passes), so this kernel is also what ``rnnlab.GRU`` uses for the plain configuration on CPU.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from ..cells.gru import GRUState, GRUStep
from . import STATS, RecurrentGemm, recompute, register, same_method, step_mask


@register(GRUStep)
def run_sequence(cell, x: Tensor, state, lengths=None):
    """The GRU cell over x (T, B, F) from state; (out (T, B, H), GRUState)."""
    if not same_method(cell, GRUStep, "step", "project_input", "gate_activations"):
        return None
    STATS["gru"] += 1
    mask, full = step_mask(lengths, x.shape[0], x)
    ref, extra = recompute.reference(cell, x, state, lengths)
    out, h = GRUSequence.apply(full, x, state.h, mask, cell.weight_ih, cell.weight_hh,
                               cell.bias_ih, cell.bias_hh, ref, *extra)
    return out, GRUState(h)


def _biases(b_ih: Optional[Tensor], b_hh: Optional[Tensor], H: int):
    """(input-side bias with b_hr, b_hz folded in, b_hn) or (None, None)."""
    if b_ih is None:
        return None, None
    return b_ih + torch.cat([b_hh[:2 * H], b_hh.new_zeros(H)]), b_hh[2 * H:]


def _fused(A: Tensor):
    """The Triton gate kernels (``kernels.triton_gates``) for CUDA float32, else None
    (CPU steps never import triton)."""
    if A.device.type != "cuda":
        return None
    from .triton_gates import gru_gates
    return gru_gates(A)


def forward_pass(full: int, x: Tensor, h0: Tensor, mask, w_ih, w_hh, b_ih, b_hh):
    T, B, F = x.shape
    H = h0.shape[1]
    bias_i, b_hn = _biases(b_ih, b_hh, H)
    x2 = x.reshape(T * B, F)
    a_all = x2 @ w_ih.t() if bias_i is None else torch.addmm(bias_i, x2, w_ih.t())
    A = a_all.view(T, B, 3 * H)
    out, HN = x.new_empty(T, B, H), x.new_empty(T, B, H)
    Hc = x.new_empty(T, B, H) if mask is not None else out
    with RecurrentGemm(w_hh, B, T) as rec:
        h = _forward_loop(full, A, HN, out, Hc, h0, mask, b_hn, rec)
    return out, h, A, HN, Hc


def _forward_loop(full: int, A, HN, out, Hc, h, mask, b_hn, rec):
    H = h.shape[1]
    fused = _fused(A)                               # Triton gate kernels on CUDA, or None
    for t in range(A.shape[0]):
        a = A[t]
        G = rec(h)                                                      # (B, 3H)
        hn = HN[t]
        if fused is not None:                       # the lines below in one launch
            fused.forward(a, G, b_hn, h, hn, out[t])
        else:
            if b_hn is None:
                hn.copy_(G[:, 2 * H:])
            else:
                torch.add(G[:, 2 * H:], b_hn, out=hn)
            a[:, :2 * H].add_(G[:, :2 * H]).sigmoid_()
            r, z, n = a[:, :H], a[:, H:2 * H], a[:, 2 * H:]
            n.addcmul_(r, hn).tanh_()
            torch.sub(h, n, out=out[t]).mul_(z).add_(n)                 # (1-z) n + z h
        if mask is not None and t >= full:
            torch.where(mask[t] > 0, out[t], h, out=Hc[t])
            out[t].mul_(mask[t])
        elif mask is not None:
            Hc[t].copy_(out[t])
        h = Hc[t]
    return h


def backward_pass(full: int, x, h0, mask, w_ih, w_hh, b_ih, A, HN, Hc, gout, gh,
                  need_dx: bool):
    T, B, F = x.shape
    h0.shape[1]
    DA, DHN = torch.empty_like(A), torch.empty_like(HN)    # forward buffers stay intact
    with RecurrentGemm(w_hh.t(), B, T) as back:
        gh = _backward_loop(full, A, HN, Hc, DA, DHN, h0, mask, gout, gh, back)
    return _weight_grads(x, h0, w_ih, b_ih, DA, DHN, Hc, gh, need_dx)


def _backward_loop(full: int, A, HN, Hc, DA, DHN, h0, mask, gout, gh, back):
    B, H = h0.shape
    DG = h0.new_empty(B, 3 * H)
    fused = _fused(A)
    for t in range(A.shape[0] - 1, -1, -1):
        masked = mask is not None and t >= full
        ghp = gh if gout is None else gout[t] + gh
        if masked:
            ghp, pass_h = ghp * mask[t], gh - gh * mask[t]
        h_prev = Hc[t - 1] if t else h0
        a = A[t]
        if fused is not None:                       # the lines below in one launch
            gh_new = fused.backward(a, HN[t], h_prev, ghp, DA[t], DG, DHN[t])
        else:
            r, z, n = a[:, :H], a[:, H:2 * H], a[:, 2 * H:]
            dan = ghp * (1 - z) * (1 - n * n)
            daz = ghp * (h_prev - n) * z * (1 - z)
            gh_new = ghp * z
            dar = dan * HN[t] * r * (1 - r)
            torch.mul(dan, r, out=DG[:, 2 * H:])                      # d(W_hn h + b_hn)
            DHN[t] = DG[:, 2 * H:]
            DG[:, :H], DG[:, H:2 * H] = dar, daz
            DA[t, :, :2 * H] = DG[:, :2 * H]
            DA[t, :, 2 * H:] = dan
        gh = gh_new.add_(back(DG))
        if masked:
            gh.add_(pass_h)
    return gh


def _weight_grads(x, h0, w_ih, b_ih, A, HN, Hc, dh0, need_dx: bool):
    T, B, F = x.shape
    H = h0.shape[1]
    dA = A.view(T * B, 3 * H)
    dw_hh = torch.empty(3 * H, H, dtype=x.dtype, device=x.device)
    torch.mm(A[0, :, :2 * H].t(), h0, out=dw_hh[:2 * H])
    torch.mm(HN[0].t(), h0, out=dw_hh[2 * H:])
    if T > 1:
        h_prev = Hc[:-1].reshape(-1, H)
        dw_hh[:2 * H].addmm_(A[1:].view(-1, 3 * H)[:, :2 * H].t(), h_prev)
        dw_hh[2 * H:].addmm_(HN[1:].reshape(-1, H).t(), h_prev)
    db_ih = db_hh = None
    if b_ih is not None:
        db_ih = dA.sum(0)
        db_hh = torch.cat([db_ih[:2 * H], HN.sum((0, 1))])
    dw_ih = dA.t() @ x.reshape(T * B, F)
    dx = (dA @ w_ih).view(T, B, F) if need_dx else None
    return dx, dh0, dw_ih, dw_hh, db_ih, db_hh


class GRUSequence(torch.autograd.Function):
    """apply(full, x, h0, mask, w_ih, w_hh, b_ih, b_hh, ref, *ref.tensors) -> (out, h_T);
    ``ref`` (a ``recompute.Reference`` or None) makes a create_graph backward exact."""

    @staticmethod
    def forward(ctx, full, x, h0, mask, w_ih, w_hh, b_ih, b_hh, ref=None, *extra):
        out, h, A, HN, Hc = forward_pass(full, x, h0, mask, w_ih, w_hh, b_ih, b_hh)
        ctx.full, ctx.shared = full, Hc is out
        ctx.inner = (A, HN, None if ctx.shared else Hc)
        recompute.save(ctx, ref, (x, h0, mask, out, w_ih, w_hh, b_ih), extra)
        return out, h.clone()

    @staticmethod
    def backward(ctx, gout, gh):
        if recompute.twice(ctx):
            return recompute.recomputed(ctx, 9, (gout, gh))
        x, h0, mask, out, w_ih, w_hh, b_ih = recompute.saved(ctx)
        A, HN, Hc = ctx.inner
        gh = torch.zeros_like(h0) if gh is None else gh
        dx, dh0, dw_ih, dw_hh, db_ih, db_hh = backward_pass(
            ctx.full, x, h0, mask, w_ih, w_hh, b_ih, A, HN, out if ctx.shared else Hc,
            gout, gh, ctx.needs_input_grad[1])
        return (None, dx, dh0, None, dw_ih, dw_hh, db_ih, db_hh, None) + (None,) * ctx.n_ref
