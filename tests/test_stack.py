"""The one stack loop (``rnnlab.layers.run_stack``): every multi-layer architecture stacks
through it, and each stack equals torch.nn's stacked RNN/LSTM/GRU, inter-layer dropout
included (same seed, same masks), in training and in evaluation."""
import pytest
import torch
from torch import nn

import rnnlab
from rnnlab.cells.lstm import LSTMStep
from rnnlab.kernels import STATS, use_kernels
from rnnlab.layers import Recurrent, Stacked, run_stack
from rnnlab.layers.grid import GridLSTM, load_lstm_weights

T, B, F, H, L = 6, 3, 4, 5, 3


def _torch_lstm(dropout: float, **kw) -> nn.LSTM:
    torch.manual_seed(0)
    return nn.LSTM(F, H, L, dropout=dropout, **kw)


def _run(module, x, seed: int = 7):
    torch.manual_seed(seed)
    return module(x)


def _close(a, b):
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dropout", [0.0, 0.5])
@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("name", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_fronts_cell_path_equals_torch(name, bidirectional, dropout, train):
    torch.manual_seed(0)
    theirs = getattr(nn, name)(F, H, L, dropout=dropout, bidirectional=bidirectional)
    ours = getattr(rnnlab, name)(F, H, L, dropout=dropout, bidirectional=bidirectional)
    ours.load_state_dict(theirs.state_dict())
    theirs.train(train), ours.train(train)
    x = torch.randn(T, B, F)
    want, want_h = _run(theirs, x)
    with use_kernels(False):                          # the cells through run_stack
        got, got_h = _run(ours, x)
    _close(got, want)
    for a, b in zip(got_h if name == "LSTM" else (got_h,), want_h if name == "LSTM" else (want_h,)):
        _close(a, b)
    if dropout and train:                             # the masks did act
        assert not torch.allclose(_run(ours, x, seed=8)[0], want)


@pytest.mark.parametrize("dropout, train", [(0.0, True), (0.5, True), (0.5, False)])
def test_stacked_of_cells_equals_torch_lstm(dropout, train):
    theirs = _torch_lstm(dropout).train(train)
    cells = [LSTMStep(F if k == 0 else H, H) for k in range(L)]
    with torch.no_grad():
        for k, cell in enumerate(cells):
            for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(cell, n).copy_(getattr(theirs, f"{n}_l{k}"))
    ours = Stacked([Recurrent(c) for c in cells], dropout).train(train)
    x = torch.randn(T, B, F)
    want, (h, c) = _run(theirs, x)
    got, finals = _run(ours, x)
    _close(got, want)
    _close(torch.stack([s.h for s in finals]), h)
    _close(torch.stack([s.c for s in finals]), c)


@pytest.mark.parametrize("kernels", [True, False])
@pytest.mark.parametrize("dropout, train", [(0.0, True), (0.5, True), (0.5, False)])
def test_depth_gated_without_its_gate_is_torchs_stacked_lstm(dropout, train, kernels):
    """Dropout acts on the h passed up, not on the cell beside it: with the depth gate off
    the layer is nn.LSTM, masks included."""
    theirs = _torch_lstm(dropout).train(train)
    ours = rnnlab.DepthGatedLSTM(F, H, L, dropout=dropout, depth_gate=False).train(train)
    with torch.no_grad():
        for k, layer in enumerate(ours.layers):
            for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(layer.cell, n).copy_(getattr(theirs, f"{n}_l{k}"))
    x = torch.randn(T, B, F)
    want, (h, c) = _run(theirs, x)
    calls = STATS["depth_gated"]
    with use_kernels(kernels):
        got, finals = _run(ours, x)
    assert (STATS["depth_gated"] > calls) == kernels
    _close(got, want)
    _close(torch.stack([s.c for s in finals]), c)


@pytest.mark.parametrize("dropout, train", [(0.0, True), (0.5, True), (0.5, False)])
def test_grid_with_no_depth_transform_is_torchs_stacked_lstm(dropout, train):
    theirs = _torch_lstm(dropout).train(train)
    ours = GridLSTM(F, H, L, dropout=dropout, depth_kind="none", output_form="standard")
    load_lstm_weights(ours, theirs).train(train)
    x = torch.randn(T, B, F)
    want, (h, c) = _run(theirs, x)
    got, final = _run(ours, x)
    _close(got, want)
    _close(final.h, h)
    _close(final.m, c)


def test_run_stack_drops_out_only_what_is_passed_up():
    seen = []

    def layer(x):
        seen.append(x)
        return x, None
    x = torch.ones(2, 3, 8)
    torch.manual_seed(0)
    run_stack([layer, layer], x, 0.5, True, passed=5)
    assert (seen[1][..., 5:] == 1).all()                       # the memory part untouched
    assert set(seen[1][..., :5].unique().tolist()) == {0.0, 2.0}
    seen.clear()
    run_stack([layer, layer], x, 0.5, False, passed=5)         # evaluation: no dropout
    assert (seen[1] == 1).all()
