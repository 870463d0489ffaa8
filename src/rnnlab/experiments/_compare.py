"""Helpers shared by the experiments that compare architectures (issue 7): equal parameter
budgets, the architecture list, Markdown tables, thread counts and plotting set-up."""
from __future__ import annotations

import contextlib
from typing import Callable, Iterable, Sequence

import torch
from torch import nn

from .. import available, build


def architectures(names: Sequence[str] = ()) -> list[str]:
    """The names asked for, or every registered architecture when none are given."""
    known = available()
    names = list(names) or list(known)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown architecture(s) {', '.join(unknown)}; "
                         f"available: {', '.join(known)}")
    return names


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def core_params(arch: str, input_size: int, hidden: int, num_layers: int = 1) -> tuple[int, int]:
    """(parameter count, output size) of ``build(arch, input_size, hidden)``, built on the
    meta device so that no memory is spent."""
    with torch.device("meta"):
        core = build(arch, input_size, hidden, num_layers)
    return count_params(core), int(core.output_size)


def hidden_for_budget(arch: str, input_size: int, budget: int,
                      extra: Callable[[int], int] = lambda out: 0, num_layers: int = 1,
                      lo: int = 1, hi: int = 4096) -> int:
    """The largest hidden size whose core plus ``extra(output_size)`` (the head) stays within
    ``budget`` parameters. Sizes an architecture rejects (e.g. not divisible by its number of
    modules) are skipped."""
    def total(h: int) -> int | None:
        try:
            n, out = core_params(arch, input_size, h, num_layers)
        except (ValueError, RuntimeError):
            return None
        return n + extra(out)

    valid = [h for h in range(lo, min(hi, lo + 64) + 1) if total(h) is not None]
    if not valid:
        raise ValueError(f"architecture {arch!r} accepts no hidden size in [{lo}, {lo + 64}]")
    step = max(1, valid[1] - valid[0]) if len(valid) > 1 else 1
    best = valid[0]
    a, b = 0, (hi - valid[0]) // step                   # search over h = valid[0] + k * step
    while a <= b:
        k = (a + b) // 2
        h = valid[0] + k * step
        n = total(h)
        if n is not None and n <= budget:
            best, a = h, k + 1
        else:
            b = k - 1
    return best


def ints(value) -> tuple[int, ...]:
    """A setting that takes one int or several (``depth=8`` or ``depth=4,8``), as a tuple."""
    return tuple(int(v) for v in value) if isinstance(value, (tuple, list)) else (int(value),)


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence]) -> str:
    """A GitHub Markdown table; floats are printed with 4 significant digits."""
    def cell(v) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


@contextlib.contextmanager
def threads(n: int):
    """Run with ``torch.set_num_threads(n)`` (n <= 0 leaves the setting alone)."""
    old = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def pyplot():
    """matplotlib.pyplot with the Agg backend (no display needed)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt
