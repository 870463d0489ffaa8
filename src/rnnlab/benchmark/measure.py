"""Measurement primitives of the speed harness: interleaved timing, GEMM FLOP counts, the
torch.nn references and the switch to the plain Python loop.

Timing is *interleaved*: one round calls every contender once (in a rotating order), and
the rounds repeat, so slow drifts of a shared machine's load hit all contenders alike; we
report the median of each and ratios of medians.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from .. import build
from ..kernels import use_kernels


@dataclass(frozen=True)
class Shape:
    """One benchmark shape: T steps, B sequences, H hidden units, F input features."""
    name: str
    T: int
    B: int
    H: int
    F: int

    def label(self) -> str:
        return f"{self.name} (T={self.T}, B={self.B}, H={self.H}, F={self.F})"


# the torch.nn counterpart of each registered name that has one (besides nn.LSTM, the
# reference for everything)
OWN_REF: dict[str, tuple[str, Callable[[int, int], nn.Module]]] = {
    "rnn": ("torch.nn.RNN", lambda f, h: nn.RNN(f, h)),
    "rnn_relu": ("torch.nn.RNN(relu)", lambda f, h: nn.RNN(f, h, nonlinearity="relu")),
    "gru": ("torch.nn.GRU", lambda f, h: nn.GRU(f, h)),
    "clockwork_rnn": ("torch.nn.RNN", lambda f, h: nn.RNN(f, h)),
}


def interleaved(fns: dict[str, Callable[[], object]], reps: int,
                rounds: dict[str, int] | None = None) -> dict[str, list[float]]:
    """Seconds per call of every fn, ``reps`` rounds (``rounds[name]`` caps a slow one),
    one warm-up call first for each fn that is not capped (a capped one is the plain
    Python loop, which has nothing to warm up)."""
    for name, fn in fns.items():
        if not rounds or name not in rounds:
            fn()
    names = list(fns)
    samples: dict[str, list[float]] = {k: [] for k in names}
    for r in range(reps):
        k0 = r % len(names)
        for name in names[k0:] + names[:k0]:
            if rounds and r >= rounds.get(name, reps):
                continue
            t0 = time.perf_counter()
            fns[name]()
            samples[name].append(time.perf_counter() - t0)
    return samples


def median(xs: list[float]) -> float:
    s = sorted(xs)
    n = len(s)
    return float("nan") if n == 0 else (s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2]))


def python_loop(module: nn.Module):
    """Run ``module`` as its cells' Python loop: no torch fused op, no rnnlab kernel."""
    return use_kernels(False)


def force_kernels(module: nn.Module) -> list[nn.Module]:
    """Make the torch.nn fronts in ``module`` take rnnlab's kernels instead of torch's
    fused op (to time the kernels on the plain configurations): an instance-level
    override of the fronts' path choice, for benchmarks only. Returns the fronts."""
    fronts = [m for m in module.modules() if hasattr(m, "_prefers_kernel")]
    for m in fronts:
        m._prefers_kernel = lambda: True
    return fronts


@contextlib.contextmanager
def no_torch_fused(module: nn.Module) -> Iterator[None]:
    """``force_kernels`` for the duration of a block."""
    fronts = force_kernels(module)
    try:
        yield
    finally:
        for m in fronts:
            del m._prefers_kernel


def gemm_flops(module: nn.Module, x: Tensor) -> int:
    """Matrix-multiply FLOPs of one forward pass (elementwise work not counted), counted
    on rnnlab's own path, so work a kernel skips (Clockwork's idle modules) is not counted.
    """
    mapping = {torch.ops.aten.addmm_: _addmm_flop,
               torch.ops.mkldnn._linear_pointwise: _linear_flop}
    counter = FlopCounterMode(display=False, custom_mapping=mapping)
    with torch.no_grad(), no_torch_fused(module), counter:
        module(x)
    return int(counter.get_total_flops())


def _addmm_flop(self_shape, a_shape, b_shape, out_shape=None, **kwargs) -> int:
    return 2 * a_shape[0] * a_shape[1] * b_shape[1]


def _linear_flop(x_shape, w_shape, *args, out_shape=None, **kwargs) -> int:
    """oneDNN's linear (the kernels' per-step GEMM): 2 · rows · K · N."""
    rows = 1
    for d in x_shape[:-1]:
        rows *= d
    return 2 * rows * x_shape[-1] * out_shape[-1]


def lstm_flops(shape: Shape) -> int:
    """GEMM FLOPs of torch.nn.LSTM's forward: 2 · T · B · 4H · (F + H)."""
    return 2 * shape.T * shape.B * 4 * shape.H * (shape.F + shape.H)


def make_arch(name: str, shape: Shape, options: dict | None = None) -> nn.Module:
    torch.manual_seed(0)
    if name.startswith("torch."):
        return make_torch(name, shape)
    return build(name, shape.F, shape.H, **(options or {}))


def make_torch(name: str, shape: Shape) -> nn.Module:
    """'torch.nn.LSTM' or an OWN_REF label built at this shape."""
    torch.manual_seed(0)
    if name == "torch.nn.LSTM":
        return nn.LSTM(shape.F, shape.H)
    for label, factory in OWN_REF.values():
        if label == name:
            return factory(shape.F, shape.H)
    raise ValueError(f"unknown torch reference {name!r}")


def forward_fn(module: nn.Module, x: Tensor, loop: bool = False) -> Callable[[], None]:
    def run():
        with torch.no_grad(), (python_loop(module) if loop else contextlib.nullcontext()):
            module(x)
    return run


def train_fn(module: nn.Module, x: Tensor, loop: bool = False) -> Callable[[], None]:
    """One forward + backward of sum(out), the input requiring grad (as inside a model)."""
    xr = x.detach().clone().requires_grad_()

    def run():
        module.zero_grad(set_to_none=True)
        xr.grad = None
        with python_loop(module) if loop else contextlib.nullcontext():
            out = module(xr)[0]
            out.sum().backward()
    return run


def step_contenders(hidden: int, layers: int, tokens: int, device: str = "cpu"):
    """Per-token inference through a stacked LSTM core at batch 1, state carried: torch.nn
    .LSTM called once per token, rnnlab.LSTM likewise, and rnnlab's Stepper. Returns
    (name -> callable running ``tokens`` tokens, the torch module)."""
    from ..layers import LSTM
    from ..stepper import Stepper

    torch.manual_seed(0)
    ref = nn.LSTM(hidden, hidden, layers).to(device)
    front = LSTM(hidden, hidden, layers).to(device)
    front.load_state_dict(ref.state_dict())
    stepper = Stepper(front)
    xs = torch.randn(tokens, 1, hidden, device=device)

    def per_token(call):
        def run():
            state = None
            with torch.no_grad():
                for t in range(tokens):
                    _, state = call(xs[t], state)
        return run
    fns = {"torch.nn.LSTM": per_token(lambda x, s: ref(x[None], s)),
           "rnnlab.LSTM": per_token(lambda x, s: front(x[None], s)),
           "Stepper": per_token(stepper)}
    return fns, ref
