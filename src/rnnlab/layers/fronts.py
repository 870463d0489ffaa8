"""Drop-in replacements for torch.nn.RNN / LSTM / GRU and their Cell classes.

Same constructor arguments, forward signature, return values, state shapes and
``state_dict`` keys as torch.nn, so ``ours.load_state_dict(theirs.state_dict())`` works.
The variants are extra keywords (``rnnlab.LSTM(..., layer_norm=True)``), and forward takes
an extra ``lengths=`` tensor as an alternative to a PackedSequence.

When a layer is exactly torch's configuration it calls torch's fused op (oneDNN on CPU,
cuDNN on GPU); otherwise it runs its cells through ``rnnlab.layers.run_cell``. Set
``layer.use_fused = False`` to force the cell path (the tests compare both with torch.nn).
"""
from __future__ import annotations

import re
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, _VF, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from ..cells.base import check_features, check_shape, shape_str
from ..cells.elman import ElmanCell, ElmanState
from ..cells.gru import GRUCell as _GRUCell, GRUState
from ..cells.lstm import LSTMCell as _LSTMCell, LSTMState
from .recurrent import check_lengths, repack_output, run_cell

_KEY = re.compile(r"^cells\.(\d+)\.(\w+)$")


class _TorchFront(nn.Module):
    """Shared machinery of RNN, LSTM and GRU: flat list of cells ordered (layer, direction),
    parameter names mapped to torch's ``weight_ih_l{k}{_reverse}`` scheme."""

    mode = ""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, proj_size: int = 0, device=None, dtype=None,
                 **cell_options: Any) -> None:
        super().__init__()
        if not isinstance(dropout, (int, float)) or not 0 <= dropout <= 1:
            raise ValueError(f"dropout must be a number in [0, 1], received {dropout!r}")
        if num_layers < 1:
            raise ValueError(f"num_layers must be at least 1, received {num_layers}")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, float(dropout)
        self.bidirectional, self.proj_size = bidirectional, proj_size
        self.use_fused = True
        D = 2 if bidirectional else 1
        out = proj_size or hidden_size
        cells = []
        for layer in range(num_layers):
            size_in = input_size if layer == 0 else out * D
            for _ in range(D):
                cells.append(self.make_cell(size_in, hidden_size, bias, proj_size,
                                            device, dtype, cell_options))
        self.cells = nn.ModuleList(cells)
        self._register_state_dict_hook(_to_torch_keys)
        self.register_load_state_dict_pre_hook(_from_torch_keys)

    # -- construction -------------------------------------------------------------------
    def make_cell(self, size_in, hidden, bias, proj, device, dtype, options):
        raise NotImplementedError

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def output_size(self) -> int:
        return (self.proj_size or self.hidden_size) * self.num_directions

    def torch_name(self, index: int, name: str) -> str:
        layer, direction = divmod(index, self.num_directions)
        return f"{name}_l{layer}{'_reverse' if direction else ''}"

    def __getattr__(self, name: str):
        m = re.match(r"^(\w+)_l(\d+)(_reverse)?$", name)
        if m and not name.startswith("_"):
            cells = self._modules["cells"]
            k = int(m.group(2)) * self.num_directions + (1 if m.group(3) else 0)
            if k < len(cells) and hasattr(cells[k], m.group(1)):
                return getattr(cells[k], m.group(1))
        return super().__getattr__(name)

    @property
    def all_weights(self) -> list[list[nn.Parameter]]:
        return [list(c.parameters()) for c in self.cells]

    def flatten_parameters(self) -> None:
        """Accepted for torch.nn compatibility; nothing to do."""

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        for name, default in (("num_layers", 1), ("bias", True), ("batch_first", False),
                              ("dropout", 0.0), ("bidirectional", False), ("proj_size", 0)):
            if getattr(self, name) != default:
                s += f", {name}={getattr(self, name)}"
        return s

    # -- state conversion between torch's stacked form and per-cell states --------------
    def state_sizes(self) -> tuple[int, ...]:
        """Feature sizes of the torch-form state tensors (h,) or (h, c)."""
        return (self.proj_size or self.hidden_size,)

    def split_state(self, hx, B: int, dtype, device) -> list:
        n = self.num_layers * self.num_directions
        parts = hx if isinstance(hx, tuple) else (hx,)
        names = ("h_0", "c_0")
        if len(parts) != len(self.state_sizes()):
            raise ValueError(f"{self.mode} expects a state of {len(self.state_sizes())} "
                             f"tensor(s), received {len(parts)}")
        for p, size, name in zip(parts, self.state_sizes(), names):
            check_shape(p, (n, B, size), name)
        return [self.cells[0].State(*(p[k] for p in parts)) for k in range(n)]

    def join_state(self, states: list):
        parts = tuple(torch.stack([s[i] for s in states]) for i in range(len(states[0])))
        return parts if len(parts) > 1 else parts[0]

    # -- forward ------------------------------------------------------------------------
    def forward(self, input, hx=None, lengths=None):
        packed = input if isinstance(input, PackedSequence) else None
        unbatched = packed is None and isinstance(input, Tensor) and input.dim() == 2
        if packed is not None:
            x, lens = pad_packed_sequence(packed)
            lengths = lens.long()
        else:
            x = self._time_major(input, unbatched)
        check_features(x, self.input_size)
        T, B = x.shape[:2]
        if lengths is not None and packed is None:
            lengths = check_lengths(lengths, T, B)
        if hx is not None and unbatched:
            hx = tuple(h.unsqueeze(1) for h in hx) if isinstance(hx, tuple) else hx.unsqueeze(1)
        states = None if hx is None else self.split_state(hx, B, x.dtype, x.device)
        if self.use_fused and self.fusable():
            out, final = self._fused(x, states, lengths)
        else:
            out, final = self._cells(x, states, lengths)
        return self._finish(out, final, packed, unbatched, lengths)

    def _time_major(self, input, unbatched: bool) -> Tensor:
        if not isinstance(input, Tensor):
            raise ValueError(f"input must be a Tensor or PackedSequence, "
                             f"received {type(input).__name__}")
        if input.dim() not in (2, 3):
            raise ValueError(f"{self.mode} input must be 3-D "
                             f"({'B, T' if self.batch_first else 'T, B'}, {self.input_size}) "
                             f"or 2-D unbatched, received shape {shape_str(input.shape)}")
        if unbatched:
            return input.unsqueeze(1)
        return input.transpose(0, 1) if self.batch_first else input

    def _finish(self, out, final, packed, unbatched, lengths):
        h = self.join_state(final)
        if packed is not None:
            return repack_output(out, packed), h
        if unbatched:
            out = out.squeeze(1)
            h = tuple(t.squeeze(1) for t in h) if isinstance(h, tuple) else h.squeeze(1)
        elif self.batch_first:
            out = out.transpose(0, 1)
        return out, h

    def _cells(self, x: Tensor, states, lengths):
        D, B = self.num_directions, x.shape[1]
        finals = []
        for layer in range(self.num_layers):
            if layer and self.dropout and self.training:
                x = F.dropout(x, self.dropout, True)
            outs = []
            for d in range(D):
                k = layer * D + d
                cell = self.cells[k]
                s = states[k] if states is not None else cell.init_state(
                    B, device=x.device, dtype=x.dtype)
                o, s = run_cell(cell, x, s, lengths, reverse=bool(d))
                outs.append(o)
                finals.append(s)
            x = outs[0] if D == 1 else torch.cat(outs, dim=-1)
        return x, finals

    # -- torch's fused kernels for the plain configurations -----------------------------
    def fusable(self) -> bool:
        return all(getattr(c, "is_plain", True) for c in self.cells)

    def _flat_weights(self) -> list[Tensor]:
        names = ["weight_ih", "weight_hh"] + (["bias_ih", "bias_hh"] if self.bias else [])
        names += ["weight_hr"] if self.proj_size else []
        return [getattr(c, n) for c in self.cells for n in names]

    def _fused(self, x: Tensor, states, lengths):
        B = x.shape[1]
        if states is None:
            states = [c.init_state(B, device=x.device, dtype=x.dtype) for c in self.cells]
        hx = self.join_state(states)
        args = (self._flat_weights(), self.bias, self.num_layers, self.dropout,
                self.training, self.bidirectional)
        fn = getattr(_VF, self.vf_name())
        if lengths is None:
            res = fn(x, hx, *args, False)
            out, parts = res[0], res[1:]
        else:
            packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
            order = packed.sorted_indices.to(x.device)
            hx_s = tuple(h.index_select(1, order) for h in _as_tuple(hx))
            res = fn(packed.data, packed.batch_sizes, _untuple(hx_s), *args)
            back = packed.unsorted_indices.to(x.device)
            out_p = PackedSequence(res[0], packed.batch_sizes, packed.sorted_indices,
                                   packed.unsorted_indices)
            out = pad_packed_sequence(out_p, total_length=x.shape[0])[0]
            parts = tuple(h.index_select(1, back) for h in res[1:])
        n = len(self.cells)
        return out, [self.cells[0].State(*(p[k] for p in parts)) for k in range(n)]

    def vf_name(self) -> str:
        raise NotImplementedError


def _as_tuple(hx):
    return hx if isinstance(hx, tuple) else (hx,)


def _untuple(parts):
    return parts if len(parts) > 1 else parts[0]


def _to_torch_keys(module, state_dict, prefix, local_metadata):
    for key in list(state_dict):
        m = _KEY.match(key[len(prefix):]) if key.startswith(prefix) else None
        if m:
            state_dict[prefix + module.torch_name(int(m.group(1)), m.group(2))] = \
                state_dict.pop(key)
    return state_dict


def _from_torch_keys(module, state_dict, prefix, *args):
    names = {prefix + module.torch_name(k, n): f"{prefix}cells.{k}.{n}"
             for k, c in enumerate(module.cells) for n, _ in c.named_parameters()}
    for key in list(state_dict):
        if key in names:
            state_dict[names[key]] = state_dict.pop(key)


class RNN(_TorchFront):
    """Elman RNN layer, torch.nn.RNN's contract (``nonlinearity='tanh'|'relu'``)."""

    mode = "RNN"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 nonlinearity: str = "tanh", bias: bool = True, batch_first: bool = False,
                 dropout: float = 0.0, bidirectional: bool = False, device=None,
                 dtype=None) -> None:
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, 0, device, dtype)

    def make_cell(self, size_in, hidden, bias, proj, device, dtype, options):
        return ElmanCell(size_in, hidden, bias, self.nonlinearity, device=device, dtype=dtype)

    def vf_name(self) -> str:
        return "rnn_tanh" if self.nonlinearity == "tanh" else "rnn_relu"


class LSTM(_TorchFront):
    """LSTM layer, torch.nn.LSTM's contract, plus the variant keywords of
    ``rnnlab.cells.LSTMCell``: peephole, coupled, layer_norm, forget_bias."""

    mode = "LSTM"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, proj_size: int = 0, device=None, dtype=None,
                 *, peephole: bool = False, coupled: bool = False, layer_norm: bool = False,
                 forget_bias: float = 0.0) -> None:
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, proj_size, device, dtype, peephole=peephole,
                         coupled=coupled, layer_norm=layer_norm, forget_bias=forget_bias)

    def make_cell(self, size_in, hidden, bias, proj, device, dtype, options):
        return _LSTMCell(size_in, hidden, bias, device=device, dtype=dtype, proj_size=proj,
                         **options)

    def state_sizes(self):
        return (self.proj_size or self.hidden_size, self.hidden_size)

    def vf_name(self) -> str:
        return "lstm"


class GRU(_TorchFront):
    """GRU layer, torch.nn.GRU's contract."""

    mode = "GRU"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, device=None, dtype=None) -> None:
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, 0, device, dtype)

    def make_cell(self, size_in, hidden, bias, proj, device, dtype, options):
        return _GRUCell(size_in, hidden, bias, device=device, dtype=dtype)

    #: On CPU, hidden sizes from this one up run rnnlab.kernels.gru: torch's CPU GRU has no
    #: oneDNN path and the kernel beats it there (0.71x fwd+bwd at H=512, T=100, B=64);
    #: below it torch's op is faster (at H=128, B=32: kernel 92 ms vs torch 71 ms).
    cpu_kernel_min_hidden = 256

    def fusable(self) -> bool:
        on_cpu = self.cells[0].weight_hh.device.type == "cpu"
        if on_cpu and self.hidden_size >= self.cpu_kernel_min_hidden:
            return False
        return super().fusable()

    def vf_name(self) -> str:
        return "gru"


# -- single-step fronts: torch.nn.RNNCell / LSTMCell / GRUCell contracts -----------------

def _cell_call(cell, input: Tensor, hx):
    """torch's cell forward: (B, F) or unbatched (F,) input, hx None or torch-form state."""
    check_features(input, cell.input_size)
    if input.dim() not in (1, 2):
        raise ValueError(f"cell input must be (batch, {cell.input_size}) or "
                         f"({cell.input_size},), received {shape_str(input.shape)}")
    unbatched = input.dim() == 1
    x = input.unsqueeze(0) if unbatched else input
    if hx is None:
        state = cell.init_state(x.shape[0], device=x.device, dtype=x.dtype)
    else:
        parts = hx if isinstance(hx, tuple) else (hx,)
        if unbatched:
            parts = tuple(p.unsqueeze(0) for p in parts)
        state = cell.check_state(tuple(parts), x.shape[0])
    _, new = cell.step(cell.project_input(x), state)
    parts = tuple(p.squeeze(0) for p in new) if unbatched else tuple(new)
    return parts if len(parts) > 1 else parts[0]


class RNNCell(ElmanCell):
    """torch.nn.RNNCell's contract: forward(input, hx=None) -> h'."""

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        return _cell_call(self, input, hx)


class LSTMCell(_LSTMCell):
    """torch.nn.LSTMCell's contract: forward(input, (h, c)=None) -> (h', c'); variants as
    keywords."""

    def forward(self, input: Tensor, hx=None):
        return _cell_call(self, input, hx)


class GRUCell(_GRUCell):
    """torch.nn.GRUCell's contract: forward(input, hx=None) -> h'."""

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        return _cell_call(self, input, hx)


__all__ = ["RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell", "ElmanState",
           "LSTMState", "GRUState"]
