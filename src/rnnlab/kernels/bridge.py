"""Kernels under autograd, differentiable twice.

A kernel's backward is derived by hand and is not itself recorded by autograd, so a
gradient of a gradient (``create_graph=True``: gradient penalties, Hessian-vector products)
through it would be silently wrong. ``run_bridged`` runs the kernel on detached leaves and
returns its results through ``_Bridge``, whose backward

- normally hands the incoming gradients to the kernel's own backward (no extra cost), and
- when autograd is recording the backward (``create_graph=True``) recomputes the step
  loop (``rnnlab.cells.loop.run_steps``) from the saved inputs and differentiates that,
  so the result and its derivatives are autograd's own.
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable

import torch
from torch import Tensor

from ..cells.loop import run_steps


def _leaf(t: Tensor) -> Tensor:
    leaf = t.detach()
    return leaf.requires_grad_(t.requires_grad) if t.is_floating_point() else leaf


def _owner(module, dotted: str):
    *path, name = dotted.split(".")
    for part in path:
        module = getattr(module, part)
    return module, name


@contextlib.contextmanager
def bound(cell, names: list[str], tensors: list[Tensor]):
    """Temporarily make ``cell``'s parameters ``names`` the given tensors."""
    saved = []
    for dotted, t in zip(names, tensors):
        module, name = _owner(cell, dotted)
        saved.append((module, name, module._parameters[name]))
        module._parameters[name] = t
    try:
        yield cell
    finally:
        for module, name, old in saved:
            module._parameters[name] = old


class _Holder:
    """What the bridge's backward needs: the cell, the kernel's own graph (leaves ->
    outs), and how to rebuild the state."""

    def __init__(self, cell, names, n_state, state_type, lengths, leaves, outs):
        self.cell, self.names, self.n_state = cell, names, n_state
        self.state_type, self.lengths, self.leaves, self.outs = (state_type, lengths,
                                                                 leaves, outs)


class _Bridge(torch.autograd.Function):
    @staticmethod
    def forward(ctx, holder: _Holder, *inputs: Tensor):
        ctx.holder = holder
        ctx.save_for_backward(*inputs)
        outs = tuple(o.detach() for o in holder.outs)
        ctx.mark_non_differentiable(*(o for o in outs if not o.is_floating_point()))
        return outs

    @staticmethod
    def backward(ctx, *grads):
        h: _Holder = ctx.holder
        inputs = ctx.saved_tensors
        want = [i for i in range(len(inputs)) if ctx.needs_input_grad[i + 1]]
        twice = torch.is_grad_enabled()
        if twice:                                   # differentiate the reference loop
            n = 1 + h.n_state
            with bound(h.cell, h.names, list(inputs[n:])):
                out, state = run_steps(h.cell, inputs[0], h.state_type(*inputs[1:n]),
                                       h.lengths)
            outs, targets = [out, *state], [inputs[i] for i in want]
        else:                                       # the kernel's own backward
            outs, targets = list(h.outs), [h.leaves[i] for i in want]
        pairs = [(o, g) for o, g in zip(outs, grads)
                 if g is not None and o.requires_grad]
        result: list[Any] = [None] * len(inputs)
        if pairs and targets:
            got = torch.autograd.grad([o for o, _ in pairs], targets, [g for _, g in pairs],
                                      retain_graph=True, create_graph=twice,
                                      allow_unused=True)
            for i, g in zip(want, got):
                result[i] = g
        return (None, *result)


def run_bridged(fn: Callable, cell, x: Tensor, state, lengths):
    """``fn(cell, x, state, lengths)`` (a kernel) with a twice-differentiable result;
    None when the kernel declines."""
    named = list(cell.named_parameters())
    names, params = [n for n, _ in named], [p for _, p in named]
    inputs = [x, *state, *params]
    leaves = [_leaf(t) for t in inputs]
    n = 1 + len(state)
    with bound(cell, names, leaves[n:]), torch.enable_grad():
        res = fn(cell, leaves[0], type(state)(*leaves[1:n]), lengths)
    if res is None:
        return None
    out, new_state = res
    holder = _Holder(cell, names, len(state), type(state), lengths, leaves,
                     [out, *new_state])
    results = _Bridge.apply(holder, *inputs)
    return results[0], type(new_state)(*results[1:])
