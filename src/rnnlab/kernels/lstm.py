"""Whole-sequence LSTM kernel for every variant of ``rnnlab.cells.LSTMStep``
(peephole, coupled/CIFG, layer_norm, proj_size, no bias), with a hand-derived backward.

Forward (shapes: T time, B batch, F input, H hidden, P = proj_size or H, G gates):
    A = X W_ihᵀ + (b_ih + b_hh)                   one (TB, F) x (F, GH) GEMM, in place
    per step: A_t += h W_hhᵀ                      one (B, P) x (P, GH) GEMM
              gate math in place on A_t           (A_t then holds the activations)
    (layer_norm: A = LN(X W_ihᵀ) γ_ih + b, and A_t += LN(h W_hhᵀ) γ_hh per step)
Backward through time, per step: the gate gradients dA_t overwrite A_t and one GEMM
dA_t W_hh carries the gradient to h_{t-1}. After the loop the weight gradients are large
GEMMs over all steps: dW_hh = dAᵀ H_prev, dW_ih = dAᵀ X, dX = dA W_ih, dW_hr = dHᵀ M.

With ``lengths`` a (T, B, 1) mask freezes each row's state after its last step and zeroes
its padded outputs, exactly like ``rnnlab.layers.run_cell``'s loop.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Optional

import torch
from torch import Tensor

from ..cells.lstm import LSTMState, LSTMStep
from . import STATS, RecurrentGemm, recompute, register, same_method, step_mask

EPS = 1e-5


@dataclass(frozen=True)
class Spec:
    coupled: bool
    peephole: bool
    layer_norm: bool
    full: int              # leading steps where no row is masked
    depth: bool = False    # Depth-Gated LSTM's extra cell input d ⊙ l (kernels.depth_gated)
    emit_cell: bool = False  # also return every step's cell (T, B, H)
    paper: bool = False      # Grid LSTM's output h = tanh(o ⊙ c) instead of o ⊙ tanh(c)


class Params(NamedTuple):
    w_ih: Optional[Tensor]     # None: x is already the projected input (T, B, GH)
    w_hh: Tensor
    b_ih: Optional[Tensor]
    b_hh: Optional[Tensor]
    w_hr: Optional[Tensor]
    peep: Optional[Tensor]
    g_ih: Optional[Tensor]
    g_hh: Optional[Tensor]
    g_c: Optional[Tensor]
    b_c: Optional[Tensor]
    d_in: Optional[Tensor] = None    # depth gate: (T, B, H) input part of its pre-activation
    low: Optional[Tensor] = None     # depth gate: (T, B, H) lower cell l_t
    w_cd: Optional[Tensor] = None    # depth gate: (H,) diagonal weight on c_{t-1}


def cell_params(cell) -> Params:
    get = lambda n: getattr(cell, n, None)  # noqa: E731
    return Params(cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh,
                  get("weight_hr") if cell.proj_size else None,
                  get("weight_peephole"), get("ln_ih_weight"), get("ln_hh_weight"),
                  get("ln_c_weight"), get("ln_c_bias"))


@register(LSTMStep)
def run_sequence(cell, x: Tensor, state, lengths=None):
    """The LSTM cell over x (T, B, F) from state; (out (T, B, P), LSTMState)."""
    if not same_method(cell, LSTMStep, "step", "project_input", "preactivation",
                       "cell_update", "gate_activations", "normalise_cell"):
        return None
    STATS["lstm"] += 1
    mask, full = step_mask(lengths, x.shape[0], x)
    spec = Spec(cell.coupled, cell.peephole, cell.layer_norm, full)
    ref, extra = recompute.reference(cell, x, state, lengths)
    out, h, c = LSTMSequence.apply(spec, x, state.h, state.c, mask, *cell_params(cell), ref,
                                   *extra)
    return out, LSTMState(h, c)


def _gates(a: Tensor, H: int, coupled: bool):
    """Views (i, f, g, o) of a (B, GH) gate block; i is None when coupled."""
    if coupled:
        return None, a[:, :H], a[:, H:2 * H], a[:, 2 * H:]
    return a[:, :H], a[:, H:2 * H], a[:, 2 * H:3 * H], a[:, 3 * H:]


def _ln(x: Tensor, w: Tensor, b: Optional[Tensor]):
    return torch.native_layer_norm(x, x.shape[-1:], w, b, EPS)


def forward_pass(spec: Spec, x: Tensor, h0: Tensor, c0: Tensor, mask, p: Params):
    """Returns out, final h, final c and the dict of tensors the backward needs."""
    T, B, F = x.shape
    GH, H, P = p.w_hh.shape[0], c0.shape[1], h0.shape[1]
    bias = _bias(p)
    x2 = x.reshape(T * B, F)
    s: dict = {"Dg": x.new_empty(T, B, H)} if spec.depth else {}
    if p.w_ih is None:                                                  # pre-projected
        a_all = x2 + bias if bias is not None else x2.clone()
    elif spec.layer_norm:
        s["xraw"] = x2 @ p.w_ih.t()                                     # (TB, GH)
        a_all, s["xmu"], s["xrs"] = _ln(s["xraw"], p.g_ih, bias)
        s["hh"] = x.new_empty(T, B, GH)
        s["hmu"], s["hrs"] = x.new_empty(T, B, 1), x.new_empty(T, B, 1)
    elif bias is None:
        a_all = x2 @ p.w_ih.t()
    else:
        a_all = torch.addmm(bias, x2, p.w_ih.t())
    A = a_all.view(T, B, GH)
    out, C = x.new_empty(T, B, P), x.new_empty(T, B, H)
    Hc = x.new_empty(T, B, P) if mask is not None else out             # carried h states
    M = x.new_empty(T, B, H) if p.w_hr is not None else out             # o ⊙ tanh(c)
    if spec.layer_norm:
        s["cmu"], s["crs"] = x.new_empty(T, B, 1), x.new_empty(T, B, 1)
    with RecurrentGemm(p.w_hh, B, T) as rec:                           # h -> h W_hhᵀ
        proj = RecurrentGemm(p.w_hr, B, T) if p.w_hr is not None else None
        h, c = _forward_loop(spec, A, C, out, Hc, M, h0, c0, mask, p, s, rec, proj)
    s.update(A=A, C=C, Hc=Hc, M=M)
    return out, h, c, s


def _forward_loop(spec: Spec, A, C, out, Hc, M, h, c, mask, p: Params, s: dict, rec, proj):
    T, H = A.shape[0], C.shape[2]
    fused = _fused(spec, A, p)                      # Triton gate kernels on CUDA, or None
    for t in range(T):
        a = A[t]
        if fused is not None:                       # one launch: + h W_hhᵀ, gates, c', m
            c_new = fused.forward(a, rec(h), c, C[t], M[t])
        else:
            if spec.layer_norm:
                s["hh"][t] = rec(h)
                y, s["hmu"][t], s["hrs"][t] = _ln(s["hh"][t], p.g_hh, None)
                a.add_(y)
            else:
                a.add_(rec(h))
            c_new = _cell_forward(spec, a, c, C[t], H, p, s, t)
            cn = c_new
            if spec.layer_norm:
                cn, s["cmu"][t], s["crs"][t] = _ln(c_new, p.g_c, p.b_c)
            if spec.paper:
                torch.mul(a[:, -H:], cn, out=M[t]).tanh_()
            else:
                torch.mul(a[:, -H:], torch.tanh(cn), out=M[t])
        if proj is not None:
            out[t] = proj(M[t])
        if mask is not None and t >= spec.full:
            m = mask[t] > 0                                              # (B, 1)
            torch.where(m, out[t], h, out=Hc[t])
            torch.where(m, c_new, c, out=c_new)
            out[t].mul_(mask[t])
        elif mask is not None:
            Hc[t].copy_(out[t])
        h, c = Hc[t], C[t]
    return h, c


def _bias(p: Params) -> Optional[Tensor]:
    """b_ih + b_hh, either of which may be absent."""
    if p.b_ih is None or p.b_hh is None:
        return p.b_hh if p.b_ih is None else p.b_ih
    return p.b_ih + p.b_hh


def _fused(spec: Spec, A: Tensor, p: Params):
    """The Triton gate kernels (``kernels.triton_gates``) where they apply (CUDA float32,
    triton importable, a supported Spec), else None: CPU steps never import triton."""
    if A.device.type != "cuda":
        return None
    from .triton_gates import lstm_gates
    return lstm_gates(spec, A, p.peep)


def _cell_forward(spec: Spec, a: Tensor, c: Tensor, c_out: Tensor, H: int, p: Params,
                  s: dict, t: int):
    """Gate math in place on a (B, GH): afterwards a holds i, f, g, o; returns c'."""
    peep = p.peep
    i, f, g, o = _gates(a, H, spec.coupled)
    if spec.peephole:
        f.addcmul_(peep[-2], c)
        if i is not None:
            i.addcmul_(peep[0], c)
    (f if spec.coupled else a[:, :2 * H]).sigmoid_()
    g.tanh_()
    if spec.coupled:                                                    # c' = g + f (c - g)
        torch.sub(c, g, out=c_out).mul_(f).add_(g)
    else:
        torch.mul(f, c, out=c_out).addcmul_(i, g)
    if spec.depth:                                                      # + d ⊙ l
        d = torch.addcmul(p.d_in[t], p.w_cd, c, out=s["Dg"][t]).sigmoid_()
        c_out.addcmul_(d, p.low[t])
    if spec.peephole:
        o.addcmul_(peep[-1], c_out)
    o.sigmoid_()
    return c_out


def backward_pass(spec: Spec, x: Tensor, h0: Tensor, c0: Tensor, mask, p: Params, s: dict,
                  gout, gh: Tensor, gc: Tensor, need_dx: bool, gC=None):
    """Gradients of every forward_pass input, in ``LSTMSequence.forward``'s order.
    gC: gradient of the emitted cells (T, B, H) when spec.emit_cell."""
    A, C, _Hc, _M = s["A"], s["C"], s["Hc"], s["M"]
    T, B, F = x.shape
    _GH, _H, P = p.w_hh.shape[0], c0.shape[1], h0.shape[1]
    DH = x.new_empty(T, B, P) if p.w_hr is not None else None
    s = dict(s, dA=torch.empty_like(A))          # the forward's buffers stay intact, so
    if spec.layer_norm:                          # backward(retain_graph=True) can rerun
        s["dhh"] = torch.empty_like(s["hh"])
    if spec.depth:
        s["dD"], s["dL"] = torch.empty_like(s["Dg"]), torch.empty_like(s["Dg"])
    acc = {k: torch.zeros_like(getattr(p, k)) for k in ("peep", "g_c", "b_c", "g_hh", "w_cd")
           if getattr(p, k) is not None}
    s["gC"] = gC
    with RecurrentGemm(p.w_hh.t(), B, T) as back:                      # dA -> dA W_hh
        proj = RecurrentGemm(p.w_hr.t(), B, T) if DH is not None else None
        gh, gc = _backward_loop(spec, A, C, c0, mask, p, s, DH, acc, gout, gh, gc, back,
                                proj)
    return _weight_grads(spec, x, h0, p, s, DH, acc, gh, gc, need_dx)


def _backward_loop(spec: Spec, A, C, c0, mask, p: Params, s: dict, DH, acc: dict, gout,
                   gh, gc, back, proj):
    T, GH, H = A.shape[0], A.shape[2], C.shape[2]
    fused = _fused(spec, A, p)
    for t in range(T - 1, -1, -1):
        masked = mask is not None and t >= spec.full
        ghp = gh if gout is None else gout[t] + gh
        gcp = gc if s["gC"] is None else s["gC"][t] + gc
        if masked:
            m = mask[t]
            ghp, gcp, pass_h, pass_c = ghp * m, gcp * m, gh - gh * m, gc - gc * m
        if DH is not None:
            DH[t] = ghp
            ghp = proj(ghp)                                              # (B, H)
        a, c_prev = s["dA"][t], C[t - 1] if t else c0
        if fused is not None:
            dc_prev = fused.backward(A[t], a, C[t], c_prev, ghp, gcp, acc.get("peep"))
        else:
            dc_prev = _cell_backward(spec, A[t], a, C[t], c_prev, ghp, gcp, H, p, s, t, acc)
        if spec.layer_norm:
            dhh, dg, _ = torch.ops.aten.native_layer_norm_backward(
                a, s["hh"][t], (GH,), s["hmu"][t], s["hrs"][t], p.g_hh, None,
                [True, True, False])
            s["dhh"][t] = dhh
            acc["g_hh"] += dg
            gh = back(dhh)
        else:
            gh = back(a)                                                 # (B, P)
        gc = dc_prev
        if masked:
            gh, gc = gh + pass_h, gc + pass_c
    return gh, gc


def _cell_backward(spec: Spec, a: Tensor, da: Tensor, c_new: Tensor, c_prev: Tensor,
                   gm: Tensor, gc: Tensor, H: int, p: Params, s: dict, t: int,
                   acc: dict) -> Tensor:
    """From the activations a (B, GH) writes the pre-activation gradients into da;
    returns the gradient reaching c_{t-1}. gm: grad of o ⊙ tanh(ĉ), gc: grad of c'."""
    i, f, g, o = _gates(a, H, spec.coupled)
    cn = c_new
    if spec.layer_norm:
        cn = (c_new - s["cmu"][t]) * s["crs"][t] * p.g_c + p.b_c
    if spec.paper:                                      # h = tanh(o ⊙ ĉ)
        u = torch.tanh(o * cn)
        k = gm * (1 - u * u)
        dcn, dao = k * o, k * cn * o * (1 - o)
    else:
        tc = torch.tanh(cn)
        dcn = gm * o * (1 - tc * tc)
        dao = gm * tc * o * (1 - o)
    if spec.layer_norm:
        dcn, dg, db = torch.ops.aten.native_layer_norm_backward(
            dcn, c_new, (H,), s["cmu"][t], s["crs"][t], p.g_c, p.b_c, [True, True, True])
        acc["g_c"] += dg
        acc["b_c"] += db
    dc = dcn + gc
    if spec.peephole:
        dc.addcmul_(dao, p.peep[-1])
        acc["peep"][-1] += (dao * c_new).sum(0)
    dsig_f = f * (1 - f)
    if spec.coupled:
        daf = dc * (c_prev - g) * dsig_f
        dag = dc * (1 - f) * (1 - g * g)
    else:
        dai = dc * g * i * (1 - i)
        daf = dc * c_prev * dsig_f
        dag = dc * i * (1 - g * g)
    dc_prev = dc * f
    if spec.depth:                                      # c' += d ⊙ l, d = σ(... + w_cd ⊙ c)
        d, low = s["Dg"][t], p.low[t]
        torch.mul(dc, d, out=s["dL"][t])
        dad = torch.mul(dc, low, out=s["dD"][t]).mul_(d * (1 - d))
        dc_prev.addcmul_(dad, p.w_cd)
        acc["w_cd"] += (dad * c_prev).sum(0)
    if spec.peephole:
        dc_prev.addcmul_(daf, p.peep[-2])
        acc["peep"][-2] += (daf * c_prev).sum(0)
        if not spec.coupled:
            dc_prev.addcmul_(dai, p.peep[0])
            acc["peep"][0] += (dai * c_prev).sum(0)
    di, df, dg, do = _gates(da, H, spec.coupled)
    do.copy_(dao)
    dg.copy_(dag)
    df.copy_(daf)
    if not spec.coupled:
        di.copy_(dai)
    return dc_prev


def _weight_grads(spec: Spec, x: Tensor, h0: Tensor, p: Params, s: dict, DH, acc: dict,
                  dh0: Tensor, dc0: Tensor, need_dx: bool):
    """The after-the-loop GEMMs: every weight gradient over all steps at once."""
    A, Hc, M = s["dA"], s["Hc"], s["M"]
    T, B, F = x.shape
    GH, P = A.shape[2], h0.shape[1]
    dHH = s["dhh"] if spec.layer_norm else A                            # grad of h W_hhᵀ
    dw_hh = dHH[0].t() @ h0
    if T > 1:
        dw_hh.addmm_(dHH[1:].reshape(-1, GH).t(), Hc[:-1].reshape(-1, P))
    dA = A.view(T * B, GH)
    db = dA.sum(0) if (p.b_ih is not None or p.b_hh is not None) else None
    dg_ih = None
    if spec.layer_norm:                 # dhh is spent: free it before the next buffer
        del dHH
        s["dhh"] = None
        dA, dg_ih, _ = torch.ops.aten.native_layer_norm_backward(
            dA, s["xraw"], (GH,), s["xmu"], s["xrs"], p.g_ih, None, [True, True, False])
    if p.w_ih is None:                                     # x was the projected input
        dw_ih, dx = None, A
    else:
        dw_ih = dA.t() @ x.reshape(T * B, F)
        dx = (dA @ p.w_ih).view(T, B, F) if need_dx else None
    dw_hr = None
    if DH is not None:
        dw_hr = DH.view(-1, P).t() @ M.view(-1, M.shape[2])
    db_ih = db if p.b_ih is not None else None
    db_hh = None if p.b_hh is None else (db.clone() if db_ih is not None else db)
    return (dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, dw_hr, acc.get("peep"), dg_ih,
            acc.get("g_hh"), acc.get("g_c"), acc.get("b_c"), s.get("dD"), s.get("dL"),
            acc.get("w_cd"))


def _stand_in(t: Tensor) -> Tensor:
    """A tensor of t's shape, dtype and device that holds one element (zero strides)."""
    return torch.empty_strided(t.shape, (0,) * t.dim(), dtype=t.dtype, device=t.device)


N_PARAMS = len(Params._fields)


class LSTMSequence(torch.autograd.Function):
    """apply(spec, x, h0, c0, mask, *Params, ref, *ref.tensors) -> (out, h_T, c_T), and
    every step's cell (T, B, H) as a fourth output when spec.emit_cell; all 13 Params are
    given. ``ref`` (a ``recompute.Reference`` or None) makes a create_graph backward exact.
    """

    @staticmethod
    def forward(ctx, spec, x, h0, c0, mask, *rest):
        params, extra = rest[:N_PARAMS], rest[N_PARAMS + 1:]
        ref = rest[N_PARAMS] if len(rest) > N_PARAMS else None
        p = Params(*params)
        out, h, c, s = forward_pass(spec, x, h0, c0, mask, p)
        ctx.spec, ctx.shared = spec, (s["Hc"] is out, s["M"] is out)
        s.pop("Hc" if ctx.shared[0] else "", None)
        s.pop("M" if ctx.shared[1] else "", None)
        ctx.s = s
        if p.w_ih is None:      # the backward reads only the shapes of a pre-projected x
            x = _stand_in(x)    # and of the depth gate's input part: let them be freed
        if p.d_in is not None:
            params = tuple(p._replace(d_in=_stand_in(p.d_in)))     # all 13 were given
        recompute.save(ctx, ref, (x, h0, c0, mask, out, *params), extra)
        if spec.emit_cell:
            cells = s["C"] * mask if mask is not None else s["C"].clone()
            return out, h.clone(), c.clone(), cells
        return out, h.clone(), c.clone()

    @staticmethod
    def backward(ctx, gout, gh, gc, *g_cells):
        if recompute.twice(ctx):
            return recompute.recomputed(ctx, 6 + N_PARAMS, (gout, gh, gc, *g_cells))
        x, h0, c0, mask, out, *params = recompute.saved(ctx)
        s = dict(ctx.s)
        s["Hc"] = out if ctx.shared[0] else s["Hc"]
        s["M"] = out if ctx.shared[1] else s["M"]
        gh = torch.zeros_like(h0) if gh is None else gh
        gc = torch.zeros_like(c0) if gc is None else gc
        grads = backward_pass(ctx.spec, x, h0, c0, mask, Params(*params), s, gout, gh, gc,
                              ctx.needs_input_grad[1], g_cells[0] if g_cells else None)
        return (None, *grads[:3], None, *grads[3:3 + len(params)], None,
                *(None,) * ctx.n_ref)
