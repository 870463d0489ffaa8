"""Sequence layers: cells run over time (``Recurrent``, ``Bidirectional``, ``Stacked``) and
the torch.nn fronts (``RNN``, ``LSTM``, ``GRU`` and their ``*Cell`` classes)."""
from .recurrent import (Bidirectional, Recurrent, Stacked, check_lengths, detach_state,
                        map_state, masked_update, repack_output, reverse_padded, run_cell,
                        step_mask, unpack_input)
from .fronts import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell

__all__ = ["Recurrent", "Bidirectional", "Stacked", "run_cell", "map_state", "detach_state",
           "check_lengths", "masked_update", "repack_output", "reverse_padded", "step_mask",
           "unpack_input", "RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell"]
