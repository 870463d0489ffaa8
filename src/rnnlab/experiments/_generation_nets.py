"""Many small input-free networks trained as one batched computation (for the Clockwork RNN
paper's sequence-generation experiment, clockwork_generation.py).

N networks of one architecture (all runs at all budgets) are padded to a common width H:
the padded units have zero weights in and out and zero bias, so they stay at zero. Each
step is one ``bmm`` over the network dimension, and backpropagation through time is written
by hand (the whole sequence in one autograd Function), because at these sizes (H <= 40) a
step costs far less than autograd's bookkeeping. Weight gradients are one ``bmm`` over all
steps at the end.

- SRN (Elman): h_t = tanh(W h_{t-1} + b).
- CW-RNN (Koutník et al. 2014): the same with only units [0, ends[t]) updating at step t
  (the active modules form a prefix when each period divides the next; W is
  block-upper-triangular), the rest copied: rnnlab.ClockworkRNN with no input.
- LSTM with peepholes (Gers & Schmidhuber 2000): gates i, f, g, o from W h_{t-1} + b,
  i and f see c_{t-1}, o sees c_t; c_t = f c_{t-1} + i g; h_t = o tanh(c_t).
Shapes: N networks, H units, T steps; W (N, GH, H), b (N, GH), peepholes P (N, 3, H).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ..cells.clockwork import module_bounds


class ClockworkFree(torch.autograd.Function):
    """hs (T, N, H) of tanh units updating on [0, ends[t]); ends all H is an SRN."""

    @staticmethod
    def forward(ctx, W: Tensor, b: Tensor, ends: tuple[int, ...]) -> Tensor:
        N, H = b.shape
        hs = W.new_empty(len(ends), N, H)
        h = W.new_zeros(N, H)
        WT = W.transpose(1, 2).contiguous()          # (N, H_in, H_out): row-vector bmm is fastest
        for t, e in enumerate(ends):
            pre = torch.baddbmm(b[:, None, :e], h[:, None, :], WT[:, :, :e])[:, 0]
            if e == H:
                h = torch.tanh(pre, out=hs[t])
            else:
                hs[t, :, e:] = h[:, e:]
                hs[t, :, :e] = pre.tanh_()
                h = hs[t]
        ctx.save_for_backward(W, hs)
        ctx.ends = ends
        return hs

    @staticmethod
    @once_differentiable
    def backward(ctx, G: Tensor):
        W, hs = ctx.saved_tensors
        T, N, H = hs.shape
        D = 1 - hs * hs                              # tanh'; becomes dL/dpre in place
        dh = G.new_zeros(N, H)
        for t in range(T - 1, -1, -1):
            dh += G[t]
            e = ctx.ends[t]
            d = D[t, :, :e]
            d.mul_(dh[:, :e])
            back = torch.bmm(d[:, None], W[:, :e])[:, 0]
            if e < H:
                D[t, :, e:] = 0                      # inactive units: no dL/dpre
                dh[:, :e] = 0
                back += dh                           # their error is copied back in time
            dh = back
        h_prev = torch.cat([hs.new_zeros(1, N, H), hs[:-1]])
        dW = torch.bmm(D.permute(1, 2, 0), h_prev.permute(1, 0, 2))
        return dW, D.sum(0), None


class PeepholeLSTMFree(torch.autograd.Function):
    """hs (T, N, H) of a peephole LSTM with no input, from zero h and c."""

    @staticmethod
    def forward(ctx, W: Tensor, b: Tensor, P: Tensor, T: int) -> Tensor:
        N, H = P.shape[0], P.shape[2]
        A = W.new_empty(T, N, 4, H)                  # i, f, g, o after their nonlinearity
        C = W.new_zeros(T + 1, N, H)                 # C[0] = c_0 = 0
        hs = W.new_empty(T, N, H)
        h = W.new_zeros(N, H)
        WT = W.transpose(1, 2).contiguous()          # (N, H, 4H)
        for t in range(T):
            a = torch.baddbmm(b[:, None, :], h[:, None, :], WT)[:, 0].view(N, 4, H)
            c0, at = C[t], A[t]                      # at (N, 4, H): i, f, g, o
            torch.sigmoid(torch.addcmul(a[:, :2], P[:, :2], c0[:, None]), out=at[:, :2])
            torch.tanh(a[:, 2], out=at[:, 2])
            torch.addcmul(at[:, 1] * c0, at[:, 0], at[:, 2], out=C[t + 1])
            torch.sigmoid(torch.addcmul(a[:, 3], P[:, 2], C[t + 1]), out=at[:, 3])
            h = torch.mul(at[:, 3], torch.tanh(C[t + 1]), out=hs[t])
        ctx.save_for_backward(W, P, A, C, hs)
        return hs

    @staticmethod
    @once_differentiable
    def backward(ctx, G: Tensor):
        W, P, A, C, hs = ctx.saved_tensors
        i, f, g, o = A.unbind(2)
        T, N, H = hs.shape
        tc = torch.tanh(C[1:])
        # per-step factors, computed for all steps at once
        k_o = tc * o * (1 - o)                       # dao = dh * k_o
        k_c = o * (1 - tc * tc)                      # dc += dh * k_c
        k_f = C[:-1] * f * (1 - f)                   # daf = dc * k_f
        k_i = g * i * (1 - i)                        # dai = dc * k_i
        k_g = i * (1 - g * g)                        # dag = dc * k_g
        DA = G.new_empty(T, N, 4, H)
        dh, dc = G.new_zeros(N, H), G.new_zeros(N, H)
        for t in range(T - 1, -1, -1):
            dh += G[t]
            da = DA[t]
            torch.mul(dh, k_o[t], out=da[:, 3])
            dc.addcmul_(dh, k_c[t]).addcmul_(da[:, 3], P[:, 2])
            torch.mul(dc, k_f[t], out=da[:, 1])
            torch.mul(dc, k_i[t], out=da[:, 0])
            torch.mul(dc, k_g[t], out=da[:, 2])
            dc = (dc * f[t]).addcmul_(da[:, 0], P[:, 0]).addcmul_(da[:, 1], P[:, 1])
            dh = torch.bmm(da.view(N, 1, 4 * H), W)[:, 0]
        h_prev = torch.cat([hs.new_zeros(1, N, H), hs[:-1]])
        DA = DA.view(T, N, 4 * H)
        dW = torch.bmm(DA.permute(1, 2, 0), h_prev.permute(1, 0, 2))
        DA4 = DA.view(T, N, 4, H)
        dP = torch.stack([(DA4[:, :, 0] * C[:-1]).sum(0), (DA4[:, :, 1] * C[:-1]).sum(0),
                          (DA4[:, :, 3] * C[1:]).sum(0)], 1)
        return dW, DA.sum(0), dP, None


@dataclass
class Nets:
    arch: str                           # "srn", "lstm" or "cwrnn"
    params: dict[str, Tensor]           # leaves, (N, ...)
    masks: dict[str, Tensor]            # 0/1, same shapes: which numbers are trainable
    ends: tuple[int, ...]               # active units [0, ends[t]) at step t
    units: list[list[int]]              # per setup: its units in the padded layout

    def num_parameters(self, n: int) -> int:
        """Trainable numbers of network n."""
        return int(sum(m[n].sum() for m in self.masks.values()))


def cw_layout(hidden: tuple[int, ...], periods: tuple[int, ...]):
    """Padded module layout: module i gets the most units any setup gives it; a setup's
    units in module i are its first ones. Returns units per setup, module of each padded
    unit, and the module edges."""
    sizes = [[b - a for a, b in module_bounds(h, len(periods))] for h in hidden]
    width = [max(s[i] for s in sizes) for i in range(len(periods))]
    edges = [sum(width[:i]) for i in range(len(width) + 1)]
    units = [[edges[i] + j for i in range(len(width)) for j in range(s[i])] for s in sizes]
    module_of = torch.cat([torch.full((w,), i) for i, w in enumerate(width)])
    return units, module_of, edges


def active_ends(periods: tuple[int, ...], edges: list[int], T: int) -> tuple[int, ...]:
    """Per step (counter from 0), the end of the active prefix of modules."""
    ends = []
    for t in range(T):
        on = [t % p == 0 for p in periods]
        m = on.index(False) if False in on else len(on)
        if any(on[m:]):
            raise ValueError(f"periods {periods} do not give a prefix of active modules "
                             f"at step {t}; use periods that each divide the next")
        ends.append(edges[m])
    return tuple(ends)


def build_nets(arch: str, hidden: tuple[int, ...], runs: int, T: int, *, init_std: float,
               forget_bias: float, periods: tuple[int, ...], generator: torch.Generator
               ) -> Nets:
    """runs networks per hidden size, weights N(0, init_std) (the forget gate's bias
    shifted by forget_bias), in float64."""
    S, dt = len(hidden), torch.float64
    if arch == "cwrnn":
        units, module_of, edges = cw_layout(hidden, periods)
        H, ends = edges[-1], active_ends(periods, edges, T)
        structure = (module_of[None, :] >= module_of[:, None]).to(dt)
    else:
        units = [list(range(h)) for h in hidden]
        H = max(hidden)
        ends, structure = (H,) * T, torch.ones(H, H, dtype=dt)
    on = torch.zeros(S * runs, H, dtype=dt)                     # (N, H) real units
    for s, us in enumerate(units):
        on[s * runs:(s + 1) * runs, us] = 1
    G = 4 if arch == "lstm" else 1
    rows = on.repeat(1, G)                                      # (N, GH)
    masks = {"W": rows[:, :, None] * on[:, None, :] * structure.repeat(G, 1),
             "b": rows, "V": on, "c": torch.ones(S * runs, dtype=dt)}
    if arch == "lstm":
        masks["P"] = on[:, None, :].repeat(1, 3, 1)
    params = {k: torch.randn(m.shape, generator=generator, dtype=dt) * init_std * m
              for k, m in masks.items()}
    if arch == "lstm":
        params["b"][:, H:2 * H] += forget_bias * on
    return Nets(arch, {k: p.requires_grad_() for k, p in params.items()}, masks, ends, units)


def generate(nets: Nets, T: int) -> Tensor:
    """Every network from a zero state with no input: outputs y (T, N)."""
    p = {k: v * nets.masks[k] for k, v in nets.params.items()}
    if nets.arch == "lstm":
        hs = PeepholeLSTMFree.apply(p["W"], p["b"], p["P"], T)
    else:
        hs = ClockworkFree.apply(p["W"], p["b"], nets.ends[:T])
    return torch.einsum("tnh,nh->tn", hs, p["V"]) + p["c"]
