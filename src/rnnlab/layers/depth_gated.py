"""The Depth-Gated LSTM as a sequence layer (Yao et al. 2015; the cell's equations are in
``rnnlab.cells.depth_gated``)."""
from __future__ import annotations

from ..cells.depth_gated import DepthGatedLSTMStep
from .recurrent import Recurrent, Stacked


class DepthGatedLSTM(Stacked):
    """Depth-Gated LSTM layers: forward(x, state=None, lengths=None) -> (out, state).

    x (T, B, F) (or (B, T, F) with batch_first), out (T, B, H) from the top layer; the
    state is a tuple with one LSTMState(h, c) per layer. Inter-layer dropout acts on the h
    passed up, never on the cell that feeds the depth gate."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, *,
                 dropout: float = 0.0, batch_first: bool = False, bias: bool = True,
                 peephole: bool = False, coupled: bool = False, depth_gate: bool = True,
                 forget_bias: float = 0.0, device=None, dtype=None) -> None:
        if num_layers < 1:
            raise ValueError(f"num_layers must be at least 1, received {num_layers}")
        if not 0 <= dropout <= 1:
            raise ValueError(f"dropout must be in [0, 1], received {dropout}")
        cells = [DepthGatedLSTMStep(
            input_size if k == 0 else hidden_size, hidden_size, bias, device, dtype,
            lower=k > 0, emit_cell=k < num_layers - 1, depth_gate=depth_gate,
            peephole=peephole, coupled=coupled, forget_bias=forget_bias)
            for k in range(num_layers)]
        # what goes up is [h; c]: dropout acts on h only (``Stacked``'s ``passed``)
        super().__init__([Recurrent(c) for c in cells], dropout, batch_first,
                         passed=hidden_size)
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
