"""Grid LSTM (Kalchbrenner, Danihelka & Graves 2015): blocks against a naive reference written
from the paper's equations, the stacked-LSTM reduction, the sequence-layer contract, the 1-D
and 3-D nets and the experiments' smoke runs."""
from __future__ import annotations

import itertools
import json

import pytest
import torch

import rnnlab
from rnnlab.cells.grid import GridBlock, GridLayerStep, GridState
from rnnlab.layers.grid import GridLSTM, GridLSTM1d, GridLSTM3dImage, load_lstm_weights

D64 = torch.float64


@pytest.fixture(autouse=True)
def one_thread():
    """Small ops on a shared 2-core machine run far faster on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# -- naive reference: the paper's equations, one dimension at a time --------------------------

def ref_lstm(W, b, H, m, paper):
    a = W @ H + (b if b is not None else 0)                    # (4d, B)
    d = m.shape[0]
    i, f, g, o = (a[k * d:(k + 1) * d] for k in range(4))
    i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
    m_new = f * m + i * g
    return (torch.tanh(o * m_new) if paper else o * torch.tanh(m_new)), m_new


def ref_block(block: GridBlock, hs, ms):
    """hs, ms: lists of (B, d); returns lists of new h, m (B, d). Column vectors inside."""
    N = len(hs)
    act = {"identity": lambda a: a, "tanh": torch.tanh, "relu": torch.relu}
    H = torch.cat([h.t() for h in hs])                          # (N d, B)
    new_h, new_m = [None] * N, [None] * N

    def apply(i, source):
        W, b = block.transform_weight(i)
        if block.kinds[i] == "lstm":
            h, m = ref_lstm(W, b[:, None] if b is not None else None, source, ms[i].t(),
                            block.output_form == "paper")
        else:
            h = act[block.kinds[i]](W @ source + (b[:, None] if b is not None else 0))
            m = torch.zeros_like(h)
        new_h[i], new_m[i] = h.t(), m.t()

    prio = [i for i in range(N) if block.dims[i] in block.priority]
    rest = [i for i in range(N) if i not in prio and block.kinds[i] != "none"]
    for i in rest:
        apply(i, H)
    Hp = torch.cat([(new_h[j] if j in rest else hs[j]).t() for j in range(N)])
    for i in prio:
        apply(i, Hp)
    done = [new_h[i] for i in range(N) if new_h[i] is not None]
    for i in range(N):
        if block.kinds[i] == "none":
            new_h[i] = sum(done) / len(done)
            new_m[i] = torch.zeros_like(new_h[i])
    return new_h, new_m


def random_pairs(N, B, d, dtype=D64, grad=False):
    return [GridState(torch.randn(B, d, dtype=dtype, requires_grad=grad),
                      torch.randn(B, d, dtype=dtype, requires_grad=grad)) for _ in range(N)]


DIMS = {1: ("depth",), 2: ("time", "depth"), 3: ("row", "col", "depth")}


@pytest.mark.parametrize("N,priority,shared,form", [
    (N, p, s, f) for N, p, s, f in itertools.product((1, 2, 3), (False, True), (False, True),
                                                     ("paper", "standard"))])
def test_block_matches_paper_equations(N, priority, shared, form):
    torch.manual_seed(N)
    dims = DIMS[N]
    block = GridBlock(5, dims, priority=("depth",) if priority else (),
                      share_across_dims=shared, output_form=form, dtype=D64)
    pairs = random_pairs(N, 3, 5)
    got = block(pairs)
    want_h, want_m = ref_block(block, [p.h for p in pairs], [p.m for p in pairs])
    for k in range(N):
        torch.testing.assert_close(got[k].h, want_h[k])
        torch.testing.assert_close(got[k].m, want_m[k])


@pytest.mark.parametrize("kinds", [("lstm", "relu", "none"), ("tanh", "identity", "lstm"),
                                   ("none", "lstm", "relu")])
def test_block_non_lstm_and_none_dimensions(kinds):
    torch.manual_seed(1)
    block = GridBlock(4, DIMS[3], kinds, priority=("col",), dtype=D64)
    pairs = random_pairs(3, 2, 4)
    got = block(pairs)
    want_h, want_m = ref_block(block, [p.h for p in pairs], [p.m for p in pairs])
    for k in range(3):
        torch.testing.assert_close(got[k].h, want_h[k])
        torch.testing.assert_close(got[k].m, want_m[k])


def test_shared_across_dims_has_one_weight_set_and_priority_changes_output():
    a = GridBlock(6, DIMS[3], share_across_dims=True)
    assert [n for n, _ in a.named_parameters()] == ["weight_lstm", "bias_lstm"]
    assert sum(p.numel() for p in a.parameters()) * 3 == sum(
        p.numel() for p in GridBlock(6, DIMS[3]).parameters())
    torch.manual_seed(0)
    b = GridBlock(4, DIMS[2], dtype=D64)
    c = GridBlock(4, DIMS[2], priority=("depth",), dtype=D64)
    c.load_state_dict(b.state_dict())
    pairs = random_pairs(2, 2, 4)
    torch.testing.assert_close(b(pairs)[0].h, c(pairs)[0].h)       # time: same input H
    assert (b(pairs)[1].h - c(pairs)[1].h).abs().max() > 1e-3      # depth reads H'


def test_block_gradcheck_float64():
    torch.manual_seed(0)
    for N, prio in ((2, ("depth",)), (3, ("depth",)), (1, ())):
        block = GridBlock(3, DIMS[N], priority=prio, dtype=D64)
        pairs = random_pairs(N, 2, 3, grad=True)
        flat = [t for p in pairs for t in p]

        def fn(*ts):
            out = block([GridState(ts[2 * k], ts[2 * k + 1]) for k in range(N)])
            return tuple(t for p in out for t in p)
        assert torch.autograd.gradcheck(fn, flat)


def test_hoisted_input_equals_full_computation():
    torch.manual_seed(2)
    for N in (2, 3):
        block = GridBlock(4, DIMS[N], priority=("depth",), dtype=D64)
        pairs = random_pairs(N, 3, 4)
        pre = block.input_part(N - 1, pairs[-1].h)
        for a, b in zip(block(pairs), block(pairs, pre, N - 1)):
            torch.testing.assert_close(a.h, b.h)
            torch.testing.assert_close(a.m, b.m)
    with pytest.raises(ValueError, match="hoisted"):
        block(pairs, block.input_part(0, pairs[0].h), 0)


def test_bad_configuration_errors():
    with pytest.raises(ValueError, match="kinds must be among"):
        GridBlock(4, ("a", "b"), ("lstm", "gru"))
    with pytest.raises(ValueError, match="priority"):
        GridBlock(4, ("a", "b"), priority=("c",))
    with pytest.raises(ValueError, match="output_form"):
        GridBlock(4, ("a",), output_form="other")
    with pytest.raises(ValueError, match="at least one"):
        GridBlock(4, ("a",), ("none",))
    with pytest.raises(ValueError, match="2 \\(h, m\\) pairs"):
        GridBlock(4, ("a", "b"))(random_pairs(1, 2, 4, torch.float32))


# -- gate values ------------------------------------------------------------------------------

@pytest.mark.parametrize("form", ["paper", "standard"])
def test_gate_values_are_the_ones_the_step_uses(form):
    torch.manual_seed(3)
    cell = GridLayerStep(5, output_form=form, dtype=D64)
    x = torch.randn(2, cell.input_size, dtype=D64)
    state = GridState(*(torch.randn(2, 5, dtype=D64) for _ in range(2)))
    xp = cell.project_input(x)
    g = cell.gate_values(xp, state)
    out, new = cell.step(xp, state)
    squash = (lambda o, m: torch.tanh(o * m)) if form == "paper" else (
        lambda o, m: o * torch.tanh(m))
    m_t = g["time.forget"] * state.m + g["time.input"] * g["time.candidate"]
    torch.testing.assert_close(new.m, m_t)
    torch.testing.assert_close(new.h, squash(g["time.output"], m_t))
    m_d = g["depth.forget"] * x[:, 5:] + g["depth.input"] * g["depth.candidate"]
    torch.testing.assert_close(out, torch.cat([squash(g["depth.output"], m_d), m_d], -1))


# -- the reduction: depth 'none' is a stacked LSTM --------------------------------------------

@pytest.mark.parametrize("fused", [True, False])
def test_grid_with_none_depth_is_stacked_lstm(fused):
    torch.manual_seed(4)
    T, B, Fin, H, L = 6, 3, 4, 7, 3
    lstm = rnnlab.LSTM(Fin, H, L, dtype=D64)
    grid = GridLSTM(Fin, H, L, depth_kind="none", output_form="standard", dtype=D64)
    load_lstm_weights(grid, lstm)
    x = torch.randn(T, B, Fin, dtype=D64, requires_grad=True)
    h0 = torch.randn(L, B, H, dtype=D64)
    c0 = torch.randn(L, B, H, dtype=D64)
    lengths = torch.tensor([6, 4, 2])
    with rnnlab.kernels.use_kernels(fused):
        o1, (h1, c1) = lstm(x, (h0, c0), lengths=lengths)
    o2, s2 = grid(x, GridState(h0, c0), lengths=lengths)
    torch.testing.assert_close(o2, o1)
    torch.testing.assert_close(s2.h, h1)
    torch.testing.assert_close(s2.m, c1)
    g1 = torch.autograd.grad((o1.sum() + h1.sum() * 0.5 + c1.sum() * 0.3),
                             [x, lstm.weight_hh_l1, lstm.weight_ih_l0, lstm.bias_hh_l2])
    blocks = [grid.cell(k).block for k in range(L)]
    g2 = torch.autograd.grad((o2.sum() + s2.h.sum() * 0.5 + s2.m.sum() * 0.3),
                             [x, blocks[1].weight_time, blocks[0].weight_time,
                              blocks[2].bias_time])
    torch.testing.assert_close(g2[0], g1[0])
    torch.testing.assert_close(g2[1][:, :H], g1[1])
    torch.testing.assert_close(g2[2][:, H:H + Fin], g1[2])
    torch.testing.assert_close(g2[3], g1[3])


# -- the sequence layer's contract ------------------------------------------------------------

def test_tied_parameter_count_independent_of_depth():
    counts = {L: sum(p.numel() for p in GridLSTM(5, 8, L, share_along_depth=True).parameters())
              for L in (1, 2, 6)}
    assert len(set(counts.values())) == 1
    untied = [sum(p.numel() for p in GridLSTM(5, 8, L).parameters()) for L in (1, 2)]
    block = 2 * (4 * 8 * 16 + 4 * 8)
    assert untied[1] - untied[0] == block
    c1 = sum(p.numel() for p in GridLSTM1d(5, 8, 1, 2).parameters())
    assert c1 == sum(p.numel() for p in GridLSTM1d(5, 8, 9, 2).parameters())
    assert sum(p.numel() for p in GridLSTM1d(5, 8, 3, 2, share_along_depth=False)
               .parameters()) == c1 + 2 * (4 * 8 * 8 + 4 * 8)


def test_registered_layer_contract_batch_first_chunks_and_lengths():
    torch.manual_seed(5)
    layer = rnnlab.build("grid_lstm", 3, 6, 2, dropout=0.0, batch_first=True,
                         share_along_depth=True, dtype=D64)
    assert layer.output_size == 6
    x = torch.randn(2, 7, 3, dtype=D64)
    out, state = layer(x)
    assert out.shape == (2, 7, 6) and state.h.shape == (2, 2, 6)
    o1, s1 = layer(x[:, :4])
    o2, s2 = layer(x[:, 4:], s1)
    torch.testing.assert_close(torch.cat([o1, o2], 1), out)
    torch.testing.assert_close(s2.m, state.m)
    lengths = torch.tensor([7, 3])
    out_l, state_l = layer(x, lengths=lengths)
    assert out_l[1, 3:].abs().max() == 0
    short, s_short = layer(x[1:, :3])
    torch.testing.assert_close(out_l[1, :3], short[0])
    torch.testing.assert_close(state_l.h[:, 1], s_short.h[:, 0])
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True,
                                                     enforce_sorted=False)
    out_p, _ = layer(packed)
    padded, _ = torch.nn.utils.rnn.pad_packed_sequence(out_p, batch_first=True)
    torch.testing.assert_close(padded, out_l)


def test_layer_errors_name_shapes():
    layer = GridLSTM(3, 4, 2)
    with pytest.raises(ValueError, match=r"3 features.*\(5, 2, 4\)"):
        layer(torch.randn(5, 2, 4))
    with pytest.raises(ValueError, match=r"state.h must have shape \(2, 2, 4\)"):
        layer(torch.randn(5, 2, 3), GridState(torch.zeros(1, 2, 4), torch.zeros(2, 2, 4)))
    with pytest.raises(ValueError, match="lengths"):
        layer(torch.randn(5, 2, 3), lengths=[6, 1])
    with pytest.raises(ValueError, match="reduction"):
        load_lstm_weights(layer, rnnlab.LSTM(3, 4, 2))


def test_dropout_only_in_training():
    torch.manual_seed(6)
    layer = GridLSTM(3, 8, 3, dropout=0.5)
    x = torch.randn(4, 2, 3)
    layer.eval()
    torch.testing.assert_close(layer(x)[0], layer(x)[0])
    layer.train()
    assert (layer(x)[0] - layer(x)[0]).abs().max() > 0


# -- 1-D and 3-D nets ------------------------------------------------------------------------

def test_1d_relu_kind_is_a_feed_forward_net():
    torch.manual_seed(7)
    net = GridLSTM1d(6, 5, 3, 2, kind="relu", share_along_depth=False).double()
    x = torch.randn(4, 6, dtype=D64)
    h = net.input_proj(x)
    for blk in net.blocks:
        h = torch.relu(h @ blk.weight_depth.t() + blk.bias_depth)
    torch.testing.assert_close(net(x), net.head(h))


def test_1d_tied_loop_and_gates():
    torch.manual_seed(8)
    net = GridLSTM1d(6, 5, 4, 3).double()
    x = torch.randn(4, 6, dtype=D64)
    p = net.input_proj(x)
    h, m = p[:, :5], p[:, 5:]
    blk = net.blocks[0]
    for _ in range(4):
        (hh,), (mm,) = ref_block(blk, [h], [m])
        h, m = hh, mm
    torch.testing.assert_close(net.features(x), h)
    gates = net.gate_values(x)
    assert gates["depth.forget"].shape == (4, 4, 5)


def test_1d_grid_learns_small_parity():
    torch.manual_seed(0)
    net = GridLSTM1d(6, 32, 4, 2, forget_bias=1.0)
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    for _ in range(300):
        x = torch.randint(0, 2, (64, 6)).float()
        loss = torch.nn.functional.cross_entropy(net(2 * x - 1), x.sum(1).long() % 2)
        opt.zero_grad()
        loss.backward()
        opt.step()
    x = torch.tensor(list(itertools.product((0.0, 1.0), repeat=6)))
    acc = (net(2 * x - 1).argmax(1) == x.sum(1).long() % 2).float().mean()
    assert acc > 0.95


def test_3d_image_net_shapes_and_errors():
    torch.manual_seed(9)
    net = GridLSTM3dImage(patch=7, hidden=6, depth=4, num_classes=10, fc=16)
    images = torch.randn(3, 1, 28, 28)
    logits = net(images)
    assert logits.shape == (3, 10)
    logits.sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    with pytest.raises(ValueError, match=r"\(B, 1, 28, 28\).*\(3, 28, 28\)"):
        net(torch.randn(3, 28, 28))
    tied = GridLSTM3dImage(patch=7, hidden=6, depth=2, share_along_depth=True,
                           directions=("br",), image_size=(14, 21))
    assert tied(torch.randn(2, 1, 14, 21)).shape == (2, 10)


# -- experiments: smoke runs of tiny configurations, and the fast presets (slow) --------------

def test_addition_problems_are_right():
    from rnnlab.experiments.addition import BLANK, EQUALS, PLUS, problems
    gen = torch.Generator().manual_seed(0)
    for reverse in (False, True):
        x, y = problems(50, 4, gen, reverse)
        assert x.shape == (15, 50) and y.shape == (5, 50)
        assert (x[4] == PLUS).all() and (x[9] == EQUALS).all() and (x[10:] == BLANK).all()
        order = (lambda d: d.flip(0)) if reverse else (lambda d: d)
        num = lambda d: (order(d) * 10 ** torch.arange(len(d) - 1, -1, -1)[:, None]).sum(0)
        assert torch.equal(num(x[:4]) + num(x[5:9]), num(y))


def test_addition_lstm_matches_grid_parameter_count():
    from rnnlab.experiments.addition import Config, build_model, count, lstm_net_params
    cfg = Config(hidden=32, layers=4)
    grid, lstm = build_model("grid", cfg), build_model("lstm", cfg)
    assert count(lstm) == lstm_net_params(lstm.head.in_features, 4)
    assert abs(count(lstm) - count(grid)) / count(grid) < 0.03


@pytest.mark.parametrize("name,overrides", [
    ("parity", dict(bits=(4,), hidden=8, depth=2, max_samples=640, check_every=320,
                    test_size=500)),
    ("addition", dict(digits=1, hidden=8, layers=2, max_samples=256, check_every=128,
                      test_size=200, check_size=100)),
])
def test_experiment_smoke_run_writes_outputs(tmp_path, name, overrides):
    from rnnlab.experiments import run_experiment
    result = run_experiment(name, "fast", tmp_path, **overrides)
    saved = json.loads((tmp_path / f"{name}.json").read_text())
    assert saved["records"] and saved["machine"]
    assert (tmp_path / f"{name}.md").read_text().startswith("#")
    assert (tmp_path / f"{name}.png").stat().st_size > 1000
    assert result["records"][0]["samples"] >= 128


@pytest.mark.slow
@pytest.mark.parametrize("name", ["parity", "addition"])
def test_fast_preset_runs(tmp_path, name):
    from rnnlab.experiments import run_experiment
    result = run_experiment(name, "fast", tmp_path)
    assert result["seconds"] < 300


def test_explain_traces_every_layer_of_a_tied_grid():
    from rnnlab.explain import trace_gates
    torch.manual_seed(10)
    layer = GridLSTM(3, 4, 3, share_along_depth=True)
    x = torch.randn(5, 1, 3)
    out, traces = trace_gates(layer, x)
    torch.testing.assert_close(out, layer(x)[0])
    assert len(traces) == 3 and traces[0].gates["time.forget"].shape == (5, 1, 4)
