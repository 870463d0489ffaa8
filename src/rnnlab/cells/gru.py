"""Gated recurrent unit (Cho et al. 2014, "Learning Phrase Representations using RNN
Encoder-Decoder"), in torch.nn.GRU's form: the reset gate multiplies W_hn h + b_hn.

    r = σ(W_ir x + b_ir + W_hr h + b_hr)
    z = σ(W_iz x + b_iz + W_hz h + b_hz)
    n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))
    h' = (1 - z) ⊙ n + z ⊙ h

Gate order in the fused weights: r, z, n. weight_ih (3H, F), weight_hh (3H, H),
bias_ih, bias_hh (3H,). State: GRUState(h), h (B, H). Output: h.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from .base import Cell, init_uniform_, renamed


class GRUState(NamedTuple):
    """A GRU's state: the hidden vector h (B, H)."""
    h: Tensor


class GRUStep(Cell):
    """One GRU step (the step contract; ``rnnlab.GRUCell`` is torch's).

    ``GRUStep(input_size, hidden_size, bias=True)``; ``step(xp (B, 3H), GRUState) ->
    (h' (B, H), GRUState(h'))`` with xp from ``project_input(x (..., F)) -> (..., 3H)``."""
    State = GRUState

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 device=None, dtype=None) -> None:
        super().__init__()
        kw = {"device": device, "dtype": dtype}
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        self.weight_ih = nn.Parameter(torch.empty(3 * hidden_size, input_size, **kw))
        self.weight_hh = nn.Parameter(torch.empty(3 * hidden_size, hidden_size, **kw))
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(3 * hidden_size, **kw))
            self.bias_hh = nn.Parameter(torch.empty(3 * hidden_size, **kw))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torch.nn.GRUCell's initialisation: every parameter U(-1/sqrt(H), 1/sqrt(H))."""
        init_uniform_(self, self.hidden_size)

    def state_shapes(self):
        return {"h": (self.hidden_size,)}

    def project_input(self, x: Tensor) -> Tensor:
        xp = x @ self.weight_ih.t()                                   # (..., 3H)
        return xp + self.bias_ih if self.bias else xp

    def step(self, xp: Tensor, state: GRUState):
        h = state.h
        r, z, n = self.gate_activations(xp, h)
        h = n + z * (h - n)                                           # (1-z) n + z h
        return h, GRUState(h)

    def gate_activations(self, xp: Tensor, h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(r, z, n), (B, H) each, from the projected input and h."""
        gh = h @ self.weight_hh.t()                                   # (B, 3H)
        if self.bias:
            gh = gh + self.bias_hh
        xr, xz, xn = xp.chunk(3, dim=-1)
        hr, hz, hn = gh.chunk(3, dim=-1)
        r = torch.sigmoid(xr + hr)
        z = torch.sigmoid(xz + hz)
        return r, z, torch.tanh(xn + r * hn)

    def gate_values(self, xp: Tensor, state: GRUState) -> dict[str, Tensor]:
        """The gates ``step`` uses at this step, (B, H) each: update z (share of the old h
        kept) and reset r (share of the old h that forms the candidate)."""
        r, z, _ = self.gate_activations(xp, state.h)
        return {"update": z, "reset": r}


# the old name, deprecated (warns)
__getattr__ = renamed(__name__, {"GRUCell": "GRUStep"})
