"""Elman RNN (simple recurrent network; Elman 1990, "Finding Structure in Time").

    h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh),   act = tanh or relu

Parameters (torch.nn.RNNCell names): weight_ih (H, F), weight_hh (H, H),
bias_ih (H,), bias_hh (H,). State: ElmanState(h) with h (B, H). Output: h.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from .base import Cell, init_uniform_, renamed

ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu}


class ElmanState(NamedTuple):
    """An Elman cell's state: the hidden vector h (B, H)."""
    h: Tensor


class ElmanStep(Cell):
    """One Elman RNN step (the step contract; ``rnnlab.RNNCell`` is torch's).

    ``ElmanStep(input_size, hidden_size, bias=True, nonlinearity="tanh")``;
    ``step(xp (B, H), ElmanState) -> (h' (B, H), ElmanState(h'))`` with xp from
    ``project_input(x (..., F)) -> (..., H)``."""
    State = ElmanState

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 nonlinearity: str = "tanh", device=None, dtype=None) -> None:
        super().__init__()
        if nonlinearity not in ACTIVATIONS:
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', received {nonlinearity!r}")
        kw = {"device": device, "dtype": dtype}
        self.input_size, self.hidden_size = input_size, hidden_size
        self.bias, self.nonlinearity = bias, nonlinearity
        self.weight_ih = nn.Parameter(torch.empty(hidden_size, input_size, **kw))
        self.weight_hh = nn.Parameter(torch.empty(hidden_size, hidden_size, **kw))
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(hidden_size, **kw))
            self.bias_hh = nn.Parameter(torch.empty(hidden_size, **kw))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torch.nn.RNNCell's initialisation: every parameter U(-1/sqrt(H), 1/sqrt(H))."""
        init_uniform_(self, self.hidden_size)

    def state_shapes(self):
        return {"h": (self.hidden_size,)}

    def project_input(self, x: Tensor) -> Tensor:
        xp = x @ self.weight_ih.t()                                   # (..., H)
        return xp + self.bias_ih if self.bias else xp

    def step(self, xp: Tensor, state: ElmanState):
        h = ACTIVATIONS[self.nonlinearity](self.preactivation(xp, state.h))
        return h, ElmanState(h)

    def preactivation(self, xp: Tensor, h: Tensor) -> Tensor:
        """xp (B, H) + W_hh h + b_hh: the argument of the activation, (B, H)."""
        pre = xp + h @ self.weight_hh.t()                             # (B, H)
        return pre + self.bias_hh if self.bias else pre

    def gate_values(self, xp: Tensor, state: ElmanState) -> dict[str, Tensor]:
        """No gates: how saturated each unit is, (B, H). tanh: |h'| (near 1, the unit no
        longer passes gradient); relu: 1 where the unit is active."""
        pre = self.preactivation(xp, state.h)
        if self.nonlinearity == "tanh":
            return {"saturation": torch.tanh(pre).abs()}
        return {"active": (pre > 0).to(pre.dtype)}

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, nonlinearity={self.nonlinearity!r}"


# the old name, deprecated (warns)
__getattr__ = renamed(__name__, {"ElmanCell": "ElmanStep"})
