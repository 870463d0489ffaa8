"""The papers' experiments, one module each, found by name.

An experiment module in this package defines:

    NAME = "parity"                        # what `rnnlab experiment NAME` takes
    DESCRIPTION = "one line"
    PRESETS = {"fast": Config(...), "full": Config(...)}   # Config: a dataclass
    def run(config, out_dir: Path) -> dict  # writes result.json, table.md, plot.png

`rnnlab experiment NAME --preset fast|full --out DIR [--set key=value ...]` and
``rnnlab.experiments.run_experiment`` call it; nothing else needs registering.
"""
from __future__ import annotations

import dataclasses
import importlib
import json
import os
import pkgutil
import platform
from pathlib import Path
from types import ModuleType
from typing import Any

import torch


def _modules() -> dict[str, ModuleType]:
    found = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(mod, "NAME") and hasattr(mod, "run"):
            found[mod.NAME] = mod
    return dict(sorted(found.items()))


def available() -> dict[str, str]:
    """Experiment names mapped to one-line descriptions."""
    return {name: mod.DESCRIPTION for name, mod in _modules().items()}


def get(name: str) -> ModuleType:
    mods = _modules()
    if name not in mods:
        raise ValueError(f"unknown experiment {name!r}; available: {', '.join(mods)}")
    return mods[name]


def make_config(name: str, preset: str = "fast", **overrides: Any):
    """The preset's config with fields replaced (strings are converted to the field type)."""
    mod = get(name)
    if preset not in mod.PRESETS:
        raise ValueError(f"experiment {name!r} has presets {', '.join(mod.PRESETS)}, "
                         f"received {preset!r}")
    cfg = mod.PRESETS[preset]
    fields = {f.name: f for f in dataclasses.fields(cfg)}
    typed = {}
    for key, value in overrides.items():
        if key not in fields:
            raise ValueError(f"experiment {name!r} has no setting {key!r}; "
                             f"settings: {', '.join(fields)}")
        current = getattr(cfg, key)
        typed[key] = _convert(value, current) if isinstance(value, str) else value
    return dataclasses.replace(cfg, **typed)


def _convert(text: str, current: Any) -> Any:
    if isinstance(current, bool):
        return text.lower() in ("1", "true", "yes", "on")
    if isinstance(current, (int, float)):
        return type(current)(text)
    if isinstance(current, (tuple, list)):
        items = [s for s in text.split(",") if s]
        kind = type(current[0]) if current else str
        return type(current)(kind(s) for s in items)
    return text


def run_experiment(name: str, preset: str = "fast", out_dir: str | os.PathLike = "results",
                   **overrides: Any) -> dict:
    """Run an experiment by name; returns its result dict (also written under out_dir)."""
    cfg = make_config(name, preset, **overrides)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return get(name).run(cfg, out)


def machine_description() -> str:
    """One line naming the machine a result was measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    dev = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return (f"{cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads{dev}; "
            f"torch {torch.__version__}, Python {platform.python_version()}")


def atomic_write_text(path: Path, text: str) -> None:
    """Write text to path atomically (temp file, fsync, rename)."""
    from ..checkpoint import atomic_write_bytes
    atomic_write_bytes(Path(path), text.encode("utf-8"))


def write_outputs(out_dir: Path, name: str, result: dict, table_md: str) -> None:
    """Write ``{name}.json`` and ``{name}.md`` (table plus how it was made) in out_dir."""
    out_dir = Path(out_dir)
    result = {**result, "machine": result.get("machine", machine_description())}
    atomic_write_text(out_dir / f"{name}.json", json.dumps(result, indent=2, default=str) + "\n")
    atomic_write_text(out_dir / f"{name}.md", table_md.rstrip() + "\n")
