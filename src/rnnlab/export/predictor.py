"""Suggestions, sampling and evaluation from an export folder, with the same code as from
a run directory: ``ExportPredictor`` is a ``Predictor`` whose one step is the exported
graph run by ``rnnlab.export.runtime`` (numpy + onnxruntime).

    pred = load_predictor("model-export")        # or a run directory
    pred.suggest("She grew up speaking", k=3)

``load_predictor(run, int8=True)`` gives the PyTorch predictor with every big matrix
rounded to int8 per row (``rnnlab.export.quant``): the numbers an int8 export uses.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..data.text import Vocab, batchify
from ..errors import UserError
from ..infer import Predictor
from .quant import quantise_model_
from .runtime import Exported, ExportError, is_export, log_softmax


class _Steps:
    """What Predictor.read calls as ``model(ids (T, B), state)`` to read a long stretch:
    here one exported step per token, logits (T, B, V)."""

    def __init__(self, exported: Exported) -> None:
        self.exported = exported

    def __call__(self, ids: Tensor, state: Any = None) -> tuple[Tensor, Any]:
        out = []
        for tok in ids.numpy():
            logits, state = self.exported.step(tok, state)
            out.append(logits)
        return torch.from_numpy(np.stack(out)), state


class ExportPredictor(Predictor):
    """A Predictor over an exported one-step graph; the state is the flat (1, S) vector."""

    def __init__(self, exported: Exported) -> None:
        self.runtime = exported
        self.model = _Steps(exported)                       # no PyTorch model behind it
        self._stepper = None
        self.vocab = Vocab(exported.level, list(exported.tokens))
        self.level = self.vocab.level
        self.start_id = self.vocab.index.get("\n", 1)
        self.unknown: list[str] = []
        self.reset()

    @classmethod
    def load(cls, folder: str | Path) -> ExportPredictor:
        try:
            return cls(Exported(folder))
        except (ExportError, UserError) as e:             # vocab.json content, too
            raise UserError(str(e)) from None

    def param_count(self) -> int:
        """The exported model's parameter count (export.json)."""
        return int(self.runtime.meta.get("parameters", 0))

    def size_bytes(self) -> int:
        """Bytes of model.onnx (weights at their stored precision, int8 or float32)."""
        return (self.runtime.folder / "model.onnx").stat().st_size

    def step(self, token: int, state: Any) -> tuple[Tensor, Any]:
        """One token in, next-token logits (V,) and the new flat state out."""
        logits, state = self.runtime.step([token], state)
        return torch.from_numpy(logits[0]), state

    def step_many(self, tokens: list[int], states: list[Any]) -> list[tuple[Tensor, Any]]:
        """``step`` for several (token, state) pairs as one batch through the graph."""
        zero = self.runtime.zero_state(1)
        state = np.concatenate([zero if s is None else s for s in states])
        logits, state = self.runtime.step(tokens, state)
        return [(torch.from_numpy(logits[i].copy()), state[i:i + 1]) for i in range(len(tokens))]


def load_predictor(path: str | Path, int8: bool = False) -> Predictor:
    """A predictor for a run directory or an export folder (told apart by export.json)."""
    if is_export(path):
        if int8:
            raise UserError(f"{path}: is an export; its weights are fixed at export time "
                            f"(export the run with --int8 instead)")
        return ExportPredictor.load(path)
    pred = Predictor.load(path)
    if int8:
        quantise_model_(pred.model)
        pred = Predictor(pred.model, pred.vocab)           # re-prepare the fused weights
    return pred


def evaluate_export(exported: Exported, ids: list[int], batch: int = 16) -> float:
    """Mean nats per predicted token over ids read as ``batch`` contiguous streams, one
    step at a time (what ``rnnlab.train.evaluate`` computes for a PyTorch model)."""
    data = batchify(ids, min(batch, max(1, len(ids) // 2))).numpy()    # (N, B)
    state = exported.zero_state(data.shape[1])
    rows = np.arange(data.shape[1])
    total = 0.0
    for t in range(data.shape[0] - 1):
        logits, state = exported.step(data[t], state)
        total -= float(log_softmax(logits.astype(np.float64))[rows, data[t + 1]].sum())
    count = (data.shape[0] - 1) * data.shape[1]
    return total / count if count else math.nan
