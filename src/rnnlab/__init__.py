"""rnnlab: the recurrent-network family on PyTorch, drop-in for torch.nn, with the
applications and the papers' experiments."""
from functools import partial

from . import cells
from .layers import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell
from .layers import Bidirectional, Recurrent, Stacked, detach_state, map_state, run_cell
from .registry import available, build, register

__version__ = "0.1.0"

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

# Architectures added by later modules register themselves on import, one line each:
# (keep this list sorted; each import must not fail)
from .cells.clockwork import ClockworkRNN  # noqa: E402
register("clockwork_rnn", "Clockwork RNN, modules with periods 1, 2, 4, ... "
         "(Koutník et al. 2014)")(ClockworkRNN)
from .cells.depth_gated import DepthGatedLSTM  # noqa: E402
register("depth_gated_lstm", "Depth-Gated LSTM (Yao et al. 2015)")(DepthGatedLSTM)
from .models.grid import GridLSTM  # noqa: E402
register("grid_lstm", "2-D (time x depth) Grid LSTM (Kalchbrenner et al. 2015)")(GridLSTM)

# Applications: next-word language model and its predictor
from .infer import Predictor  # noqa: E402
from .models.lm import LanguageModel  # noqa: E402

__all__ = [
    "RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell", "Recurrent", "Stacked",
    "Bidirectional", "run_cell", "map_state", "detach_state", "build", "available",
    "register", "cells", "ClockworkRNN", "DepthGatedLSTM", "GridLSTM",
    "LanguageModel", "Predictor",
]
