"""8-bit weights with one scale per row, for every architecture.

The big matrices of a language model (embedding, every cell's input and recurrent
weights, Depth-Gated and Grid transforms, projections, output layer) are stored as int8
with a float32 scale per row (per output unit; per token for the embedding), symmetric
around zero:

    scale = max |row| / 127,   q = round(w / scale) in [-127, 127],   w ≈ q * scale

so every weight is within half a quantisation step of its float value. Vectors (biases,
layer-norm gains, peephole diagonals) stay float32. Unlike ``torch.ao.quantization``,
which only knows torch's own modules, this works on parameters by shape, so custom cells
and projections are covered.

In PyTorch, ``quantise_model_`` replaces each big matrix by its dequantised value: the
same numbers an int8 deployment computes with, at float speed (this machine's PyTorch has
no fast int8 matrix-vector product for float inputs). The ONNX export stores the int8
values themselves (``rnnlab.export.onnx``).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

QMAX = 127


def quantise_rows(w: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """w (2-D float) -> (q int8 of w's shape, scale float32 per index of ``axis``); rows
    are the slices along ``axis`` (axis=1: per column). An all-zero row gets scale 1."""
    w = np.asarray(w, dtype=np.float32)
    if w.ndim != 2:
        raise ValueError(f"quantise_rows takes a matrix, received shape {w.shape}")
    reduce = 1 - axis
    amax = np.abs(w).max(axis=reduce)
    scale = np.where(amax > 0, amax / QMAX, 1.0).astype(np.float32)
    q = np.rint(w / np.expand_dims(scale, reduce))
    return np.clip(q, -QMAX, QMAX).astype(np.int8), scale


def dequantise_rows(q: np.ndarray, scale: np.ndarray, axis: int = 0) -> np.ndarray:
    """The float32 matrix int8 ``q`` with per-row ``scale`` stands for."""
    return q.astype(np.float32) * np.expand_dims(scale, 1 - axis)


def big_matrices(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """The parameters stored as int8: every matrix except diagonal (peephole) weights,
    which act elementwise. A tied embedding/decoder matrix is listed once."""
    return [(name, p) for name, p in model.named_parameters()
            if p.dim() == 2 and "peephole" not in name]


@torch.no_grad()
def quantise_model_(model: nn.Module) -> list[dict]:
    """Replace every big matrix of ``model`` by its int8 dequantised value, in place;
    returns what was quantised (name, shape, largest step)."""
    done = []
    for name, p in big_matrices(model):
        q, scale = quantise_rows(p.detach().cpu().numpy())
        p.copy_(torch.from_numpy(dequantise_rows(q, scale)).to(p))
        done.append({"name": name, "shape": list(p.shape), "max_step": float(scale.max())})
    return done
