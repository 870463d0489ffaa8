"""Clockwork RNN (Koutník et al. 2014): the active-modules kernel against a naive reference
written from the paper's equations and against the dense masked step, in outputs and
gradients; the Elman reduction; frozen inactive modules; chunks; gradcheck; bad input."""
import pytest
import torch

import rnnlab
from rnnlab.cells.clockwork import ClockworkState, ClockworkStep
from rnnlab.kernels.clockwork import ClockworkSequence, make_plan
from rnnlab.layers.clockwork import ClockworkRNN

D = torch.float64


def naive_clockwork(cell, x, h0, t0=0):
    """Module by module from the paper: module i updates when t mod T_i == 0 and reads
    only modules j >= i; the others keep their value."""
    h, outs = h0.clone(), []
    for step in range(x.shape[0]):
        t = t0 + step
        new = h.clone()
        for i, ((a, b), p) in enumerate(zip(cell.bounds, cell.periods)):
            if t % p:
                continue
            pre = x[step] @ cell.weight_ih[a:b].T + h[:, a:] @ cell.weight_hh[a:b, a:].T
            if cell.bias:
                pre = pre + cell.bias_ih[a:b] + cell.bias_hh[a:b]
            new[:, a:b] = torch.tanh(pre) if cell.nonlinearity == "tanh" else torch.relu(pre)
        h = new
        outs.append(h)
    return torch.stack(outs)


def make(F=3, H=10, periods=(1, 2, 4), seed=0, **kw):
    torch.manual_seed(seed)
    m = ClockworkRNN(F, H, periods=periods, dtype=D, **kw)
    with torch.no_grad():                      # nonzero lower blocks must be ignored
        m.cells[0].weight_hh.add_(torch.randn(H, H, dtype=D) * 0.3)
    return m


def run_grads(m, x, h0, kernel: bool, lengths=None):
    for c in m.cells:
        c.use_kernel = kernel
    state = (ClockworkState(h0, torch.full((x.shape[1],), 3)),)
    out, (final,) = m(x, state, lengths)
    g = torch.linspace(-1, 1, out.numel(), dtype=D).view_as(out)
    loss = (out * g).sum() + (final.h ** 2).sum()
    params = [p for p in m.parameters()]
    grads = torch.autograd.grad(loss, [x, h0] + params)
    return out, final, grads


@pytest.mark.parametrize("periods,nonlin,bias", [
    ((1, 2, 4), "tanh", True), ((1, 3, 5), "tanh", True), ((2, 2, 6), "relu", False),
    ((1, 1, 1), "tanh", True)])
def test_kernel_equals_dense_masked_reference_outputs_and_grads(periods, nonlin, bias):
    m = make(periods=periods, nonlinearity=nonlin, bias=bias)
    x = torch.randn(11, 4, 3, dtype=D, requires_grad=True)
    h0 = torch.randn(4, 10, dtype=D, requires_grad=True)
    lengths = torch.tensor([11, 7, 1, 9])
    for lens in (None, lengths):
        ok, fk, gk = run_grads(m, x, h0, True, lens)
        od, fd, gd = run_grads(m, x, h0, False, lens)
        torch.testing.assert_close(ok, od, rtol=0, atol=1e-12)
        torch.testing.assert_close(fk.h, fd.h, rtol=0, atol=1e-12)
        assert torch.equal(fk.t, fd.t)
        for a, b in zip(gk, gd):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-11)


@pytest.mark.parametrize("periods", [(1, 2, 4, 8), (1, 3, 5)])
def test_kernel_equals_naive_equations(periods):
    m = make(H=9, periods=periods)
    cell = m.cells[0]
    x, h0 = torch.randn(17, 2, 3, dtype=D), torch.randn(2, 9, dtype=D)
    out, _ = m(x, (ClockworkState(h0, torch.full((2,), 5)),))
    with torch.no_grad():
        cell.weight_hh.mul_(cell.weight_hh_mask)     # the naive code reads the blocks it needs
    torch.testing.assert_close(out, naive_clockwork(cell, x, h0, t0=5), rtol=0, atol=1e-12)


def test_one_module_of_period_one_is_elman():
    torch.manual_seed(1)
    cw = ClockworkRNN(4, 6, num_modules=1, dtype=D)
    rnn = rnnlab.RNN(4, 6, dtype=D)
    rnn.load_state_dict({f"{k}_l0": v for k, v in cw.cells[0].state_dict().items()})
    x, h0 = torch.randn(9, 3, 4, dtype=D), torch.randn(3, 6, dtype=D)
    out, (st,) = cw(x, (ClockworkState(h0, torch.zeros(3, dtype=torch.long)),))
    ref, h = rnn(x, h0[None])
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(st.h, h[0], rtol=0, atol=1e-12)


@pytest.mark.parametrize("kernel", [True, False])
def test_inactive_modules_bit_for_bit_unchanged(kernel):
    torch.manual_seed(2)
    m = ClockworkRNN(3, 12, periods=(1, 2, 4, 8))
    cell = m.cells[0]
    cell.use_kernel = kernel
    x = torch.randn(20, 5, 3)
    out, _ = m(x)
    for t in range(1, 20):
        active = cell.active_mask(torch.tensor([t]))[0]
        assert torch.equal(out[t][:, ~active], out[t - 1][:, ~active])
        assert not torch.equal(out[t][:, active], out[t - 1][:, active])


def test_gate_values_are_what_the_step_uses():
    torch.manual_seed(3)
    cell = ClockworkStep(3, 8, periods=(1, 2, 4, 8), dtype=D)
    h = torch.randn(2, 8, dtype=D)
    xp = cell.project_input(torch.randn(2, 3, dtype=D))
    for t in range(9):
        state = ClockworkState(h, torch.full((2,), t))
        active = cell.gate_values(xp, state)["active"]
        assert set(active.unique().tolist()) <= {0.0, 1.0}
        expect = torch.tensor([float(t % p == 0) for p in (1, 2, 4, 8) for _ in range(2)])
        assert torch.equal(active[0], expect.to(D))
        new, _ = cell.step(xp, state)
        full = torch.tanh(xp + h @ cell.recurrent_weight().T + cell.bias_hh)
        assert torch.equal(new, active * full + (1 - active) * h)


@pytest.mark.parametrize("split", [5, 8])
def test_whole_equals_chunks_with_carried_state(split):
    m = make(H=8, periods=(1, 2, 4, 8))
    x = torch.randn(19, 3, 3, dtype=D)
    whole, (sw,) = m(x)
    a, st = m(x[:split])
    b, (sc,) = m(x[split:], st)
    torch.testing.assert_close(torch.cat([a, b]), whole, rtol=0, atol=1e-12)
    torch.testing.assert_close(sc.h, sw.h, rtol=0, atol=1e-12)
    assert sc.t.tolist() == [19, 19, 19]


def test_chunks_with_lengths_keep_each_row_in_phase():
    m = make(H=8, periods=(1, 2, 4, 8), num_layers=2)
    x = torch.randn(12, 3, 3, dtype=D)
    lengths = torch.tensor([12, 9, 5])
    whole, sw = m(x, lengths=lengths)
    a, st = m(x[:6], lengths=lengths.clamp(max=6))
    assert st[0].t.tolist() == [6, 6, 5]                 # rows now out of phase
    b, sc = m(x[6:], st, lengths=(lengths - 6).clamp(min=1))
    torch.testing.assert_close(torch.cat([a, b])[:, :2], whole[:, :2], rtol=0, atol=1e-12)
    torch.testing.assert_close(a[:5, 2], whole[:5, 2], rtol=0, atol=1e-12)
    for s_c, s_w in zip(sc[:2], sw[:2]):
        torch.testing.assert_close(s_c.h[:2], s_w.h[:2], rtol=0, atol=1e-12)


def test_gradcheck_float64_kernel():
    torch.manual_seed(4)
    cell = ClockworkStep(2, 5, periods=(1, 2, 3), dtype=D)
    plan = make_plan(cell.bounds, cell.periods, 1, 7)
    mask = cell.weight_hh_mask

    def fn(x, h0, w_ih, b, w_hh):
        return ClockworkSequence.apply(x, h0, w_ih, b, w_hh * mask, plan, False)
    inputs = [torch.randn(7, 2, 2, dtype=D), torch.randn(2, 5, dtype=D),
              torch.randn(5, 2, dtype=D), torch.randn(5, dtype=D), torch.randn(5, 5, dtype=D)]
    assert torch.autograd.gradcheck(fn, [t.requires_grad_() for t in inputs])


def test_parameter_count_and_registry():
    cell = ClockworkStep(0, 11, num_modules=9, periods=[2 ** i for i in range(9)])
    assert [b - a for a, b in cell.bounds] == [2, 2, 1, 1, 1, 1, 1, 1, 1]
    assert cell.num_parameters() == 68 + 2 * 11        # recurrent blocks + two biases
    layer = rnnlab.build("clockwork_rnn", 3, 8, num_layers=2, batch_first=True, dropout=0.1)
    out, state = layer(torch.randn(2, 5, 3))
    assert out.shape == (2, 5, 8) and layer.output_size == 8 and len(state) == 2


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="non-decreasing"):
        ClockworkStep(2, 4, periods=(2, 1))
    with pytest.raises(ValueError, match="num_modules"):
        ClockworkStep(2, 3, num_modules=4)
    m = ClockworkRNN(2, 4, num_modules=2)
    bad = (ClockworkState(torch.zeros(3, 4), torch.zeros(3)),)
    with pytest.raises(ValueError, match=r"state.t must be an integer tensor of shape \(3,\)"):
        m(torch.zeros(5, 3, 2), bad)
    with pytest.raises(ValueError, match=r"received shape \(5, 3, 7\)"):
        m(torch.zeros(5, 3, 7))


# -- the sequence-generation experiment's batched networks ----------------------------------
def autograd_generate(nets, T):
    """The same networks step by step with torch autograd (the reference for the hand BPTT)."""
    p = {k: v * nets.masks[k] for k, v in nets.params.items()}
    W, b, V = p["W"], p["b"], p["V"]
    h, c, hs = torch.zeros_like(V), torch.zeros_like(V), []
    for t in range(T):
        if nets.arch == "lstm":
            ai, af, ag, ao = (b + (W @ h[:, :, None])[..., 0]).chunk(4, 1)
            P = p["P"]
            c = (torch.sigmoid(af + P[:, 1] * c) * c
                 + torch.sigmoid(ai + P[:, 0] * c) * torch.tanh(ag))
            h = torch.sigmoid(ao + P[:, 2] * c) * torch.tanh(c)
        else:
            e = nets.ends[t]
            h = torch.cat([torch.tanh(b[:, :e] + (W[:, :e] @ h[:, :, None])[..., 0]), h[:, e:]], 1)
        hs.append(h)
    return (torch.stack(hs) * V).sum(-1) + p["c"]


@pytest.mark.parametrize("arch,hidden", [("srn", (3, 5)), ("lstm", (2, 4)), ("cwrnn", (5, 9))])
def test_generation_nets_hand_bptt_equals_autograd(arch, hidden):
    from rnnlab.experiments._generation_nets import build_nets, generate
    nets = build_nets(arch, hidden, 2, 19, init_std=0.5, forget_bias=1.0, periods=(1, 2, 4, 8),
                      generator=torch.Generator().manual_seed(0))
    w = torch.randn(19, 4, dtype=D)
    params = list(nets.params.values())
    y = generate(nets, 19)
    ref = autograd_generate(nets, 19)
    torch.testing.assert_close(y, ref, rtol=0, atol=1e-13)
    for a, b in zip(torch.autograd.grad((y * w).sum(), params),
                    torch.autograd.grad((ref * w).sum(), params)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_generation_cwrnn_equals_library_clockwork():
    """Each padded network of the experiment is rnnlab.ClockworkRNN with no input."""
    from rnnlab.experiments._generation_nets import build_nets, generate
    periods = (1, 2, 4, 8)
    nets = build_nets("cwrnn", (5, 9), 1, 21, init_std=0.5, forget_bias=0.0, periods=periods,
                      generator=torch.Generator().manual_seed(1))
    y = generate(nets, 21).detach()
    p = {k: (v * nets.masks[k]).detach() for k, v in nets.params.items()}
    for n, (h, units) in enumerate(zip((5, 9), nets.units)):
        cw = ClockworkRNN(0, h, periods=periods, dtype=D)
        idx = torch.tensor(units)
        with torch.no_grad():
            cw.cells[0].weight_hh.copy_(p["W"][n][idx][:, idx])
            cw.cells[0].bias_hh.copy_(p["b"][n, idx])
            cw.cells[0].bias_ih.zero_()
        out, _ = cw(torch.zeros(21, 1, 0, dtype=D))
        torch.testing.assert_close(out[:, 0] @ p["V"][n, idx] + p["c"][n], y[:, n],
                                   rtol=0, atol=1e-12)


def test_generation_experiment_runs_and_reads_wav(tmp_path):
    import json
    import wave

    from rnnlab.experiments import run_experiment
    from rnnlab.experiments.clockwork_generation import wav_target
    path = tmp_path / "a.wav"
    with wave.open(str(path), "wb") as f:
        f.setnchannels(2)
        f.setsampwidth(2)
        f.setframerate(8000)
        f.writeframes(b"".join(int(1000 * (i % 7) - 3000).to_bytes(2, "little", signed=True) * 2
                               for i in range(50)))
    y = wav_target(str(path), 40, 3, 1)
    assert y.shape == (40,) and float(y.min()) == -1 and float(y.max()) == 1
    torch.testing.assert_close(y[:7], torch.tensor([3, 4, 5, 6, 0, 1, 2], dtype=D) / 3 - 1)
    with pytest.raises(ValueError, match="a.wav: 50 frames"):
        wav_target(str(path), 60, 0, 1)
    (tmp_path / "bad.wav").write_bytes(b"RIFF0000")
    with pytest.raises(ValueError, match="bad.wav: not a readable PCM WAV"):
        wav_target(str(tmp_path / "bad.wav"), 10, 0, 1)
    res = run_experiment("clockwork-generation", "fast", tmp_path, epochs=2, runs=2,
                         budgets=(100,), length=40, wav=str(path))
    assert [r["params"] for r in res["rows"]] == [100, 97, 91]
    assert json.loads((tmp_path / "clockwork-generation.json").read_text())["rows"]
    assert (tmp_path / "clockwork-generation.png").stat().st_size > 0
