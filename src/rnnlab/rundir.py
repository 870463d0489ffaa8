"""Run directories: what a training run writes, and the promises rnnlab keeps about them.

    RUN/.rnnlab-run            marker, written before anything else: the folder is rnnlab's
    RUN/.rnnlab-lock           exclusive lock (flock) of the process writing, with its pid
    RUN/config.json            format, version, model / training / data settings
    RUN/vocab.json             the vocabulary
    RUN/model.safetensors      best model so far (lowest validation loss); best.json says when
    RUN/metrics.jsonl          one strict-JSON object per line (training steps, evaluations)
    RUN/last.json              names the newest complete checkpoint folder
    RUN/checkpoints/step-N/    model.safetensors, trainer.safetensors (optimizer moments,
                               RNG, carried recurrent state), trainer.json (step, data
                               position, schedule, optimizer settings)

- rnnlab writes only into a folder that is new, empty, or carries the marker, and there it
  creates, changes or deletes only the names above (and its own ``.tmp-*`` temp files).
- One writer: training holds an exclusive ``flock`` on the lock file for as long as it runs;
  the kernel drops it when the process dies, so a killed run never leaves the folder locked.
- Every JSON file but metrics.jsonl carries a checksum, every tensor file its own
  (``rnnlab.checkpoint``); loading verifies them and checks types and sizes before
  building anything, so damage is a one-line error, never a wrong answer.
"""
from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from torch import Tensor

from .checkpoint import (
    TEMP_PREFIX,
    atomic_write_bytes,
    fsync_dir,
    load_tensors,
    read_json,
    save_tensors,
    write_json,
)
from .data.text import LEVELS, Vocab
from .errors import UserError
from .layers.registry import available
from .models.lm import LMConfig
from .settings import from_json

FORMAT = "rnnlab-run"
VERSION = 2
MARKER = ".rnnlab-run"
LOCK = ".rnnlab-lock"
OWN_FILES = ("config.json", "vocab.json", "model.safetensors", "best.json", "metrics.jsonl",
             "last.json")
_CHECKPOINT = re.compile(r"step-\d{9}")
_MARKER_TEXT = (b"This folder is an rnnlab run directory. rnnlab creates, changes and deletes "
                b"only the files it made here.\n")


class RunDir:
    """A run directory: read freely; write only after ``claim`` (ownership and lock)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock_fd: int | None = None

    # -- ownership and the writer's lock --------------------------------------------------
    def is_ours(self) -> bool:
        return (self.path / MARKER).is_file()

    def claim(self, fresh: bool) -> bool:
        """Take the folder for writing. ``fresh``: start a run here (refused if the folder
        is someone else's or holds a run with a checkpoint; a run that stopped before its
        first checkpoint is taken over, the return value says so). Otherwise: resume."""
        p = self.path
        if p.exists() and not p.is_dir():
            raise UserError(f"{p}: exists and is not a folder; choose another --out")
        if not fresh and not p.is_dir():
            raise UserError(f"{p}: no such run directory; start it without --resume")
        self._check_not_foreign()
        self._created = not p.exists()
        p.mkdir(parents=True, exist_ok=True)
        self._lock()
        try:
            self._check_not_foreign()                  # again, now that we hold the lock
            if not self.is_ours():
                _write_marker(p)
            self._remove_temps()
            if not fresh:
                return False
            if self.last() is not None:
                raise UserError(f"{p} already holds a run; pass --resume to continue it "
                                f"or choose another --out")
            stale = [n for n in OWN_FILES if (p / n).exists()] + self._checkpoints()
            self.clear()
            return bool(stale)
        except BaseException:
            self.release()
            raise

    def _check_not_foreign(self) -> None:
        if not self.path.is_dir() or self.is_ours():
            return
        others = sorted(e.name for e in self.path.iterdir() if e.name != LOCK)
        if "config.json" in others and "checkpoints" in others:
            raise UserError(f"{self.path}: holds a run written by an older rnnlab (run format "
                            f"version 1, no {MARKER} marker); retrain it in another folder")
        if others:
            shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
            raise UserError(f"{self.path}: folder is not empty ({shown}) and is not an rnnlab "
                            f"run; rnnlab writes only into new, empty or its own folders: "
                            f"choose another --out")

    def _lock(self) -> None:
        fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise UserError(f"{self.path}: another rnnlab process (pid {holder}) is writing "
                            f"this run; wait for it to end or stop it, then try again"
                            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    def abandon(self) -> None:
        """Release; and if ``claim`` made the folder and nothing was written into it yet,
        remove it again (a run that failed while setting up leaves nothing behind)."""
        if self._lock_fd is not None and getattr(self, "_created", False):
            if {e.name for e in self.path.iterdir()} <= {MARKER, LOCK}:
                (self.path / MARKER).unlink(missing_ok=True)
                (self.path / LOCK).unlink(missing_ok=True)
                self.release()
                try:
                    self.path.rmdir()
                except OSError:                   # another writer arrived meanwhile: its
                    pass                          # folder now, and the first error stands
                return
        self.release()

    def release(self) -> None:
        """Drop the writer's lock (also dropped by the OS when the process ends)."""
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def __del__(self) -> None:             # a Trainer dropped without run() or close()
        self.release()

    def _require_lock(self) -> None:
        if self._lock_fd is None:
            raise RuntimeError(f"{self.path}: written without claim()")

    def clear(self) -> None:
        """Delete what a run wrote (the marker and lock stay); only under the lock."""
        self._require_lock()
        for name in OWN_FILES:
            (self.path / name).unlink(missing_ok=True)
        for name in self._checkpoints():
            shutil.rmtree(self.path / "checkpoints" / name)

    def _root(self) -> Path:
        """checkpoints/, refused if it is a symbolic link (it would lead outside the run)."""
        root = self.path / "checkpoints"
        if root.is_symlink():
            raise UserError(f"{root}: is a symbolic link; rnnlab keeps checkpoints only "
                            f"inside the run directory: make it a plain folder")
        return root

    def _checkpoints(self) -> list[str]:
        root = self._root()
        if not root.is_dir():
            return []
        return sorted(e.name for e in root.iterdir() if _CHECKPOINT.fullmatch(e.name))

    def _remove_temps(self) -> None:
        """Temp files and folders that killed writes left behind (ours by their prefix)."""
        for folder in (self.path, self._root()):
            if folder.is_dir():
                for e in folder.iterdir():
                    if e.name.startswith(TEMP_PREFIX):
                        if e.is_dir() and not e.is_symlink():
                            shutil.rmtree(e, ignore_errors=True)
                        else:
                            e.unlink(missing_ok=True)

    # -- settings and vocabulary ----------------------------------------------------------
    def create(self, config: dict, vocab: dict) -> None:
        """Write the settings and vocabulary of a fresh run (after ``claim(fresh=True)``)."""
        self._require_lock()
        write_json(self.path / "vocab.json", vocab, checked=True)
        self.write_config(config)
        (self.path / "metrics.jsonl").write_text("")

    def write_config(self, config: dict) -> None:
        self._require_lock()
        write_json(self.path / "config.json", {"format": FORMAT, "version": VERSION, **config},
                   checked=True)

    def config(self) -> dict:
        """config.json, checked: format, version, checksum, and its three sections."""
        if not self.path.is_dir():
            raise UserError(f"{self.path}: no such run directory; train one with "
                            f"`rnnlab train --out {self.path}`")
        where = self.path / "config.json"
        cfg = read_json(where, "config.json")
        if not isinstance(cfg, dict) or cfg.get("format") != FORMAT:
            raise UserError(f"{self.path}: not an rnnlab run directory (config.json has no "
                            f"format {FORMAT!r})")
        if cfg.get("version") != VERSION:
            raise UserError(f"{self.path}: run format version {cfg.get('version')!r} is not "
                            f"supported by this rnnlab (expects {VERSION}); retrain the model")
        cfg = read_json(where, "config.json", checked=True)
        for section in ("train", "model", "data"):
            if not isinstance(cfg.get(section), dict):
                raise UserError(f"{where}: no {section!r} settings; the run directory is "
                                f"damaged")
        return cfg

    def vocab(self) -> dict:
        return read_json(self.path / "vocab.json", "vocab.json", checked=True)

    # -- checkpoints ----------------------------------------------------------------------
    def save_checkpoint(self, step: int, model: dict[str, Tensor],
                        trainer: dict[str, Tensor], info: dict) -> None:
        """Write a complete checkpoint folder, then point last.json at it."""
        self._require_lock()
        root = self._root()
        root.mkdir(exist_ok=True)
        name = f"step-{step:09d}"
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=f"{TEMP_PREFIX}{name}."))
        try:
            save_tensors(tmp / "model.safetensors", model)
            save_tensors(tmp / "trainer.safetensors", trainer)
            write_json(tmp / "trainer.json", {"step": step, **info}, checked=True)
            final = root / name
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        fsync_dir(root)
        write_json(self.path / "last.json", {"dir": f"checkpoints/{name}", "step": step},
                   checked=True)
        for old in self._checkpoints():                    # only folders rnnlab named
            if old != name:
                shutil.rmtree(root / old, ignore_errors=True)

    def last(self) -> Path | None:
        """The newest complete checkpoint folder (None before the first one)."""
        where = self.path / "last.json"
        if not where.exists():
            return None
        ref = read_json(where, "last.json", checked=True)
        name, step = ref.get("dir"), ref.get("step")
        if (not isinstance(name, str) or not name.startswith("checkpoints/")
                or not _CHECKPOINT.fullmatch(name.removeprefix("checkpoints/"))
                or type(step) is not int or name != f"checkpoints/step-{step:09d}"):
            raise UserError(f"{where}: names {name!r}, not a checkpoint folder of this run "
                            f"(checkpoints/step-NNNNNNNNN); the run directory is damaged")
        folder = self._root() / name.removeprefix("checkpoints/")
        if not folder.is_dir() or folder.is_symlink():
            raise UserError(f"{where} points at a missing checkpoint {name!r}; the run "
                            f"directory is damaged")
        return folder

    def load_checkpoint(self) -> tuple[dict[str, Tensor], dict[str, Tensor], dict]:
        folder = self.last()
        if folder is None:
            raise UserError(f"{self.path}: the run stopped before its first checkpoint, so "
                            f"there is nothing to resume; start it again without --resume "
                            f"(it takes the folder over)")
        info = read_json(folder / "trainer.json", "trainer.json", checked=True)
        return (load_tensors(folder / "model.safetensors", "model weights"),
                load_tensors(folder / "trainer.safetensors", "trainer state"), info)

    def save_best(self, model: dict[str, Tensor], info: dict) -> None:
        self._require_lock()
        save_tensors(self.path / "model.safetensors", model)
        write_json(self.path / "best.json", info, checked=True)

    def model_weights(self) -> dict[str, Tensor]:
        """The best weights, or the last checkpoint's when no evaluation has run yet."""
        best = self.path / "model.safetensors"
        if best.exists():
            return load_tensors(best, "model weights")
        folder = self.last()
        if folder is None:
            raise UserError(f"{self.path}: holds no model weights yet (model.safetensors "
                            f"is missing); train or resume the run")
        return load_tensors(folder / "model.safetensors", "model weights")


    # -- the metrics log ------------------------------------------------------------------
    def log(self, record: dict) -> None:
        """Append one strict-JSON record to metrics.jsonl."""
        self._require_lock()
        line = json.dumps(record, allow_nan=False) + "\n"
        with open(self.path / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(line)

    def truncate_log(self, step: int) -> None:
        """Drop the records written after the checkpoint at ``step`` (the resumed run writes
        them again). Only the last line may be damaged (a write a crash tore); a damaged
        line before it is an error, never a silent cut."""
        self._require_lock()
        path = self.path / "metrics.jsonl"
        if not path.exists():
            return
        pieces = path.read_bytes().split(b"\n")
        if pieces[-1] == b"":
            pieces.pop()
        keep = []
        for i, raw in enumerate(pieces):
            rec = _record(raw)
            if rec is None:
                if i == len(pieces) - 1:
                    break                                        # the torn tail
                raise UserError(f"{path}: line {i + 1} of {len(pieces)} is damaged (not a "
                                f"JSON record with a step); only a torn last line is "
                                f"repaired: fix or delete that line, then resume")
            if rec["step"] <= step:
                keep.append(raw)
        atomic_write_bytes(path, b"".join(k + b"\n" for k in keep))


def _record(raw: bytes) -> dict | None:
    try:
        rec = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return rec if isinstance(rec, dict) and type(rec.get("step")) is int else None


def _no_constant(name: str):
    raise ValueError(name)


def _write_marker(path: Path) -> None:
    fd = os.open(path / MARKER, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        os.write(fd, _MARKER_TEXT)
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_dir(path)



def model_config(run: RunDir) -> LMConfig:
    """The run's model settings, every value checked, the architecture available."""
    cfg = from_json(LMConfig, run.config()["model"], f"{run.path}/config.json model")
    if cfg.vocab_size < 2:
        raise UserError(f"{run.path}/config.json: vocab_size {cfg.vocab_size} is too small; "
                        f"the run directory is damaged")
    if cfg.arch not in available():
        raise UserError(f"{run.path}: architecture {cfg.arch!r} is not available in this "
                        f"rnnlab (have: {', '.join(available())})")
    return cfg


def load_vocab(run: RunDir) -> Vocab:
    data = run.vocab()
    tokens = data.get("tokens")
    if (not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens)
            or len(set(tokens)) != len(tokens) or data.get("level") not in LEVELS):
        raise UserError(f"{run.path}/vocab.json: damaged (needs a level and a list of "
                        f"distinct token strings)")
    return Vocab(data["level"], tokens)
