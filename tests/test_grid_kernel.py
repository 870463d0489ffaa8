"""The Grid LSTM whole-sequence kernel (rnnlab.kernels.grid) equals the step-by-step loop
of rnnlab.cells.grid.GridLayerStep: outputs, final states and every gradient."""
from __future__ import annotations

import pytest
import torch

from rnnlab.cells.grid import GridLayerStep, GridState
from rnnlab.kernels import STATS, use_kernels
from rnnlab.layers import run_cell
from rnnlab.layers.grid import GridLSTM

D64 = torch.float64
F_IN, H, T, B = 5, 6, 7, 3


def run(model: GridLSTM, x, state=None, lengths=None, kernels=True):
    """(out, final state, grads of x, of the initial state and of every parameter)."""
    model.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_()
    leaves = [x]
    if state is not None:
        state = GridState(*(s.detach().clone().requires_grad_() for s in state))
        leaves += list(state)
    with use_kernels(kernels):
        out, final = model(x, state, lengths)
    w = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)
    loss = (out * w).sum() + (final.h ** 2).sum() + (final.m * 0.3).sum()
    loss.backward()
    grads = [t.grad for t in leaves] + [p.grad for p in model.parameters()]
    return out.detach(), GridState(*(f.detach() for f in final)), grads


def assert_same(a, b, tol):
    out_a, fin_a, g_a = a
    out_b, fin_b, g_b = b
    torch.testing.assert_close(out_a, out_b, rtol=tol, atol=tol)
    torch.testing.assert_close(fin_a.h, fin_b.h, rtol=tol, atol=tol)
    torch.testing.assert_close(fin_a.m, fin_b.m, rtol=tol, atol=tol)
    assert len(g_a) == len(g_b)
    for ga, gb in zip(g_a, g_b):
        assert (ga is None) == (gb is None)
        if ga is not None:
            torch.testing.assert_close(ga, gb, rtol=tol, atol=tol)


def make(dtype=D64, seed=0, **kw) -> GridLSTM:
    torch.manual_seed(seed)
    return GridLSTM(F_IN, H, kw.pop("num_layers", 2), dtype=dtype, **kw)


def inputs(dtype=D64, seed=1, layers=2):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(T, B, F_IN, generator=g, dtype=dtype)
    state = GridState(*(torch.randn(layers, B, H, generator=g, dtype=dtype) for _ in range(2)))
    return x, state


CONFIGS = [
    {},                                                       # paper form, depth priority
    {"output_form": "standard"},
    {"share_across_dims": True, "forget_bias": 1.0},
    {"share_along_depth": True},
    {"priority": ("time", "depth")},                          # no effective priority
    {"depth_kind": "none", "output_form": "standard"},        # a stacked LSTM
    {"depth_kind": "tanh"},
    {"depth_kind": "relu", "priority": ()},
    {"depth_kind": "identity", "share_across_dims": True},
    {"bias": False, "output_form": "standard"},
]


@pytest.mark.parametrize("lengths", [None, [7, 4, 1]], ids=["full", "lengths"])
@pytest.mark.parametrize("kw", CONFIGS, ids=lambda kw: ",".join(kw) or "default")
def test_kernel_equals_loop_float64(kw, lengths):
    model = make(**kw)
    x, state = inputs()
    lens = None if lengths is None else torch.tensor(lengths)
    before = STATS["grid"]
    fast = run(model, x, state, lens)
    assert STATS["grid"] - before == model.num_layers          # the kernel ran per layer
    slow = run(model, x, state, lens, kernels=False)
    assert STATS["grid"] - before == model.num_layers          # the loop did not
    assert_same(fast, slow, 1e-10)


def test_kernel_equals_loop_float32_and_without_state():
    model = make(torch.float32, num_layers=3)
    x, _ = inputs(torch.float32)
    assert_same(run(model, x), run(model, x, kernels=False), 2e-5)


def test_float32_with_packed_recurrent_weight():
    torch.manual_seed(4)
    model = GridLSTM(8, 64, 2)                                # W_time[:, :H] (256, 64): packed
    x = torch.randn(9, 4, 8)
    before = STATS["packed_gemm"]
    fast = run(model, x, lengths=torch.tensor([9, 8, 3, 6]))
    if torch.backends.mkldnn.is_available():
        assert STATS["packed_gemm"] > before
    assert_same(fast, run(model, x, lengths=torch.tensor([9, 8, 3, 6]), kernels=False), 1e-4)


def test_chunks_with_carried_state_equal_one_pass():
    model = make()
    x, state = inputs()
    whole = model(x, state)
    with use_kernels(False):
        loop = model(x, state)
    a = model(x[:3], state)
    b = model(x[3:], a[1])
    torch.testing.assert_close(torch.cat([a[0], b[0]]), whole[0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(torch.cat([a[0], b[0]]), loop[0], rtol=1e-10, atol=1e-10)
    for u, v in zip(b[1], loop[1]):
        torch.testing.assert_close(u, v, rtol=1e-10, atol=1e-10)


def test_batch_first_packed_input_matches_loop():
    model = make(batch_first=True)
    x, _ = inputs()
    xb = x.transpose(0, 1).contiguous()
    packed = torch.nn.utils.rnn.pack_padded_sequence(xb, torch.tensor([7, 5, 2]),
                                                     batch_first=True)
    fast = model(packed)
    with use_kernels(False):
        slow = model(packed)
    torch.testing.assert_close(fast[0].data, slow[0].data, rtol=1e-10, atol=1e-10)


class Layer(torch.nn.Module):
    """A cell over a sequence as a module, so functional_call can pass its weights."""

    def __init__(self, cell: GridLayerStep) -> None:
        super().__init__()
        self.cell = cell

    def forward(self, x, h0, m0, lengths):
        out, fin = run_cell(self.cell, x, GridState(h0, m0), lengths)
        return out, fin.h, fin.m


@pytest.mark.parametrize("form", ["paper", "standard"])
def test_gradcheck_float64(form):
    torch.manual_seed(2)
    layer = Layer(GridLayerStep(3, output_form=form, dtype=D64))
    names = [n for n, _ in layer.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in layer.parameters()]
    x = torch.randn(4, 2, 6, dtype=D64, requires_grad=True)
    h0, m0 = (torch.randn(2, 3, dtype=D64, requires_grad=True) for _ in range(2))
    lengths = torch.tensor([4, 2])

    def fn(x, h0, m0, *ps):
        return torch.func.functional_call(layer, dict(zip(names, ps)), (x, h0, m0, lengths))

    before = STATS["grid"]
    assert torch.autograd.gradcheck(fn, (x, h0, m0, *params))
    assert STATS["grid"] > before


class OtherStep(GridLayerStep):
    """A subclass that changes the step: must not be run by the kernel."""

    def step(self, xp, state):
        out, new = super().step(xp, state)
        return out * 0.5, new


@pytest.mark.parametrize("unsupported", ["time_kind", "subclass"])
def test_unsupported_configs_run_the_loop_and_agree(unsupported):
    torch.manual_seed(3)
    if unsupported == "time_kind":
        cell = GridLayerStep(H, time_kind="tanh", dtype=D64)
    else:
        cell = OtherStep(H, dtype=D64)
    x = torch.randn(T, B, 2 * H, dtype=D64)
    state = cell.init_state(B, dtype=D64)
    before = STATS["grid"]
    out, fin = run_cell(cell, x, state, torch.tensor([7, 3, 5]))
    assert STATS["grid"] == before
    with use_kernels(False):
        ref, ref_fin = run_cell(cell, x, state, torch.tensor([7, 3, 5]))
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(fin.h, ref_fin.h)
