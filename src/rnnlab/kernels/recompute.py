"""Second derivatives through a kernel: its backward recomputes the step loop.

A kernel's backward is derived by hand and is not itself recorded by autograd, so a
gradient of a gradient (``create_graph=True``: gradient penalties, Hessian-vector products)
through it would be silently wrong. Each kernel's ``torch.autograd.Function`` therefore
also takes a ``Reference``: the cell, the lengths, and the tensors the reference step loop
(``rnnlab.cells.loop.run_steps``) reads -- the layer input, the state and the cell's
parameters -- as extra inputs. Its backward then

- normally (autograd not recording the backward) runs the hand-written backward, returns
  gradients for the kernel's own inputs and None for the reference inputs, and keeps
  nothing beyond what that backward needs: the reference inputs are tensors the layer
  holds anyway (its input, its parameters, the initial state);
- under ``create_graph=True`` returns None for the kernel's own inputs and, for the
  reference inputs, the gradients of the step loop recomputed from them, with autograd
  recording, so the result and all its derivatives are autograd's own.

A tensor given in both places receives the sum, so either way each tensor gets its one
gradient. Which outputs of the loop the Function's outputs are is the kernel's ``outputs``
function (default: the loop's out and the final state's tensors).
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Sequence

import torch
from torch import Tensor

from ..cells.loop import run_steps


def _owner(module, dotted: str):
    *path, name = dotted.split(".")
    for part in path:
        module = getattr(module, part)
    return module, name


@contextlib.contextmanager
def bound(cell, names: Sequence[str], tensors: Sequence[Tensor]):
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


def loop_outputs(cell, x: Tensor, state, lengths) -> tuple:
    """The step loop's out and final state's tensors (a Function returning exactly
    (out, *state))."""
    out, state = run_steps(cell, x, state, lengths)
    return (out, *state)


class Reference:
    """One kernel call as the step loop sees it. ``tensors`` (x, the state's tensors, the
    cell's parameters) go to the kernel's Function after its own inputs; ``outputs(cell,
    x, state, lengths)`` recomputes the Function's outputs by the loop."""

    def __init__(self, cell, x: Tensor, state, lengths: Tensor | None,
                 outputs: Callable[..., tuple] = loop_outputs) -> None:
        named = list(cell.named_parameters())
        self.cell, self.lengths, self.outputs = cell, lengths, outputs
        self.state_type, self.n_state = type(state), len(state)
        self.names = [n for n, _ in named]
        self.tensors: tuple = (x, *state, *(p for _, p in named))

    def grads(self, tensors: Sequence[Tensor], grads: Sequence[Tensor | None],
              needs: Sequence[bool]) -> list[Any]:
        """Gradients of the recomputed outputs (given ``grads``) for each of ``tensors``
        (the saved reference inputs), None where not ``needs``; differentiable."""
        n = 1 + self.n_state
        with bound(self.cell, self.names, list(tensors[n:])):
            outs = self.outputs(self.cell, tensors[0], self.state_type(*tensors[1:n]),
                                self.lengths)
        pairs = [(o, g) for o, g in zip(outs, grads)
                 if g is not None and isinstance(o, Tensor) and o.requires_grad]
        want = [i for i, need in enumerate(needs) if need]
        result: list[Any] = [None] * len(tensors)
        if pairs and want:
            got = torch.autograd.grad([o for o, _ in pairs], [tensors[i] for i in want],
                                      [g for _, g in pairs], create_graph=True,
                                      allow_unused=True)
            for i, g in zip(want, got):
                result[i] = g
        return result


def save(ctx, ref: Reference | None, own: Sequence, extra: Sequence[Tensor]) -> None:
    """``ctx.save_for_backward`` of the kernel's own tensors followed by the reference
    inputs ``extra`` (kept for a create_graph backward; tensors the layer holds anyway)."""
    ctx.ref, ctx.n_ref = ref, len(extra)
    ctx.save_for_backward(*own, *extra)


def saved(ctx) -> tuple:
    """The kernel's own saved tensors (what ``save`` got as ``own``)."""
    t = ctx.saved_tensors
    return t[:len(t) - ctx.n_ref]


def twice(ctx) -> bool:
    """True when autograd records this backward (``create_graph=True``): the backward
    must then return ``recomputed``."""
    return torch.is_grad_enabled()


def recomputed(ctx, n_own: int, grads: Sequence[Tensor | None]) -> tuple:
    """The create_graph backward's result: None for the ``n_own`` own inputs (the
    Reference included), the loop's gradients for the reference inputs."""
    if ctx.ref is None:                  # the forward ran without autograd recording
        raise RuntimeError("a kernel's backward is being differentiated, but the kernel "
                           "ran without a reference to recompute it from")
    t = ctx.saved_tensors
    extra = t[len(t) - ctx.n_ref:]
    needs = ctx.needs_input_grad[n_own:]
    return (None,) * n_own + tuple(ctx.ref.grads(extra, grads, needs))


def reference(cell, x: Tensor, state, lengths, outputs: Callable[..., tuple] = loop_outputs):
    """(Reference or None, its tensors): a Reference when autograd records this call."""
    if not torch.is_grad_enabled():
        return None, ()
    ref = Reference(cell, x, state, lengths, outputs)
    return ref, ref.tensors
