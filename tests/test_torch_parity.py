"""rnnlab.RNN/LSTM/GRU and their Cell classes against torch.nn: outputs, final states and
gradients of input, initial state and every parameter, through both the fused path and the
cell path."""
import itertools

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import rnnlab

TORCH = {"RNN": nn.RNN, "LSTM": nn.LSTM, "GRU": nn.GRU}
OURS = {"RNN": rnnlab.RNN, "LSTM": rnnlab.LSTM, "GRU": rnnlab.GRU}
TOL = {torch.float32: 1e-5, torch.float64: 1e-10}


def make_pair(mode, dtype=torch.float32, **kw):
    torch.manual_seed(0)
    ref = TORCH[mode](**kw).to(dtype)
    ours = OURS[mode](**kw).to(dtype)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def initial_state(mode, ref, B, dtype):
    D = 2 if ref.bidirectional else 1
    n = ref.num_layers * D
    h = torch.randn(n, B, ref.proj_size or ref.hidden_size, dtype=dtype, requires_grad=True)
    if mode != "LSTM":
        return h
    return h, torch.randn(n, B, ref.hidden_size, dtype=dtype, requires_grad=True)


def leaves(x, hx):
    return [x] + ([] if hx is None else list(hx) if isinstance(hx, tuple) else [hx])


def run_and_grad(module, x, hx, packed_lengths=None):
    """Forward, a loss touching outputs and final states, and the gradients."""
    inp = x
    if packed_lengths is not None:
        inp = pack_padded_sequence(x, packed_lengths, batch_first=module.batch_first,
                                   enforce_sorted=False)
    out, h = module(inp, hx)
    if packed_lengths is not None:
        out = pad_packed_sequence(out, batch_first=module.batch_first)[0]
    hs = h if isinstance(h, tuple) else (h,)
    w = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)
    loss = (out * w).sum() + sum((t ** 2).sum() for t in hs)
    params = list(module.parameters())
    grads = torch.autograd.grad(loss, leaves(x, hx) + params)
    return out.detach(), [t.detach() for t in hs], grads


def assert_close(a, b, tol, what):
    assert a.shape == b.shape, f"{what}: shape {a.shape} vs {b.shape}"
    err = (a - b).abs().max().item() if a.numel() else 0.0
    assert err <= tol, f"{what}: max abs difference {err:.3g} > {tol}"


def compare(mode, dtype, kw, given_state, packed, fused):
    ref, ours = make_pair(mode, dtype, **kw)
    B, T = 4, 7
    shape = (B, T, kw["input_size"]) if kw.get("batch_first") else (T, B, kw["input_size"])
    torch.manual_seed(1)
    x = torch.randn(*shape, dtype=dtype, requires_grad=True)
    hx = initial_state(mode, ref, B, dtype) if given_state else None
    lengths = torch.tensor([5, 7, 2, 6]) if packed else None
    r = run_and_grad(ref, x, hx, lengths)
    with rnnlab.kernels.use_kernels(fused):
        o = run_and_grad(ours, x, hx, lengths)
    tol = TOL[dtype]
    assert_close(o[0], r[0], tol, "output")
    for a, b in zip(o[1], r[1]):
        assert_close(a, b, tol, "final state")
    names = (["input"] + ["h0", "c0"][: len(leaves(x, hx)) - 1]
             + [n for n, _ in ref.named_parameters()])
    for name, a, b in zip(names, o[2], r[2]):
        assert_close(a, b, 10 * tol, f"grad {name}")


CASES = list(itertools.product(
    ["RNN", "LSTM", "GRU"], [1, 2, 3], [False, True], [False, True], [False, True]))


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "cells"])
@pytest.mark.parametrize("mode,layers,bidir,batch_first,given", CASES)
def test_matches_torch_float32(mode, layers, bidir, batch_first, given, fused):
    kw = dict(input_size=5, hidden_size=6, num_layers=layers, bidirectional=bidir,
              batch_first=batch_first)
    compare(mode, torch.float32, kw, given, packed=False, fused=fused)


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "cells"])
@pytest.mark.parametrize("mode", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("bidir", [False, True])
def test_packed_unsorted_float64(mode, bidir, fused):
    kw = dict(input_size=3, hidden_size=5, num_layers=2, bidirectional=bidir)
    compare(mode, torch.float64, kw, given_state=True, packed=True, fused=fused)


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "cells"])
@pytest.mark.parametrize("bidir,batch_first", [(False, False), (True, True)])
def test_lstm_proj_size(bidir, batch_first, fused):
    kw = dict(input_size=4, hidden_size=6, num_layers=2, bidirectional=bidir, proj_size=3,
              batch_first=batch_first)
    compare("LSTM", torch.float64, kw, given_state=True, packed=False, fused=fused)
    compare("LSTM", torch.float32, kw, given_state=False, packed=True, fused=fused)


def test_relu_rnn_and_no_bias():
    for fused in (True, False):
        compare("RNN", torch.float64, dict(input_size=3, hidden_size=4, num_layers=2,
                                          nonlinearity="relu"), True, False, fused)
        compare("GRU", torch.float64, dict(input_size=3, hidden_size=4, bias=False),
                True, False, fused)


@pytest.mark.parametrize("mode", ["RNN", "LSTM", "GRU"])
def test_state_dict_keys_and_attributes_match_torch(mode):
    kw = dict(input_size=3, hidden_size=4, num_layers=2, bidirectional=True)
    ref, ours = make_pair(mode, **kw)
    assert list(ours.state_dict()) == list(ref.state_dict())
    assert [p.shape for p in ours.parameters()] == [p.shape for p in ref.parameters()]
    assert torch.equal(ours.weight_hh_l1_reverse, ref.weight_hh_l1_reverse)
    ref.load_state_dict(ours.state_dict())          # and back the other way


def test_unbatched_input_matches_torch():
    ref, ours = make_pair("LSTM", input_size=3, hidden_size=4, num_layers=2)
    x = torch.randn(5, 3)
    h0 = (torch.randn(2, 4), torch.randn(2, 4))
    for fused in (True, False):
        with rnnlab.kernels.use_kernels(fused):
            (a, (_ha, ca)), (b, (_hb, cb)) = ref(x, h0), ours(x, h0)
        assert a.shape == b.shape == (5, 4)
        assert_close(b, a, 1e-6, "output")
        assert_close(cb, ca, 1e-6, "c_n")


def test_lengths_tensor_equals_packed_and_zero_pads():
    ref, ours = make_pair("GRU", input_size=3, hidden_size=4, bidirectional=True)
    x = torch.randn(6, 3, 3)
    lengths = torch.tensor([3, 6, 1])
    packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
    a, ha = ref(packed)
    a = pad_packed_sequence(a, total_length=6)[0]
    for fused in (True, False):
        with rnnlab.kernels.use_kernels(fused):
            b, hb = ours(x, lengths=lengths)
        assert_close(b, a, 1e-6, "output")
        assert_close(hb, ha, 1e-6, "h_n")
        assert b[3:, 0].abs().sum() == 0 and b[1:, 2].abs().sum() == 0


def test_dropout_between_layers_active_in_training_only():
    torch.manual_seed(0)
    lstm = rnnlab.LSTM(3, 8, num_layers=2, dropout=0.5)
    x = torch.randn(5, 2, 3)
    with rnnlab.kernels.use_kernels(False):
        lstm.eval()
        a, _ = lstm(x)
        b, _ = lstm(x)
        assert torch.equal(a, b)
        lstm.train()
        c, _ = lstm(x)
        assert not torch.allclose(a, c)


@pytest.mark.parametrize("name", ["RNNCell", "LSTMCell", "GRUCell"])
def test_cell_fronts_match_torch_cells(name):
    torch.manual_seed(0)
    ref = getattr(nn, name)(3, 5)
    ours = getattr(rnnlab, name)(3, 5)
    ours.load_state_dict(ref.state_dict())
    assert list(ours.state_dict()) == list(ref.state_dict())
    x = torch.randn(4, 3, requires_grad=True)
    hx = torch.randn(4, 5)
    hx = (hx, torch.randn(4, 5)) if name == "LSTMCell" else hx
    a, b = ref(x, hx), ours(x, hx)
    a = a if isinstance(a, tuple) else (a,)
    b = b if isinstance(b, tuple) else (b,)
    for p, q in zip(a, b):
        assert_close(q, p, 1e-6, name)
    ga = torch.autograd.grad(sum(t.sum() for t in a), [x, *ref.parameters()])
    gb = torch.autograd.grad(sum(t.sum() for t in b), [x, *ours.parameters()])
    for p, q in zip(ga, gb):
        assert_close(q, p, 1e-5, name + " grad")
    # unbatched and default state
    u_ref, u_ours = ref(x[0].detach()), ours(x[0].detach())
    u_ref = u_ref if isinstance(u_ref, tuple) else (u_ref,)
    u_ours = u_ours if isinstance(u_ours, tuple) else (u_ours,)
    for p, q in zip(u_ref, u_ours):
        assert p.shape == q.shape
        assert_close(q, p, 1e-6, name + " unbatched")
