"""Clockwork RNN (Koutník, Greff, Gomez, Schmidhuber 2014, "A Clockwork RNN", ICML).

The H hidden units are split into g modules, sorted fast -> slow, module i with period T_i
(default T_i = 2^i, i = 0 .. g-1, i.e. 1, 2, 4, ...; any non-decreasing periods may be
given). At step t only the modules with t mod T_i = 0 update; the others keep their value:

    h_t[i] = act(W_I[i] x_t + b_ih[i] + Σ_{j >= i} W_H[i, j] h_{t-1}[j] + b_hh[i])
                                                              if t mod T_i = 0
    h_t[i] = h_{t-1}[i]                                       otherwise

W_H is block-upper-triangular: a module reads itself and the *slower* modules only.
The step counter starts at t = 0 (every module updates on the first step) and lives in the
state, ``ClockworkState(h (B, H), t (B,) int64)``, so a sequence run in chunks with the
state carried stays in phase; with ``lengths`` each row's counter stops at its own length.

When H is not a multiple of g, the first (fastest) H mod g modules get one unit more.
Parameters use torch.nn.RNN's names: weight_ih (H, F), weight_hh (H, H) (its blocks below
the diagonal are structural zeros: masked in every forward, so they never get gradient),
bias_ih, bias_hh (H,). With one module of period 1 the cell is exactly an Elman RNN.

``step`` is the dense masked reference; ``rnnlab.kernels.clockwork`` computes only the
active modules, forward and backward.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from .base import check_shape, renamed, shape_str
from .elman import ACTIVATIONS, ElmanStep


class ClockworkState(NamedTuple):
    h: Tensor      # (B, H)
    t: Tensor      # (B,) int64: the counter of the next step


def module_bounds(hidden_size: int, num_modules: int) -> tuple[tuple[int, int], ...]:
    """Unit ranges [a, b) of the modules; the first H mod g modules get one unit more."""
    if not 1 <= num_modules <= hidden_size:
        raise ValueError(f"num_modules must be in [1, hidden_size={hidden_size}], "
                         f"received {num_modules}")
    base, extra = divmod(hidden_size, num_modules)
    bounds, a = [], 0
    for i in range(num_modules):
        b = a + base + (1 if i < extra else 0)
        bounds.append((a, b))
        a = b
    return tuple(bounds)


def check_periods(periods, num_modules: int | None) -> tuple[int, ...]:
    if periods is None:
        return tuple(2 ** i for i in range(4 if num_modules is None else num_modules))
    periods = tuple(int(p) for p in periods)
    if num_modules is not None and len(periods) != num_modules:
        raise ValueError(f"periods must hold num_modules={num_modules} entries, "
                         f"received {len(periods)}")
    if not periods or min(periods) < 1 or list(periods) != sorted(periods):
        raise ValueError(f"periods must be positive and non-decreasing (modules sorted "
                         f"fast -> slow), received {periods}")
    return periods


class ClockworkStep(ElmanStep):
    """An Elman cell whose units update on their module's clock (same parameters)."""
    State = ClockworkState

    def __init__(self, input_size: int, hidden_size: int, num_modules: int | None = None,
                 periods=None, bias: bool = True, nonlinearity: str = "tanh",
                 device=None, dtype=None) -> None:
        super().__init__(input_size, hidden_size, bias, nonlinearity, device, dtype)
        self.periods = check_periods(periods, num_modules)
        self.num_modules = len(self.periods)
        self.bounds = module_bounds(hidden_size, self.num_modules)
        module_of = torch.cat([torch.full((b - a,), i) for i, (a, b) in enumerate(self.bounds)])
        period_of = torch.tensor(self.periods)[module_of]
        self.register_buffer("unit_period", period_of.to(device), persistent=False)
        mask = (module_of[None, :] >= module_of[:, None]).to(dtype or torch.get_default_dtype())
        self.register_buffer("weight_hh_mask", mask.to(device), persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if hasattr(self, "weight_hh_mask"):          # not yet during ElmanStep.__init__
            with torch.no_grad():
                self.weight_hh.mul_(self.weight_hh_mask)

    def num_parameters(self) -> int:
        """Trainable numbers, not counting the structural zeros of weight_hh."""
        total = sum(p.numel() for p in self.parameters())
        return total - int((self.weight_hh_mask == 0).sum())

    # -- state ---------------------------------------------------------------------------
    def state_shapes(self):
        return {"h": (self.hidden_size,), "t": ()}

    def init_state(self, batch: int, *, device=None, dtype=None) -> ClockworkState:
        ref = self.weight_hh
        h = torch.zeros(batch, self.hidden_size, device=device or ref.device,
                        dtype=dtype or ref.dtype)
        return ClockworkState(h, torch.zeros(batch, dtype=torch.long, device=h.device))

    def check_state(self, state, batch: int) -> ClockworkState:
        if not isinstance(state, tuple) or len(state) != 2:
            raise ValueError(f"state must be a ClockworkState(h, t), "
                             f"received {type(state).__name__}")
        h, t = state
        check_shape(h, (batch, self.hidden_size), "state.h")
        if not isinstance(t, Tensor) or t.is_floating_point() or t.shape != (batch,):
            raise ValueError(f"state.t must be an integer tensor of shape ({batch},), received "
                             f"{getattr(t, 'dtype', type(t).__name__)} "
                             f"{shape_str(getattr(t, 'shape', ()))}")
        return ClockworkState(h, t.long())

    # -- the dense masked reference step --------------------------------------------------
    def recurrent_weight(self) -> Tensor:
        """weight_hh with its structural zeros enforced (block-upper-triangular)."""
        return self.weight_hh * self.weight_hh_mask

    def active_mask(self, t: Tensor) -> Tensor:
        """(B, H) bool: True for the units whose module updates at counter t (B,)."""
        return (t[:, None] % self.unit_period[None, :]) == 0

    def gate_values(self, xp: Tensor, state: ClockworkState) -> dict[str, Tensor]:
        """This step's 0/1 mask of updating units (B, H), as ``step`` uses it."""
        return {"active": self.active_mask(state.t).to(state.h.dtype)}

    def step(self, xp: Tensor, state: ClockworkState):
        h, t = state
        pre = xp + h @ self.recurrent_weight().t()
        if self.bias:
            pre = pre + self.bias_hh
        active = self.gate_values(xp, state)["active"] > 0
        h_new = torch.where(active, ACTIVATIONS[self.nonlinearity](pre), h)
        return h_new, ClockworkState(h_new, t + 1)

    def extra_repr(self) -> str:
        return (f"{self.input_size}, {self.hidden_size}, periods={self.periods}, "
                f"nonlinearity={self.nonlinearity!r}")


# the old name, deprecated (warns)
__getattr__ = renamed(__name__, {"ClockworkCell": "ClockworkStep"})
