"""Fast whole-sequence kernels: optimisations of cells, never second definitions.

Each kernel family (``lstm``, ``gru``, ``elman``) runs a whole sequence in one custom
``torch.autograd.Function``: the input projection of all T steps is one GEMM, each step is
one recurrent GEMM plus in-place gate math, and the backward through time is derived by
hand, with the weight gradients computed after the loop as a few large GEMMs instead of T
small ones. A cell opts in by defining ``run_sequence(x, state, lengths)`` (which
``rnnlab.layers.run_cell`` calls); the kernel is tested equal to the cell's ``step`` loop.

``use_kernels(False)`` switches every kernel off (the cells then run their Python loop),
which is how the tests and the benchmark compare the two. ``STATS`` counts kernel calls by
name so a test can see that the fast path ran.
"""
from __future__ import annotations

import contextlib
from collections import Counter
from typing import Iterator

STATS: Counter = Counter()
_ENABLED = [True]


def kernels_enabled() -> bool:
    """Whether cells take their fast whole-sequence path."""
    return _ENABLED[0]


@contextlib.contextmanager
def switched(flag: list, enabled: bool) -> Iterator[None]:
    """Context manager: set a one-element flag list to ``enabled``, restore it after."""
    old = flag[0]
    flag[0] = bool(enabled)
    try:
        yield
    finally:
        flag[0] = old


def use_kernels(enabled: bool = True):
    """Context manager: run cells with (True) or without (False) their kernels."""
    return switched(_ENABLED, enabled)


def same_method(cell, base: type, *names: str) -> bool:
    """True when ``cell`` has not overridden any of ``names`` of ``base`` (a subclass
    that changes the step math must not be run by the base class's kernel)."""
    cls = type(cell)
    return all(getattr(cls, n, None) is getattr(base, n, None) for n in names)


class RecurrentGemm:
    """``h @ w.T`` for one weight w (N, K) reused at every step of a sequence, and the
    per-step thread policy of the kernels.

    GEMM: on CPU in float32 it goes through oneDNN's linear with the weight reordered
    (packed) once per sequence, which on this project's CPU runs the small per-step GEMM
    (B = 64 rows) 1.3-2x faster than ``torch.mm``, as torch's own oneDNN LSTM does;
    elsewhere it is ``torch.mm``. ``RecurrentGemm.enabled = False`` switches packing off.

    Threads: inside ``with RecurrentGemm(...) as rec:`` the GEMM runs with torch's thread
    count and everything else (the few (B, GH) elementwise ops of a step) on one thread.
    Those ops are too small for a fork/join to pay, and on a shared CPU each parallel
    region can wait a scheduler slice for a descheduled worker (measured on this machine
    under load: 20 ms instead of 0.4 ms per op). Leaving the block restores the count."""

    enabled = True

    def __init__(self, w, batch: int, steps: int = 100) -> None:
        import torch

        # the thread policy only concerns CPU work (n = 1 switches it off)
        self.torch, self.n = torch, torch.get_num_threads() if w.device.type == "cpu" else 1
        self.w_t, self.packed = w.t(), None
        # the reorder costs about one GEMM's time: worth it for many steps of a big weight
        if (self.enabled and w.device.type == "cpu" and w.dtype == torch.float32
                and steps >= 8 and w.numel() >= 2**14 and torch.backends.mkldnn.is_available()):
            try:
                self.packed = torch.ops.mkldnn._reorder_linear_weight(w.detach(), batch)
                STATS["packed_gemm"] += 1
            except (RuntimeError, AttributeError):
                self.packed = None

    def __call__(self, h):
        torch = self.torch
        if self.n > 1:
            torch.set_num_threads(self.n)
        if self.packed is not None:
            y = torch.ops.mkldnn._linear_pointwise(h.contiguous(), self.packed, None,
                                                   "none", [], "")
        else:
            y = h @ self.w_t
        if self.n > 1:
            torch.set_num_threads(1)
        return y

    def __enter__(self) -> "RecurrentGemm":
        return self

    def __exit__(self, *exc) -> None:
        if self.n > 1:
            self.torch.set_num_threads(self.n)


def step_mask(lengths, T: int, like):
    """(T, B, 1) float mask in x's dtype/device, and the number of leading steps valid
    for every sequence (no masking needed there)."""
    import torch

    if lengths is None:
        return None, T
    full = int(lengths.min()) if lengths.numel() else T
    mask = (torch.arange(T)[:, None] < lengths[None, :]).to(like.device, like.dtype)
    return mask.unsqueeze(-1), full


__all__ = ["STATS", "kernels_enabled", "use_kernels", "same_method", "step_mask",
           "RecurrentGemm"]
