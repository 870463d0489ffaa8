"""Cells: one time step of each architecture (see rnnlab.cells.base for the contract)."""
from .base import Cell
from .elman import ElmanCell, ElmanState
from .gru import GRUCell, GRUState
from .lstm import LSTMCell, LSTMState

__all__ = ["Cell", "ElmanCell", "ElmanState", "GRUCell", "GRUState", "LSTMCell", "LSTMState"]
