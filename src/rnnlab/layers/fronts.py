"""Drop-in replacements for torch.nn.RNN / LSTM / GRU and their Cell classes.

Each class *is* its torch.nn counterpart (``isinstance(rnnlab.LSTM(...), torch.nn.LSTM)``):
it subclasses it, so the constructor's checks, the parameters (``weight_ih_l0`` ... in
torch's order), ``reset_parameters``, ``repr``, ``state_dict``, parametrizations, pruning
and ``functional_call`` are torch's own. The variants are extra keywords
(``rnnlab.LSTM(..., layer_norm=True)``): their extra parameters follow torch's naming
(``weight_peephole_l0``, ``ln_ih_weight_l0`` ...). ``forward`` also takes ``lengths=`` as an
alternative to a PackedSequence.

Which path runs:
- the plain configuration calls torch's own forward (oneDNN on CPU, cuDNN on GPU), except
  a CPU GRU of hidden size >= 256, where ``rnnlab.kernels.gru`` is faster;
- a variant, or any layer under ``rnnlab.kernels.use_kernels(False)``, runs its cells
  (``rnnlab.cells``) through ``rnnlab.layers.run_cell``, which takes a whole-sequence kernel
  where one applies. The cells are weightless templates bound to this layer's parameters
  before each use, so there is one copy of every weight and it is torch's.

``to_torch()`` returns the plain torch module sharing these parameters (what
``torch.jit.script`` and ``torch.ao.quantization`` need); a variant refuses.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from .. import kernels
from ..cells.elman import ElmanStep
from ..cells.gru import GRUStep
from ..cells.lstm import LSTMStep
from .recurrent import check_lengths, repack_output, run_cell, run_stack


class _Bound:
    """Weightless cell templates (on the meta device) bound to the owner's parameters.

    ``self._templates[k]`` holds the math of unit k (layer k // D, direction k % D);
    ``_param_name(k, name)`` is the owner's name for that unit's parameter ``name``."""

    _variant: dict

    def _setup_templates(self, templates: list, device, dtype) -> None:
        self.__dict__["_templates"] = templates
        if not self._variant:
            self._bind_all()
            return
        for k, cell in enumerate(templates):
            for name, p in cell.named_parameters():
                full = self._param_name(k, name)
                old = self._parameters.get(full)
                if old is None or old.shape != p.shape:
                    setattr(self, full, nn.Parameter(torch.empty(p.shape, device=device,
                                                                 dtype=dtype)))
                self._note_param(k, full)
        self._after_params()
        self.reset_parameters()

    def _note_param(self, k: int, full: str) -> None:
        """Record a parameter name the base class does not know (RNNBase bookkeeping)."""

    def _after_params(self) -> None:
        """Hook run after the variant parameters are registered."""

    def _bind(self, k: int):
        cell = self._templates[k]
        for name in list(cell._parameters):
            if cell._parameters[name] is not None:
                cell._parameters[name] = getattr(self, self._param_name(k, name))
        return cell

    def _bind_all(self) -> list:
        return [self._bind(k) for k in range(len(self.__dict__.get("_templates", ())))]

    @property
    def cells(self) -> list:
        """The per-unit cells (layer-major, then direction), bound to the current
        parameters. They are views for inspection and stepping, not submodules."""
        return self._bind_all()

    def _apply(self, fn, recurse=True):
        out = super()._apply(fn, recurse)
        self._bind_all()          # drop references to the tensors before the move
        return out

    def reset_parameters(self) -> None:
        """torch's initialisation, then each variant's own (layer-norm gains 1, the
        forget-gate bias)."""
        super().reset_parameters()
        if getattr(self, "_variant", None):
            for k in range(len(self._templates)):
                self._bind(k).reset_parameters()

    def extra_repr(self) -> str:
        return super().extra_repr() + self._variant_repr()

    def to_torch(self) -> nn.Module:
        """The torch.nn module of the same configuration sharing these parameters."""
        if self._variant:
            raise ValueError(f"{type(self).__name__}({self._variant_repr()[2:]}) has no "
                             f"torch.nn equivalent: only the plain configuration converts")
        if nn.utils.parametrize.is_parametrized(self):
            raise ValueError("remove the parametrizations before converting to torch.nn")
        twin = self._torch_base()(**self._torch_args(), device="meta")
        for name, p in self._parameters.items():
            setattr(twin, name, p)
        if hasattr(twin, "_init_flat_weights"):           # RNNBase: refresh its weight list
            twin._init_flat_weights()
        return twin.train(self.training)

    def __prepare_scriptable__(self):
        return self.to_torch()

    def _torch_base(self) -> type:
        """The torch.nn class this one stands in for."""
        return next(c for c in type(self).__mro__ if c.__module__.startswith("torch.nn"))

    def _variant_repr(self) -> str:
        return "".join(f", {k}={v}" for k, v in self._variant.items())


class _Front(_Bound):
    """What RNN, LSTM and GRU add to torch.nn.RNNBase."""

    def _init_front(self, options: dict, device, dtype) -> None:
        self._variant = {k: v for k, v in options.items() if v}
        D = 2 if self.bidirectional else 1
        out = self.proj_size or self.hidden_size
        templates = [self._make_cell(self.input_size if k // D == 0 else out * D, options,
                                     dtype) for k in range(self.num_layers * D)]
        self._setup_templates(templates, device, dtype)

    @property
    def output_size(self) -> int:
        """Features of each output step: (proj_size or hidden_size) x directions."""
        return (self.proj_size or self.hidden_size) * (2 if self.bidirectional else 1)

    def _param_name(self, k: int, name: str) -> str:
        layer, direction = divmod(k, 2 if self.bidirectional else 1)
        return f"{name}_l{layer}{'_reverse' if direction else ''}"

    def _note_param(self, k: int, full: str) -> None:
        if full not in self._flat_weights_names:
            self._flat_weights_names.append(full)
            self._all_weights[k].append(full)

    def _after_params(self) -> None:
        self._init_flat_weights()

    def flatten_parameters(self) -> None:
        if not getattr(self, "_variant", None):
            super().flatten_parameters()

    def _torch_args(self) -> dict:
        return dict(input_size=self.input_size, hidden_size=self.hidden_size,
                    num_layers=self.num_layers, bias=self.bias, batch_first=self.batch_first,
                    dropout=self.dropout, bidirectional=self.bidirectional)

    # -- forward --------------------------------------------------------------------
    def _torch_path(self, input) -> bool:
        """torch's own op: the plain configuration, unless the kernels are off (the
        reference path) or rnnlab's kernel is the faster one here (eager mode only)."""
        if self._variant or not kernels.enabled():
            return False
        x = input.data if isinstance(input, PackedSequence) else input
        return not (self._prefers_kernel() and kernels.eager(x))

    def _prefers_kernel(self) -> bool:
        return False

    def forward(self, input, hx=None, lengths=None):
        """torch.nn's forward; ``lengths`` (B,) marks the valid steps of a padded input."""
        if self._torch_path(input):
            if lengths is None:
                return super().forward(input, hx)
            return self._torch_with_lengths(input, hx, lengths)
        return self._forward_cells(input, hx, lengths)

    def _torch_with_lengths(self, input: Tensor, hx, lengths):
        T, B = (input.shape[1], input.shape[0]) if self.batch_first else input.shape[:2]
        lengths = check_lengths(lengths, T, B)
        packed = pack_padded_sequence(input, lengths, self.batch_first, enforce_sorted=False)
        out, h = super().forward(packed, hx)
        return pad_packed_sequence(out, self.batch_first, total_length=T)[0], h

    def _forward_cells(self, input, hx, lengths):
        if isinstance(input, PackedSequence):
            x, lens = pad_packed_sequence(input)
            self.check_forward_args(input.data, self._check_form(hx, x.shape[1], x),
                                    input.batch_sizes)
            lengths, unbatched = lens.long(), False
        else:
            if not isinstance(input, Tensor) or input.dim() not in (2, 3):
                word = " tensor" if self._torch_base() is nn.RNN else ""  # torch's wording
                got = (f"{input.dim()}D{word}" if isinstance(input, Tensor)
                       else type(input).__name__)
                raise ValueError(f"{self._torch_base().__name__}: Expected input to be 2D or "
                                 f"3D, got {got} instead")
            unbatched = input.dim() == 2
            if unbatched:
                hx = self._unsqueeze_hx(hx)
                input = input.unsqueeze(1 if not self.batch_first else 0)
            x = input.transpose(0, 1) if self.batch_first else input
            self.check_forward_args(input, self._check_form(hx, x.shape[1], x), None)
            if lengths is not None:
                lengths = check_lengths(lengths, x.shape[0], x.shape[1])
        out, h = self._run_units(x, hx, lengths)
        if isinstance(input, PackedSequence):
            return repack_output(out, input), h
        if self.batch_first:
            out = out.transpose(0, 1)
        if unbatched:
            out = out.squeeze(0 if self.batch_first else 1)
            h = tuple(t.squeeze(1) for t in h) if isinstance(h, tuple) else h.squeeze(1)
        return out, h

    def _unsqueeze_hx(self, hx):
        if hx is None:
            return None
        if isinstance(hx, tuple):
            if any(t.dim() != 2 for t in hx):
                dims = ", ".join(f"{t.dim()}-D" for t in hx)
                raise RuntimeError(f"For unbatched 2-D input, hx and cx should also be 2-D "
                                   f"but got ({dims}) tensors")
        elif hx.dim() != 2:
            raise RuntimeError(f"For unbatched 2-D input, hx should also be 2-D but got "
                               f"{hx.dim()}-D tensor")
        return tuple(t.unsqueeze(1) for t in hx) if isinstance(hx, tuple) else hx.unsqueeze(1)

    def _zeros(self, B: int, size: int, x: Tensor) -> Tensor:
        D = 2 if self.bidirectional else 1
        return x.new_zeros(self.num_layers * D, B, size)

    def _check_form(self, hx, B: int, x: Tensor):
        """hx as torch's check_forward_args expects it (zeros when None)."""
        return self._zeros(B, self.proj_size or self.hidden_size, x) if hx is None else hx

    def _run_units(self, x: Tensor, hx, lengths):
        """x (T, B, F) time-major through every layer and direction (``run_stack``), the
        state in torch's stacked layout (L * D, B, H) in and out."""
        D, B = 2 if self.bidirectional else 1, x.shape[1]

        def run_layer(x: Tensor, layer: int):
            outs, finals = [], []
            for d in range(D):
                k = layer * D + d
                cell = self._bind(k)
                s = cell.init_state(B, device=x.device, dtype=x.dtype) if hx is None \
                    else self._unit_state(cell, hx, k)
                o, s = run_cell(cell, x, s, lengths, reverse=bool(d))
                outs.append(o)
                finals.append(s)
            return (outs[0] if D == 1 else torch.cat(outs, dim=-1)), finals

        x, per_layer = run_stack([lambda x, i=i: run_layer(x, i) for i in range(self.num_layers)],
                                 x, self.dropout, self.training)
        return x, self.join_state([s for layer in per_layer for s in layer])

    def _unit_state(self, cell, hx, k: int):
        return cell.State(*((p[k] for p in hx) if isinstance(hx, tuple) else (hx[k],)))

    # -- the state layout (what a stepper reads) -------------------------------------
    state_batch_dim = 1                 # torch's stacked (layers x directions, B, H)

    def split_state(self, hx) -> list:
        """torch's stacked state -> one cell state per unit (layer-major)."""
        return [self._unit_state(c, hx, k) for k, c in enumerate(self.cells)]

    def join_state(self, states: list):
        """One cell state per unit -> torch's stacked (h,) or (h, c)."""
        parts = tuple(torch.stack([s[i] for s in states]) for i in range(len(states[0])))
        return parts if len(parts) > 1 else parts[0]


class RNN(_Front, nn.RNN):
    """Elman RNN layer: torch.nn.RNN (``nonlinearity='tanh'|'relu'``), torch's constructor.

    forward(input, hx=None, lengths=None) -> (output, h_n): input (T, B, F), (B, T, F) with
    batch_first, (T, F) unbatched or a PackedSequence; hx (L * D, B, H) or None (zeros);
    lengths (B,) marks the valid steps of a padded input. output (T, B, D * H) in the
    input's layout, h_n (L * D, B, H)."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 nonlinearity: str = "tanh", bias: bool = True, batch_first: bool = False,
                 dropout: float = 0.0, bidirectional: bool = False, device=None,
                 dtype=None, proj_size: int = 0) -> None:
        # proj_size only so that torch refuses it as it does for nn.RNN (ValueError)
        super().__init__(input_size, hidden_size, num_layers, nonlinearity, bias, batch_first,
                         dropout, bidirectional, device=device, dtype=dtype,
                         **({"proj_size": proj_size} if proj_size else {}))
        self._init_front({}, device, dtype)

    def _make_cell(self, size_in: int, options: dict, dtype):
        return ElmanStep(size_in, self.hidden_size, self.bias, self.nonlinearity,
                         device="meta", dtype=dtype)

    def _torch_args(self) -> dict:
        return {**super()._torch_args(), "nonlinearity": self.nonlinearity}


class LSTM(_Front, nn.LSTM):
    """LSTM layer: torch.nn.LSTM's constructor, plus the variant keywords of
    ``rnnlab.cells.LSTMStep``: peephole, coupled, layer_norm, forget_bias.

    forward(input, hx=None, lengths=None) -> (output, (h_n, c_n)): input as ``rnnlab.RNN``;
    hx (h_0 (L * D, B, P), c_0 (L * D, B, H)) or None; output (T, B, D * P), with
    P = proj_size or H."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, proj_size: int = 0, device=None, dtype=None,
                 *, peephole: bool = False, coupled: bool = False, layer_norm: bool = False,
                 forget_bias: float = 0.0) -> None:
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, proj_size, device=device, dtype=dtype)
        self._init_front(dict(peephole=peephole, coupled=coupled, layer_norm=layer_norm,
                              forget_bias=float(forget_bias)), device, dtype)

    def _make_cell(self, size_in: int, options: dict, dtype):
        return LSTMStep(size_in, self.hidden_size, self.bias, device="meta", dtype=dtype,
                         proj_size=self.proj_size, **options)

    def _torch_args(self) -> dict:
        return {**super()._torch_args(), "proj_size": self.proj_size}

    def _check_form(self, hx, B: int, x: Tensor):
        if hx is None:
            return (self._zeros(B, self.proj_size or self.hidden_size, x),
                    self._zeros(B, self.hidden_size, x))
        if not isinstance(hx, tuple) or len(hx) != 2:
            raise RuntimeError("LSTM expects hx as a tuple (h_0, c_0)")
        return hx


class GRU(_Front, nn.GRU):
    """GRU layer: torch.nn.GRU, torch's constructor.

    forward(input, hx=None, lengths=None) -> (output, h_n), shapes as ``rnnlab.RNN``."""

    #: On CPU, hidden sizes from this one up run rnnlab.kernels.gru: torch's CPU GRU has no
    #: oneDNN path and the kernel beats it there (0.71x fwd+bwd at H=512, T=100, B=64);
    #: below it torch's op is faster (at H=128, B=32: kernel 92 ms vs torch 71 ms).
    cpu_kernel_min_hidden = 256

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, device=None, dtype=None,
                 proj_size: int = 0) -> None:
        # proj_size only so that torch refuses it as it does for nn.GRU (ValueError)
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, device=device, dtype=dtype,
                         **({"proj_size": proj_size} if proj_size else {}))
        self._init_front({}, device, dtype)

    def _make_cell(self, size_in: int, options: dict, dtype):
        return GRUStep(size_in, self.hidden_size, self.bias, device="meta", dtype=dtype)

    def _prefers_kernel(self) -> bool:
        return (self.weight_hh_l0.device.type == "cpu"
                and self.hidden_size >= self.cpu_kernel_min_hidden)


# -- single-step fronts: torch.nn.RNNCell / LSTMCell / GRUCell ----------------------------

class _CellFront(_Bound):
    """What RNNCell, LSTMCell and GRUCell add to torch.nn.RNNCellBase."""

    def _init_front(self, cell, options: dict, device, dtype) -> None:
        self._variant = {k: v for k, v in options.items() if v}
        self._setup_templates([cell], device, dtype)

    def _param_name(self, k: int, name: str) -> str:
        return name

    def _torch_args(self) -> dict:
        return dict(input_size=self.input_size, hidden_size=self.hidden_size, bias=self.bias)

    def forward(self, input: Tensor, hx=None):
        if not self._variant:
            return super().forward(input, hx)
        if input.dim() not in (1, 2):
            raise ValueError(f"{type(self).__name__}: Expected input to be 1D or 2D, got "
                             f"{input.dim()}D instead")
        if input.shape[-1] != self.input_size:
            raise RuntimeError(f"input has inconsistent input_size: got {input.shape[-1]} "
                               f"expected {self.input_size}")
        unbatched = input.dim() == 1
        x = input.unsqueeze(0) if unbatched else input
        cell = self._bind(0)
        if hx is None:
            state = cell.init_state(x.shape[0], device=x.device, dtype=x.dtype)
        else:
            parts = hx if isinstance(hx, tuple) else (hx,)
            if any(p.dim() != input.dim() for p in parts):
                raise RuntimeError(f"{type(self).__name__}: Expected hidden to be "
                                   f"{input.dim()}D, got "
                                   f"{[p.dim() for p in parts]} instead")
            state = cell.check_state(tuple(p.unsqueeze(0) if unbatched else p
                                           for p in parts), x.shape[0])
        _, new = cell.step(cell.project_input(x), state)
        parts = tuple(p.squeeze(0) for p in new) if unbatched else tuple(new)
        return parts if len(parts) > 1 else parts[0]


class RNNCell(_CellFront, nn.RNNCell):
    """torch.nn.RNNCell (torch's constructor): forward(input, hx=None) -> h'.
    input (B, F) or (F,), hx (B, H) or (H,) or None (zeros); h' of hx's shape."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 nonlinearity: str = "tanh", device=None, dtype=None) -> None:
        super().__init__(input_size, hidden_size, bias, nonlinearity, device=device,
                         dtype=dtype)
        self._init_front(ElmanStep(input_size, hidden_size, bias, nonlinearity,
                                   device="meta", dtype=dtype), {}, device, dtype)

    def _torch_args(self) -> dict:
        return {**super()._torch_args(), "nonlinearity": self.nonlinearity}


class LSTMCell(_CellFront, nn.LSTMCell):
    """torch.nn.LSTMCell (torch's constructor): forward(input, (h, c)=None) -> (h', c');
    input (B, F) or (F,), h and c (B, H) or (H,); the variants of
    ``rnnlab.cells.LSTMStep`` as keywords (peephole, coupled, layer_norm, forget_bias)."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None,
                 dtype=None, *, peephole: bool = False, coupled: bool = False,
                 layer_norm: bool = False, forget_bias: float = 0.0) -> None:
        super().__init__(input_size, hidden_size, bias, device=device, dtype=dtype)
        options: dict[str, Any] = dict(peephole=peephole, coupled=coupled,
                                       layer_norm=layer_norm, forget_bias=float(forget_bias))
        self._init_front(LSTMStep(input_size, hidden_size, bias, device="meta", dtype=dtype,
                                   **options), options, device, dtype)


class GRUCell(_CellFront, nn.GRUCell):
    """torch.nn.GRUCell (torch's constructor): forward(input, hx=None) -> h'.
    input (B, F) or (F,), hx (B, H) or (H,) or None (zeros); h' of hx's shape."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None,
                 dtype=None) -> None:
        super().__init__(input_size, hidden_size, bias, device=device, dtype=dtype)
        self._init_front(GRUStep(input_size, hidden_size, bias, device="meta", dtype=dtype),
                         {}, device, dtype)


def to_torch(module: nn.Module) -> nn.Module:
    """``module`` with every rnnlab front replaced by the torch.nn module sharing its
    parameters (in place; returned for chaining). A variant raises ValueError: torch's
    tools (``quantize_dynamic``, ``jit.script``) would compute a plain LSTM instead."""
    for name, child in list(module.named_children()):
        if isinstance(child, (_Front, _CellFront)):
            setattr(module, name, child.to_torch())
        else:
            to_torch(child)
    return module


__all__ = ["RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell", "to_torch"]
