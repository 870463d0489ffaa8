"""The cell contract every rnnlab architecture follows.

A cell is one time step of one architecture, written as pure math:

    out_t, new_state = cell(x_t, state)          # x_t: (B, F), out_t: (B, O)
    state = cell.init_state(B, device=..., dtype=...)

The state is a ``NamedTuple`` of tensors whose first dimension is the batch, and it is
never stored on the module. Splitting ``forward`` in two lets sequence layers hoist the
input part of every step out of the time loop (one GEMM for all T steps):

    xp = cell.project_input(x)                   # (T, B, F) -> (T, B, G), no recurrence
    out_t, state = cell.step(xp[t], state)       # the recurrent part of one step

so ``cell(x_t, state) == cell.step(cell.project_input(x_t), state)`` by construction.
"""
from __future__ import annotations

import sys
import warnings
from typing import Any, Callable, NamedTuple

import torch
from torch import Tensor, nn


def shape_str(shape: Any) -> str:
    """``(2, 3, 4)`` for a torch.Size or tuple, for error messages."""
    items = [str(int(s)) for s in shape]
    return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"


def check_floating(x: Tensor, what: str = "input") -> None:
    if not isinstance(x, Tensor):
        raise ValueError(f"{what} must be a torch.Tensor, received {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"{what} must be a floating-point tensor, received dtype {x.dtype}")


def check_features(x: Tensor, size: int, what: str = "input") -> None:
    """Raise a ValueError naming expected and received shapes if x's last dim != size."""
    check_floating(x, what)
    if x.dim() == 0 or x.shape[-1] != size:
        raise ValueError(
            f"{what} must have {size} features in its last dimension, "
            f"received shape {shape_str(x.shape)}"
        )


def check_shape(t: Tensor, expected: tuple[int, ...], what: str) -> None:
    check_floating(t, what)
    if tuple(t.shape) != tuple(expected):
        raise ValueError(
            f"{what} must have shape {shape_str(expected)}, received {shape_str(t.shape)}"
        )


class Cell(nn.Module):
    """Base class of all cells. Subclasses define ``State``, ``state_shapes``,
    ``project_input`` (optional) and ``step``."""

    State: type = NamedTuple  # overridden by each cell
    input_size: int
    hidden_size: int

    @property
    def output_size(self) -> int:
        """Size of ``out_t`` (what the next layer reads)."""
        return self.hidden_size

    def state_shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-field shape of the state without the batch dimension."""
        raise NotImplementedError

    def init_state(self, batch: int, *, device=None, dtype=None) -> Any:
        """The zero state for a batch of ``batch`` sequences."""
        ref = next(iter(self.parameters()), None)
        device = device if device is not None else (ref.device if ref is not None else None)
        dtype = dtype if dtype is not None else (ref.dtype if ref is not None else None)
        return self.State(**{
            name: torch.zeros((batch, *shape), device=device, dtype=dtype)
            for name, shape in self.state_shapes().items()
        })

    def check_state(self, state: Any, batch: int) -> Any:
        """Validate a user-given state; accepts any tuple with the right fields."""
        shapes = self.state_shapes()
        if not isinstance(state, tuple) or len(state) != len(shapes):
            raise ValueError(
                f"state must be a {self.State.__name__} with fields {tuple(shapes)}, "
                f"received {type(state).__name__}"
            )
        for (name, shape), value in zip(shapes.items(), state):
            check_shape(value, (batch, *shape), f"state.{name}")
        return self.State(*state)

    def project_input(self, x: Tensor) -> Tensor:
        """The part of a step that depends on the input only; any leading dims."""
        return x

    def step(self, xp: Tensor, state: Any) -> tuple[Tensor, Any]:
        """One recurrent step from the projected input ``xp`` (B, G)."""
        raise NotImplementedError

    def forward(self, x: Tensor, state: Any = None) -> tuple[Tensor, Any]:
        """One time step: x (B, F) -> out (B, O), new state."""
        check_features(x, self.input_size)
        if x.dim() != 2:
            raise ValueError(
                f"a cell takes one time step of shape (batch, {self.input_size}), "
                f"received {shape_str(x.shape)}"
            )
        if state is None:
            state = self.init_state(x.shape[0], device=x.device, dtype=x.dtype)
        else:
            state = self.check_state(state, x.shape[0])
        return self.step(self.project_input(x), state)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}"


def init_uniform_(module: nn.Module, hidden_size: int) -> None:
    """torch.nn's RNN initialisation: every parameter U(-1/sqrt(H), 1/sqrt(H))."""
    bound = 1.0 / hidden_size**0.5 if hidden_size > 0 else 0.0
    for p in module.parameters(recurse=False):
        nn.init.uniform_(p, -bound, bound)


def renamed(module: str, names: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that still serves the old names of renamed step classes
    (``names``: old -> new), with a DeprecationWarning. The step classes are ``...Step``;
    ``rnnlab.RNNCell/LSTMCell/GRUCell`` are torch.nn's one-step contract."""
    def __getattr__(name: str) -> Any:
        if name in names:
            warnings.warn(f"{module}.{name} is deprecated: it is now {module}.{names[name]} "
                          f"(the step contract); rnnlab.RNNCell/LSTMCell/GRUCell are "
                          f"torch.nn's one-step modules", DeprecationWarning, stacklevel=2)
            return getattr(sys.modules[module], names[name])
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    return __getattr__
