"""Triton kernels for the per-step pointwise math of the LSTM and GRU kernels on CUDA.

On a GPU the whole-sequence kernels (``kernels.lstm``, ``kernels.gru``) spend a step in
one recurrent GEMM plus a chain of small elementwise launches (about ten for an LSTM), so
they are launch-bound. Here each step's pointwise work is one launch, forward and backward:

LSTM forward (Hochreiter & Schmidhuber 1997; peephole: Gers & Schmidhuber 2000; coupled
input-forget gate, CIFG: Greff et al. 2017, "LSTM: A Search Space Odyssey"), per element:
    a += h W_hhᵀ                  (the GEMM result, added here instead of a separate add)
    i, f, o = σ(a_i + p_i c), σ(a_f + p_f c), σ(a_o + p_o c')    (p = 0 without peepholes)
    g = tanh(a_g);  c' = f c + i g  (coupled: c' = g + f (c - g));  m = o tanh(c')
    the activations i, f, g, o overwrite a, as ``kernels.lstm._cell_forward`` leaves them.
LSTM backward: ``kernels.lstm._cell_backward``'s gate gradients, the gradient reaching
c_{t-1}, and (peephole) the batch sums of the peephole weight gradients, accumulated in
the kernel (one program owns a column block over all rows, so no atomics are needed).
GRU (Cho et al. 2014, torch.nn.GRU's form): r, z, n, h' = n + z (h - n) forward, and
``kernels.gru._backward_loop``'s per-step gradients backward.

Triton is optional: this module imports without it (``triton`` is then None) and the
dispatch (``lstm_gates`` / ``gru_gates``) answers None, as it does for CPU tensors, dtypes
other than float32, layer_norm, Depth-Gated and Grid-LSTM steps; the callers then run
their torch ops, unchanged. ``STATS["triton"]`` counts the loops (forward or backward)
that ran on the Triton kernels. A kernel that fails to compile is reported once in
``LAST_ERROR`` and switched off (``STATS["triton_error"]``). The kernel wrappers
(``LSTMGates``, ``GRUGates``) work on any device Triton can run on, so the tests run them
on CPU tensors under the Triton interpreter (``TRITON_INTERPRET=1``).
"""
from typing import Optional

import torch
from torch import Tensor

from . import STATS

try:                                      # optional: CPU installs have no triton
    import triton
    import triton.language as tl
except Exception:  # noqa: BLE001 - a missing or broken triton only disables this path
    triton = tl = None

ENABLED = [True]                          # False after a kernel failed (not a user switch)
LAST_ERROR: list = []                     # the compile / launch errors that switched a kernel off
_PROBED: dict = {}                        # (kind, flags, dtype, device) -> bool: kernel works


if triton is not None:
    @triton.jit
    def _tanh(x):
        e = tl.exp(-2.0 * tl.abs(x))
        t = (1.0 - e) / (1.0 + e)
        return tl.where(x < 0.0, -t, t)

    @triton.jit
    def _lstm_fwd(a_ptr, g_ptr, c_ptr, co_ptr, m_ptr, p_ptr, B, H, sa, sg, sc, sco, sm,
                  NI: tl.constexpr, PEEP: tl.constexpr, HAS_G: tl.constexpr,
                  BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr):
        # NI: gate blocks before f (1: i, f, g, o; 0: coupled, f, g, o)
        cols = tl.program_id(0) * BLOCK_H + tl.arange(0, BLOCK_H)
        cm = cols < H
        if PEEP:
            pf = tl.load(p_ptr + (NI * H) + cols, mask=cm, other=0.0)[None, :]
            po = tl.load(p_ptr + ((NI + 1) * H) + cols, mask=cm, other=0.0)[None, :]
            if NI == 1:
                pi = tl.load(p_ptr + cols, mask=cm, other=0.0)[None, :]
        rows = tl.program_id(1) * BLOCK_B + tl.arange(0, BLOCK_B)
        m2 = (rows < B)[:, None] & cm[None, :]
        r2, c2 = rows[:, None], cols[None, :]
        ap = a_ptr + r2 * sa + c2
        c = tl.load(c_ptr + r2 * sc + c2, mask=m2, other=0.0)
        xf = tl.load(ap + NI * H, mask=m2, other=0.0)
        xg = tl.load(ap + (NI + 1) * H, mask=m2, other=0.0)
        xo = tl.load(ap + (NI + 2) * H, mask=m2, other=0.0)
        if HAS_G:
            gp = g_ptr + r2 * sg + c2
            xf += tl.load(gp + NI * H, mask=m2, other=0.0)
            xg += tl.load(gp + (NI + 1) * H, mask=m2, other=0.0)
            xo += tl.load(gp + (NI + 2) * H, mask=m2, other=0.0)
        if PEEP:
            xf += pf * c
        f = tl.sigmoid(xf)
        g = _tanh(xg)
        if NI == 0:
            cn = (c - g) * f + g
        else:
            xi = tl.load(ap, mask=m2, other=0.0)
            if HAS_G:
                xi += tl.load(gp, mask=m2, other=0.0)
            if PEEP:
                xi += pi * c
            i = tl.sigmoid(xi)
            cn = f * c + i * g
            tl.store(ap, i, mask=m2)
        if PEEP:
            xo += po * cn
        o = tl.sigmoid(xo)
        tl.store(ap + NI * H, f, mask=m2)
        tl.store(ap + (NI + 1) * H, g, mask=m2)
        tl.store(ap + (NI + 2) * H, o, mask=m2)
        tl.store(co_ptr + r2 * sco + c2, cn, mask=m2)
        tl.store(m_ptr + r2 * sm + c2, o * _tanh(cn), mask=m2)

    @triton.jit
    def _lstm_bwd(a_ptr, da_ptr, cn_ptr, cp_ptr, gm_ptr, gc_ptr, dcp_ptr, p_ptr, dp_ptr,
                  B, H, sa, sda, scn, scp, sgm, sgc, sdcp, ROWS, NI: tl.constexpr,
                  PEEP: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr):
        cols = tl.program_id(0) * BLOCK_H + tl.arange(0, BLOCK_H)
        cm = cols < H
        if PEEP:
            pf = tl.load(p_ptr + (NI * H) + cols, mask=cm, other=0.0)[None, :]
            po = tl.load(p_ptr + ((NI + 1) * H) + cols, mask=cm, other=0.0)[None, :]
            sum_f = tl.zeros([BLOCK_H], dtype=pf.dtype)
            sum_o = tl.zeros([BLOCK_H], dtype=pf.dtype)
            if NI == 1:
                pi = tl.load(p_ptr + cols, mask=cm, other=0.0)[None, :]
                sum_i = tl.zeros([BLOCK_H], dtype=pf.dtype)
        for r0 in range(0, ROWS, BLOCK_B):
            rows = tl.program_id(1) * ROWS + r0 + tl.arange(0, BLOCK_B)
            m2 = (rows < B)[:, None] & cm[None, :]
            r2, c2 = rows[:, None], cols[None, :]
            ap, dap = a_ptr + r2 * sa + c2, da_ptr + r2 * sda + c2
            f = tl.load(ap + NI * H, mask=m2, other=0.0)
            g = tl.load(ap + (NI + 1) * H, mask=m2, other=0.0)
            o = tl.load(ap + (NI + 2) * H, mask=m2, other=0.0)
            c_new = tl.load(cn_ptr + r2 * scn + c2, mask=m2, other=0.0)
            c_prev = tl.load(cp_ptr + r2 * scp + c2, mask=m2, other=0.0)
            gm = tl.load(gm_ptr + r2 * sgm + c2, mask=m2, other=0.0)
            tc = _tanh(c_new)
            dc = gm * o * (1.0 - tc * tc) + tl.load(gc_ptr + r2 * sgc + c2, mask=m2, other=0.0)
            dao = gm * tc * o * (1.0 - o)
            if PEEP:
                dc += dao * po
                sum_o += tl.sum(tl.where(m2, dao * c_new, 0.0), axis=0)
            dsig_f = f * (1.0 - f)
            if NI == 0:
                daf = dc * (c_prev - g) * dsig_f
                dag = dc * (1.0 - f) * (1.0 - g * g)
            else:
                i = tl.load(ap, mask=m2, other=0.0)
                dai = dc * g * i * (1.0 - i)
                daf = dc * c_prev * dsig_f
                dag = dc * i * (1.0 - g * g)
                tl.store(dap, dai, mask=m2)
            dcp = dc * f
            if PEEP:
                dcp += daf * pf
                sum_f += tl.sum(tl.where(m2, daf * c_prev, 0.0), axis=0)
                if NI == 1:
                    dcp += dai * pi
                    sum_i += tl.sum(tl.where(m2, dai * c_prev, 0.0), axis=0)
            tl.store(dap + NI * H, daf, mask=m2)
            tl.store(dap + (NI + 1) * H, dag, mask=m2)
            tl.store(dap + (NI + 2) * H, dao, mask=m2)
            tl.store(dcp_ptr + r2 * sdcp + c2, dcp, mask=m2)
        if PEEP:                        # this program owns these columns of every row
            fp, op = dp_ptr + NI * H + cols, dp_ptr + (NI + 1) * H + cols
            tl.store(fp, tl.load(fp, mask=cm) + sum_f, mask=cm)
            tl.store(op, tl.load(op, mask=cm) + sum_o, mask=cm)
            if NI == 1:
                tl.store(dp_ptr + cols, tl.load(dp_ptr + cols, mask=cm) + sum_i, mask=cm)

    @triton.jit
    def _gru_fwd(a_ptr, g_ptr, b_ptr, h_ptr, hn_ptr, ho_ptr, B, H, sa, sg, sh, shn, sho,
                 HAS_B: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr):
        cols = tl.program_id(0) * BLOCK_H + tl.arange(0, BLOCK_H)
        rows = tl.program_id(1) * BLOCK_B + tl.arange(0, BLOCK_B)
        m2 = (rows < B)[:, None] & (cols < H)[None, :]
        r2, c2 = rows[:, None], cols[None, :]
        ap, gp = a_ptr + r2 * sa + c2, g_ptr + r2 * sg + c2
        r = tl.sigmoid(tl.load(ap, mask=m2, other=0.0) + tl.load(gp, mask=m2, other=0.0))
        z = tl.sigmoid(tl.load(ap + H, mask=m2, other=0.0) + tl.load(gp + H, mask=m2, other=0.0))
        hn = tl.load(gp + 2 * H, mask=m2, other=0.0)
        if HAS_B:
            hn += tl.load(b_ptr + c2, mask=m2, other=0.0)
        n = _tanh(tl.load(ap + 2 * H, mask=m2, other=0.0) + r * hn)
        h = tl.load(h_ptr + r2 * sh + c2, mask=m2, other=0.0)
        tl.store(ap, r, mask=m2)
        tl.store(ap + H, z, mask=m2)
        tl.store(ap + 2 * H, n, mask=m2)
        tl.store(hn_ptr + r2 * shn + c2, hn, mask=m2)
        tl.store(ho_ptr + r2 * sho + c2, (h - n) * z + n, mask=m2)

    @triton.jit
    def _gru_bwd(a_ptr, hn_ptr, hp_ptr, gh_ptr, da_ptr, dg_ptr, dhn_ptr, gho_ptr, B, H, sa,
                 shn, shp, sgh, sda, sdg, sdhn, sgho, BLOCK_B: tl.constexpr,
                 BLOCK_H: tl.constexpr):
        cols = tl.program_id(0) * BLOCK_H + tl.arange(0, BLOCK_H)
        rows = tl.program_id(1) * BLOCK_B + tl.arange(0, BLOCK_B)
        m2 = (rows < B)[:, None] & (cols < H)[None, :]
        r2, c2 = rows[:, None], cols[None, :]
        ap = a_ptr + r2 * sa + c2
        r = tl.load(ap, mask=m2, other=0.0)
        z = tl.load(ap + H, mask=m2, other=0.0)
        n = tl.load(ap + 2 * H, mask=m2, other=0.0)
        gh = tl.load(gh_ptr + r2 * sgh + c2, mask=m2, other=0.0)
        h_prev = tl.load(hp_ptr + r2 * shp + c2, mask=m2, other=0.0)
        dan = gh * (1.0 - z) * (1.0 - n * n)
        daz = gh * (h_prev - n) * z * (1.0 - z)
        dar = dan * tl.load(hn_ptr + r2 * shn + c2, mask=m2, other=0.0) * r * (1.0 - r)
        dap, dgp = da_ptr + r2 * sda + c2, dg_ptr + r2 * sdg + c2
        tl.store(dap, dar, mask=m2)
        tl.store(dap + H, daz, mask=m2)
        tl.store(dap + 2 * H, dan, mask=m2)
        tl.store(dgp, dar, mask=m2)
        tl.store(dgp + H, daz, mask=m2)
        tl.store(dgp + 2 * H, dan * r, mask=m2)
        tl.store(dhn_ptr + r2 * sdhn + c2, dan * r, mask=m2)
        tl.store(gho_ptr + r2 * sgho + c2, gh * z, mask=m2)


def _tiles(B: int, H: int):
    """(BLOCK_B, BLOCK_H, grid): 16 x 32 tiles, enough programs to spread a (64, 512) step."""
    bb, bh = min(16, triton.next_power_of_2(B)), min(32, triton.next_power_of_2(H))
    return bb, bh, (triton.cdiv(H, bh), triton.cdiv(B, bb))


def _rows(x: Tensor) -> Tensor:
    """x with unit column stride (the kernels take one row stride per tensor)."""
    return x if x.stride(-1) == 1 else x.contiguous()


class LSTMGates:
    """The per-step LSTM gate math of one configuration (coupled, peephole weights)."""

    def __init__(self, coupled: bool, peep: Optional[Tensor]) -> None:
        self.coupled = coupled
        self.peep = None if peep is None else peep.detach().contiguous()

    def forward(self, a: Tensor, g: Optional[Tensor], c: Tensor, c_out: Tensor,
                m_out: Tensor) -> Tensor:
        """a (B, GH) pre-activations (+ g, the (B, GH) recurrent GEMM, if given) become the
        activations in place; writes c' into c_out and o ⊙ tanh(c') into m_out (B, H)."""
        B, H = c_out.shape
        c, g = _rows(c), None if g is None else _rows(g)
        bb, bh, grid = _tiles(B, H)
        gg = a if g is None else g
        pp = a if self.peep is None else self.peep
        _lstm_fwd[grid](a, gg, c, c_out, m_out, pp, B, H, a.stride(0), gg.stride(0),
                        c.stride(0), c_out.stride(0), m_out.stride(0),
                        NI=0 if self.coupled else 1, PEEP=self.peep is not None,
                        HAS_G=g is not None, BLOCK_B=bb, BLOCK_H=bh)
        return c_out

    def backward(self, a: Tensor, da: Tensor, c_new: Tensor, c_prev: Tensor, gm: Tensor,
                 gc: Tensor, dpeep: Optional[Tensor] = None) -> Tensor:
        """Writes the pre-activation gradients into da (B, GH) from the activations a;
        adds the peephole gradients into dpeep; returns the gradient reaching c_{t-1}.
        gm: gradient of o ⊙ tanh(c'), gc: gradient of c'."""
        B, H = c_new.shape
        c_prev, gm, gc = _rows(c_prev), _rows(gm), _rows(gc)
        dcp = torch.empty_like(c_new)
        bb, bh, grid = _tiles(B, H)
        rows = bb
        if self.peep is not None:            # column sums over every row in one program
            grid, rows = (grid[0], 1), B
        pp = a if self.peep is None else self.peep
        _lstm_bwd[grid](a, da, c_new, c_prev, gm, gc, dcp, pp, a if dpeep is None else dpeep,
                        B, H, a.stride(0), da.stride(0), c_new.stride(0), c_prev.stride(0),
                        gm.stride(0), gc.stride(0), dcp.stride(0), rows,
                        NI=0 if self.coupled else 1, PEEP=self.peep is not None, BLOCK_B=bb,
                        BLOCK_H=bh)
        return dcp


class GRUGates:
    """The per-step GRU gate math (gate order r, z, n, torch.nn.GRU's form)."""

    def forward(self, a: Tensor, g: Tensor, b_hn: Optional[Tensor], h: Tensor, hn_out: Tensor,
                h_out: Tensor) -> None:
        """a (B, 3H) input part becomes r, z, n in place; g (B, 3H) = h W_hhᵀ; writes
        g_n + b_hn into hn_out and h' = n + z (h - n) into h_out."""
        B, H = h_out.shape
        g, h = _rows(g), _rows(h)
        bb, bh, grid = _tiles(B, H)
        _gru_fwd[grid](a, g, a if b_hn is None else b_hn, h, hn_out, h_out, B, H, a.stride(0),
                       g.stride(0), h.stride(0), hn_out.stride(0), h_out.stride(0),
                       HAS_B=b_hn is not None, BLOCK_B=bb, BLOCK_H=bh)

    def backward(self, a: Tensor, hn: Tensor, h_prev: Tensor, gh: Tensor, da: Tensor,
                 dg: Tensor, dhn: Tensor) -> Tensor:
        """From r, z, n in a and hn = g_n + b_hn: writes the pre-activation gradients into
        da (B, 3H), the gradient of h W_hhᵀ into dg (B, 3H), its n part also into dhn;
        returns the direct gradient reaching h_{t-1} (gh ⊙ z, the GEMM part not added)."""
        B, H = hn.shape
        h_prev, gh = _rows(h_prev), _rows(gh)
        gho = torch.empty_like(hn)
        bb, bh, grid = _tiles(B, H)
        _gru_bwd[grid](a, hn, h_prev, gh, da, dg, dhn, gho, B, H, a.stride(0), hn.stride(0),
                       h_prev.stride(0), gh.stride(0), da.stride(0), dg.stride(0),
                       dhn.stride(0), gho.stride(0), BLOCK_B=bb, BLOCK_H=bh)
        return gho


def _usable(A: Tensor, any_device: bool) -> bool:
    """CUDA float32 (any_device: also CPU tensors and float64, for the interpreter tests)."""
    return (ENABLED[0] and triton is not None and A.stride(-1) == 1
            and (any_device or (A.is_cuda and A.dtype == torch.float32)))


def _probe(key: tuple, run) -> bool:
    """Compile and run a kernel once on scratch tensors (per configuration); a failure is
    recorded in LAST_ERROR and switches the kernel off for the process."""
    if key not in _PROBED:
        try:
            run()
            _PROBED[key] = True
        except Exception as e:  # noqa: BLE001 - any compile/launch error: use torch ops
            _PROBED[key] = False
            LAST_ERROR.append(f"{key}: {type(e).__name__}: {e}")
            STATS["triton_error"] += 1
    return _PROBED[key]


def lstm_gates(spec, A: Tensor, peep: Optional[Tensor],
               any_device: bool = False) -> Optional[LSTMGates]:
    """The Triton LSTM gate kernels for a ``kernels.lstm.Spec`` over A (T, B, GH), or None
    where they do not apply (then the torch ops run)."""
    if (not _usable(A, any_device) or spec.layer_norm or spec.depth or getattr(spec, "paper", False)
            or (peep is not None and not spec.peephole)):
        return None
    gates = LSTMGates(spec.coupled, peep if spec.peephole else None)
    key = ("lstm", spec.coupled, spec.peephole, A.device, A.dtype)
    if not _probe(key, lambda: _try_lstm(gates, A)):
        return None
    STATS["triton"] += 1
    return gates


def _try_lstm(gates: LSTMGates, A: Tensor) -> None:
    B, GH = A.shape[1:]
    H = GH // (3 if gates.coupled else 4)
    a, c = torch.zeros_like(A[0]), A.new_zeros(B, H)
    gates.forward(a, torch.zeros_like(a), c, torch.empty_like(c), torch.empty_like(c))
    dp = None if gates.peep is None else torch.zeros_like(gates.peep)
    gates.backward(a, torch.empty_like(a), c, c, c, c, dp)


def gru_gates(A: Tensor, any_device: bool = False) -> Optional[GRUGates]:
    """The Triton GRU gate kernels for A (T, B, 3H), or None where they do not apply."""
    if not _usable(A, any_device):
        return None
    gates = GRUGates()
    if not _probe(("gru", A.device, A.dtype), lambda: _try_gru(gates, A)):
        return None
    STATS["triton"] += 1
    return gates


def _try_gru(gates: GRUGates, A: Tensor) -> None:
    a = torch.zeros_like(A[0])
    h = A.new_zeros(a.shape[0], a.shape[1] // 3)
    gates.forward(a, torch.zeros_like(a), None, h, torch.empty_like(h), torch.empty_like(h))
    gates.backward(a, h, h, h, torch.empty_like(a), torch.empty_like(a), torch.empty_like(h))
