"""The Triton gate kernels (rnnlab.kernels.triton_gates) against the torch ops they replace
and against the cells' step-by-step definitions.

Without a GPU the kernels run under Triton's interpreter (TRITON_INTERPRET=1, set here
before triton is imported) on CPU tensors; with one they are compiled and run on CUDA.
Without triton the kernel tests skip; the dispatch tests (CPU never takes the Triton path,
a missing triton changes nothing) always run. The ``gpu`` test compares the whole
sequence kernel on CUDA (Triton gates) with the CPU float64 path.
"""
import importlib.util
import os
import subprocess
import sys

import pytest
import torch

CUDA = torch.cuda.is_available()
if not CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")

from rnnlab.cells import GRUStep, LSTMStep  # noqa: E402
from rnnlab.kernels import STATS, gru, lstm, use_kernels  # noqa: E402
from rnnlab.kernels import triton_gates as tg  # noqa: E402
from rnnlab.layers import run_cell  # noqa: E402

needs_triton = pytest.mark.skipif(importlib.util.find_spec("triton") is None or
                                  tg.triton is None, reason="triton is not installed")
DEVICE = "cuda" if CUDA else "cpu"
DTYPES = [torch.float32] if CUDA else [torch.float32, torch.float64]
# float32: compiled Triton's exp is an approximate ex2, so allow a few ulps of the gates'
# range (a wrong formula is off by far more: the tests fail at a 1e-4 relative change)
TOL = {torch.float64: 1e-12, torch.float32: 1e-5}
SEQ_TOL = {torch.float64: 1e-12, torch.float32: 5e-5}      # T steps and a backward
GATE_VARIANTS = [(False, False), (False, True), (True, False), (True, True)]
IDS = ["plain", "peephole", "coupled", "coupled-peephole"]


def _close(a, b, dtype, what: str, tol=TOL) -> None:
    err = (a - b).abs().max().item()
    assert err <= tol[dtype] * max(1.0, b.abs().max().item()), f"{what}: {err}"


def _torch_forward(spec, a, g, c, peep):
    """kernels.lstm's torch ops for one step: activations, c' and m = o ⊙ tanh(c')."""
    H = c.shape[1]
    ar, cr = a + g, torch.empty_like(c)
    p = lstm.Params(None, a.new_empty(0, 0), None, None, None, peep, None, None, None, None)
    lstm._cell_forward(spec, ar, c, cr, H, p, {}, 0)
    return ar, cr, ar[:, -H:] * torch.tanh(cr), p


@needs_triton
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("coupled,peephole", GATE_VARIANTS, ids=IDS)
@pytest.mark.parametrize("B,H", [(3, 5), (37, 40)])
def test_lstm_step_kernels_equal_torch_ops(coupled, peephole, B, H, dtype):
    gen = torch.Generator().manual_seed(B + H)
    G = 3 if coupled else 4
    rnd = lambda *s: torch.randn(*s, generator=gen, dtype=dtype).to(DEVICE)  # noqa: E731
    a, g, c, gm, gc = rnd(B, G * H), rnd(B, G * H), rnd(B, H), rnd(B, H), rnd(B, H)
    peep = rnd(G - 1, H) if peephole else None
    spec = lstm.Spec(coupled, peephole, False, 0)
    ar, cr, mr, p = _torch_forward(spec, a, g, c, peep)
    kern = tg.LSTMGates(coupled, peep)
    at, ct, mt = a.clone(), torch.empty_like(c), torch.empty_like(c)
    kern.forward(at, g, c, ct, mt)
    for got, want, what in ((at, ar, "activations"), (ct, cr, "c'"), (mt, mr, "m")):
        _close(got, want, dtype, what)
    acc = {"peep": torch.zeros_like(peep)} if peephole else {}
    dar = torch.empty_like(ar)
    dcr = lstm._cell_backward(spec, ar, dar, cr, c, gm, gc, H, p, {}, 0, acc)
    dat, dpeep = torch.empty_like(ar), None if peep is None else torch.zeros_like(peep)
    dct = kern.backward(ar, dat, cr, c, gm.t().contiguous().t(), gc, dpeep)  # strided gm
    _close(dat, dar, dtype, "gate gradients")
    _close(dct, dcr, dtype, "dc_prev")
    if peephole:
        _close(dpeep, acc["peep"], dtype, "peephole gradient")


@needs_triton
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False])
def test_gru_step_kernels_equal_torch_ops(bias, dtype):
    gen = torch.Generator().manual_seed(3)
    B, H = 19, 24
    rnd = lambda *s: torch.randn(*s, generator=gen, dtype=dtype).to(DEVICE)  # noqa: E731
    a, g, h, gh = rnd(B, 3 * H), rnd(B, 3 * H), rnd(B, H), rnd(B, H)
    b_hn = rnd(H) if bias else None
    hn = g[:, 2 * H:] + (b_hn if bias else 0)            # torch.nn.GRU's step, by hand
    r, z = torch.sigmoid(a[:, :H] + g[:, :H]), torch.sigmoid(a[:, H:2 * H] + g[:, H:2 * H])
    n = torch.tanh(a[:, 2 * H:] + r * hn)
    kern = tg.GRUGates()
    at, hnt, ht = a.clone(), torch.empty_like(h), torch.empty_like(h)
    kern.forward(at, g, b_hn, h, hnt, ht)
    _close(at, torch.cat([r, z, n], 1), dtype, "activations")
    _close(hnt, hn, dtype, "hn")
    _close(ht, (1 - z) * n + z * h, dtype, "h'")
    dan = gh * (1 - z) * (1 - n * n)                     # derivatives of that step
    daz, dar = gh * (h - n) * z * (1 - z), dan * hn * r * (1 - r)
    da, dg, dhn = torch.empty_like(a), torch.empty_like(a), torch.empty_like(h)
    gho = kern.backward(at, hnt, h, gh, da, dg, dhn)
    _close(da, torch.cat([dar, daz, dan], 1), dtype, "dA")
    _close(dg, torch.cat([dar, daz, dan * r], 1), dtype, "dG")
    _close(dhn, dan * r, dtype, "dHN")
    _close(gho, gh * z, dtype, "direct dh")


def _run(cell, x, state, lengths, reverse):
    out, final = run_cell(cell, x, state, lengths, reverse)
    g = torch.Generator().manual_seed(1)
    # float64 draws, then cast: float32 and float64 draws from one generator differ
    loss = (out * torch.randn(out.shape, generator=g, dtype=torch.float64).to(out)).sum()
    loss = loss + sum((s * (k + 1.3)).sum() for k, s in enumerate(final))
    return [out, *final, *torch.autograd.grad(loss, [x, *state, *cell.parameters()])]


def _sequence_case(cell, lengths, reverse, monkeypatch):
    """The whole-sequence kernel with Triton gates vs the step loop: float64 on CPU under
    the interpreter, float32 on CUDA."""
    dtype = DTYPES[-1]
    cell = cell.to(DEVICE, dtype)
    monkeypatch.setattr(lstm, "_fused", lambda spec, A, p: tg.lstm_gates(
        spec, A, p.peep, any_device=True))
    monkeypatch.setattr(gru, "_fused", lambda A: tg.gru_gates(A, any_device=True))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in cell.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen, dtype=dtype).to(p))
    rnd = lambda *s: torch.randn(*s, generator=gen, dtype=dtype).to(DEVICE)  # noqa: E731
    x = rnd(5, 3, 4).requires_grad_()
    state = cell.State(*(rnd(*s.shape).requires_grad_() for s in cell.init_state(3)))
    lengths = None if lengths is None else torch.tensor(lengths)
    before = STATS["triton"]
    fast = _run(cell, x, state, lengths, reverse)
    used = STATS["triton"] - before
    with use_kernels(False):
        slow = _run(cell, x, state, lengths, reverse)
    for a, b in zip(fast, slow):
        _close(a, b, dtype, "sequence", SEQ_TOL)
    return used


CASES = [(None, False), ([5, 3, 1], False), ([5, 4, 2], True)]
LSTM_OPTS = [{}, {"peephole": True}, {"coupled": True}, {"coupled": True, "peephole": True},
             {"proj_size": 3}, {"bias": False}, {"layer_norm": True}]


@needs_triton
@pytest.mark.parametrize("lengths,reverse", CASES)
@pytest.mark.parametrize("opts", LSTM_OPTS, ids=lambda o: "-".join(o) or "plain")
def test_lstm_sequence_with_triton_gates_equals_step_loop(opts, lengths, reverse,
                                                          monkeypatch):
    used = _sequence_case(LSTMStep(4, 6, **opts), lengths, reverse, monkeypatch)
    assert used == (0 if opts.get("layer_norm") else 2)      # forward and backward loop


@needs_triton
@pytest.mark.parametrize("lengths,reverse", CASES)
@pytest.mark.parametrize("bias", [True, False])
def test_gru_sequence_with_triton_gates_equals_step_loop(bias, lengths, reverse,
                                                         monkeypatch):
    assert _sequence_case(GRUStep(4, 6, bias=bias), lengths, reverse, monkeypatch) == 2


_COMPILE_SM90 = """
from rnnlab.kernels import triton_gates as tg  # noqa: E402
try:
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
except ImportError:
    raise SystemExit("SKIP: no ahead-of-time compile API")
def build(fn, **consts):
    sig = {n: "constexpr" if n in consts else "*fp32" if n.endswith("_ptr") else "i32"
           for n in fn.arg_names}
    cx = {(fn.arg_names.index(k),): v for k, v in consts.items()}
    tg.triton.compile(ASTSource(fn, sig, cx), target=GPUTarget("cuda", 90, 32))
for ni in (0, 1):
    for peep in (False, True):
        build(tg._lstm_fwd, NI=ni, PEEP=peep, HAS_G=True, BLOCK_B=16, BLOCK_H=32)
        build(tg._lstm_bwd, NI=ni, PEEP=peep, BLOCK_B=16, BLOCK_H=32)
for has_b in (False, True):
    build(tg._gru_fwd, HAS_B=has_b, BLOCK_B=16, BLOCK_H=32)
build(tg._gru_bwd, BLOCK_B=16, BLOCK_H=32)
"""


@needs_triton
def test_kernels_compile_for_sm90_without_a_gpu():
    """Every kernel specialisation compiles to an H100 (sm_90) binary, no GPU needed."""
    env = dict(os.environ, TRITON_INTERPRET="0")
    proc = subprocess.run([sys.executable, "-c", _COMPILE_SM90], env=env, text=True,
                          capture_output=True, timeout=400)
    if "SKIP" in proc.stderr:
        pytest.skip(proc.stderr.strip()[-200:])
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_cpu_never_takes_the_triton_path(monkeypatch):
    """Product dispatch: CPU tensors (and a missing triton) leave the torch ops in place."""
    A = torch.zeros(2, 3, 8)
    spec = lstm.Spec(False, False, False, 0)
    p = lstm.Params(None, torch.zeros(8, 2), *[None] * 8)
    assert lstm._fused(spec, A, p) is None and gru._fused(A[..., :6]) is None
    monkeypatch.setattr(tg, "triton", None)
    assert tg.lstm_gates(spec, A, None, any_device=True) is None
    assert tg.gru_gates(A[..., :6], any_device=True) is None
    before = STATS["triton"]
    cell = LSTMStep(3, 4)
    run_cell(cell, torch.randn(4, 2, 3), cell.init_state(2))
    assert STATS["triton"] == before


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
@pytest.mark.parametrize("make", [
    lambda: LSTMStep(16, 32), lambda: LSTMStep(16, 32, peephole=True),
    lambda: LSTMStep(16, 32, coupled=True), lambda: LSTMStep(16, 32, coupled=True,
                                                              peephole=True),
    lambda: LSTMStep(16, 32, proj_size=8), lambda: GRUStep(16, 32)],
    ids=["plain", "peephole", "coupled", "coupled-peephole", "proj", "gru"])
def test_cuda_sequence_with_triton_equals_cpu_float64(make):
    if tg.triton is None:
        pytest.skip("triton is not installed")
    torch.manual_seed(0)
    ref = make().double()
    cell = make().cuda()
    cell.load_state_dict({k: v.float() for k, v in ref.state_dict().items()})
    x = torch.randn(9, 5, 16, dtype=torch.float64, requires_grad=True)
    state = ref.State(*(torch.randn_like(s).requires_grad_() for s in ref.init_state(5)))
    lengths = torch.tensor([9, 7, 9, 2, 5])
    want = _run(ref, x, state, lengths, False)
    xg = x.detach().float().cuda().requires_grad_()
    sg = cell.State(*(s.detach().float().cuda().requires_grad_() for s in state))
    before = STATS["triton"]
    got = _run(cell, xg, sg, lengths, False)
    assert STATS["triton"] == before + 2, tg.LAST_ERROR
    for a, b in zip(got, want):
        err = (a.double().cpu() - b).abs().max().item()
        assert err < 2e-4 * max(1.0, b.abs().max().item())
