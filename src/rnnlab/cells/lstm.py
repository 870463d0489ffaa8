"""Long short-term memory (Hochreiter & Schmidhuber 1997; forget gate: Gers et al. 2000)
with the variants compared in Greff et al. 2015, "LSTM: A Search Space Odyssey".

Default (identical to torch.nn.LSTMCell; gate order i, f, g, o):
    i = σ(a_i), f = σ(a_f), g = tanh(a_g), o = σ(a_o),   a = W_ih x + b_ih + W_hh h + b_hh
    c' = f ⊙ c + i ⊙ g
    h' = o ⊙ tanh(c')                      (with proj_size P: h' = W_hr (o ⊙ tanh(c')))

Variants, each one keyword:
- ``peephole=True`` (Gers & Schmidhuber 2000, diagonal as in Greff et al.):
  a_i += p_i ⊙ c, a_f += p_f ⊙ c, and a_o += p_o ⊙ c' (the *new* cell).
- ``coupled=True`` (CIFG): no input gate; i = 1 - f. The fused weights then hold the
  gates f, g, o (3H rows) in that order.
- ``layer_norm=True`` (Ba et al. 2016, "Layer Normalization"): the input and recurrent
  pre-activations are normalised separately over all gate units, each with a learned gain
  (``ln_ih_weight``, ``ln_hh_weight``); the biases b_ih, b_hh play the role of the shift.
  The cell is normalised before the tanh with gain and shift (``ln_c_weight``, ``ln_c_bias``):
    a = LN(W_ih x) ⊙ γ_ih + b_ih + LN(W_hh h) ⊙ γ_hh + b_hh,  h' = o ⊙ tanh(LN(c') ⊙ γ_c + β_c)
- ``forget_bias=b``: b is added to the forget-gate part of ``bias_ih`` at initialisation
  (Jozefowicz et al. 2015 recommend 1.0; the default 0 keeps torch's initialisation).

Shapes: weight_ih (GH, F), weight_hh (GH, P), bias_ih, bias_hh (GH,), weight_hr (P, H),
with G = 4 (3 if coupled), P = proj_size or H. State: LSTMState(h (B, P), c (B, H)).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Cell, init_uniform_, renamed

LN_EPS = 1e-5


class LSTMState(NamedTuple):
    """An LSTM's state: the output h (B, P) and the memory cell c (B, H)."""
    h: Tensor
    c: Tensor


def _ln(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    return F.layer_norm(x, x.shape[-1:], weight, bias, LN_EPS)


class LSTMStep(Cell):
    """One LSTM step, any variant (the step contract; ``rnnlab.LSTMCell`` is torch's).

    ``LSTMStep(input_size, hidden_size, bias=True, *, proj_size=0, peephole=False,
    coupled=False, layer_norm=False, forget_bias=0.0)``; ``step(xp (B, GH), LSTMState) ->
    (h' (B, P), LSTMState(h', c'))`` with xp from ``project_input(x (..., F)) -> (..., GH)``
    (the module docstring has the equations and shapes)."""
    State = LSTMState

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 device=None, dtype=None, *, proj_size: int = 0, peephole: bool = False,
                 coupled: bool = False, layer_norm: bool = False,
                 forget_bias: float = 0.0) -> None:
        super().__init__()
        if proj_size < 0 or (proj_size and proj_size >= hidden_size):
            raise ValueError(f"proj_size must be 0 or in [1, hidden_size={hidden_size}), "
                             f"received {proj_size}")
        if forget_bias and not bias:
            raise ValueError("forget_bias needs bias=True")
        kw = {"device": device, "dtype": dtype}
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        self.proj_size, self.peephole, self.coupled = proj_size, peephole, coupled
        self.layer_norm, self.forget_bias = layer_norm, float(forget_bias)
        self.gates = 3 if coupled else 4
        gh, p = self.gates * hidden_size, proj_size or hidden_size
        self.weight_ih = nn.Parameter(torch.empty(gh, input_size, **kw))
        self.weight_hh = nn.Parameter(torch.empty(gh, p, **kw))
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(gh, **kw))
            self.bias_hh = nn.Parameter(torch.empty(gh, **kw))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        if proj_size:
            self.weight_hr = nn.Parameter(torch.empty(proj_size, hidden_size, **kw))
        if peephole:
            npeep = 2 if coupled else 3            # (i,) f, o
            self.weight_peephole = nn.Parameter(torch.empty(npeep, hidden_size, **kw))
        if layer_norm:
            self.ln_ih_weight = nn.Parameter(torch.empty(gh, **kw))
            self.ln_hh_weight = nn.Parameter(torch.empty(gh, **kw))
            self.ln_c_weight = nn.Parameter(torch.empty(hidden_size, **kw))
            self.ln_c_bias = nn.Parameter(torch.empty(hidden_size, **kw))
        self.reset_parameters()

    @property
    def output_size(self) -> int:
        return self.proj_size or self.hidden_size

    @property
    def is_plain(self) -> bool:
        """True when this cell is exactly torch.nn.LSTM's (fused kernels apply)."""
        return not (self.peephole or self.coupled or self.layer_norm)

    def reset_parameters(self) -> None:
        """torch.nn.LSTMCell's initialisation (U(-1/sqrt(H), 1/sqrt(H))), then the
        variant's: layer-norm gains 1 and shifts 0, ``forget_bias`` on the forget gate."""
        init_uniform_(self, self.hidden_size)
        if self.layer_norm:
            for name in ("ln_ih_weight", "ln_hh_weight", "ln_c_weight"):
                nn.init.ones_(getattr(self, name))
            nn.init.zeros_(self.ln_c_bias)
        if self.forget_bias and self.bias_ih is not None:
            with torch.no_grad():
                self.bias_ih[self.forget_slice()] += self.forget_bias

    def forget_slice(self) -> slice:
        """Rows of the fused weights that belong to the forget gate."""
        H = self.hidden_size
        return slice(0, H) if self.coupled else slice(H, 2 * H)

    def state_shapes(self):
        return {"h": (self.output_size,), "c": (self.hidden_size,)}

    def project_input(self, x: Tensor) -> Tensor:
        xp = x @ self.weight_ih.t()                                   # (..., GH)
        if self.layer_norm:
            xp = _ln(xp, self.ln_ih_weight)
        return xp + self.bias_ih if self.bias else xp

    def step(self, xp: Tensor, state: LSTMState):
        h, c = state
        c_new, o = self.cell_update(self.preactivation(xp, h), c)
        h_new = o * torch.tanh(self.normalise_cell(c_new))
        if self.proj_size:
            h_new = h_new @ self.weight_hr.t()
        return h_new, LSTMState(h_new, c_new)

    def preactivation(self, xp: Tensor, h: Tensor) -> Tensor:
        """All gates' pre-activations a (B, GH) from the projected input and h."""
        a = h @ self.weight_hh.t()                                    # (B, GH)
        if self.layer_norm:
            a = _ln(a, self.ln_hh_weight)
        a = xp + a
        return a + self.bias_hh if self.bias else a

    def cell_update(self, a: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        """From gate pre-activations a (B, GH) and the old cell: new cell and output gate."""
        _, _, _, o, c_new = self.gate_activations(a, c)
        return c_new, o

    def gate_activations(self, a: Tensor, c: Tensor) -> tuple[Tensor, ...]:
        """(i, f, g, o, c') from pre-activations a (B, GH) and the old cell c (B, H)."""
        if self.coupled:
            af, ag, ao = a.chunk(3, dim=-1)
        else:
            ai, af, ag, ao = a.chunk(4, dim=-1)
        if self.peephole:
            pw = self.weight_peephole
            af = af + pw[-2] * c
            if not self.coupled:
                ai = ai + pw[0] * c
        f = torch.sigmoid(af)
        i = 1 - f if self.coupled else torch.sigmoid(ai)
        g = torch.tanh(ag)
        c_new = f * c + i * g
        if self.peephole:
            ao = ao + self.weight_peephole[-1] * c_new
        return i, f, g, torch.sigmoid(ao), c_new

    def gate_values(self, xp: Tensor, state: LSTMState) -> dict[str, Tensor]:
        """The gates ``step`` uses at this step, (B, H) each: input, forget, output
        (input = 1 - forget when coupled)."""
        i, f, _, o, _ = self.gate_activations(self.preactivation(xp, state.h), state.c)
        return {"input": i, "forget": f, "output": o}

    def normalise_cell(self, c: Tensor) -> Tensor:
        """c (B, H) as the output gate reads it: LN(c) γ_c + β_c with layer_norm, else c."""
        return _ln(c, self.ln_c_weight, self.ln_c_bias) if self.layer_norm else c


    def extra_repr(self) -> str:
        opts = [f"{self.input_size}, {self.hidden_size}"]
        for name in ("proj_size", "peephole", "coupled", "layer_norm", "forget_bias"):
            if getattr(self, name):
                opts.append(f"{name}={getattr(self, name)}")
        return ", ".join(opts)


# the old name, deprecated (warns)
__getattr__ = renamed(__name__, {"LSTMCell": "LSTMStep"})
