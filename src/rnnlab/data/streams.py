"""B contiguous streams of a token sequence, read a window at a time.

``Streams(ids, B)[p:p + T]`` is ``batchify(ids, B)[p:p + T]`` -- the (T, B) int64 window of
time steps p .. p + T - 1 of every stream, stream b being ids[b * N : (b + 1) * N] -- but it
copies only that window, so ``ids`` may be a ``TokenSlice`` of a store far bigger than memory.
``lo``/``hi`` keep streams lo .. hi - 1 only (one rank's share of a distributed batch).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from ..errors import UserError


class Streams:
    def __init__(self, ids: Sequence[int] | Tensor | np.ndarray, batch: int, lo: int = 0,
                 hi: int | None = None) -> None:
        if isinstance(ids, (list, tuple)):
            ids = np.asarray(ids, dtype=np.int64)
        elif isinstance(ids, Tensor):
            ids = ids.detach().cpu().numpy()
        self.ids, self.batch = ids, batch
        self.length = len(ids) // batch                                      # N
        if self.length < 2:
            raise UserError(f"text too short: {len(ids)} tokens cannot fill {batch} streams "
                            f"of at least 2 tokens; give more text or a smaller --batch")
        self.lo, self.hi = lo, batch if hi is None else hi

    @property
    def shape(self) -> tuple[int, int]:
        return self.length, self.hi - self.lo

    def _read(self, start: int, count: int) -> np.ndarray:
        read = getattr(self.ids, "read", None)
        return read(start, count) if read else self.ids[start: start + count]

    def __getitem__(self, index: slice) -> Tensor:
        if not isinstance(index, slice) or index.step not in (None, 1):
            raise TypeError("Streams supports plain slices of time steps only")
        start, stop, _ = index.indices(self.length)
        count = max(0, stop - start)
        out = np.empty((self.hi - self.lo, count), dtype=np.int64)          # (B, T)
        for row, b in enumerate(range(self.lo, self.hi)):
            out[row] = self._read(b * self.length + start, count)
        return torch.from_numpy(out).t().contiguous()                       # (T, B)
