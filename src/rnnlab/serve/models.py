"""The models a server holds: loading, a description for /v1/models, and the batcher.

A served model is one loaded predictor (``rnnlab.infer.Predictor``) shared by every
session: each session gets a ``fork`` of it (its own incremental state, the same weights),
whose steps go through the model's ``Batcher``. The batcher is one thread per model that
takes every step waiting in its queue (from all sessions, and all beams of a char-level
search) and runs them as one batched step (``Predictor.step_many``): one matrix product per
layer for the whole batch, where the weights are read from memory once instead of once
per session. That is what keeps latency flat as typists are added (docs/results/serve.md).

Loaders: ``load_model(path)`` asks each function in ``LOADERS`` in turn; a loader returns
None for a folder that is not its kind. A run directory of ``rnnlab train`` is the one kind
today; an export format (an ONNX folder) is one more loader that returns an object with the
predictor interface used here (``fork``, ``step``, ``step_many``, ``suggest``, ``level``,
``vocab``, ``cached_tokens``), put first in the list.
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor

from ..errors import UserError
from ..infer import Predictor
from ..rundir import RunDir


def load_run(path: Path) -> tuple[Predictor, dict] | None:
    """A run directory of ``rnnlab train`` (None when ``path`` holds no config.json)."""
    if not (path / "config.json").is_file():
        return None
    pred = Predictor.load(path)
    cfg = RunDir(path).config().get("model", {})
    info = {"architecture": cfg.get("arch"), "level": pred.level, "vocab_size": len(pred.vocab),
            "hidden": cfg.get("hidden"), "layers": cfg.get("layers"),
            "parameters": sum(p.numel() for p in pred.model.parameters()), "format": "run"}
    return pred, info


LOADERS: list[Callable[[Path], tuple[Any, dict] | None]] = [load_run]


def load_model(path: str | Path) -> tuple[Any, dict]:
    """The predictor and description of the model in ``path``, by the first loader that
    knows the folder."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{path}: no such directory (give a run directory of `rnnlab train`)")
    for loader in LOADERS:
        found = loader(path)
        if found is not None:
            return found
    raise UserError(f"{path}: not a run directory of `rnnlab train` (no config.json)")


def _nbytes(obj: Any) -> int:
    if isinstance(obj, Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, (tuple, list)):
        return sum(_nbytes(o) for o in obj)
    return 0


class Batcher:
    """One thread that runs the steps queued by many sessions as batched steps.

    ``batcher.step_many(tokens, states)`` blocks the calling thread until its steps are done;
    whatever else is queued by then rides in the same batch (up to ``max_batch`` pairs)."""

    def __init__(self, predictor: Any, max_batch: int = 256) -> None:
        self.predictor = predictor
        self.max_batch = max_batch
        self.batches = 0                       # statistics: batched calls and pairs stepped
        self.pairs = 0
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="rnnlab-batcher", daemon=True)
        self._thread.start()

    def step_many(self, tokens: list[int], states: list[Any]) -> list[tuple[Tensor, Any]]:
        done: Future = Future()
        self._queue.put((list(tokens), list(states), done))
        return done.result()

    def step(self, token: int, state: Any) -> tuple[Tensor, Any]:
        return self.step_many([token], [state])[0]

    def close(self) -> None:
        self._queue.put(None)

    def _loop(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            jobs, n = [job], len(job[0])
            while n < self.max_batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)                 # finish this batch, then stop
                    break
                jobs.append(more)
                n += len(more[0])
            self._run(jobs)

    def _run(self, jobs: list) -> None:
        tokens = [t for job in jobs for t in job[0]]
        states = [s for job in jobs for s in job[1]]
        try:
            out = self.predictor.step_many(tokens, states)
        except Exception as e:  # noqa: BLE001  (re-raised in every waiting session)
            for job in jobs:
                job[2].set_exception(e)
            return
        self.batches += 1
        self.pairs += len(tokens)
        i = 0
        for job in jobs:
            job[2].set_result(out[i:i + len(job[0])])
            i += len(job[0])


@dataclass
class ServedModel:
    """One model being served: its name, description, shared predictor and batcher."""
    name: str
    info: dict
    predictor: Any
    batcher: Batcher = field(init=False)
    entry_bytes: int = field(init=False)      # memory per token a session has read

    def __post_init__(self) -> None:
        self.batcher = Batcher(self.predictor)
        logits, state = self.predictor.fork().read([])           # the start token's
        self.entry_bytes = _nbytes(logits) + _nbytes(state)

    def session(self) -> Any:
        """A fresh predictor for one session: own state, steps through the batcher."""
        pred = self.predictor.fork()
        pred.step = self.batcher.step                 # instance attributes: this fork only
        pred.step_many = self.batcher.step_many
        return pred

    def describe(self) -> dict:
        return {"name": self.name, **self.info}


def load_models(paths: list[str | Path]) -> dict[str, ServedModel]:
    """Every model by name (its folder's name); the first is the default."""
    models: dict[str, ServedModel] = {}
    for path in paths:
        name = Path(path).resolve().name
        if name in models:
            raise UserError(f"two models are named {name!r} (folder names must differ)")
        pred, info = load_model(path)
        models[name] = ServedModel(name, info, pred)
    if not models:
        raise UserError("give at least one run directory to serve")
    return models
