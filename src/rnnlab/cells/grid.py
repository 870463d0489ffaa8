"""Grid LSTM blocks (Kalchbrenner, Danihelka & Graves 2015, "Grid Long Short-Term Memory").

An N-dimensional block holds one pair (h_i, m_i) per dimension i, named in ``dims``.
With H = [h_1; ...; h_N] (the incoming hidden vectors in the order of ``dims``), every
dimension applies its own transform to H and sends (h'_i, m'_i) on along dimension i:

  kind "lstm" (the paper's LSTM(H, m_i, W_i); fused rows in torch's gate order i, f, g, o):
      a = W_i H + b_i                            W_i: (4d, N d), b_i: (4d,)
      i = σ(a_i), f = σ(a_f), g = tanh(a_g), o = σ(a_o)
      m'_i = f ⊙ m_i + i ⊙ g
      h'_i = tanh(o ⊙ m'_i)     output_form="paper"     (the paper's equations; default)
      h'_i = o ⊙ tanh(m'_i)     output_form="standard"  (the usual LSTM, torch.nn's)
  kind "identity" | "tanh" | "relu" (non-LSTM dimension, §3.3): h'_i = α(V_i H + c_i), m'_i = 0
  kind "none": no transform and no weights; h'_i is the mean of the new h of the dimensions
      that have a transform (for N = 2 exactly the other one's), m'_i = 0. A 2-D time × depth
      grid whose depth is "none" is a stacked LSTM (the reduction the tests check).

Priority dimensions (§3.2): the transforms of the other dimensions run first; each priority
dimension then reads H' in which every non-priority dimension with a transform has its new h'.

Two different kinds of weight sharing, with names that cannot be confused:
- ``share_across_dims=True`` (what TensorFlow's grid_rnn called ``tied``): all LSTM dimensions
  of one block use one weight set (``weight_lstm``), all non-LSTM dimensions another
  (``weight_ff``). Otherwise each dimension has ``weight_<dim>``, ``bias_<dim>``.
- sharing *along* a dimension (the paper's "tied N-LSTM", §3.5) belongs to the network that
  repeats blocks: ``share_along_depth=True`` in rnnlab.layers.grid uses one block for all depths.

Inputs may be hoisted: ``input_part(dim, h)`` is dim's contribution to every transform's
pre-activation plus the biases (one GEMM for a whole sequence); pass it as ``pre`` with
``pre_dim=dim``.

``forget_bias=b`` starts every LSTM transform's forget-gate bias at b (other parameters
U(-1/sqrt(N d), 1/sqrt(N d)), N d being the fan-in).

Shapes: h_i, m_i (B, d); pre (B, ΣG) with G = 4d per LSTM dimension, d per non-LSTM one.
``GridLayerStep`` wraps a 2-D (time, depth) block in the rnnlab cell contract.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Cell, init_uniform_, renamed

KINDS = ("lstm", "identity", "tanh", "relu", "none")
OUTPUT_FORMS = ("paper", "standard")
_ACT = {"identity": lambda a: a, "tanh": torch.tanh, "relu": torch.relu}
_GATES = ("input", "forget", "candidate", "output")


class GridState(NamedTuple):
    """One dimension's pair: hidden h (B, d) and memory m (B, d)."""
    h: Tensor
    m: Tensor


class GridBlock(nn.Module):
    """An N-dimensional Grid LSTM block: ``block(pairs) -> new pairs`` (one GridState per dim)."""

    def __init__(self, hidden_size: int, dims: Sequence[str] = ("depth",),
                 kinds: Sequence[str] | dict[str, str] | None = None,
                 priority: Sequence[str] = (), share_across_dims: bool = False,
                 output_form: str = "paper", bias: bool = True, forget_bias: float = 0.0,
                 device=None, dtype=None) -> None:
        super().__init__()
        self.dims = tuple(dims)
        kinds = _kinds_list(self.dims, kinds)
        _validate(self.dims, kinds, tuple(priority), output_form)
        self.hidden_size, self.kinds, self.priority = hidden_size, kinds, tuple(priority)
        self.share_across_dims, self.output_form = share_across_dims, output_form
        self.forget_bias = float(forget_bias)
        N, d = len(self.dims), hidden_size
        self.transform_dims = [i for i, k in enumerate(kinds) if k != "none"]
        pri = [i for i in self.transform_dims if self.dims[i] in self.priority]
        self.order = [i for i in self.transform_dims if i not in pri] + pri
        self.sizes = [4 * d if kinds[i] == "lstm" else d for i in range(N)]
        offsets, start = {}, 0
        for i in self.transform_dims:
            offsets[i] = (start, start + self.sizes[i])
            start += self.sizes[i]
        self.offsets, self.pre_size = offsets, start
        for slot in dict.fromkeys(self.slot(i) for i in self.transform_dims):
            rows = {"lstm": 4 * d, "ff": d}.get(slot) or self.sizes[self.dims.index(slot)]
            kw = {"device": device, "dtype": dtype}
            self.register_parameter(f"weight_{slot}", nn.Parameter(torch.empty(rows, N * d, **kw)))
            b = nn.Parameter(torch.empty(rows, **kw)) if bias else None
            self.register_parameter(f"bias_{slot}", b)
        self.reset_parameters()

    def slot(self, i: int) -> str:
        """Name of the weight set dimension i uses."""
        if self.share_across_dims:
            return "lstm" if self.kinds[i] == "lstm" else "ff"
        return self.dims[i]

    def transform_weight(self, i: int) -> tuple[Tensor, Tensor | None]:
        """(W_i (G, N d), b_i (G,) or None) of dimension i's transform."""
        s = self.slot(i)
        return getattr(self, f"weight_{s}"), getattr(self, f"bias_{s}")

    def reset_parameters(self) -> None:
        init_uniform_(self, self.hidden_size * len(self.dims))
        if self.forget_bias:
            d = self.hidden_size
            lstm_biases = {self.slot(i): self.transform_weight(i)[1]
                           for i in self.transform_dims if self.kinds[i] == "lstm"}
            with torch.no_grad():
                for b in lstm_biases.values():
                    if b is not None:
                        b[d:2 * d] = self.forget_bias

    def input_part(self, dim: int, h: Tensor) -> Tensor:
        """Dimension dim's contribution to every transform's pre-activation, biases included:
        (..., d) -> (..., ΣG)."""
        d = self.hidden_size
        cols = slice(dim * d, (dim + 1) * d)
        W = torch.cat([self.transform_weight(i)[0][:, cols] for i in self.transform_dims])
        b = [self.transform_weight(i)[1] for i in self.transform_dims]
        return F.linear(h, W, None if b[0] is None else torch.cat(b))

    def forward(self, pairs: Sequence[GridState], pre: Tensor | None = None,
                pre_dim: int | None = None) -> tuple[GridState, ...]:
        return self.run(pairs, pre, pre_dim, None)

    def gate_values(self, pairs: Sequence[GridState], pre: Tensor | None = None,
                    pre_dim: int | None = None) -> dict[str, Tensor]:
        """This block's gate activations, keyed '<dim>.input|forget|candidate|output'."""
        gates: dict[str, Tensor] = {}
        self.run(pairs, pre, pre_dim, gates)
        return gates

    def run(self, pairs, pre, pre_dim, gates) -> tuple[GridState, ...]:
        N = len(self.dims)
        if len(pairs) != N:
            raise ValueError(f"a block over dims {self.dims} takes {N} (h, m) pairs, "
                             f"received {len(pairs)}")
        if pre is not None and pre_dim is None:
            raise ValueError("a hoisted input part (pre) needs pre_dim, the dimension it reads")
        if pre is not None and self.priority and self.dims[pre_dim] not in self.priority \
                and self.kinds[pre_dim] != "none":
            raise ValueError("only a priority or 'none' dimension's input can be hoisted "
                             "(a non-priority one changes before the priority transforms)")
        hs = [p.h for p in pairs]
        new: dict[int, GridState] = {}
        source = hs
        for i in self.order:
            if self.dims[i] in self.priority and source is hs:
                source = [new[j].h if j in new else hs[j] for j in range(N)]
            a = self._preact(i, source, pre, pre_dim)
            new[i] = self._transform(i, a, pairs[i].m, gates)
        outs = [new[i].h for i in self.transform_dims]
        for i in range(N):
            if i not in new:
                h = outs[0] if len(outs) == 1 else torch.stack(outs).mean(0)
                new[i] = GridState(h, torch.zeros_like(h))
        return tuple(new[i] for i in range(N))

    def _preact(self, i: int, source: list, pre: Tensor | None, pre_dim: int | None) -> Tensor:
        W, b = self.transform_weight(i)
        if pre is None:
            return F.linear(torch.cat(source, -1) if len(source) > 1 else source[0], W, b)
        lo, hi = self.offsets[i]
        a = pre[..., lo:hi]                                           # biases included
        keep = [j for j in range(len(self.dims)) if j != pre_dim]
        if not keep:
            return a
        x = torch.cat([source[j] for j in keep], -1) if len(keep) > 1 else source[keep[0]]
        Wk = self._columns(W, keep)
        return torch.addmm(a, x, Wk.t()) if x.dim() == 2 else a + x @ Wk.t()

    def _columns(self, W: Tensor, keep: list[int]) -> Tensor:
        """The columns of W that read the dimensions in keep (a view when contiguous)."""
        d = self.hidden_size
        if keep == list(range(keep[0], keep[-1] + 1)):
            return W[:, keep[0] * d:(keep[-1] + 1) * d]
        return torch.cat([W[:, j * d:(j + 1) * d] for j in keep], 1)

    def _transform(self, i: int, a: Tensor, m: Tensor, gates) -> GridState:
        kind, name = self.kinds[i], self.dims[i]
        if kind != "lstm":
            h = _ACT[kind](a)
            return GridState(h, torch.zeros_like(h))
        d = self.hidden_size
        gi, gf, _, go = torch.sigmoid(a).chunk(4, -1)                 # one kernel for σ gates
        gg = torch.tanh(a[..., 2 * d:3 * d])
        m_new = gf * m + gi * gg
        h = torch.tanh(go * m_new) if self.output_form == "paper" else go * torch.tanh(m_new)
        if gates is not None:
            gates.update({f"{name}.{g}": v for g, v in zip(_GATES, (gi, gf, gg, go))})
        return GridState(h, m_new)

    def extra_repr(self) -> str:
        kinds = ", ".join(f"{n}={k}" for n, k in zip(self.dims, self.kinds))
        s = f"{self.hidden_size}, {kinds}, output_form={self.output_form}"
        if self.priority:
            s += f", priority={self.priority}"
        return s + (", share_across_dims=True" if self.share_across_dims else "")


def _kinds_list(dims: tuple, kinds) -> list[str]:
    if kinds is None:
        return ["lstm"] * len(dims)
    if isinstance(kinds, dict):
        unknown = set(kinds) - set(dims)
        if unknown:
            raise ValueError(f"kinds names unknown dimensions {sorted(unknown)}; dims {dims}")
        return [kinds.get(n, "lstm") for n in dims]
    kinds = list(kinds)
    if len(kinds) != len(dims):
        raise ValueError(f"kinds must give one kind per dimension ({len(dims)}), "
                         f"received {len(kinds)}")
    return kinds


def _validate(dims: tuple, kinds: list, priority: tuple, output_form: str) -> None:
    if not dims or len(set(dims)) != len(dims) or not all(n.isidentifier() for n in dims):
        raise ValueError(f"dims must be distinct identifiers, received {dims}")
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        raise ValueError(f"dimension kinds must be among {KINDS}, received {bad}")
    if all(k == "none" for k in kinds):
        raise ValueError("at least one dimension needs a transform (kind other than 'none')")
    for p in priority:
        if p not in dims or kinds[dims.index(p)] == "none":
            raise ValueError(f"priority dimension {p!r} must be one of {dims} with a transform")
    if output_form not in OUTPUT_FORMS:
        raise ValueError(f"output_form must be one of {OUTPUT_FORMS}, received {output_form!r}")


class GridLayerStep(Cell):
    """One block of a 2-D (time, depth) Grid LSTM as a time step of the cell contract.

    State: GridState(h, m) along time (B, d). Input x_t: what comes up along depth,
    [h_depth; m_depth] (B, 2d) when depth is an LSTM dimension, else h_depth (B, d).
    Output: what goes up, in the same form. ``project_input`` hoists the depth input's part
    of every pre-activation out of the time loop.
    """

    State = GridState

    def __init__(self, hidden_size: int, *, depth_kind: str = "lstm", time_kind: str = "lstm",
                 priority: Sequence[str] = ("depth",), share_across_dims: bool = False,
                 output_form: str = "paper", bias: bool = True, forget_bias: float = 0.0,
                 device=None, dtype=None) -> None:
        super().__init__()
        if depth_kind == "none":
            priority = ()
        self.block = GridBlock(hidden_size, ("time", "depth"), (time_kind, depth_kind),
                               priority, share_across_dims, output_form, bias, forget_bias,
                               device, dtype)
        self.hidden_size = hidden_size
        self.carry_memory = depth_kind == "lstm"
        self.input_size = hidden_size * (2 if self.carry_memory else 1)

    @property
    def output_size(self) -> int:
        return self.input_size

    def state_shapes(self):
        return {"h": (self.hidden_size,), "m": (self.hidden_size,)}

    def project_input(self, x: Tensor) -> Tensor:
        d = self.hidden_size
        pre = self.block.input_part(1, x[..., :d])                    # (..., ΣG)
        return torch.cat([pre, x[..., d:]], -1) if self.carry_memory else pre

    def _pairs(self, xp: Tensor, state: GridState):
        P, _d = self.block.pre_size, self.hidden_size
        m_depth = xp[..., P:] if self.carry_memory else None
        return [GridState(*state), GridState(None, m_depth)], xp[..., :P]

    def step(self, xp: Tensor, state: GridState) -> tuple[Tensor, GridState]:
        pairs, pre = self._pairs(xp, state)
        t, up = self.block(pairs, pre, 1)
        out = torch.cat([up.h, up.m], -1) if self.carry_memory else up.h
        return out, GridState(t.h, t.m)

    def gate_values(self, xp: Tensor, state: GridState) -> dict[str, Tensor]:
        """The gates this step uses, keyed 'time.input', ..., 'depth.output' (LSTM dims)."""
        pairs, pre = self._pairs(xp, state)
        return self.block.gate_values(pairs, pre, 1)


    def extra_repr(self) -> str:
        return f"{self.hidden_size}"


# the old name, deprecated (warns)
__getattr__ = renamed(__name__, {"GridLayerCell": "GridLayerStep"})
