"""The Clockwork RNN as a sequence layer (Koutník et al. 2014; the cell's equations are in
``rnnlab.cells.clockwork``)."""
from __future__ import annotations

from ..cells.clockwork import ClockworkStep
from .recurrent import Recurrent, Stacked


class ClockworkRNN(Stacked):
    """Clockwork RNN sequence layer(s): forward(x, state=None, lengths=None) -> (out, state).

    x (T, B, F) (or (B, T, F) with batch_first), out (T, B, H); the state is a tuple with
    one ClockworkState(h, t) per layer. Dropout is applied between layers."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, *,
                 num_modules: int | None = None, periods=None, nonlinearity: str = "tanh",
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 device=None, dtype=None) -> None:
        if num_layers < 1:
            raise ValueError(f"num_layers must be at least 1, received {num_layers}")
        cells = [ClockworkStep(input_size if k == 0 else hidden_size, hidden_size, num_modules,
                               periods, bias, nonlinearity, device, dtype)
                 for k in range(num_layers)]
        super().__init__([Recurrent(c) for c in cells], dropout, batch_first)
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
