"""Depth-Gated LSTM (Yao, Cohn, Vylomova, Duh, Dyer 2015, "Depth-Gated LSTM", arXiv 1508.03790).

A stacked LSTM whose layer L adds the memory cell of the layer below, at the same step,
through a depth gate d (diagonal weights on both cells):

    d_t     = σ(b_d + W_xd x_t + w_cd ⊙ c_{t-1}^L + w_ld ⊙ l_t)
    c_t^L   = f_t ⊙ c_{t-1}^L + i_t ⊙ tanh(W_xc x_t + W_hc h_{t-1} + b_c) + d_t ⊙ l_t
    h_t^L   = o_t ⊙ tanh(c_t^L),     i, f, o as in the LSTM (rnnlab.cells.LSTMStep)

where x_t = h_t^{L-1} and l_t = c_t^{L-1}, the lower layer's new cell. The bottom layer has
no lower cell: it uses a learned linear projection of its input, l_t = W_lx x_t (no bias),
in its place (our choice, as in the public implementations; the paper leaves it open).

Options: ``peephole=True`` gives i and f a diagonal view of c_{t-1} and o one of c_t (the
paper's gates carry peepholes); ``coupled=True`` ties i = 1 - f (the authors' cnn/DyNet
builder); ``depth_gate=False`` fixes d = 0, which is exactly a stacked LSTM.
Both are off by default. Gate order in the fused weights is torch's i, f, g, o (f, g, o if
coupled). Layer L needs c_t^{L-1} for every t, which is known once layer L-1 has run over
the whole sequence, so layers run one after another: a non-top cell emits [h_t; c_t].

Parameters (H hidden, F features): LSTMStep's weight_ih (GH, F), weight_hh (GH, H),
bias_ih, bias_hh (GH,), weight_peephole; depth gate weight_xd (H, F), bias_d (H,),
weight_cd (H,), weight_ld (H,); bottom layer weight_lx (H, F).
Cell input (B, F) at the bottom, (B, F + H) = [h^{L-1}; c^{L-1}] above.
State: LSTMState(h (B, H), c (B, H)) per layer.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .base import renamed
from .lstm import LSTMState, LSTMStep


class DepthGatedLSTMStep(LSTMStep):
    """One layer of a Depth-Gated LSTM. ``lower=True``: the input carries the lower cell
    after the F features; ``emit_cell=True``: out_t = [h_t; c_t] for the layer above."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None,
                 dtype=None, *, lower: bool = False, emit_cell: bool = False,
                 depth_gate: bool = True, peephole: bool = False, coupled: bool = False,
                 forget_bias: float = 0.0) -> None:
        super().__init__(input_size, hidden_size, bias, device, dtype, peephole=peephole,
                         coupled=coupled, forget_bias=forget_bias)
        kw = {"device": device, "dtype": dtype}
        self.feature_size, self.lower, self.emit_cell = input_size, lower, emit_cell
        self.depth_gate = depth_gate
        self.input_size = input_size + (hidden_size if lower else 0)
        H = hidden_size
        if depth_gate:
            self.weight_xd = nn.Parameter(torch.empty(H, input_size, **kw))
            self.register_parameter("bias_d", nn.Parameter(torch.empty(H, **kw))
                                    if bias else None)
            self.weight_cd = nn.Parameter(torch.empty(H, **kw))
            self.weight_ld = nn.Parameter(torch.empty(H, **kw))
            if not lower:
                self.weight_lx = nn.Parameter(torch.empty(H, input_size, **kw))
        self.reset_parameters()


    @property
    def is_plain(self) -> bool:
        return False

    @property
    def output_size(self) -> int:
        return 2 * self.hidden_size if self.emit_cell else self.hidden_size

    def state_shapes(self):
        return {"h": (self.hidden_size,), "c": (self.hidden_size,)}

    def project_input(self, x: Tensor) -> Tensor:
        """x (..., F[+H]) -> (..., GH) gate inputs, then (if gated) (..., H) depth-gate
        input and (..., H) lower cell l_t."""
        xf = x[..., :self.feature_size]
        if not self.depth_gate:
            a = xf @ self.weight_ih.t()
            return a + self.bias_ih if self.bias else a
        weights = [self.weight_ih, self.weight_xd] + ([] if self.lower else [self.weight_lx])
        a = xf @ torch.cat(weights).t()                               # (..., (G+1[+1])H)
        if self.bias:
            zeros = [] if self.lower else [self.bias_ih.new_zeros(self.hidden_size)]
            a = a + torch.cat([self.bias_ih, self.bias_d] + zeros)
        return torch.cat([a, x[..., self.feature_size:]], -1) if self.lower else a

    def activations(self, xp: Tensor, state: LSTMState) -> dict[str, Tensor]:
        """All of one step's activations: input, forget, cand, output, depth, lower, c."""
        h, c = state
        H, GH = self.hidden_size, self.gates * self.hidden_size
        a = xp[..., :GH] + h @ self.weight_hh.t()                     # (B, GH)
        if self.bias:
            a = a + self.bias_hh
        parts = a.chunk(self.gates, dim=-1)
        ai, (af, ag, ao) = (None, parts) if self.coupled else (parts[0], parts[1:])
        if self.peephole:
            af = af + self.weight_peephole[-2] * c
            ai = None if self.coupled else ai + self.weight_peephole[0] * c
        f = torch.sigmoid(af)
        i = 1 - f if self.coupled else torch.sigmoid(ai)
        g = torch.tanh(ag)
        c_new = f * c + i * g
        if self.depth_gate:
            low = xp[..., GH + H:GH + 2 * H]                          # (B, H)
            d = torch.sigmoid(xp[..., GH:GH + H] + self.weight_cd * c + self.weight_ld * low)
            c_new = c_new + d * low
        else:
            low, d = torch.zeros_like(c), torch.zeros_like(c)
        if self.peephole:
            ao = ao + self.weight_peephole[-1] * c_new
        return {"input": i, "forget": f, "cand": g, "output": torch.sigmoid(ao),
                "depth": d, "lower": low, "c": c_new}

    def gate_values(self, xp: Tensor, state: LSTMState) -> dict[str, Tensor]:
        """This step's gate activations (B, H) each: input, forget, output, depth."""
        v = self.activations(xp, state)
        return {k: v[k] for k in ("input", "forget", "output", "depth")}

    def step(self, xp: Tensor, state: LSTMState):
        v = self.activations(xp, state)
        h_new = v["output"] * torch.tanh(v["c"])
        out = torch.cat([h_new, v["c"]], -1) if self.emit_cell else h_new
        return out, LSTMState(h_new, v["c"])

    def extra_repr(self) -> str:
        opts = [f"{self.feature_size}, {self.hidden_size}", f"lower={self.lower}"]
        for name in ("depth_gate", "peephole", "coupled", "forget_bias"):
            if getattr(self, name) is not False and getattr(self, name) != 0.0:
                opts.append(f"{name}={getattr(self, name)}")
        return ", ".join(opts)


# the old name, deprecated (warns)
__getattr__ = renamed(__name__, {"DepthGatedLSTMCell": "DepthGatedLSTMStep"})
