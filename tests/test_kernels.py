"""The fast kernels (rnnlab.kernels) against their cells' step-by-step definitions.

Every kernel must give the outputs, final states and gradients of looping ``cell.step``
(``use_kernels(False)``), in float64 and float32, with lengths (masking) and in reverse;
gradcheck validates the hand-derived backward against finite differences; and the tests
check that the fast path is the one that ran.
"""
from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck

import rnnlab
from rnnlab.cells import GRUStep, LSTMStep
from rnnlab.kernels import STATS, use_kernels
from rnnlab.layers import run_cell

LSTM_VARIANTS = [
    {}, {"peephole": True}, {"coupled": True}, {"coupled": True, "peephole": True},
    {"layer_norm": True}, {"proj_size": 3}, {"bias": False},
    {"layer_norm": True, "peephole": True, "proj_size": 3},
]
CASES = [(None, False), ([5, 3, 1], False), ([5, 4, 2], True), (None, True)]
TOL = {torch.float64: 1e-10, torch.float32: 2e-5}


def _perturbed(cell: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Move every parameter off its initial value (layer-norm gains start at exactly 1)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in cell.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return cell


def _run(cell, x, state, lengths, reverse, kernels: bool):
    """Outputs, final state and gradients of a fixed random loss."""
    with use_kernels(kernels):
        out, final = run_cell(cell, x, state, lengths, reverse)
    g = torch.Generator().manual_seed(1)
    loss = (out * torch.randn(out.shape, generator=g, dtype=out.dtype)).sum()
    for k, s in enumerate(final):
        loss = loss + (s * (k + 1.3)).sum()
    grads = torch.autograd.grad(loss, [x, *state, *cell.parameters()])
    return [out, *final, *grads]


def _compare(cell, dtype, lengths, reverse, F=4, T=5, B=3):
    torch.manual_seed(0)
    x = torch.randn(T, B, F, dtype=dtype, requires_grad=True)
    state = type(cell.init_state(B))(*(torch.randn_like(s).requires_grad_()
                                       for s in cell.init_state(B)))
    lengths = None if lengths is None else torch.tensor(lengths)
    fast = _run(cell, x, state, lengths, reverse, True)
    slow = _run(cell, x, state, lengths, reverse, False)
    for a, b in zip(fast, slow):
        assert a.shape == b.shape
        assert (a - b).abs().max().item() < TOL[dtype] * max(1.0, b.abs().max().item())


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("lengths,reverse", CASES)
@pytest.mark.parametrize("opts", LSTM_VARIANTS, ids=lambda o: "-".join(o) or "plain")
def test_lstm_kernel_equals_step_loop(opts, lengths, reverse, dtype):
    cell = _perturbed(LSTMStep(4, 6, dtype=dtype, **opts))
    _compare(cell, dtype, lengths, reverse)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("lengths,reverse", CASES)
@pytest.mark.parametrize("bias", [True, False])
def test_gru_kernel_equals_step_loop(bias, lengths, reverse, dtype):
    cell = _perturbed(GRUStep(4, 6, bias=bias, dtype=dtype))
    _compare(cell, dtype, lengths, reverse)


def _gradcheck(cell, lengths):
    x = torch.randn(4, 2, 3, dtype=torch.float64, requires_grad=True)
    state = tuple(torch.randn_like(s).requires_grad_() for s in cell.init_state(2))
    params = list(cell.parameters())    # gradcheck perturbs these in place: the cell sees it

    def f(x, *rest):
        out, final = run_cell(cell, x, cell.State(*rest[:len(state)]), lengths, False)
        return (out, *final)

    assert gradcheck(f, (x, *state, *params), eps=1e-6, atol=1e-6, fast_mode=True)


@pytest.mark.parametrize("opts", [{"layer_norm": True, "peephole": True, "proj_size": 2},
                                  {"coupled": True, "peephole": True}],
                         ids=["ln-peep-proj", "cifg-peep"])
def test_lstm_kernel_gradcheck(opts):
    torch.manual_seed(0)
    cell = _perturbed(LSTMStep(3, 4, dtype=torch.float64, **opts))
    before = STATS["lstm"]
    _gradcheck(cell, torch.tensor([4, 2]))
    assert STATS["lstm"] > before


def test_gru_kernel_gradcheck():
    torch.manual_seed(0)
    cell = _perturbed(GRUStep(3, 4, dtype=torch.float64))
    before = STATS["gru"]
    _gradcheck(cell, torch.tensor([3, 4]))
    assert STATS["gru"] > before


def test_gru_front_picks_torch_below_the_kernel_threshold():
    small, large = rnnlab.GRU(5, 7), rnnlab.GRU(5, rnnlab.GRU.cpu_kernel_min_hidden)
    before = STATS["gru"]
    small(torch.randn(3, 2, 5))
    assert STATS["gru"] == before
    large(torch.randn(3, 2, 5))
    assert STATS["gru"] == before + 1


def test_fast_path_is_used_by_fronts_and_registry():
    x = torch.randn(6, 2, 5)
    for name, key in [("lstm_ln", "lstm"), ("lstm_peephole", "lstm"),
                      ("lstm_cifg", "lstm"), ("gru", "gru")]:
        layer = rnnlab.build(name, 5, 7, num_layers=2)
        layer.cpu_kernel_min_hidden = 0             # GRU: the kernel even at H=7
        before = STATS[key]
        out, _ = layer(x)
        assert STATS[key] == before + 2, name                 # one kernel call per layer
        out.sum().backward()


def test_subclass_with_new_step_runs_its_own_step():
    class Doubled(LSTMStep):
        def step(self, xp, state):
            out, st = super().step(xp, state)
            return 2 * out, st

    cell = Doubled(3, 4)
    x = torch.randn(5, 2, 3)
    before = STATS["lstm"]
    out, _ = run_cell(cell, x, cell.init_state(2))
    assert STATS["lstm"] == before
    with use_kernels(False):
        ref, _ = run_cell(cell, x, cell.init_state(2))
    torch.testing.assert_close(out, ref)


def test_gru_front_matches_torch_gru_with_packing():
    torch.manual_seed(0)
    ref = torch.nn.GRU(4, 5, num_layers=2, bidirectional=True)
    ours = rnnlab.GRU(4, 5, num_layers=2, bidirectional=True)
    ours.cpu_kernel_min_hidden = 0                  # the kernel at any size
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(6, 3, 4)
    lengths = torch.tensor([6, 2, 4])
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, enforce_sorted=False)
    before = STATS["gru"]
    (po, ph), (ro, rh) = ours(packed), ref(packed)
    assert STATS["gru"] == before + 4
    torch.testing.assert_close(po.data, ro.data)
    torch.testing.assert_close(ph, rh)
    (po.data.sum() + ph.sum()).backward()
    (ro.data.sum() + rh.sum()).backward()
    for (n, a), (_, b) in zip(ours.named_parameters(), ref.named_parameters()):
        torch.testing.assert_close(a.grad, b.grad, msg=n)


@pytest.mark.parametrize("cell", [LSTMStep(3, 4, layer_norm=True), GRUStep(3, 4)],
                         ids=["lstm", "gru"])
def test_backward_twice_with_retained_graph(cell):
    x = torch.randn(5, 2, 3, requires_grad=True)
    out, _ = run_cell(cell, x, cell.init_state(2))
    g1 = torch.autograd.grad(out.square().sum(), x, retain_graph=True)[0]
    g2 = torch.autograd.grad(out.square().sum(), x)[0]
    torch.testing.assert_close(g1, g2)


# -- incremental inference (rnnlab.stepper) -----------------------------------------

@pytest.mark.parametrize("make,kinds", [
    (lambda: rnnlab.LSTM(5, 6, 2), ["lstm-fused"] * 2),
    (lambda: rnnlab.LSTM(5, 6, 2, proj_size=3), ["lstm-fused"] * 2),
    (lambda: rnnlab.LSTM(5, 6, 1, layer_norm=True, peephole=True), ["cell.step"]),
    (lambda: rnnlab.RNN(5, 6, 2, nonlinearity="relu"), ["elman-fused"] * 2),
    (lambda: rnnlab.GRU(5, 6, 2), ["cell.step"] * 2),
    (lambda: rnnlab.build("clockwork_rnn", 5, 8, num_modules=2), ["cell.step"]),
    (lambda: rnnlab.Stacked([rnnlab.Recurrent(LSTMStep(5, 6)),
                             rnnlab.Recurrent(LSTMStep(6, 6))]), ["lstm-fused"] * 2),
], ids=["lstm", "lstm-proj", "lstm-ln-peep", "rnn-relu", "gru", "clockwork", "stacked"])
def test_stepper_equals_whole_sequence_forward(make, kinds):
    from rnnlab.stepper import Stepper

    torch.manual_seed(0)
    core = _perturbed(make().eval())
    x = torch.randn(7, 2, 5)
    with torch.no_grad():
        ref_out, ref_state = core(x)
    stepper = Stepper(core)
    assert stepper.kinds == kinds                       # the fused path is the one used
    state, outs = None, []
    for t in range(7):
        out, state = stepper(x[t], state)
        outs.append(out)
    torch.testing.assert_close(torch.stack(outs), ref_out)
    for a, b in zip(rnnlab.layers.map_state(lambda t: [t], state) and _flat(state),
                    _flat(ref_state)):
        torch.testing.assert_close(a, b)


def _flat(state):
    if isinstance(state, torch.Tensor):
        return [state]
    return [t for s in state for t in _flat(s)]


def test_stepper_bare_cell_and_bidirectional_refused():
    from rnnlab.stepper import Stepper

    cell = LSTMStep(3, 4)
    x = torch.randn(2, 3)
    out, st = Stepper(cell)(x)
    ref, ref_st = cell(x)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(st.c, ref_st.c)
    with pytest.raises(ValueError, match="unidirectional"):
        Stepper(rnnlab.LSTM(3, 4, bidirectional=True))


def test_bench_command_runs_tiny(tmp_path):
    from rnnlab.cli import main

    rc = main(["bench", "speed", "--arch", "lstm_cifg", "--arch", "gru", "--hidden", "8",
               "--seq", "4", "--batch", "2", "--reps", "1", "--loop-reps", "1",
               "--cases", "default", "--no-memory", "--out", str(tmp_path)])
    assert rc == 0
    result = __import__("json").loads((tmp_path / "speed.json").read_text())
    assert [c["arch"] for c in result["cases"]] == ["lstm_cifg", "gru"]
    assert result["cases"][0]["flop_ratio"] == pytest.approx(0.75, rel=0.05)
    assert "| lstm_cifg |" in (tmp_path / "speed.md").read_text()
    rc = main(["bench", "speed", "--arch", "rnn", "--hidden", "8", "--seq", "4", "--batch", "2",
               "--reps", "1", "--loop-reps", "0", "--cases", "default", "--no-memory",
               "--merge", "--out", str(tmp_path)])
    merged = __import__("json").loads((tmp_path / "speed.json").read_text())
    assert [c["arch"] for c in merged["cases"]] == ["lstm_cifg", "gru", "rnn"]
    assert len(merged["runs"]) == 2


@pytest.mark.parametrize("cell", [LSTMStep(16, 64, layer_norm=True, peephole=True),
                                  LSTMStep(16, 80, coupled=True), GRUStep(16, 80)],
                         ids=["lstm-ln-peep", "lstm-cifg", "gru"])
def test_packed_onednn_gemm_path_float32(cell):
    """Weights big enough for the oneDNN packed per-step GEMM (float32, CPU)."""
    if not torch.backends.mkldnn.is_available():
        pytest.skip("no oneDNN in this torch build")
    before = STATS["packed_gemm"]
    _compare(_perturbed(cell), torch.float32, [9, 4, 9], False, F=16, T=9, B=3)
    assert STATS["packed_gemm"] >= before + 2                # forward and backward GEMMs


# -- Depth-Gated LSTM (rnnlab.kernels.depth_gated on the LSTM kernel) -----------------------

@pytest.mark.parametrize("opts", [{}, {"peephole": True, "coupled": True},
                                  {"depth_gate": False}, {"bias": False}],
                         ids=["plain", "peep-cifg", "no-gate", "no-bias"])
@pytest.mark.parametrize("lengths", [None, [5, 3, 2]], ids=["full", "lengths"])
def test_depth_gated_kernel_equals_step_loop(opts, lengths):
    torch.manual_seed(0)
    model = _perturbed(rnnlab.build("depth_gated_lstm", 4, 6, num_layers=3, **opts).double())
    x = torch.randn(5, 3, 4, dtype=torch.float64, requires_grad=True)
    lengths = None if lengths is None else torch.tensor(lengths)

    def run(kernels: bool):
        with use_kernels(kernels):
            out, state = model(x, lengths=lengths)
        flat = [t for s in state for t in s]
        g = torch.Generator().manual_seed(1)
        loss = (out * torch.randn(out.shape, generator=g, dtype=out.dtype)).sum()
        loss = loss + sum((t * (k + 1.3)).sum() for k, t in enumerate(flat))
        return [out, *flat, *torch.autograd.grad(loss, [x, *model.parameters()])]

    before = STATS["depth_gated"]
    fast = run(True)
    assert STATS["depth_gated"] == before + 3                  # every layer took the kernel
    for a, b in zip(fast, run(False)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("cell", [LSTMStep(3, 4, peephole=True), GRUStep(3, 4)],
                         ids=["lstm", "gru"])
def test_empty_sequence_keeps_state(cell):
    state = type(cell.init_state(2))(*(torch.randn_like(s) for s in cell.init_state(2)))
    out, final = run_cell(cell, torch.randn(0, 2, 3), state)
    assert out.shape == (0, 2, 4)
    for a, b in zip(final, state):
        torch.testing.assert_close(a, b)
