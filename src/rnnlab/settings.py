"""Typed settings: one check for a value, whether it comes from a flag or a run's JSON.

A settings dataclass (``TrainConfig``, ``LMConfig``) declares each field's type, and in
its metadata an optional ``check``:

    positive   a finite number > 0          nonneg   a finite number >= 0
    fraction   a finite number in [0, 1)    seed     an integer in [0, 2**63)
    port       an integer in [0, 65535]

and for a string field ``choices``, the values it may take.

``flag_type(field)`` is the argparse ``type=`` for the field (so ``--lr inf`` or
``--batch 0`` fail at parse time), ``from_json(cls, data, where)`` builds the dataclass
from a JSON object and names the first wrong value in a one-line UserError, and
``arch_options(arch, pairs)`` reads ``NAME=VALUE`` architecture options.
"""
from __future__ import annotations

import argparse
import inspect
import json
import math
import types
import typing
from dataclasses import MISSING, Field, field, fields
from typing import Any

from .errors import UserError

_CHECKS = {
    "positive": (lambda v: v > 0, "a finite number > 0"),
    "nonneg": (lambda v: v >= 0, "a finite number >= 0"),
    "fraction": (lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "seed": (lambda v: 0 <= v < 2**63, "an integer in [0, 2**63)"),
    "port": (lambda v: 0 <= v <= 65535, "an integer in [0, 65535]"),
}
# build() arguments the language model sets itself, and ``bidirectional`` (a language model
# that read the future would learn to copy it): not architecture options
_RESERVED = {"input_size", "hidden_size", "num_layers", "dropout", "batch_first", "device",
             "dtype", "self", "bidirectional"}


def _kinds(cls) -> dict[str, tuple[type, bool]]:
    """Field name -> (base type, None allowed)."""
    out = {}
    for name, hint in typing.get_type_hints(cls).items():
        args = typing.get_args(hint)
        optional = isinstance(hint, types.UnionType) and type(None) in args
        base = next(a for a in args if a is not type(None)) if optional else hint
        out[name] = (typing.get_origin(base) or base, optional)
    return out


def check_value(f: Field, kind: type, value: Any) -> Any:
    """The value as the field's type, or ValueError saying what is wrong."""
    if kind is bool:
        if type(value) is not bool:
            raise ValueError(f"must be true or false, received {value!r}")
        return value
    if kind is int and type(value) is not int:
        raise ValueError(f"must be an integer, received {value!r}")
    if kind is float:
        if type(value) not in (int, float):
            raise ValueError(f"must be a number, received {value!r}")
        value = float(value)
    if kind in (int, float):
        if not math.isfinite(value):
            raise ValueError(f"must be finite, received {value!r}")
        test, words = _CHECKS.get(f.metadata.get("check"), (lambda v: True, ""))
        if not test(value):
            if kind is int:
                words = words.replace("a finite number", "an integer")
            raise ValueError(f"must be {words}, received {value!r}")
        return value
    if not isinstance(value, kind):
        raise ValueError(f"must be a {kind.__name__}, received {value!r}")
    choices = f.metadata.get("choices")
    if choices and value not in choices:
        raise ValueError(f"must be one of {', '.join(choices)}, received {value!r}")
    return value


def flag_type(cls, name: str):
    """argparse ``type=`` for field ``name`` of dataclass ``cls``: parse, then check."""
    f = next(x for x in fields(cls) if x.name == name)
    return _parser(_kinds(cls)[name][0], f.metadata.get("check"))


def number(kind: type, check: str | None = None):
    """argparse ``type=`` for a flag of no settings class: ``number(int, "positive")``."""
    return _parser(kind, check)


def _parser(kind: type, check: str | None):
    f = field(metadata={"check": check} if check else {})

    def parse(text: str):
        try:
            value = kind(text) if kind in (int, float) else text
        except ValueError:
            what = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"must be {what}, received {text!r}") from None
        try:
            return check_value(f, kind, value)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    parse.__name__ = kind.__name__
    return parse


def from_json(cls, data: Any, where: str, **extra: Any):
    """``cls(**data)`` with every value checked; unknown keys are an error too."""
    if not isinstance(data, dict):
        raise UserError(f"{where}: settings must be a JSON object, received "
                        f"{type(data).__name__}")
    kinds = _kinds(cls)
    unknown = sorted(set(data) - set(kinds))
    if unknown:
        raise UserError(f"{where}: unknown setting {unknown[0]!r}; the run directory is "
                        f"damaged or from another rnnlab")
    values = {}
    for f in fields(cls):
        if f.name in extra:
            continue
        if f.name not in data:
            if f.default is MISSING and f.default_factory is MISSING:
                raise UserError(f"{where}: setting {f.name!r} is missing")
            continue
        kind, optional = kinds[f.name]
        value = data[f.name]
        if value is None and optional:
            values[f.name] = None
            continue
        try:
            values[f.name] = check_value(f, kind, value)
        except ValueError as e:
            raise UserError(f"{where}: setting {f.name!r} {e}") from None
    return cls(**values, **extra)


def arch_options(arch: str, pairs: list[str], factory=None) -> dict[str, Any]:
    """``["num_modules=8", ...]`` as keywords for architecture ``arch``: values are JSON
    literals (``8``, ``true``, ``[1, 2, 4]``, ``"name"``), names must be parameters of its
    factory (when its signature can be read)."""
    options: dict[str, Any] = {}
    for pair in pairs:
        name, eq, text = pair.partition("=")
        name = name.strip().replace("-", "_")
        if not eq or not name.isidentifier():
            raise UserError(f"--arch-option wants NAME=VALUE, received {pair!r}")
        try:
            options[name] = json.loads(text, parse_constant=_no_constant)
        except ValueError:
            raise UserError(f"--arch-option {name}: {text!r} is not a JSON literal (numbers, "
                            f"true/false, null, \"strings\", [lists])") from None
    if factory is None:
        return options
    allowed, open_ended = _parameters(factory)
    for name in options:
        if name in _RESERVED or (name not in allowed and not open_ended):
            choices = ", ".join(sorted(allowed)) or "none"
            raise UserError(f"--arch-option {name}: not an option of {arch!r} (its options: "
                            f"{choices})")
    return options


def _parameters(factory) -> tuple[set[str], bool]:
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return set(), True
    params = sig.parameters.values()
    names = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    open_ended = any(p.kind is p.VAR_KEYWORD for p in params)
    bound = set(getattr(factory, "keywords", None) or {})       # functools.partial
    return names - _RESERVED - bound, open_ended


def _no_constant(name: str) -> Any:
    raise ValueError(name)
