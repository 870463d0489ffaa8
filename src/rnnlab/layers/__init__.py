"""Sequence layers: cells run over time.

- ``Recurrent``, ``Bidirectional``, ``Stacked``, ``run_cell`` and the one stack loop
  ``run_stack`` (``recurrent``);
- the torch.nn fronts ``RNN``, ``LSTM``, ``GRU`` and ``RNNCell``, ``LSTMCell``, ``GRUCell``
  (``fronts``), which subclass torch.nn's classes;
- the Clockwork RNN, Depth-Gated LSTM and Grid LSTM layers;
- the registry: every architecture by name (``build``, ``available``, ``register``).
"""
from functools import partial

from .clockwork import ClockworkRNN
from .depth_gated import DepthGatedLSTM
from .fronts import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell, to_torch
from .grid import GridLSTM
from .recurrent import (
                        Bidirectional,
                        Recurrent,
                        Stacked,
                        check_lengths,
                        detach_state,
                        map_state,
                        repack_output,
                        reverse_padded,
                        run_cell,
                        run_stack,
                        unpack_input,
)
from .registry import available, build, register

register("rnn", "Elman RNN, tanh (torch.nn.RNN)")(RNN)
register("rnn_relu", "Elman RNN, relu")(partial(RNN, nonlinearity="relu"))
register("lstm", "LSTM (torch.nn.LSTM)")(LSTM)
register("lstm_peephole", "LSTM with diagonal peepholes (Gers & Schmidhuber 2000)")(
    partial(LSTM, peephole=True))
register("lstm_cifg", "LSTM with coupled input-forget gate (Greff et al. 2015)")(
    partial(LSTM, coupled=True))
register("lstm_ln", "LSTM with layer normalisation (Ba et al. 2016)")(
    partial(LSTM, layer_norm=True))
register("gru", "GRU (Cho et al. 2014; torch.nn.GRU)")(GRU)
register("clockwork_rnn", "Clockwork RNN, modules with periods 1, 2, 4, ... "
         "(Koutník et al. 2014)")(ClockworkRNN)
register("depth_gated_lstm", "Depth-Gated LSTM (Yao et al. 2015)")(DepthGatedLSTM)
register("grid_lstm", "2-D (time x depth) Grid LSTM (Kalchbrenner et al. 2015)")(GridLSTM)

__all__ = ["Recurrent", "Bidirectional", "Stacked", "run_cell", "run_stack", "map_state",
           "detach_state", "check_lengths", "repack_output", "reverse_padded", "unpack_input",
           "RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell", "to_torch", "ClockworkRNN",
           "DepthGatedLSTM", "GridLSTM", "build", "available", "register"]
