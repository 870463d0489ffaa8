"""Cells: one time step of each architecture (see rnnlab.cells.base for the contract).

The step classes are named ``...Step`` (``LSTMStep``, ``GRUStep``, ``ElmanStep``, and in
their modules ``ClockworkStep``, ``DepthGatedLSTMStep``, ``GridLayerStep``); the
``...Cell`` names of rnnlab are torch.nn's one-step modules (``rnnlab.LSTMCell`` ...).
The old step names (``rnnlab.cells.LSTMCell`` ...) still work, with a DeprecationWarning.
"""
from .base import Cell, renamed
from .elman import ElmanState, ElmanStep
from .gru import GRUState, GRUStep
from .lstm import LSTMState, LSTMStep

__all__ = ["Cell", "ElmanStep", "ElmanState", "GRUStep", "GRUState", "LSTMStep", "LSTMState"]

__getattr__ = renamed(__name__, {"LSTMCell": "LSTMStep", "GRUCell": "GRUStep",
                                 "ElmanCell": "ElmanStep"})
