"""rnnlab's fronts behave as torch.nn's RNN/LSTM/GRU and cells do, for what PyTorch's own
RNN tests exercise: parameter names and order, initialisation, repr, state_dict,
parametrizations, pruning, functional_call, weight reassignment, constructor and forward
errors, second derivatives, tracing, scripting, compile, export and quantisation.

Every behaviour is checked on the torch.nn class too (the control): a test that passes
for torch and fails for rnnlab is a drop-in failure.
"""
import warnings

import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.nn.utils import parametrizations, parametrize, prune

import rnnlab
from rnnlab.kernels import STATS, use_kernels

PAIRS = {"RNN": (rnnlab.RNN, nn.RNN), "LSTM": (rnnlab.LSTM, nn.LSTM),
         "GRU": (rnnlab.GRU, nn.GRU)}
CELLS = {"RNNCell": (rnnlab.RNNCell, nn.RNNCell), "LSTMCell": (rnnlab.LSTMCell, nn.LSTMCell),
         "GRUCell": (rnnlab.GRUCell, nn.GRUCell)}
CONFIGS = [dict(num_layers=2), dict(bidirectional=True), dict(bias=False),
           dict(batch_first=True, num_layers=2, bidirectional=True)]


def both(name, *args, seed=0, **kw):
    """(ours, torch's), built from the same random state: they must start equal."""
    ours, theirs = {**PAIRS, **CELLS}[name]
    torch.manual_seed(seed)
    a = ours(*args, **kw)
    torch.manual_seed(seed)
    b = theirs(*args, **kw)
    return a, b


def outputs(m, x, hx=None):
    out = m(x) if hx is None else m(x, hx)
    return out if isinstance(out, tuple) else (out,)


def flat(t):
    return [u for v in t for u in (v if isinstance(v, tuple) else (v,))]


@pytest.mark.parametrize("name", PAIRS)
@pytest.mark.parametrize("kw", CONFIGS, ids=str)
def test_parameters_are_torchs_names_order_and_initial_values(name, kw):
    ours, theirs = both(name, 5, 7, **kw)
    assert isinstance(ours, type(theirs))
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    for a, b in zip(ours.parameters(), theirs.parameters()):
        assert torch.equal(a, b)
    assert ours._flat_weights_names == theirs._flat_weights_names
    assert isinstance(ours._flat_weights, list) and len(ours._flat_weights) == len(
        theirs._flat_weights)
    assert repr(ours) == repr(theirs)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    x = torch.randn(4, 3, 5)
    for a, b in zip(flat(outputs(ours, x)), flat(outputs(theirs, x))):
        torch.testing.assert_close(a, b)


def test_projection_and_cells_match_torch():
    ours, theirs = both("LSTM", 5, 7, num_layers=2, proj_size=3)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    assert repr(ours) == repr(theirs)
    for name in CELLS:
        a, b = both(name, 5, 7)
        assert isinstance(a, type(b)) and repr(a) == repr(b)
        assert [n for n, _ in a.named_parameters()] == [n for n, _ in b.named_parameters()]
        x = torch.randn(3, 5)
        for u, v in zip(flat(outputs(a, x)), flat(outputs(b, x))):
            torch.testing.assert_close(u, v)


@pytest.mark.parametrize("name", [*PAIRS, *CELLS])
def test_reset_parameters_draws_like_torch(name):
    ours, theirs = both(name, 4, 6)
    torch.manual_seed(3)
    ours.reset_parameters()
    torch.manual_seed(3)
    theirs.reset_parameters()
    for a, b in zip(ours.parameters(), theirs.parameters()):
        assert torch.equal(a, b)


def test_variants_name_their_extra_parameters_like_torch():
    m = rnnlab.LSTM(4, 6, num_layers=2, bidirectional=True, peephole=True, layer_norm=True)
    names = [n for n, _ in m.named_parameters()]
    assert names[:4] == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"]
    assert "weight_peephole_l1_reverse" in names and "ln_c_bias_l0" in names
    assert torch.equal(m.ln_ih_weight_l0, torch.ones(24))          # the variant's own init
    assert m.weight_ih_l0.shape == (24, 4)
    assert rnnlab.LSTM(4, 6, coupled=True).weight_ih_l0.shape == (18, 4)   # 3 gates
    assert "peephole=True" in repr(m)
    assert rnnlab.LSTM(4, 6, forget_bias=1.0).bias_ih_l0[6:12].min() > 0.5


def test_dropout_with_one_layer_warns_like_torch():
    for cls in (nn.LSTM, rnnlab.LSTM):
        with pytest.warns(UserWarning, match="num_layers greater than 1"):
            cls(3, 4, dropout=0.5)


def test_load_state_dict_reports_torch_names():
    ours = rnnlab.LSTM(3, 4, num_layers=2)
    sd = nn.LSTM(3, 4).state_dict()
    sd["bogus"] = torch.zeros(1)
    res = ours.load_state_dict(sd, strict=False)
    assert sorted(res.missing_keys) == ["bias_hh_l1", "bias_ih_l1", "weight_hh_l1",
                                        "weight_ih_l1"]
    assert res.unexpected_keys == ["bogus"]
    with pytest.raises(RuntimeError, match="weight_ih_l1"):
        ours.load_state_dict(nn.LSTM(3, 4).state_dict())


@pytest.mark.parametrize("tool", ["weight_norm", "parametrizations.weight_norm",
                                  "spectral_norm", "register_parametrization", "prune"])
@pytest.mark.parametrize("name", ["LSTM", "GRU"])
def test_parametrizations_and_pruning_act_as_on_torch(tool, name):
    ours, theirs = both(name, 4, 6, num_layers=2)
    for m in (ours, theirs):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if tool == "weight_norm":
                nn.utils.weight_norm(m, "weight_hh_l1")
            elif tool == "parametrizations.weight_norm":
                parametrizations.weight_norm(m, "weight_hh_l0")
            elif tool == "spectral_norm":
                torch.manual_seed(5)
                parametrizations.spectral_norm(m, "weight_ih_l1")
            elif tool == "register_parametrization":
                parametrize.register_parametrization(m, "weight_hh_l0", _Halve())
            else:
                prune.l1_unstructured(m, "weight_ih_l0", amount=0.5)
    x = torch.randn(5, 2, 4)
    a, b = outputs(ours, x), outputs(theirs, x)
    torch.testing.assert_close(a[0], b[0])
    assert sorted(n for n, _ in ours.named_parameters()) == sorted(
        n for n, _ in theirs.named_parameters())
    a[0].sum().backward()                           # the original weights get gradients
    assert all(p.grad is not None for p in ours.parameters())


class _Halve(nn.Module):
    def forward(self, w):
        return w * 0.5


@pytest.mark.parametrize("variant", [{}, {"peephole": True}, {"layer_norm": True}])
def test_functional_call_and_reassigned_weights(variant):
    m = rnnlab.LSTM(4, 6, **variant)
    x = torch.randn(5, 2, 4)
    swapped = {n: torch.zeros_like(p) for n, p in m.named_parameters()}
    out, (h, c) = functional_call(m, swapped, (x,))
    assert out.abs().max() == 0 and h.abs().max() == 0     # every weight came from the dict
    before = m(x)[0]
    m.weight_hh_l0 = nn.Parameter(torch.zeros_like(m.weight_hh_l0))   # reassign
    after = m(x)[0]
    assert not torch.allclose(before, after)
    ref = nn.LSTM(4, 6)
    ref.load_state_dict({k: v for k, v in m.state_dict().items() if k in ref.state_dict()})
    if not variant:
        torch.testing.assert_close(after, ref(x)[0])


# -- errors: the type torch raises, a message containing torch's wording ---------------------

BAD_CONSTRUCTORS = [("LSTM", (3, 0), {}), ("GRU", (3, -1), {}), ("RNN", (0, 4), {}),
                    ("LSTM", (3, 4), {"num_layers": 0}), ("LSTM", (3, 4), {"dropout": 2.0}),
                    ("LSTM", (3, 4), {"proj_size": 4}), ("LSTM", (3, 4), {"proj_size": -1}),
                    ("RNN", (3, 4), {"nonlinearity": "gelu"}),
                    ("LSTM", (3, 4), {"bias": "yes"}), ("GRU", (3, 4), {"batch_first": 1.5}),
                    ("GRU", (3, 4), {"proj_size": 2}), ("RNN", (3, 4), {"proj_size": 2})]


@pytest.mark.parametrize("name, args, kw", BAD_CONSTRUCTORS, ids=str)
def test_constructor_errors_are_torchs(name, args, kw):
    ours, theirs = {**PAIRS, **CELLS}[name]
    with pytest.raises(Exception) as want:
        theirs(*args, **kw)
    with pytest.raises(want.type) as got:
        ours(*args, **kw)
    assert str(want.value) in str(got.value)


def _bad_calls(name):
    h = (lambda *s: (torch.zeros(*s), torch.zeros(*s))) if name == "LSTM" else torch.zeros
    return {"features": (torch.randn(5, 3, 7), None),
            "dims": (torch.randn(5, 3, 4, 1), None),
            "dtype": (torch.ones(5, 3, 4, dtype=torch.long), None),
            "hidden": (torch.randn(5, 3, 4), h(1, 2, 6)),
            "layers": (torch.randn(5, 3, 4), h(2, 3, 6)),
            "unbatched hidden": (torch.randn(5, 4), h(1, 1, 6))}


@pytest.mark.parametrize("name", PAIRS)
@pytest.mark.parametrize("case", list(_bad_calls("RNN")))
@pytest.mark.parametrize("path", ["default", "cells", "variant"])
def test_forward_errors_are_torchs_on_every_path(name, case, path):
    if path == "variant" and name != "LSTM":
        pytest.skip("only the LSTM has variants")
    x, hx = _bad_calls(name)[case]
    theirs = PAIRS[name][1](4, 6)
    ours = rnnlab.LSTM(4, 6, peephole=True) if path == "variant" else PAIRS[name][0](4, 6)
    with pytest.raises(Exception) as want:
        theirs(x, hx)
    with use_kernels(path == "default"), pytest.raises(want.type) as got:
        ours(x, hx)
    assert str(want.value).split("(")[0] in str(got.value)


# -- autograd: second derivatives through every path are autograd's own ----------------------

@pytest.mark.parametrize("arch, kw", [("gru", {}), ("lstm", {"peephole": True}),
                                      ("lstm", {"coupled": True, "layer_norm": True}),
                                      ("clockwork_rnn", {"num_modules": 2}),
                                      ("depth_gated_lstm", {}), ("grid_lstm", {})])
def test_double_backward_through_kernels_equals_the_loop(arch, kw):
    torch.manual_seed(0)
    H = 256 if arch == "gru" else 8                 # a CPU GRU from 256 up runs the kernel
    m = rnnlab.build(arch, 4, H, 2, **kw).double()
    x = torch.randn(5, 3, 4, dtype=torch.float64, requires_grad=True)

    def penalty_grad():
        out, _ = m(x)
        g, = torch.autograd.grad(out.pow(2).sum(), x, create_graph=True)
        return torch.autograd.grad(g.pow(2).sum(), list(m.parameters()))

    calls = sum(STATS.values())
    fast = penalty_grad()
    assert sum(STATS.values()) > calls              # the kernel ran
    with use_kernels(False):
        ref = penalty_grad()
    for a, b in zip(fast, ref):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)
    assert sum(a.abs().sum() for a in fast) > 0


@pytest.mark.parametrize("arch, kw", [("gru", {}), ("lstm", {"peephole": True}),
                                      ("clockwork_rnn", {"num_modules": 2}),
                                      ("depth_gated_lstm", {}),
                                      ("grid_lstm", {"depth_kind": "tanh"}),
                                      ("grid_lstm", {"priority": ()})])
def test_double_backward_with_lengths_and_state_equals_the_loop(arch, kw):
    torch.manual_seed(1)
    H = 256 if arch == "gru" else 8
    m = rnnlab.build(arch, 4, H, 2, **kw).double()
    x = torch.randn(5, 3, 4, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([5, 3, 2])

    def penalty_grad():
        out, state = m(x, lengths=lengths)
        total = out.pow(2).sum() + sum(t.pow(2).sum() for t in _tensors(state))
        g, = torch.autograd.grad(total, x, create_graph=True)
        return torch.autograd.grad(g.pow(2).sum(), [x, *m.parameters()])

    calls = sum(STATS.values())
    fast = penalty_grad()
    assert sum(STATS.values()) > calls
    with use_kernels(False):
        ref = penalty_grad()
    for a, b in zip(fast, ref):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def _tensors(state):
    if isinstance(state, torch.Tensor):
        return [state] if state.is_floating_point() else []
    return [t for s in state for t in _tensors(s)]


def test_plain_backward_runs_the_hand_written_kernel_backward(monkeypatch):
    from rnnlab.kernels import recompute
    calls = []
    monkeypatch.setattr(recompute.Reference, "grads",
                        lambda *a: calls.append(1) or pytest.fail("recomputed"))
    m = rnnlab.build("lstm", 4, 8, 2, peephole=True)
    x = torch.randn(5, 3, 4, requires_grad=True)
    m(x)[0].sum().backward()
    assert x.grad.abs().sum() > 0 and not calls


def test_double_backward_of_the_gru_kernel_matches_torch():
    ours, theirs = both("GRU", 4, 256)
    x = torch.randn(5, 3, 4, dtype=torch.float64, requires_grad=True)
    grads = []
    for m in (ours.double(), theirs.double()):
        out, _ = m(x)
        g, = torch.autograd.grad(out.pow(2).sum(), x, create_graph=True)
        grads.append(torch.autograd.grad(g.pow(2).sum(), m.weight_hh_l0)[0])
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-8, atol=1e-10)
    assert grads[1].norm() > 1


def test_gradcheck_and_gradgradcheck_through_a_kernel():
    torch.manual_seed(0)
    m = rnnlab.LSTM(3, 4, peephole=True).double()
    x = torch.randn(4, 2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: m(t)[0], (x,))
    assert torch.autograd.gradgradcheck(lambda t: m(t)[0], (x,))


# -- tracing, scripting, compile, export, quantisation --------------------------------------

ARCHS = list(rnnlab.available())


@pytest.mark.parametrize("arch", ARCHS)
def test_trace_and_export_follow_the_input(arch):
    torch.manual_seed(0)
    m = rnnlab.build(arch, 4, 256 if arch == "gru" else 6, 2).eval()
    x, x2 = torch.randn(5, 2, 4), torch.randn(5, 2, 4)
    want = m(x2)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(m, (x,), check_trace=False)
        exported = torch.export.export(m, (x,)).module()
    torch.testing.assert_close(traced(x2)[0], want)       # not a constant of the first input
    torch.testing.assert_close(exported(x2)[0], want)


@pytest.mark.parametrize("arch", ["lstm", "lstm_ln", "gru", "clockwork_rnn", "grid_lstm"])
def test_compiled_training_step_equals_eager(arch):
    torch.manual_seed(0)
    m = rnnlab.build(arch, 4, 6, 2).double()
    x = torch.randn(5, 2, 4, dtype=torch.float64)
    compiled = torch.compile(m, backend="aot_eager")
    a = compiled(x)[0]
    a.sum().backward()
    got = [p.grad.clone() for p in m.parameters()]
    m.zero_grad()
    b = m(x)[0]
    b.sum().backward()
    torch.testing.assert_close(a, b)
    for g, p in zip(got, m.parameters()):
        torch.testing.assert_close(g, p.grad)


def test_script_plain_fronts_and_refuse_variants():
    torch.manual_seed(0)
    model = nn.Sequential(rnnlab.GRU(4, 6))
    x = torch.randn(5, 2, 4)
    scripted = torch.jit.script(model)
    torch.testing.assert_close(scripted(x)[0], model(x)[0])
    with pytest.raises(ValueError, match="layer_norm=True.*plain configuration"):
        torch.jit.script(rnnlab.LSTM(4, 6, layer_norm=True))


def test_quantize_dynamic_through_to_torch_equals_torchs():
    ours, theirs = both("LSTM", 4, 6, num_layers=2)
    x = torch.randn(5, 2, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q_theirs = torch.ao.quantization.quantize_dynamic(nn.Sequential(theirs), {nn.LSTM})
        q_ours = torch.ao.quantization.quantize_dynamic(
            rnnlab.to_torch(nn.Sequential(ours)), {nn.LSTM})
    assert type(q_ours[0]) is type(q_theirs[0])
    assert "quantized" in type(q_ours[0]).__module__
    torch.testing.assert_close(q_ours(x)[0], q_theirs(x)[0])
    with pytest.raises(ValueError, match="coupled=True.*no torch.nn equivalent"):
        rnnlab.to_torch(nn.Sequential(rnnlab.LSTM(4, 6, coupled=True)))
