"""Run directories: everything a training run saves, with no pickle anywhere.

    RUN/config.json            format, version, model / training / data settings
    RUN/vocab.json             the vocabulary
    RUN/model.safetensors      best model so far (lowest validation loss); best.json says when
    RUN/metrics.jsonl          one JSON object per line (training steps, evaluations)
    RUN/last.json              points at the newest complete checkpoint folder
    RUN/checkpoints/step-N/    model.safetensors, trainer.safetensors (optimizer moments,
                               RNG, carried recurrent state), trainer.json (step, data
                               position, schedule, optimizer settings)

Tensors go to safetensors, everything else to JSON. Every file is written to a temp file,
fsynced and renamed; a checkpoint folder is complete before ``last.json`` is switched to
it, so a run killed at any moment leaves the previous checkpoint intact.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import Tensor

from .errors import UserError

FORMAT = "rnnlab-run"
VERSION = 1
_UMASK = os.umask(0)
os.umask(_UMASK)


# -- atomic files -------------------------------------------------------------------------
def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write data to path via a temp file in the same folder, fsync, rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)              # mkstemp makes 0600; honour the umask
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=1) + "\n").encode())


def read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: missing {what}; the run directory is incomplete") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: corrupt {what} ({e.__class__.__name__}); "
                        f"the run directory is damaged") from None


def save_tensors(path: Path, tensors: dict[str, Tensor]) -> None:
    data = {k: v.detach().to("cpu").clone().contiguous() for k, v in tensors.items()}
    atomic_write_bytes(path, st_save(data))


def load_tensors(path: Path, what: str = "tensors") -> dict[str, Tensor]:
    try:
        return st_load(Path(path).read_bytes())
    except FileNotFoundError:
        raise UserError(f"{path}: missing {what}; the run directory is incomplete") from None
    except Exception as e:                                      # safetensors' own errors
        raise UserError(f"{path}: corrupt {what} ({str(e).splitlines()[0][:80]})") from None


# -- nested recurrent state <-> flat tensors ----------------------------------------------
def flatten_state(state: Any, prefix: str = "state") -> tuple[dict[str, Tensor], Any]:
    """Tensors of a nested tuple state by name, and a JSON structure to rebuild it."""
    tensors: dict[str, Tensor] = {}

    def walk(s):
        if s is None:
            return None
        if isinstance(s, Tensor):
            name = f"{prefix}.{len(tensors)}"
            tensors[name] = s
            return name
        return [walk(x) for x in s]
    return tensors, walk(state)


def unflatten_state(structure: Any, tensors: dict[str, Tensor]) -> Any:
    if structure is None:
        return None
    if isinstance(structure, str):
        return tensors[structure]
    return tuple(unflatten_state(s, tensors) for s in structure)


# -- the run directory --------------------------------------------------------------------
class RunDir:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    # creation and checks
    def exists(self) -> bool:
        return (self.path / "config.json").exists()

    def create(self, config: dict, vocab: dict) -> None:
        """Start a fresh run; refuses to touch a folder that already holds one."""
        if self.exists():
            raise UserError(f"{self.path} already holds a run; pass --resume to continue it "
                            f"or choose another --out")
        self.path.mkdir(parents=True, exist_ok=True)
        write_json(self.path / "vocab.json", vocab)
        write_json(self.path / "config.json", {"format": FORMAT, "version": VERSION, **config})

    def config(self) -> dict:
        if not self.path.is_dir():
            raise UserError(f"{self.path}: no such run directory; train one with "
                            f"`rnnlab train --out {self.path}`")
        cfg = read_json(self.path / "config.json", "config.json")
        if not isinstance(cfg, dict) or cfg.get("format") != FORMAT:
            raise UserError(f"{self.path}: not an rnnlab run directory (config.json has no "
                            f"format {FORMAT!r})")
        if cfg.get("version") != VERSION:
            raise UserError(f"{self.path}: run format version {cfg.get('version')!r} is not "
                            f"supported by this rnnlab (expects {VERSION}); retrain the model")
        return cfg

    def vocab(self) -> dict:
        return read_json(self.path / "vocab.json", "vocab.json")

    # checkpoints
    def save_checkpoint(self, step: int, model: dict[str, Tensor],
                        trainer: dict[str, Tensor], info: dict) -> None:
        """Write a complete checkpoint folder, then point last.json at it."""
        root = self.path / "checkpoints"
        root.mkdir(exist_ok=True)
        name = f"step-{step:09d}"
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{name}."))
        save_tensors(tmp / "model.safetensors", model)
        save_tensors(tmp / "trainer.safetensors", trainer)
        write_json(tmp / "trainer.json", {"step": step, **info})
        final = root / name
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(root)
        write_json(self.path / "last.json", {"dir": f"checkpoints/{name}", "step": step})
        for old in root.iterdir():                       # older folders and dead temps
            if old.name != name:
                shutil.rmtree(old, ignore_errors=True)

    def last(self) -> Path | None:
        if not (self.path / "last.json").exists():
            return None
        ref = read_json(self.path / "last.json", "last.json")
        folder = self.path / str(ref.get("dir", ""))
        if not folder.is_dir():
            raise UserError(f"{self.path}/last.json points at a missing checkpoint "
                            f"{ref.get('dir')!r}; the run directory is damaged")
        return folder

    def load_checkpoint(self) -> tuple[dict[str, Tensor], dict[str, Tensor], dict]:
        folder = self.last()
        if folder is None:
            raise UserError(f"{self.path}: no checkpoint to resume from (no last.json); "
                            f"start a new run without --resume")
        return (load_tensors(folder / "model.safetensors", "model weights"),
                load_tensors(folder / "trainer.safetensors", "trainer state"),
                read_json(folder / "trainer.json", "trainer.json"))

    def save_best(self, model: dict[str, Tensor], info: dict) -> None:
        save_tensors(self.path / "model.safetensors", model)
        write_json(self.path / "best.json", info)

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


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_model_state(model: torch.nn.Module, tensors: dict[str, Tensor], where: Path) -> None:
    """Load weights, turning a shape or key mismatch into a one-line UserError."""
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[0][:160]
        raise UserError(f"{where}: weights do not match the model in config.json ({first})"
                        ) from None
