"""Networks of Grid LSTM blocks (Kalchbrenner, Danihelka & Graves 2015): 1-D, 2-D and 3-D.

- ``GridLSTM1d``: depth only. x (B, F) ─► one projection into h and m of the first block
  ─► D blocks (one shared block when ``share_along_depth``, the paper's "tied") ─► head on
  the last h. With kind "relu"/"tanh" (untied) it is a plain feed-forward net of the same
  width and depth: the parity experiment's baselines.
- ``GridLSTM``: the 2-D time × depth sequence layer, rnnlab.LSTM's contract
  ``forward(x, state=None, lengths=None) -> (out, state)``. x_t enters by a projection into
  the depth h of the first block (m_depth = 0, §3.4); out_t is the top block's depth h.
  State: GridState(h (L, B, H), m (L, B, H)), the time pairs of the L layers.
  Registered as ``grid_lstm``. Runs layer by layer, each layer a ``GridLayerStep`` over time
  (block (t, l) needs (t-1, l) and (t, l-1) only), so the depth input is hoisted per layer.
- ``GridLSTM3dImage``: rows × columns of image patches × depth; each layer scans the patch
  grid from one corner (cycling over ``directions``), a ReLU layer and a linear head on top.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from ..cells.base import check_features, check_shape, shape_str
from ..cells.grid import GridBlock, GridLayerStep, GridState
from .recurrent import repack_output, run_cell, run_stack, unpack_input


def _blocks(n: int, make) -> nn.ModuleList:
    return nn.ModuleList(make() for _ in range(n))


class GridLSTM1d(nn.Module):
    """Depth-only Grid LSTM classifier: x (B, F) -> logits (B, C)."""

    def __init__(self, input_size: int, hidden_size: int, depth: int, num_classes: int, *,
                 kind: str = "lstm", share_along_depth: bool = True,
                 output_form: str = "paper", forget_bias: float = 0.0) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be at least 1, received {depth}")
        self.input_size, self.hidden_size, self.depth = input_size, hidden_size, depth
        self.share_along_depth, self.kind = share_along_depth, kind
        mem = 2 if kind == "lstm" else 1
        self.input_proj = nn.Linear(input_size, mem * hidden_size)
        self.blocks = _blocks(1 if share_along_depth else depth, lambda: GridBlock(
            hidden_size, ("depth",), (kind,), output_form=output_form, forget_bias=forget_bias))
        self.head = nn.Linear(hidden_size, num_classes)

    def block(self, layer: int) -> GridBlock:
        return self.blocks[0 if self.share_along_depth else layer]

    def _start(self, x: Tensor) -> GridState:
        check_features(x, self.input_size)
        p = self.input_proj(x)                                        # (B, H or 2H)
        H = self.hidden_size
        return GridState(p[..., :H], p[..., H:] if self.kind == "lstm" else torch.zeros_like(p))

    def features(self, x: Tensor) -> Tensor:
        """The last block's h (B, H)."""
        pair = self._start(x)
        for layer in range(self.depth):
            (pair,) = self.block(layer)([pair])
        return pair.h

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))

    def gate_values(self, x: Tensor) -> dict[str, Tensor]:
        """Gates of every block, each stacked over depth: (B, depth, H)."""
        pair, per = self._start(x), []
        for layer in range(self.depth):
            per.append(self.block(layer).gate_values([pair]))
            (pair,) = self.block(layer)([pair])
        return {k: torch.stack([g[k] for g in per], 1) for k in (per[0] if per else {})}


class GridLSTM(nn.Module):
    """2-D (time × depth) Grid LSTM sequence layer with rnnlab.LSTM's forward contract:
    forward(x, state=None, lengths=None) -> (out, GridState(h (L, B, H), m (L, B, H))).

    x (T, B, F) (or (B, T, F) with batch_first, or a PackedSequence), out (T, B, H) the top
    block's depth h. Options: ``dropout`` (on the depth h between layers),
    ``share_along_depth`` (one block for every layer, the paper's tied grid),
    ``share_across_dims``, ``depth_kind`` ("lstm", "identity", "tanh", "relu" or "none"),
    ``priority``, ``output_form`` ("paper" or "standard"), ``forget_bias``."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, *,
                 dropout: float = 0.0, batch_first: bool = False, bias: bool = True,
                 share_along_depth: bool = False, share_across_dims: bool = False,
                 depth_kind: str = "lstm", priority: Sequence[str] = ("depth",),
                 output_form: str = "paper", forget_bias: float = 0.0,
                 device=None, dtype=None) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be at least 1, received {num_layers}")
        if not isinstance(dropout, (int, float)) or not 0 <= dropout <= 1:
            raise ValueError(f"dropout must be a number in [0, 1], received {dropout!r}")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.dropout, self.batch_first = float(dropout), batch_first
        self.share_along_depth, self.depth_kind = share_along_depth, depth_kind
        kw = {"device": device, "dtype": dtype}
        self.input_proj = nn.Linear(input_size, hidden_size, bias=bias, **kw)
        self.cells = _blocks(1 if share_along_depth else num_layers, lambda: GridLayerStep(
            hidden_size, depth_kind=depth_kind, priority=priority, bias=bias,
            share_across_dims=share_across_dims, output_form=output_form,
            forget_bias=forget_bias, **kw))

    @property
    def output_size(self) -> int:
        """Features of each output step (H)."""
        return self.hidden_size

    def cell(self, layer: int) -> GridLayerStep:
        """The block (as a step) that runs layer ``layer``."""
        return self.cells[0 if self.share_along_depth else layer]

    def init_state(self, batch: int, *, device=None, dtype=None) -> GridState:
        """Zero time pairs for every layer: GridState(h (L, B, H), m (L, B, H))."""
        ref = self.input_proj.weight
        z = torch.zeros(self.num_layers, batch, self.hidden_size,
                        device=device or ref.device, dtype=dtype or ref.dtype)
        return GridState(z, z.clone())

    def _layer_states(self, state, B: int) -> list:
        if state is None:
            return [None] * self.num_layers
        if not isinstance(state, tuple) or len(state) != 2:
            raise ValueError(f"state must be a GridState(h, m) of two tensors "
                             f"({self.num_layers}, B, {self.hidden_size}), "
                             f"received {type(state).__name__}")
        shape = (self.num_layers, B, self.hidden_size)
        check_shape(state[0], shape, "state.h")
        check_shape(state[1], shape, "state.m")
        return [GridState(state[0][k], state[1][k]) for k in range(self.num_layers)]

    def forward(self, x, state=None, lengths=None):
        """(out, final state); see the class docstring."""
        x, lengths, packed = unpack_input(x, self.batch_first, lengths)
        check_features(x, self.input_size)
        B, H = x.shape[1], self.hidden_size
        states = self._layer_states(state, B)
        up = self.input_proj(x)                                        # (T, B, H)
        if self.cell(0).carry_memory:
            up = torch.cat([up, torch.zeros_like(up)], -1)             # (T, B, 2H)

        def run_layer(up: Tensor, layer: int):
            cell = self.cell(layer)
            s = states[layer] if states[layer] is not None else cell.init_state(
                B, device=x.device, dtype=x.dtype)
            return run_cell(cell, up, s, lengths)
        # what goes up is [h; m] (or h): dropout acts on h only
        up, finals = run_stack([lambda up, k=k: run_layer(up, k) for k in range(self.num_layers)],
                               up, self.dropout, self.training, passed=H)
        out = up[..., :H]                                              # (T, B, H)
        final = GridState(torch.stack([s.h for s in finals]), torch.stack([s.m for s in finals]))
        if packed is not None:
            return repack_output(out, packed), final
        return (out.transpose(0, 1) if self.batch_first else out), final

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}"
        return s + (", share_along_depth=True" if self.share_along_depth else "")


@torch.no_grad()
def load_lstm_weights(grid: GridLSTM, lstm: nn.Module) -> GridLSTM:
    """Copy a stacked LSTM (torch.nn.LSTM or rnnlab.LSTM) into a GridLSTM whose depth is
    'none' so that both compute the same function (the paper's §3.3 reduction).

    Needs: untied grid, output_form 'standard', the same hidden size and layer count,
    input_size <= hidden_size (x enters the first block through P = [I; 0])."""
    H, Fin, L = grid.hidden_size, grid.input_size, grid.num_layers
    if grid.depth_kind != "none" or grid.share_along_depth:
        raise ValueError("the reduction needs depth_kind='none' and share_along_depth=False")
    if grid.cell(0).block.output_form != "standard":
        raise ValueError("the reduction needs output_form='standard' (h = o * tanh(m))")
    if (lstm.hidden_size, lstm.num_layers, lstm.input_size) != (H, L, Fin) or Fin > H:
        raise ValueError(f"LSTM ({lstm.input_size}, {lstm.hidden_size}, {lstm.num_layers}) "
                         f"must match grid ({Fin}, {H}, {L}) with input_size <= hidden_size")
    grid.input_proj.weight.copy_(torch.eye(H, Fin))
    if grid.input_proj.bias is not None:
        grid.input_proj.bias.zero_()
    for k in range(L):
        block = grid.cell(k).block
        w_ih = getattr(lstm, f"weight_ih_l{k}")
        block.weight_time.zero_()
        block.weight_time[:, :H].copy_(getattr(lstm, f"weight_hh_l{k}"))
        block.weight_time[:, H:H + w_ih.shape[1]].copy_(w_ih)
        if block.bias_time is not None:
            block.bias_time.copy_(getattr(lstm, f"bias_ih_l{k}") + getattr(lstm, f"bias_hh_l{k}"))
    return grid


CORNERS = ("tl", "tr", "bl", "br")


class GridLSTM3dImage(nn.Module):
    """3-D Grid LSTM over image patches: images (B, 1, H, W) -> logits (B, C).

    Dims (row, col, depth), depth the priority dimension. Layer 0's depth input is a
    projection of each patch's pixels (m_depth = 0); layer l scans the patch grid from the
    corner ``directions[l % len(directions)]`` (tl, tr, bl, br), running each anti-diagonal
    of patches as one batch. The top layer's depth h of all patches feeds a ReLU layer of
    ``fc`` units and the linear head (the paper's MNIST net: 2x2 patches, 4 layers from the
    four corners, 100 cells, a 4096-unit ReLU layer)."""

    def __init__(self, patch: int = 4, hidden: int = 32, depth: int = 4, num_classes: int = 10,
                 *, image_size: int | tuple[int, int] = 28, fc: int = 256,
                 directions: Sequence[str] = CORNERS, share_along_depth: bool = False,
                 output_form: str = "paper") -> None:
        super().__init__()
        ih, iw = (image_size, image_size) if isinstance(image_size, int) else image_size
        if ih % patch or iw % patch:
            raise ValueError(f"image_size {(ih, iw)} must be a multiple of patch={patch}")
        bad = [d for d in directions if d not in CORNERS]
        if bad or not directions:
            raise ValueError(f"directions must be among {CORNERS}, received {list(directions)}")
        self.patch, self.hidden, self.depth, self.image_size = patch, hidden, depth, (ih, iw)
        self.grid_shape, self.directions = (ih // patch, iw // patch), tuple(directions)
        self.share_along_depth = share_along_depth
        self.input_proj = nn.Linear(patch * patch, hidden)
        self.blocks = _blocks(1 if share_along_depth else depth, lambda: GridBlock(
            hidden, ("row", "col", "depth"), priority=("depth",), output_form=output_form))
        n = self.grid_shape[0] * self.grid_shape[1]
        self.fc = nn.Linear(n * hidden, fc)
        self.head = nn.Linear(fc, num_classes)

    def patches(self, images: Tensor) -> Tensor:
        """(B, 1, H, W) -> (B, R, C, p*p)."""
        if images.dim() != 4 or tuple(images.shape[1:]) != (1, *self.image_size):
            raise ValueError(f"images must be (B, 1, {self.image_size[0]}, "
                             f"{self.image_size[1]}), received {shape_str(images.shape)}")
        check_features(images, self.image_size[1], "images")
        p, (R, C) = self.patch, self.grid_shape
        x = images.reshape(-1, R, p, C, p).permute(0, 1, 3, 2, 4)
        return x.reshape(-1, R, C, p * p)

    def forward(self, images: Tensor) -> Tensor:
        h = self.input_proj(self.patches(images))                      # (B, R, C, H)
        pair = GridState(h, torch.zeros_like(h))
        for layer in range(self.depth):
            corner = self.directions[layer % len(self.directions)]
            block = self.blocks[0 if self.share_along_depth else layer]
            pair = _flip(self._scan(block, _flip(pair, corner)), corner)
        z = torch.relu(self.fc(pair.h.flatten(1)))
        return self.head(z)

    def _scan(self, block: GridBlock, up: GridState) -> GridState:
        """One layer from the top-left corner; up: depth pairs (B, R, C, H) from below."""
        (R, C), B, H = self.grid_shape, up.h.shape[0], self.hidden
        pre = block.input_part(2, up.h)                                # (B, R, C, ΣG)
        zero = up.h.new_zeros(B, H)
        rows: dict = {}
        cols: dict = {}
        outs: dict = {}
        for k in range(R + C - 1):
            cells = [(r, k - r) for r in range(max(0, k - C + 1), min(R, k + 1))]
            def cat(get):
                return torch.cat([get(r, c) for r, c in cells])
            pr = GridState(cat(lambda r, c: rows[r - 1, c].h if r else zero),
                           cat(lambda r, c: rows[r - 1, c].m if r else zero))
            pc = GridState(cat(lambda r, c: cols[r, c - 1].h if c else zero),
                           cat(lambda r, c: cols[r, c - 1].m if c else zero))
            pd = GridState(None, cat(lambda r, c: up.m[:, r, c]))
            new = block([pr, pc, pd], cat(lambda r, c: pre[:, r, c]), 2)
            for n, (r, c) in enumerate(cells):
                part = [GridState(p.h[n * B:(n + 1) * B], p.m[n * B:(n + 1) * B]) for p in new]
                rows[r, c], cols[r, c], outs[r, c] = part
        hs = torch.stack([torch.stack([outs[r, c].h for c in range(C)], 1) for r in range(R)], 1)
        ms = torch.stack([torch.stack([outs[r, c].m for c in range(C)], 1) for r in range(R)], 1)
        return GridState(hs, ms)


def _flip(pair: GridState, corner: str) -> GridState:
    """Reorder a (B, R, C, H) grid so that a top-left scan starts at ``corner``."""
    dims = ([1] if corner[0] == "b" else []) + ([2] if corner[1] == "r" else [])
    return GridState(*(t.flip(dims) for t in pair)) if dims else pair
