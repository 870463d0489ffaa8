"""Cells against naive references written from the papers' equations, float64 gradcheck,
whole sequence = chunks with carried state, bad input, and tiny models that learn."""

import pytest
import torch
from torch import nn

import rnnlab
from rnnlab.cells import ElmanStep, GRUStep, LSTMStep
from rnnlab.layers import Bidirectional, Recurrent, Stacked

sig = torch.sigmoid


def naive_layer_norm(v, gain, shift=None, eps=1e-5):
    mu = v.mean(-1, keepdim=True)
    var = ((v - mu) ** 2).mean(-1, keepdim=True)
    out = (v - mu) / torch.sqrt(var + eps) * gain
    return out if shift is None else out + shift


def naive_lstm_step(cell, x, h, c):
    """The LSTM variants from their equations (Greff et al. 2015; Ba et al. 2016), gate by gate."""
    H = cell.hidden_size
    wx = x @ cell.weight_ih.T
    wh = h @ cell.weight_hh.T
    if cell.layer_norm:
        wx = naive_layer_norm(wx, cell.ln_ih_weight)
        wh = naive_layer_norm(wh, cell.ln_hh_weight)
    pre = wx + wh
    if cell.bias:
        pre = pre + cell.bias_ih + cell.bias_hh
    names = ["f", "g", "o"] if cell.coupled else ["i", "f", "g", "o"]
    a = {n: pre[:, k * H:(k + 1) * H] for k, n in enumerate(names)}
    if cell.peephole:
        p = dict(zip(["f", "o"] if cell.coupled else ["i", "f", "o"], cell.weight_peephole))
        a["f"] = a["f"] + p["f"] * c
        if not cell.coupled:
            a["i"] = a["i"] + p["i"] * c
    f = sig(a["f"])
    i = 1 - f if cell.coupled else sig(a["i"])
    c_new = f * c + i * torch.tanh(a["g"])
    ao = a["o"] + (p["o"] * c_new if cell.peephole else 0)
    cn = naive_layer_norm(c_new, cell.ln_c_weight, cell.ln_c_bias) if cell.layer_norm else c_new
    h_new = sig(ao) * torch.tanh(cn)
    if cell.proj_size:
        h_new = h_new @ cell.weight_hr.T
    return h_new, c_new


VARIANTS = [
    {},
    {"peephole": True},
    {"coupled": True},
    {"layer_norm": True},
    {"peephole": True, "coupled": True},
    {"peephole": True, "layer_norm": True, "coupled": True},
    {"layer_norm": True, "proj_size": 3},
    {"forget_bias": 1.0},
]


def randomise(module):
    """Move every parameter away from its initial value (LN gains 1, shifts 0 hide bugs)."""
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))


@pytest.mark.parametrize("opts", VARIANTS, ids=lambda o: "-".join(o) or "plain")
def test_lstm_variant_matches_naive_reference(opts):
    torch.manual_seed(0)
    cell = LSTMStep(4, 5, **opts).double()
    randomise(cell)
    B, T = 3, 6
    x = torch.randn(T, B, 4, dtype=torch.float64)
    state = cell.init_state(B)
    h, c = state.h + 0.5, state.c - 0.3
    out, _ = Recurrent(cell).run(x, (h, c), None)
    for t in range(T):
        h, c = naive_lstm_step(cell, x[t], h, c)
        assert torch.allclose(out[t], h, atol=1e-12), f"step {t}"


def test_forget_bias_initialisation():
    torch.manual_seed(0)
    a = LSTMStep(3, 4)
    torch.manual_seed(0)
    b = LSTMStep(3, 4, forget_bias=1.0)
    diff = (b.bias_ih - a.bias_ih).detach()
    assert torch.allclose(diff[4:8], torch.ones(4)) and diff[:4].abs().sum() == 0
    assert diff[8:].abs().sum() == 0
    with pytest.raises(ValueError):
        LSTMStep(3, 4, bias=False, forget_bias=1.0)


def test_coupled_and_peephole_parameter_shapes():
    cell = LSTMStep(3, 4, coupled=True, peephole=True)
    assert cell.weight_ih.shape == (12, 3) and cell.weight_peephole.shape == (2, 4)
    full = LSTMStep(3, 4, peephole=True)
    assert full.weight_ih.shape == (16, 3) and full.weight_peephole.shape == (3, 4)


def naive_gru_step(cell, x, h):
    """GRU in torch.nn.GRU's form (Cho et al. 2014 with r applied after W_hn h)."""
    W_ir, W_iz, W_in = cell.weight_ih.chunk(3)
    W_hr, W_hz, W_hn = cell.weight_hh.chunk(3)
    b_ir, b_iz, b_in = cell.bias_ih.chunk(3)
    b_hr, b_hz, b_hn = cell.bias_hh.chunk(3)
    r = sig(x @ W_ir.T + b_ir + h @ W_hr.T + b_hr)
    z = sig(x @ W_iz.T + b_iz + h @ W_hz.T + b_hz)
    n = torch.tanh(x @ W_in.T + b_in + r * (h @ W_hn.T + b_hn))
    return (1 - z) * n + z * h


def test_gru_and_elman_match_naive_reference():
    torch.manual_seed(0)
    gru = GRUStep(3, 4).double()
    rnn = ElmanStep(3, 4, nonlinearity="relu").double()
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    h_g = h_r = torch.randn(2, 4, dtype=torch.float64)
    out_g, _ = Recurrent(gru).run(x, (h_g,), None)
    out_r, _ = Recurrent(rnn).run(x, (h_r,), None)
    for t in range(5):
        h_g = naive_gru_step(gru, x[t], h_g)
        h_r = torch.relu(x[t] @ rnn.weight_ih.T + rnn.bias_ih + h_r @ rnn.weight_hh.T
                         + rnn.bias_hh)
        assert torch.allclose(out_g[t], h_g, atol=1e-12)
        assert torch.allclose(out_r[t], h_r, atol=1e-12)


CELLS = [("elman", lambda: ElmanStep(3, 4)),
         ("elman_relu", lambda: ElmanStep(3, 4, nonlinearity="relu")),
         ("gru", lambda: GRUStep(3, 4))] + [
    ("lstm-" + ("-".join(o) or "plain"), (lambda o=o: LSTMStep(3, 4, **o))) for o in VARIANTS]


@pytest.mark.parametrize("name,make", CELLS, ids=[c[0] for c in CELLS])
def test_gradcheck_float64(name, make):
    torch.manual_seed(0)
    cell = make().double()
    randomise(cell)
    layer = Recurrent(cell)
    x = torch.randn(4, 2, 3, dtype=torch.float64, requires_grad=True)
    s0 = tuple(t.clone().normal_().requires_grad_() for t in cell.init_state(2))
    params = list(cell.parameters())

    def f(x, *rest):
        state, ps = rest[: len(s0)], rest[len(s0):]
        out, fin = torch.func.functional_call(
            layer, dict(zip([f"cell.{n}" for n, _ in cell.named_parameters()], ps)),
            (x, state))
        return (out, *fin)

    assert torch.autograd.gradcheck(f, (x, *s0, *params), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("arch", ["rnn", "lstm", "gru", "lstm_ln", "lstm_peephole", "lstm_cifg"])
@pytest.mark.parametrize("fused", [True, False])
def test_whole_equals_chunks_with_carried_state(arch, fused):
    torch.manual_seed(0)
    layer = rnnlab.build(arch, 3, 5, num_layers=2)
    x = torch.randn(12, 2, 3)
    with rnnlab.kernels.use_kernels(fused):
        whole, h_whole = layer(x)
        state, outs = None, []
        for chunk in x.split([5, 1, 6]):
            out, state = layer(chunk, state)
            outs.append(out)
    # float32: a chunk's input GEMM rounds differently from the whole sequence's (layer
    # norm on one thread differs by 2e-6), so the bound is a few float32 ulps of O(1) values
    assert torch.allclose(torch.cat(outs), whole, atol=1e-5)
    for a, b in zip(rnnlab.layers.map_state(lambda t: t, state), h_whole):
        assert torch.allclose(a, b, atol=1e-5)


def test_generic_containers_match_front():
    """Stacked(Bidirectional(...)) of cells equals rnnlab.LSTM with the same weights."""
    torch.manual_seed(0)
    front = rnnlab.LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True)
    cells = list(front.cells)
    stack = Stacked([Bidirectional(cells[0], cells[1]), Bidirectional(cells[2], cells[3])],
                    batch_first=True)
    x = torch.randn(2, 5, 3)
    lengths = torch.tensor([5, 3])
    a, (h, c) = front(x, lengths=lengths)
    b, finals = stack(x, lengths=lengths)
    assert torch.allclose(a, b, atol=1e-6)
    assert torch.allclose(finals[1][1].c, c[3], atol=1e-6)
    assert stack.output_size == 8


# ---- bad input ---------------------------------------------------------------------------

def test_bad_lengths_name_the_range_and_shape():
    gru = rnnlab.GRU(3, 4)
    x = torch.randn(5, 2, 3)
    for path in (True, False):                         # torch's op with packing, the cells
        with rnnlab.kernels.use_kernels(path):
            with pytest.raises(ValueError, match=r"\[1, 5\].*max 6"):
                gru(x, lengths=torch.tensor([6, 2]))
            with pytest.raises(ValueError, match=r"\[1, 5\].*min 0"):
                gru(x, lengths=torch.tensor([0, 2]))
            with pytest.raises(ValueError, match=r"shape \(2,\).*\(3,\)"):
                gru(x, lengths=torch.tensor([1, 2, 3]))


# ---- tiny models learn a tiny task --------------------------------------------------------

@pytest.mark.parametrize("arch", ["rnn", "lstm", "gru", "lstm_ln", "lstm_peephole", "lstm_cifg"])
def test_tiny_model_learns_delayed_echo(arch):
    """Output the bit seen 3 steps earlier; chance is 50%."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    core, head = rnnlab.build(arch, 2, 24), nn.Linear(24, 2)
    opt = torch.optim.Adam([*core.parameters(), *head.parameters()], lr=2e-2)
    delay, T = 3, 16

    def batch(B):
        bits = torch.randint(0, 2, (T, B), generator=gen)
        return nn.functional.one_hot(bits, 2).float(), bits[:-delay]

    for _ in range(100):
        x, y = batch(32)
        loss = nn.functional.cross_entropy(head(core(x)[0][delay:]).flatten(0, 1), y.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    x, y = batch(256)
    with torch.no_grad():
        acc = (head(core(x)[0][delay:]).argmax(-1) == y).float().mean().item()
    assert acc > 0.95, f"{arch} reached only {acc:.2%}"


@pytest.mark.parametrize("module, old, new", [
    ("rnnlab.cells", "LSTMCell", "LSTMStep"), ("rnnlab.cells", "GRUCell", "GRUStep"),
    ("rnnlab.cells", "ElmanCell", "ElmanStep"), ("rnnlab.cells.lstm", "LSTMCell", "LSTMStep"),
    ("rnnlab.cells.clockwork", "ClockworkCell", "ClockworkStep"),
    ("rnnlab.cells.depth_gated", "DepthGatedLSTMCell", "DepthGatedLSTMStep"),
    ("rnnlab.cells.grid", "GridLayerCell", "GridLayerStep")])
def test_old_step_names_warn_and_give_the_step_class(module, old, new):
    import importlib
    mod = importlib.import_module(module)
    with pytest.warns(DeprecationWarning, match=f"{old} is deprecated.*{new}"):
        cls = getattr(mod, old)
    assert cls is getattr(mod, new)
    with pytest.raises(AttributeError):
        mod.NoSuchCell


def test_one_public_name_per_concept():
    """``...Cell`` at the top level is torch's one-step contract, ``...Step`` in
    rnnlab.cells the step contract; no name means both."""
    import warnings
    assert issubclass(rnnlab.LSTMCell, torch.nn.LSTMCell)
    assert not hasattr(rnnlab.cells.LSTMStep, "_templates")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        names = set(rnnlab.__all__) | set(rnnlab.cells.__all__)
    assert not any(n.endswith("Step") for n in rnnlab.__all__)
    assert not any(n.endswith("Cell") and n != "Cell" for n in rnnlab.cells.__all__)
    assert {"LSTMCell", "GRUCell", "RNNCell", "LSTMStep", "GRUStep", "ElmanStep"} <= names
