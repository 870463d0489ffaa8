"""A small progress bar for training loops and experiments (stderr, one line, with ETA).

    bar = Progress(total=1000, desc="lstm")
    for step in ...:
        bar.update(1, loss=1.23)
    bar.close()

Quiet when stderr is not a terminal unless ``force=True``: then it prints a line at most
every ``interval`` seconds, so logs stay short.
"""
from __future__ import annotations

import sys
import time


def _fmt_time(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class Progress:
    def __init__(self, total: float | None, desc: str = "", unit: str = "it",
                 interval: float = 0.2, stream=None, enabled: bool = True) -> None:
        self.total, self.desc, self.unit = total, desc, unit
        self.stream = stream if stream is not None else sys.stderr
        self.tty = getattr(self.stream, "isatty", lambda: False)()
        self.interval = interval if self.tty else max(interval, 10.0)
        self.enabled = enabled
        self.n, self.start, self.last = 0.0, time.time(), 0.0
        self.metrics: dict[str, float] = {}

    def update(self, n: float = 1, **metrics: float) -> None:
        self.n += n
        self.metrics.update(metrics)
        now = time.time()
        if self.enabled and now - self.last >= self.interval:
            self.last = now
            self._draw(now)

    def line(self, now: float | None = None) -> str:
        now = now or time.time()
        elapsed = now - self.start
        parts = [self.desc] if self.desc else []
        if self.total:
            frac = min(1.0, self.n / self.total)
            filled = int(frac * 20)
            eta = elapsed / frac - elapsed if frac > 0 else 0.0
            parts.append(f"[{'#' * filled}{'.' * (20 - filled)}] {frac:4.0%}")
            parts.append(f"{_fmt_time(elapsed)}<{_fmt_time(eta)}")
        else:
            parts.append(f"{self.n:g} {self.unit} {_fmt_time(elapsed)}")
        parts += [f"{k} {v:.4g}" for k, v in self.metrics.items()]
        return "  ".join(parts)

    def _draw(self, now: float) -> None:
        text = self.line(now)
        if self.tty:
            self.stream.write("\r" + text[:150].ljust(150))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self._draw(time.time())
            if self.tty:
                self.stream.write("\n")
            self.stream.flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
