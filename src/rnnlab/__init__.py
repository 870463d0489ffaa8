"""rnnlab: the recurrent-network family on PyTorch, drop-in for torch.nn.

``import rnnlab`` loads the library (cells -> kernels -> layers -> models); the
applications (training, inference, the CLI, experiments) are imported on their own,
e.g. ``from rnnlab.infer import Predictor``.
"""
from . import cells, kernels
from .layers import (
                     GRU,
                     LSTM,
                     RNN,
                     Bidirectional,
                     ClockworkRNN,
                     DepthGatedLSTM,
                     GridLSTM,
                     GRUCell,
                     LSTMCell,
                     Recurrent,
                     RNNCell,
                     Stacked,
                     available,
                     build,
                     detach_state,
                     map_state,
                     register,
                     run_cell,
                     to_torch,
)
from .models import LanguageModel, LMConfig

__version__ = "0.1.0"

__all__ = [
    "RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell", "Recurrent", "Stacked",
    "Bidirectional", "run_cell", "map_state", "detach_state", "build", "available",
    "register", "to_torch", "cells", "kernels", "ClockworkRNN", "DepthGatedLSTM", "GridLSTM",
    "LanguageModel", "LMConfig",
]
