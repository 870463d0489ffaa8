"""Architectures by name: ``build("lstm", input_size=..., hidden_size=...)``.

Every registered name builds a *sequence layer* with one contract, so models and
experiments can pick their recurrent core by name:

    layer = build(name, input_size, hidden_size, num_layers=1, dropout=0.0, **options)
    out, state = layer(x, state=None, lengths=None)     # x (T, B, F) -> out (T, B, O)
    layer.output_size                                   # O

A new architecture registers itself with one line in its own module:

    register("name", "one-line description")(factory)
"""
from __future__ import annotations

from typing import Callable

import torch.nn as nn

_REGISTRY: dict[str, tuple[Callable[..., nn.Module], str]] = {}


def register(name: str, description: str):
    """``register(name, description)(factory)`` adds ``factory(input_size, hidden_size,
    num_layers, **options) -> layer`` under ``name`` and returns the factory unchanged (a
    decorator). A name already taken by another factory: ValueError."""
    def add(factory):
        if name in _REGISTRY and _REGISTRY[name][0] is not factory:
            raise ValueError(f"architecture {name!r} is already registered")
        _REGISTRY[name] = (factory, description)
        return factory
    return add


def available() -> dict[str, str]:
    """Registered names mapped to their one-line descriptions, in registration order."""
    return {name: desc for name, (_, desc) in _REGISTRY.items()}


def factory(name: str) -> Callable[..., nn.Module]:
    """The factory registered as ``name`` (its signature lists the architecture's options)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown architecture {name!r}; available: {', '.join(_REGISTRY)}")
    return _REGISTRY[name][0]


def build(name: str, input_size: int, hidden_size: int, num_layers: int = 1,
          **options) -> nn.Module:
    """The sequence layer registered as ``name``, built with these sizes and the
    architecture's own keyword ``options``: an nn.Module with
    ``forward(x, state=None, lengths=None) -> (out, state)`` and ``output_size``.
    An unknown name: ValueError listing the available ones."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown architecture {name!r}; available: {', '.join(_REGISTRY)}")
    return _REGISTRY[name][0](input_size, hidden_size, num_layers, **options)
