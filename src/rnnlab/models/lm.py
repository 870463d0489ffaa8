"""A next-token language model around any registered recurrent core.

    ids (T, B) ─► embedding (T, B, E) ─► dropout ─► core = rnnlab.build(arch) (T, B, H)
        ─► dropout ─► [projection H→E if tied and H != E] ─► decoder (T, B, V)

``tie_weights`` shares the decoder matrix with the embedding (Press & Wolf 2017, "Using the
Output Embedding to Improve Language Models"; Inan et al. 2017). The core is chosen by
registry name only, so every architecture in ``rnnlab.available()`` works, including ones
registered after this module was written.

``step(ids (B,), state)`` is the single-token path the predictor calls once per typed
token; it is a method of its own so a fused one-step kernel can replace it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from torch import Tensor, nn

from ..layers.registry import build


@dataclass
class LMConfig:
    """The model's settings, saved in every run; ``rnnlab train``'s model flags come from
    these fields (``help``; ``check`` names the allowed values, see rnnlab.settings)."""

    vocab_size: int = field(default=0, metadata={"check": "nonneg"})   # 0: from the data
    arch: str = field(default="lstm", metadata={
        "help": "recurrent core, any name from `rnnlab list`"})
    embedding: int = field(default=128, metadata={"help": "embedding size",
                                                  "check": "positive"})
    hidden: int = field(default=512, metadata={"help": "hidden units per layer",
                                               "check": "positive"})
    layers: int = field(default=2, metadata={"help": "stacked recurrent layers",
                                             "check": "positive"})
    # None: the trainer chooses it from the corpus size (rnnlab.train.auto_dropout) and saves
    # the value it chose; a model built straight from a config with None gets no dropout
    dropout: float | None = field(default=None, metadata={
        "help": "dropout on embeddings, between layers and before the decoder (default: "
                "chosen from the training tokens per parameter, 0 to 0.5)",
        "check": "fraction"})
    tie_weights: bool = field(default=False, metadata={
        "help": "share the embedding and decoder matrices"})
    options: dict[str, Any] = field(default_factory=dict, metadata={
        "help": "architecture option NAME=VALUE (a JSON literal), repeatable"})

    def to_json(self) -> dict:
        """The settings as a JSON-ready dict (what a run saves as ``"model"``)."""
        return asdict(self)


class LanguageModel(nn.Module):
    """Embedding, a recurrent core from the registry, dropout and a decoder: ids (T, B) ->
    logits (T, B, V) and the core's final state. ``dropout`` acts on the embeddings,
    between the core's layers and before the decoder; ``options`` go to the core's
    factory (``rnnlab.build``). The settings are kept as ``self.config`` (an LMConfig)."""

    def __init__(self, vocab_size: int, arch: str = "lstm", embedding: int = 128,
                 hidden: int = 256, layers: int = 1, dropout: float = 0.0,
                 tie_weights: bool = False, **options: Any) -> None:
        super().__init__()
        if vocab_size < 2:
            raise ValueError(f"vocab_size must be at least 2, received {vocab_size}")
        self.config = LMConfig(vocab_size, arch, embedding, hidden, layers, dropout,
                               tie_weights, dict(options))
        self.embed = nn.Embedding(vocab_size, embedding)
        # dropout acts between the core's layers: none to apply with one layer
        self.core = build(arch, embedding, hidden, layers,
                          dropout=dropout if layers > 1 else 0.0, **options)
        self.drop = nn.Dropout(dropout)
        out = self.core.output_size
        self.proj = nn.Linear(out, embedding, bias=False) if tie_weights and out != embedding \
            else None
        self.decoder = nn.Linear(embedding if tie_weights else out, vocab_size)
        if tie_weights:
            self.decoder.weight = self.embed.weight
        if tie_weights:       # the embedding is also the decoder: keep the logits small
            nn.init.uniform_(self.embed.weight, -0.1, 0.1)
        else:                 # N(0, 1), torch's default: the input is visible from step one
            nn.init.normal_(self.embed.weight)
        nn.init.zeros_(self.decoder.bias)

    @classmethod
    def from_config(cls, cfg: LMConfig) -> "LanguageModel":
        """The model an LMConfig describes (dropout None, i.e. left to the trainer: 0)."""
        return cls(cfg.vocab_size, cfg.arch, cfg.embedding, cfg.hidden, cfg.layers,
                   cfg.dropout or 0.0, cfg.tie_weights, **cfg.options)

    def head(self, h: Tensor) -> Tensor:
        """Core output (..., H) to logits (..., V)."""
        h = self.drop(h)
        if self.proj is not None:
            h = self.proj(h)
        return self.decoder(h)

    def forward(self, ids: Tensor, state: Any = None) -> tuple[Tensor, Any]:
        """ids (T, B) int64 -> logits (T, B, V), final state."""
        if ids.dim() != 2:
            raise ValueError(f"ids must be 2-D (T, B), received shape {tuple(ids.shape)}")
        x = self.drop(self.embed(ids))                                # (T, B, E)
        h, state = self.core(x, state)                                # (T, B, H)
        return self.head(h), state

    def step(self, ids: Tensor, state: Any = None) -> tuple[Tensor, Any]:
        """One token per stream: ids (B,) -> logits (B, V), new state."""
        h, state = self.core(self.embed(ids)[None], state)            # (1, B, H)
        return self.head(h[0]), state
