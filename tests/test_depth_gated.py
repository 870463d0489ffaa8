"""Depth-Gated LSTM (Yao et al. 2015): a naive layer-by-layer reference from the equations,
the stacked-LSTM reduction with the depth gate off, gate values, chunks, gradcheck."""
import pytest
import torch
from torch.func import functional_call

import rnnlab
from rnnlab.cells.depth_gated import DepthGatedLSTMStep
from rnnlab.cells.lstm import LSTMState
from rnnlab.layers.depth_gated import DepthGatedLSTM

D = torch.float64
sig = torch.sigmoid


def naive_step(cell, x, lower, h, c):
    """One step from the paper's equations; lower is c_t^{L-1} (None at the bottom)."""
    H = cell.hidden_size
    pre = x @ cell.weight_ih.T + h @ cell.weight_hh.T
    if cell.bias:
        pre = pre + cell.bias_ih + cell.bias_hh
    names = ["f", "g", "o"] if cell.coupled else ["i", "f", "g", "o"]
    a = {n: pre[:, k * H:(k + 1) * H] for k, n in enumerate(names)}
    p = dict(zip(["f", "o"] if cell.coupled else ["i", "f", "o"],
                 cell.weight_peephole if cell.peephole else [0, 0, 0]))
    f = sig(a["f"] + p["f"] * c)
    i = 1 - f if cell.coupled else sig(a["i"] + p["i"] * c)
    c_new = f * c + i * torch.tanh(a["g"])
    d = torch.zeros_like(c)
    if cell.depth_gate:
        low = x @ cell.weight_lx.T if lower is None else lower
        ad = x @ cell.weight_xd.T + cell.weight_cd * c + cell.weight_ld * low
        d = sig(ad + (cell.bias_d if cell.bias else 0))
        c_new = c_new + d * low
    o = sig(a["o"] + p["o"] * c_new)
    return o * torch.tanh(c_new), c_new, {"input": i, "forget": f, "output": o, "depth": d}


def naive_dglstm(model, x, state):
    """Layer by layer over the whole sequence: layer L reads h^{L-1} and c^{L-1}."""
    lower, finals = None, []
    for k, cell in enumerate(model.cells):
        h, c = state[k]
        hs, cs = [], []
        for t in range(x.shape[0]):
            h, c, _ = naive_step(cell, x[t], None if lower is None else lower[t], h, c)
            hs.append(h)
            cs.append(c)
        x, lower = torch.stack(hs), torch.stack(cs)
        finals.append((h, c))
    return x, finals


def rand_state(L, B, H):
    return tuple(LSTMState(torch.randn(B, H, dtype=D), torch.randn(B, H, dtype=D))
                 for _ in range(L))


OPTIONS = [{}, {"peephole": True}, {"coupled": True}, {"peephole": True, "coupled": True},
           {"bias": False}, {"depth_gate": False, "peephole": True}]


@pytest.mark.parametrize("opts", OPTIONS)
def test_matches_naive_reference(opts):
    torch.manual_seed(0)
    m = DepthGatedLSTM(3, 5, 3, dtype=D, **opts)
    x, state = torch.randn(6, 2, 3, dtype=D), rand_state(3, 2, 5)
    out, finals = m(x, state)
    ref, ref_finals = naive_dglstm(m, x, state)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
    for (h, c), (rh, rc) in zip(finals, ref_finals):
        torch.testing.assert_close(h, rh, rtol=0, atol=1e-12)
        torch.testing.assert_close(c, rc, rtol=0, atol=1e-12)


@pytest.mark.parametrize("batch_first", [False, True])
def test_depth_gate_off_equals_stacked_lstm(batch_first):
    torch.manual_seed(1)
    dg = DepthGatedLSTM(4, 6, 3, depth_gate=False, batch_first=batch_first, dtype=D)
    lstm = rnnlab.LSTM(4, 6, 3, batch_first=batch_first, dtype=D)
    with torch.no_grad():
        for k, cell in enumerate(dg.cells):
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(cell, name).copy_(getattr(lstm, f"{name}_l{k}"))
    x = torch.randn(2, 7, 4, dtype=D) if batch_first else torch.randn(7, 2, 4, dtype=D)
    state = rand_state(3, 2, 6)
    out, finals = dg(x, state)
    ref, (h, c) = lstm(x, (torch.stack([s.h for s in state]), torch.stack([s.c for s in state])))
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(torch.stack([s.h for s in finals]), h, rtol=0, atol=1e-12)
    torch.testing.assert_close(torch.stack([s.c for s in finals]), c, rtol=0, atol=1e-12)


@pytest.mark.parametrize("lower", [False, True])
def test_gate_values_are_what_the_step_uses(lower):
    torch.manual_seed(2)
    cell = DepthGatedLSTMStep(3, 4, lower=lower, peephole=True, dtype=D)
    with torch.no_grad():
        cell.weight_ld.mul_(4.0)                         # make the depth path matter
    x = torch.randn(2, 3 + (4 if lower else 0), dtype=D)
    state = LSTMState(torch.randn(2, 4, dtype=D), torch.randn(2, 4, dtype=D))
    xp = cell.project_input(x)
    got = cell.gate_values(xp, state)
    h_ref, c_ref, gates_ref = naive_step(cell, x[:, :3], x[:, 3:] if lower else None, *state)
    assert set(got) == {"input", "forget", "output", "depth"}
    for k in got:
        torch.testing.assert_close(got[k], gates_ref[k], rtol=0, atol=1e-14)
    h, new = cell.step(xp, state)
    torch.testing.assert_close(h, got["output"] * torch.tanh(new.c), rtol=0, atol=0)
    torch.testing.assert_close(new.c, c_ref, rtol=0, atol=1e-14)
    assert (got["depth"] - 0.5).abs().max() > 0.05     # the gate is not idle


def test_whole_equals_chunks_with_carried_state_and_lengths():
    torch.manual_seed(3)
    m = DepthGatedLSTM(3, 4, 2, peephole=True, dtype=D)
    x = torch.randn(10, 3, 3, dtype=D)
    whole, sw = m(x)
    a, st = m(x[:4])
    b, sc = m(x[4:], st)
    torch.testing.assert_close(torch.cat([a, b]), whole, rtol=0, atol=1e-12)
    for s1, s2 in zip(sc, sw):
        torch.testing.assert_close(s1.c, s2.c, rtol=0, atol=1e-12)
    lengths = torch.tensor([10, 6, 2])
    out, fin = m(x, lengths=lengths)
    short, fs = m(x[:6, 1:2])
    torch.testing.assert_close(out[:6, 1:2], short, rtol=0, atol=1e-12)
    assert out[6:, 1].abs().max() == 0
    torch.testing.assert_close(fin[1].c[1:2], fs[1].c, rtol=0, atol=1e-12)


def test_gradcheck_float64():
    torch.manual_seed(4)
    m = DepthGatedLSTM(2, 3, 2, peephole=True, dtype=D)  # fast_mode: random projections
    names = [n for n, _ in m.named_parameters()]

    def fn(x, h0, *params):
        state = (LSTMState(h0, h0 * 0.5), LSTMState(h0.flip(0), h0))
        out, finals = functional_call(m, dict(zip(names, params)), (x, state))
        return out, finals[0].c, finals[1].c
    inputs = [torch.randn(3, 2, 2, dtype=D), torch.randn(2, 3, dtype=D)]
    inputs += [p.detach().clone() for p in m.parameters()]
    assert torch.autograd.gradcheck(fn, [t.requires_grad_() for t in inputs], fast_mode=True)


def test_registry_dropout_and_bad_input():
    layer = rnnlab.build("depth_gated_lstm", 3, 8, num_layers=2, dropout=0.5, batch_first=True)
    out, state = layer(torch.randn(2, 5, 3))
    assert out.shape == (2, 5, 8) and layer.output_size == 8 and len(state) == 2
    layer.eval()
    torch.testing.assert_close(layer(torch.ones(2, 5, 3))[0], layer(torch.ones(2, 5, 3))[0])
    with pytest.raises(ValueError, match=r"received shape \(5, 2, 4\)"):
        layer(torch.zeros(2, 5, 4))
    with pytest.raises(ValueError, match="one LSTMState per layer"):
        layer(torch.zeros(2, 5, 3), state[:1])
