"""Fast whole-sequence kernels: optimisations of cells, never second definitions.

Each kernel (``lstm`` for every LSTM variant, ``gru``, ``depth_gated``, ``grid``,
``clockwork``) runs a whole sequence in one custom ``torch.autograd.Function``: the input
projection of all T steps is one GEMM, each step is one recurrent GEMM plus in-place gate
math, and the backward through time is derived by hand, with the weight gradients computed
after the loop as a few large GEMMs instead of T small ones.

One table maps a cell type to its kernel (``register``); ``run(cell, x, state, lengths)``,
which ``rnnlab.layers.run_cell`` calls, returns None where no kernel applies and the layer
then loops over the cell's ``step``. Each kernel is tested equal to that loop. Kernels
import cells, never the other way.

- One switch: ``use_kernels(False)`` turns every fast path off (the tests and the benchmark
  compare both paths this way).
- Tracing, scripting, ``torch.compile`` and ``torch.export`` take the loop (``eager``).
- Second derivatives: each kernel's Function also takes a ``recompute.Reference`` (the
  tensors the step loop reads); its backward is the hand-written one, or, when autograd
  records the backward itself (``create_graph=True``), the gradient of the step loop
  recomputed from those tensors, so double backward is exact and plain training keeps
  only what the hand-written backward needs.

``STATS`` counts kernel calls by name so a test can see that the fast path ran.
"""
from __future__ import annotations

import contextlib
from collections import Counter
from typing import Callable, Iterator

STATS: Counter = Counter()
_ENABLED = [True]
_TABLE: dict[type, Callable] = {}


def enabled() -> bool:
    """Whether the fast paths run: rnnlab's kernels and, in the torch.nn fronts, torch's
    fused ops. Off, every layer runs its cells' step loop (the reference path)."""
    return _ENABLED[0]


@contextlib.contextmanager
def use_kernels(on: bool = True) -> Iterator[None]:
    """The one switch: ``with use_kernels(False):`` runs every layer on its reference path."""
    old = _ENABLED[0]
    _ENABLED[0] = bool(on)
    try:
        yield
    finally:
        _ENABLED[0] = old


def eager(x=None) -> bool:
    """False while torch traces, scripts, compiles or exports, or when ``x`` is not a plain
    tensor (fake, functional or vmap-batched): a hand-written kernel would be recorded as
    an opaque call there (or break), so layers take their traceable cell loop instead."""
    import torch

    if (torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling()
            or getattr(torch.compiler, "is_exporting", lambda: False)()):
        return False
    if x is None:
        return True
    if type(x) not in (torch.Tensor, torch.nn.Parameter):
        return False
    wrapped = getattr(torch._C._functorch, "is_functorch_wrapped_tensor", None)
    return not (wrapped is not None and wrapped(x))


def register(cell_type: type):
    """Decorator: ``fn(cell, x, state, lengths) -> (out, state) | None`` is the kernel of
    ``cell_type`` (and of subclasses, which the kernel must decline with None when they
    change the step math; see ``same_method``)."""
    def add(fn: Callable) -> Callable:
        _TABLE[cell_type] = fn
        return fn
    return add


def find(cell) -> Callable | None:
    """The kernel registered for the nearest class of ``cell``, or None."""
    for cls in type(cell).__mro__:
        if cls in _TABLE:
            return _TABLE[cls]
    return None


def run(cell, x, state, lengths=None):
    """``cell`` over x (T, B, F) from ``state`` on its kernel: (out, final state), or None
    when there is none, kernels are off, the shapes are empty, torch is tracing, or the
    kernel declines. Under autograd the result is twice differentiable (see
    ``recompute``)."""
    fn = find(cell)
    if fn is None or not enabled() or 0 in x.shape[:2] or not eager(x):
        return None
    return fn(cell, x, state, lengths)


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

    def __init__(self, w, batch: int, steps: int = 100) -> None:
        import torch

        # the thread policy only concerns CPU work (n = 1 switches it off)
        self.torch, self.n = torch, torch.get_num_threads() if w.device.type == "cpu" else 1
        self.w_t, self.packed = w.t(), None
        # the reorder costs about one GEMM's time: worth it for many steps of a big weight
        if (w.device.type == "cpu" and w.dtype == torch.float32
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


__all__ = ["STATS", "enabled", "use_kernels", "eager", "register", "find", "run",
           "same_method", "step_mask", "RecurrentGemm"]

# the kernel modules register themselves in the table
from . import clockwork, depth_gated, grid, gru, lstm, recompute  # noqa: E402,F401
