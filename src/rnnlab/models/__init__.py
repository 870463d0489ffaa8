"""Models built around a recurrent core chosen by registry name."""
from .lm import LanguageModel, LMConfig

__all__ = ["LanguageModel", "LMConfig"]
