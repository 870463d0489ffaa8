"""Data-parallel training across processes and machines with torch.distributed (DDP).

Started by ``torchrun`` (which sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT), the
trainer joins a process group -- gloo on CPU, NCCL when CUDA is present -- and wraps the
model in ``DistributedDataParallel``, which averages the gradients in backward. With a
global batch of B streams and W processes, rank r reads streams r*B/W .. (r+1)*B/W - 1, so
the W ranks together see exactly the windows one process with batch B would see and, the
loss being a mean over equal shares, the averaged gradient is that process's gradient.

What the ranks must agree on goes through one small all-reduce per step (``agree``): the
logged loss (mean over ranks), whether anyone was asked to stop, and the elapsed time the
time budget is judged by -- so every rank stops at the same step and none waits forever.
Validation splits its streams over the ranks (uneven shares are fine: there is no
collective inside the loop) and sums nats and counts once.

A checkpoint holds the whole batch's carried state (gathered along each state tensor's
batch dimension) and every rank's RNG, written by rank 0 alone, so a run resumes with any
number of processes that divides the batch. A collective that fails because another
process died raises ``PeerLost`` (one line); the process group's timeout bounds a hang.
"""
from __future__ import annotations

import os
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from .checkpoint import flatten_state, unflatten_state
from .errors import UserError

DEFAULT_TIMEOUT = 300.0


class PeerLost(RuntimeError):
    """Another process of the job died or stopped answering; the job cannot go on."""


class Distributed:
    """This process's place in the job; ``Distributed()`` is the single-process case."""

    def __init__(self, rank: int = 0, world: int = 1, local_rank: int = 0,
                 device: torch.device | None = None, owns_group: bool = False) -> None:
        self.rank, self.world, self.local_rank = rank, world, local_rank
        self.device = device or torch.device("cpu")
        self.owns_group = owns_group
        self.step = 0                              # for messages only

    @classmethod
    def from_env(cls, timeout: float = DEFAULT_TIMEOUT) -> "Distributed":
        """Join the job torchrun started (or the process group already set up)."""
        owns = False
        if not dist.is_initialized():
            if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
                return cls()
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            dist.init_process_group(backend, timeout=timedelta(seconds=timeout))
            owns = True
        local = int(os.environ.get("LOCAL_RANK", "0"))
        device = torch.device("cpu")
        if dist.get_backend() == "nccl":
            device = torch.device("cuda", local)
            torch.cuda.set_device(device)
        return cls(dist.get_rank(), dist.get_world_size(), local, device, owns)

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            # every rank finishes before any tears down: without this barrier a rank that
            # destroyed its group while the other was still in its last collective aborted
            # at exit now and then (SIGABRT, "terminate called without an active
            # exception"; 2 of 20 two-rank runs, 0 of 60 with it)
            dist.barrier()
            dist.destroy_process_group()

    # -- shares -----------------------------------------------------------------------------
    def part(self, batch: int) -> tuple[int, int]:
        """This rank's streams of a global batch (equal shares; refuses what does not divide)."""
        if batch % self.world:
            raise UserError(f"--batch {batch} does not divide over {self.world} processes; "
                            f"give a batch that is a multiple of the process count")
        share = batch // self.world
        return self.rank * share, (self.rank + 1) * share

    def share(self, n: int) -> tuple[int, int]:
        """This rank's part of n items, as even as possible (some may be empty)."""
        return n * self.rank // self.world, n * (self.rank + 1) // self.world

    def wrap(self, model: nn.Module) -> nn.Module:
        if not self.active:
            return model
        ids = [self.device] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def seed(self, seed: int) -> None:
        """Give ranks other than 0 their own random stream (dropout masks differ)."""
        if self.rank:
            torch.manual_seed(seed + 7919 * self.rank)

    # -- collectives ------------------------------------------------------------------------
    def _call(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except RuntimeError as e:
            raise self.lost(e) from None

    def lost(self, e: BaseException) -> PeerLost:
        """The one-line error for a failed collective (here or inside DDP's backward)."""
        first = (str(e).strip().splitlines() or [e.__class__.__name__])[0]
        first = re.sub(r"^\[[^\]]*\]\s*", "", first)[:160]           # gloo's source position
        return PeerLost(f"rank {self.rank}: lost contact with another process at step "
                        f"{self.step} ({first}); the job stops -- continue it from the last "
                        f"checkpoint with --resume")

    def is_comm_error(self, e: BaseException) -> bool:
        """Whether an error raised while training came from the communication layer."""
        return self.active and (isinstance(e, dist.DistError) or any(
            k in str(e) for k in ("gloo", "NCCL", "Connection", "ProcessGroup", "timed out")))

    def sums(self, *values: float) -> list[float]:
        """Each value summed over all ranks (float64)."""
        if not self.active:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        self._call(lambda: dist.all_reduce(t))
        return t.tolist()

    def agree(self, loss: float, stop: bool, elapsed: float) -> tuple[float, bool, float]:
        """Mean loss, whether any rank must stop, mean elapsed time: the same on every rank."""
        if not self.active:
            return loss, stop, elapsed
        total, stops, time_sum = self.sums(loss, float(stop), elapsed)
        return total / self.world, stops > 0, time_sum / self.world

    def broadcast_int(self, value: int) -> int:
        if not self.active:
            return value
        t = torch.tensor([value], dtype=torch.int64, device=self.device)
        self._call(lambda: dist.broadcast(t, 0))
        return int(t.item())

    def guard(self, make: Callable[[], Any]) -> Any:
        """Run a setup step on every rank; if any rank fails, all stop with a message."""
        try:
            result, failed = make(), 0.0
        except Exception:
            self.sums(1.0)
            raise
        if self.sums(failed)[0] > 0:
            raise UserError(f"rank {self.rank}: another process failed to start (its "
                            f"message says why); nothing was trained")
        return result

    # -- state for checkpoints --------------------------------------------------------------
    def gather_state(self, state: Any, dims: list[int]) -> Any:
        """The carried state of the whole batch (every rank's streams, in rank order)."""
        if not self.active or state is None:
            return state
        tensors, structure = flatten_state(state)
        full = {}
        for (name, t), d in zip(tensors.items(), dims):
            parts = [torch.empty_like(t) for _ in range(self.world)]
            self._call(lambda p=parts, x=t: dist.all_gather(p, x.contiguous()))
            full[name] = torch.cat(parts, dim=d)
        return unflatten_state(structure, full)

    def split_state(self, state: Any, dims: list[int]) -> Any:
        """This rank's streams of a whole-batch state saved by ``gather_state``."""
        if state is None or not self.active:
            return state
        tensors, structure = flatten_state(state)
        mine = {}
        for (name, t), d in zip(tensors.items(), dims):
            lo, hi = self.part(t.shape[d])
            mine[name] = t.narrow(d, lo, hi - lo).to(self.device).contiguous()
        return unflatten_state(structure, mine)

    def gather_rng(self) -> dict[str, Tensor]:
        """Every rank's CPU random state by checkpoint name ("rng", "rng.1", ...)."""
        mine = torch.get_rng_state()
        if not self.active:
            return {"rng": mine}
        parts = [torch.empty_like(mine, device=self.device) for _ in range(self.world)]
        self._call(lambda: dist.all_gather(parts, mine.to(self.device)))
        return {("rng" if r == 0 else f"rng.{r}"): p.cpu() for r, p in enumerate(parts)}

    def restore_rng(self, tensors: dict[str, Tensor], seed: int, step: int) -> None:
        """This rank's saved random state, or a fresh stream when the run had fewer ranks."""
        name = "rng" if self.rank == 0 else f"rng.{self.rank}"
        if name in tensors:
            torch.set_rng_state(tensors[name])
        else:
            torch.manual_seed(seed + 7919 * self.rank + 104729 * step)


def state_batch_dims(model: nn.Module) -> list[int]:
    """For each tensor of the model's recurrent state (flattened), its batch dimension."""
    was = model.training
    model.eval()
    device = next(model.parameters()).device
    with torch.no_grad():
        shapes = []
        for b in (1, 2):
            _, state = model(torch.zeros(1, b, dtype=torch.long, device=device))
            shapes.append([t.shape for t in flatten_state(state)[0].values()])
    model.train(was)
    dims = []
    for one, two in zip(*shapes):
        d = [i for i, (a, b) in enumerate(zip(one, two)) if a != b]
        if len(d) != 1:
            raise UserError(f"cannot split this architecture's recurrent state over processes "
                            f"(state shapes {tuple(one)} / {tuple(two)} for batch 1 / 2)")
        dims.append(d[0])
    return dims
