"""Typing sessions and the limits that keep a server's memory bounded.

A session is one WebSocket client. Its recurrent state lives in a predictor fork that
remembers the state after every token of the client's text (so typing costs one step per
new token and a deletion goes back to a saved state). That memory grows with the text:
``entry_bytes`` (one state and one logits vector) per token. Two limits bound the total:

- ``max_sessions``: sessions holding state; one more drops the oldest idle one's state;
- ``max_cache_mb``: the state of all sessions together; past it the oldest idle sessions'
  state is dropped until the total fits.

A dropped session keeps its connection: clients send their whole text with every
keystroke, so its next message is read from scratch into a fresh fork ("rebuilt": true in
that answer), with the same suggestions, only slower once. Sessions busy computing are
never dropped. The table is used from the event loop thread only.
"""
from __future__ import annotations

import itertools
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from .models import ServedModel


@dataclass
class Limits:
    """Every limit the server enforces (see docs/serve.md)."""
    max_text: int = 4000             # characters of text in one request or message
    max_message: int = 64 * 1024     # bytes of one HTTP body or WebSocket message
    max_k: int = 20                  # suggestions per answer
    max_sessions: int = 200          # typing sessions holding recurrent state
    max_cache_mb: float = 1024.0     # recurrent state of all sessions together
    max_connections: int = 1000      # open WebSocket connections (more: closed with 1013)
    workers: int = 256               # threads computing suggestions (they mostly wait)


@dataclass
class Session:
    id: int
    model: ServedModel | None = None
    pred: Any = None                 # the predictor fork; None: no state (new or dropped)
    busy: bool = False
    dropped: bool = False            # its state was dropped since its last answer
    last_used: float = field(default_factory=time.monotonic)

    def cache_bytes(self) -> int:
        if self.pred is None or self.model is None:
            return 0
        return (self.pred.cached_tokens + 1) * self.model.entry_bytes


class Sessions:
    """The open sessions, least recently used first."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._open: OrderedDict[int, Session] = OrderedDict()
        self._ids = itertools.count(1)
        self.dropped_total = 0

    def open(self) -> Session:
        s = Session(next(self._ids))
        self._open[s.id] = s
        return s

    def close(self, s: Session) -> None:
        self._open.pop(s.id, None)
        s.pred = None

    def __len__(self) -> int:
        return len(self._open)

    def begin(self, s: Session, model: ServedModel) -> tuple[Any, bool]:
        """The session's predictor for ``model`` (a fresh one after a drop or a model
        change), marked busy; and whether it was rebuilt after a drop."""
        rebuilt = s.dropped
        s.dropped = False
        if s.pred is None or s.model is not model:
            s.model, s.pred = model, model.session()
        s.busy = True
        self._open.move_to_end(s.id)
        self.enforce(keep=s)
        return s.pred, rebuilt

    def end(self, s: Session) -> None:
        s.busy = False
        s.last_used = time.monotonic()
        self.enforce()

    def holding(self) -> int:
        return sum(1 for s in self._open.values() if s.pred is not None)

    def cache_bytes(self) -> int:
        return sum(s.cache_bytes() for s in self._open.values())

    def enforce(self, keep: Session | None = None) -> None:
        """Drop the oldest idle sessions' state until both limits hold."""
        budget = self.limits.max_cache_mb * 2**20
        holding, total = self.holding(), self.cache_bytes()
        for s in list(self._open.values()):
            if holding <= self.limits.max_sessions and total <= budget:
                return
            if s is keep or s.busy or s.pred is None:
                continue
            total -= s.cache_bytes()
            holding -= 1
            s.pred, s.dropped = None, True
            self.dropped_total += 1

    def stats(self) -> dict:
        return {"connections": len(self), "sessions_with_state": self.holding(),
                "cache_mb": round(self.cache_bytes() / 2**20, 3),
                "dropped_total": self.dropped_total}
