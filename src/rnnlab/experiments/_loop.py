"""The one training loop the experiments share: seeded, checked, time-capped, resumable.

    loop = Loop(model, opt, batch=lambda step, gen: ..., loss=lambda batch: ...,
                steps=N, seed=0, check_every=M, check=lambda step: {...},
                stop=lambda metrics: ..., checkpoint=folder)
    result = loop.run(bar)    # LoopResult(steps, curve, stopped, seconds, train_seconds)

- Data: ``batch(step, gen)`` makes the step's batch from the loop's own torch.Generator,
  seeded by ``seed``; a fresh run also seeds torch's global RNG (dropout) with it.
  Evaluations should draw from generators of their own, seeded from fixed numbers, so that
  a check never shifts the training batches.
- A step: learning rate = base × ``schedule(step)`` (when given), forward, backward,
  optional gradient-norm clip, optimizer step.
- Checks: every ``check_every`` steps and after the last one, ``check(step)`` returns a dict
  of metrics. The curve records it with the step, ``loss`` (the mean training loss since
  the previous check) and ``train_seconds`` (wall time so far, checks left out).
  ``stop(metrics)`` true ends the run early ("stopped": "check").
- ``max_seconds`` ends the run after that much wall time, counted across resumes
  ("stopped": "time"); otherwise it runs all ``steps`` ("stopped": "steps").
- ``state``: a JSON-able dict the callbacks may read and change (e.g. a curriculum's level);
  it is saved and restored with the rest.
- Checkpoints: with ``checkpoint`` (a folder), every ``save_every`` steps and at the end the
  weights, the optimizer's moments, the data generator, torch's global RNG, the step, the
  curve, ``state`` and the elapsed time are written as an rnnlab run directory's checkpoint
  (rnnlab.rundir: marker, writer's lock, checksummed safetensors and strict JSON, atomic,
  no pickle). ``run()`` resumes from the folder's last checkpoint, so a
  stopped run continues exactly where it was; a finished one returns its result at once.
  ``key`` (any JSON value: the settings) is stored too, and a checkpoint made under another
  key is refused rather than silently continued.
The model may be an nn.Module or a dict of leaf tensors (the batched generation nets).
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import UserError
from ..rundir import RunDir

SCHEDULES = ("constant", "cosine", "linear")


def schedule_fn(name: str, steps: int, warmup: int = 0) -> Callable[[int], float]:
    """Learning-rate multiplier by step: linear warm-up over ``warmup`` steps, then constant,
    cosine decay to 0 or linear decay to 0 over the remaining steps."""
    if name not in SCHEDULES:
        raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, received {name!r}")

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if name == "constant":
            return 1.0
        frac = min(1.0, (step - warmup) / max(1, steps - warmup))
        return 0.5 * (1 + math.cos(math.pi * frac)) if name == "cosine" else 1.0 - frac
    return f


@dataclass
class LoopResult:
    steps: int                      # steps taken
    curve: list[dict]               # one dict per check: step, loss, the check's metrics
    stopped: str                    # "check", "time" or "steps"
    seconds: float                  # wall time, checks included, across resumes
    train_seconds: float            # the same without the checks


@dataclass
class Loop:
    model: nn.Module | dict[str, Tensor]
    optimizer: torch.optim.Optimizer
    batch: Callable[[int, torch.Generator], Any]
    loss: Callable[[Any], Tensor]
    steps: int
    seed: int = 0
    check_every: int = 0
    check: Callable[[int], dict] | None = None
    stop: Callable[[dict], bool] | None = None
    clip: float = 0.0
    schedule: Callable[[int], float] | None = None
    max_seconds: float = 0.0
    checkpoint: str | Path | None = None
    save_every: int = 0
    key: Any = None
    state: dict = field(default_factory=dict)
    units_per_step: int = 1         # what one step adds to the progress bar

    def __post_init__(self) -> None:
        self.gen = torch.Generator().manual_seed(self.seed)
        self.base_lr = [g["lr"] for g in self.optimizer.param_groups]
        self.step, self.curve, self.elapsed, self.done = 0, [], 0.0, ""
        self.check_seconds = 0.0
        self._loss_sum, self._loss_n = 0.0, 0

    # -- the loop ----------------------------------------------------------------------
    def run(self, bar=None) -> LoopResult:
        self._dir = None
        if self.checkpoint is not None:
            self._dir = RunDir(self.checkpoint)
            resume = self._dir.path.is_dir() and self._dir.is_ours() and \
                self._dir.last() is not None
            self._dir.claim(fresh=not resume)
        try:
            if self._dir is not None and resume:
                self._restore()
                if bar is not None:
                    bar.update(self.step * self.units_per_step)
            elif self.step == 0:
                torch.manual_seed(self.seed)        # dropout and the like: seeded too
            return self._run(bar)
        finally:
            if self._dir is not None:
                self._dir.release()

    def _run(self, bar) -> LoopResult:
        start = time.perf_counter() - self.elapsed
        while not self.done and self.step < self.steps:
            loss = self._train_step()
            self.step += 1
            if bar is not None:
                bar.update(self.units_per_step, loss=loss)
            self.elapsed = time.perf_counter() - start
            last = self.step >= self.steps
            checked = bool(self.check_every and self.step % self.check_every == 0) or last
            if checked and self._check():
                self.done = "check"
            elif self.max_seconds and self.elapsed > self.max_seconds:
                self.done = "time"
                if not checked:
                    self._check()
            elif last:
                self.done = "steps"
            self.elapsed = time.perf_counter() - start
            if self.checkpoint is not None and (
                    self.done or (self.save_every and self.step % self.save_every == 0)):
                self._save()
        self.done = self.done or "steps"
        return LoopResult(self.step, self.curve, self.done, round(self.elapsed, 2),
                          round(self.elapsed - self.check_seconds, 2))

    def _train_step(self) -> float:
        if self.schedule is not None:
            m = self.schedule(self.step)
            for g, lr in zip(self.optimizer.param_groups, self.base_lr):
                g["lr"] = lr * m
        loss = self.loss(self.batch(self.step, self.gen))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.clip:
            nn.utils.clip_grad_norm_(self._params(), self.clip)
        self.optimizer.step()
        value = float(loss.detach())
        self._loss_sum, self._loss_n = self._loss_sum + value, self._loss_n + 1
        return value

    def _check(self) -> bool:
        t = time.perf_counter()
        metrics = self.check(self.step) if self.check is not None else {}
        loss = self._loss_sum / self._loss_n if self._loss_n else math.nan
        loss = loss if math.isfinite(loss) else None      # (strict JSON in checkpoints)
        self.curve.append({"step": self.step, "loss": loss,
                           "train_seconds": round(self.elapsed - self.check_seconds, 3),
                           **metrics})
        self.check_seconds += time.perf_counter() - t
        self._loss_sum, self._loss_n = 0.0, 0
        return bool(self.stop is not None and self.stop(metrics))

    def _params(self) -> list[Tensor]:
        if isinstance(self.model, nn.Module):
            return list(self.model.parameters())
        return list(self.model.values())

    def _weights(self) -> dict[str, Tensor]:
        if isinstance(self.model, nn.Module):
            return self.model.state_dict()
        return dict(self.model)

    # -- checkpoints -------------------------------------------------------------------
    def _save(self) -> None:
        """Write a checkpoint of everything the next step depends on."""
        opt = self.optimizer.state_dict()
        tensors = {"gen": self.gen.get_state(), "rng": torch.get_rng_state()}
        for i, st in opt["state"].items():
            for k, v in st.items():
                if v is not None:
                    tensors[f"opt.{i}.{k}"] = v if isinstance(v, Tensor) else torch.tensor(v)
        info = {"key": self.key, "curve": self.curve, "elapsed": self.elapsed,
                "check_seconds": self.check_seconds,
                "done": self.done, "state": self.state, "param_groups": opt["param_groups"],
                "loss_sum": self._loss_sum if math.isfinite(self._loss_sum) else None,
                "loss_n": self._loss_n}
        self._dir.save_checkpoint(self.step, self._weights(), tensors, info)

    def _restore(self) -> None:
        folder = Path(self.checkpoint)
        weights, tensors, info = self._dir.load_checkpoint()
        if info.get("key") != _jsonable(self.key):
            raise UserError(f"{folder}: holds a checkpoint of other settings; remove it or "
                            f"choose another folder")
        with torch.no_grad():
            if isinstance(self.model, nn.Module):
                self.model.load_state_dict(weights)
            else:
                for k, v in self.model.items():
                    v.copy_(weights[k])
        groups = info["param_groups"]
        for g in groups:
            if "betas" in g:
                g["betas"] = tuple(g["betas"])
        state: dict[int, dict] = {}
        for name, v in tensors.items():
            if name.startswith("opt."):
                _, i, k = name.split(".", 2)
                state.setdefault(int(i), {})[k] = v
        self.optimizer.load_state_dict({"state": state, "param_groups": groups})
        self.gen.set_state(tensors["gen"])
        torch.set_rng_state(tensors["rng"])
        self.step, self.curve, self.elapsed = info["step"], info["curve"], info["elapsed"]
        self.check_seconds = info["check_seconds"]
        self.done, self._loss_n = info["done"], info["loss_n"]
        self._loss_sum = math.nan if info["loss_sum"] is None else info["loss_sum"]
        self.state.clear()
        self.state.update(info["state"])


def _jsonable(value: Any) -> Any:
    """value as it reads back from JSON (tuples become lists)."""
    import json
    return json.loads(json.dumps(value, default=str))
