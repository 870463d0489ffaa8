"""Files a run writes, with no pickle anywhere: atomic writes, checksummed tensors and JSON.

Every file is written to a temp file in the same folder, fsynced and renamed, so a reader
sees the old file or the new one, never a torn one. Tensors go to safetensors with a
SHA-256 of their names, dtypes, shapes and bytes in the file's own metadata; JSON objects
carry a ``"sha256"`` of their canonical text. Loading recomputes both, so a flipped byte
or a hand-edited file is reported as damage instead of giving silently wrong answers.
The run directory itself (what it holds, who may write it) is ``rnnlab.rundir``.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import Tensor

from .errors import UserError
from .models.lm import LanguageModel, LMConfig

TEMP_PREFIX = ".tmp-"                  # every temp file or folder rnnlab makes starts so
_SUM = "rnnlab_sha256"
_UMASK = os.umask(0)
os.umask(_UMASK)


# -- atomic files -------------------------------------------------------------------------
def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write data to path via a temp file in the same folder, fsync, rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{TEMP_PREFIX}{path.name}.")
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


def _json_sum(obj: dict) -> str:
    body = {k: v for k, v in obj.items() if k != "sha256"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def write_json(path: Path, obj: Any, checked: bool = False) -> None:
    """Strict JSON (no NaN / Infinity); ``checked`` adds a ``"sha256"`` of the object."""
    if checked:
        obj = {**obj, "sha256": _json_sum(obj)}
    try:
        text = json.dumps(obj, indent=1, allow_nan=False)
    except ValueError:
        raise ValueError(f"{path}: refusing to write a non-finite number as JSON") from None
    atomic_write_bytes(path, (text + "\n").encode())


def read_json(path: Path, what: str, checked: bool = False) -> Any:
    """Parsed JSON; ``checked``: an object whose ``"sha256"`` matches its content."""
    try:
        obj = json.loads(Path(path).read_text(encoding="utf-8"), parse_constant=_no_constant)
    except FileNotFoundError:
        raise UserError(f"{path}: missing {what}; the run directory is incomplete") from None
    except IsADirectoryError:
        raise UserError(f"{path}: {what} is a folder; the run directory is damaged") from None
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise UserError(f"{path}: corrupt {what} ({e.__class__.__name__}); "
                        f"the run directory is damaged") from None
    if checked:
        if not isinstance(obj, dict):
            raise UserError(f"{path}: corrupt {what} (not a JSON object); "
                            f"the run directory is damaged")
        if obj.get("sha256") != _json_sum(obj):
            raise UserError(f"{path}: {what} fails its checksum (changed or damaged since "
                            f"rnnlab wrote it)")
        obj = {k: v for k, v in obj.items() if k != "sha256"}
    return obj


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# -- checksummed tensors ------------------------------------------------------------------
def tensor_digest(tensors: dict[str, Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and raw bytes (independent of the file layout)."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        h.update(json.dumps([name, str(t.dtype), list(t.shape)]).encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def save_tensors(path: Path, tensors: dict[str, Tensor]) -> None:
    data = {k: v.detach().to("cpu").clone().contiguous() for k, v in tensors.items()}
    atomic_write_bytes(path, st_save(data, metadata={_SUM: tensor_digest(data)}))


def load_tensors(path: Path, what: str = "tensors") -> dict[str, Tensor]:
    """Tensors of a file save_tensors wrote; a missing, torn or changed file is a UserError."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: missing {what}; the run directory is incomplete") from None
    except IsADirectoryError:
        raise UserError(f"{path}: {what} is a folder; the run directory is damaged") from None
    try:
        tensors = st_load(raw)
        n = int.from_bytes(raw[:8], "little")
        meta = json.loads(raw[8: 8 + n]).get("__metadata__") or {}
    except Exception as e:                                      # safetensors' own errors
        raise UserError(f"{path}: corrupt {what} ({str(e).splitlines()[0][:80]})") from None
    if meta.get(_SUM) != tensor_digest(tensors):
        raise UserError(f"{path}: {what} fail their checksum (damaged or changed since "
                        f"rnnlab wrote them)")
    return tensors


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


def fsync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable (best effort where folders cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_model_state(model: torch.nn.Module, tensors: dict[str, Tensor], where: Path) -> None:
    """Load weights: names, shapes and dtypes must match the model, every value finite."""
    own = model.state_dict()
    for name, t in tensors.items():
        ref = own.get(name)
        if ref is not None and t.dtype != ref.dtype:
            raise UserError(f"{where}: weight {name} is {t.dtype}, the model in config.json "
                            f"wants {ref.dtype}; the run directory is damaged")
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise UserError(f"{where}: weight {name} holds NaN or infinite values; the run "
                            f"directory is damaged")
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[0][:160]
        raise UserError(f"{where}: weights do not match the model in config.json ({first})"
                        ) from None


def model_from_weights(cfg: LMConfig, weights: dict[str, Tensor], where: Path) -> LanguageModel:
    """Build the model ``cfg`` describes and load ``weights`` into it, checking the sizes
    against the weights first, so a damaged or crafted config.json cannot make rnnlab
    allocate more than the weights file itself holds."""
    total = sum(t.numel() for t in weights.values())
    emb = weights.get("embed.weight")
    if emb is None or tuple(emb.shape) != (cfg.vocab_size, cfg.embedding):
        shape = None if emb is None else tuple(emb.shape)
        raise UserError(f"{where}: config.json says vocabulary {cfg.vocab_size} x embedding "
                        f"{cfg.embedding}, the weights hold an embedding of {shape}; the run "
                        f"directory is damaged")
    if cfg.hidden * cfg.layers > total:
        raise UserError(f"{where}: config.json's {cfg.layers} x {cfg.hidden} model cannot fit "
                        f"in weights of {total} numbers; the run directory is damaged")
    try:
        with torch.device("meta"):                       # shapes only, nothing allocated
            shapes = {k: tuple(v.shape) for k, v in LanguageModel.from_config(cfg)
                      .state_dict().items()}
    except (TypeError, ValueError) as e:
        raise UserError(f"{where}: config.json's model cannot be built "
                        f"({str(e).splitlines()[0][:120]})") from None
    except Exception:                        # an architecture that cannot build on meta
        shapes = None
    if shapes is not None:
        found = {k: tuple(v.shape) for k, v in weights.items()}
        if shapes != found:
            bad = sorted(set(shapes.items()) ^ set(found.items()))[0][0]
            raise UserError(f"{where}: weights do not match the model in config.json (first "
                            f"difference: {bad}); the run directory is damaged")
    model = LanguageModel.from_config(cfg)
    load_model_state(model, weights, where)
    return model
