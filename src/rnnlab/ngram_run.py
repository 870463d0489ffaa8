"""The Kneser-Ney n-gram as a run directory like any other (``rnnlab train --arch ngram``).

    RUN/config.json        format "rnnlab-run"; model {"arch": "ngram", "order", "vocab_size",
                           "discounts", "entries"}; the training settings and data sizes
    RUN/vocab.json         the vocabulary (the same one a neural run on the text would build)
    RUN/model.safetensors  per order k: order{k}.context (int64 key), order{k}.word and
                           order{k}.count (int32), rows sorted by (context, word)
    RUN/best.json, metrics.jsonl   the validation result

``NgramPredictor`` is a ``Predictor`` whose one-token step returns the n-gram's log
probabilities as logits and whose state is the last n-1 token ids, so ``suggest``,
``sample`` and ``eval`` work on it unchanged. Loading checks every table (shapes, ids in
range, sorted keys) and names the file when something is wrong.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .checkpoint import load_tensors
from .data.text import Vocab
from .errors import UserError
from .infer import Predictor
from .ngram import KneserNey, check_size
from .rundir import RunDir, load_vocab
from .train import TrainConfig, load_corpus, metrics

ARCH = "ngram"


def train_ngram(cfg: TrainConfig, out: str | Path, order: int) -> dict:
    """Count the training part of cfg.text, write the run, return validation metrics."""
    t0 = time.time()
    run = RunDir(out)
    if run.is_ours() and (run.path / "model.safetensors").exists():
        raise UserError(f"{run.path} already holds a run; choose another --out (an n-gram "
                        f"run is built in one pass and cannot be resumed)")
    corpus = load_corpus(cfg)
    V = len(corpus.vocab)
    check_size(V, order)
    lm = KneserNey.fit(corpus.train, V, order)
    nats = lm.nats(corpus.valid, start=[corpus.vocab.index.get("\n", 1)])
    model = {"arch": ARCH, "order": order, "vocab_size": V, "discounts": lm.discounts,
             "entries": lm.entries()}
    data = {"train_tokens": len(corpus.train), "valid_tokens": len(corpus.valid),
            "test_tokens": len(corpus.test), "vocab_size": V}
    tensors = {}
    for k, (ctx, words, counts) in enumerate(lm.tables, 1):
        tensors[f"order{k}.context"] = torch.from_numpy(ctx)
        tensors[f"order{k}.word"] = torch.from_numpy(words.astype(np.int32))
        tensors[f"order{k}.count"] = torch.from_numpy(np.minimum(counts, 2**31 - 1)
                                                      .astype(np.int32))
    rec = {"step": 0, **metrics(nats, "valid", cfg.level)}
    run.claim(fresh=True)
    try:
        run.create({"train": cfg.to_json(), "model": model, "data": data},
                   corpus.vocab.to_json())
        run.save_best(tensors, rec)
        run.log({**rec, "build_s": round(time.time() - t0, 3)})
    except BaseException:
        run.abandon()
        raise
    run.release()
    return {**rec, "elapsed": time.time() - t0, "entries": lm.entries()}


def load_ngram(run: RunDir, cfg: dict) -> KneserNey:
    """The KneserNey model of a run directory, every table checked."""
    where = run.path / "model.safetensors"
    m = cfg.get("model", {})
    try:
        order, V = int(m["order"]), int(m["vocab_size"])
        discounts = [float(d) for d in m["discounts"]]
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"{run.path}/config.json: n-gram settings are damaged ({e!r})") from None
    check_size(V, order)
    if len(discounts) != order or not all(0 < d < 1 for d in discounts):
        raise UserError(f"{run.path}/config.json: n-gram discounts are damaged "
                        f"(need {order} values in (0, 1))")
    tensors = load_tensors(where, "n-gram counts")
    tables = []
    for k in range(1, order + 1):
        names = [f"order{k}.{p}" for p in ("context", "word", "count")]
        if any(n not in tensors for n in names):
            raise UserError(f"{where}: missing the order-{k} table; the run is damaged")
        if any(tensors[n].dtype not in (torch.int32, torch.int64) for n in names):
            raise UserError(f"{where}: order-{k} table is not integer; the run is damaged")
        ctx, words, counts = (tensors[n].numpy().astype(np.int64, copy=False) for n in names)
        if not (ctx.ndim == words.ndim == counts.ndim == 1
                and len(ctx) == len(words) == len(counts)):
            raise UserError(f"{where}: order-{k} table has mismatched shapes; the run is damaged")
        if len(ctx) and (words.min() < 0 or words.max() >= V or counts.min() < 1
                         or ctx.min() < 0 or ctx.max() >= V ** (k - 1)
                         or np.any(np.diff(ctx) < 0)):
            raise UserError(f"{where}: order-{k} table holds out-of-range or unsorted entries; "
                            f"the run is damaged")
        tables.append((ctx, words, counts))
    if not len(tables[0][0]):
        raise UserError(f"{where}: the unigram table is empty; the run is damaged")
    return KneserNey(V, tables, discounts)


class NgramPredictor(Predictor):
    """Predictor over a KneserNey model: state = the last n-1 token ids."""

    def __init__(self, lm: KneserNey, vocab: Vocab) -> None:
        self.lm, self.model, self.vocab = lm, None, vocab
        self._stepper = None
        self.level = vocab.level
        self.start_id = vocab.index.get("\n", 1)
        self.unknown: list[str] = []
        self.reset()

    @classmethod
    def load(cls, run_dir: str | Path) -> NgramPredictor:
        run = RunDir(run_dir)
        cfg = run.config()
        vocab = load_vocab(run)
        lm = load_ngram(run, cfg)
        if len(vocab) != lm.V:
            raise UserError(f"{run.path}: vocab.json has {len(vocab)} tokens but the n-gram "
                            f"expects {lm.V}; the run directory is inconsistent")
        return cls(lm, vocab)

    def read(self, ids: list[int]) -> tuple[Tensor, Any]:
        """Logits and state after ``ids``: the state is just the last n-1 ids."""
        keep = self.lm.order - 1
        hist = (self.start_id, *(int(i) for i in ids))[-keep:] if keep else ()
        self._ids = list(ids)
        return torch.from_numpy(np.log(self.lm.probs(hist))).float(), hist

    def step(self, token: int, state: Any) -> tuple[Tensor, Any]:
        """One token in; log P(next) (V,) as logits and the new history out."""
        keep = self.lm.order - 1
        hist = ((state or ()) + (int(token),))[-keep:] if keep else ()
        return torch.from_numpy(np.log(self.lm.probs(hist))).float(), hist

    def param_count(self) -> int:
        """Stored n-gram rows (each a context key, a word and a count)."""
        return self.lm.entries()

    def size_bytes(self) -> int:
        """Bytes of the stored tables: 8 (context key) + 4 (word) + 4 (count) per row."""
        return 16 * self.lm.entries()


def is_ngram(cfg: dict) -> bool:
    return isinstance(cfg.get("model"), dict) and cfg["model"].get("arch") == ARCH


__all__ = ["NgramPredictor", "is_ngram", "load_ngram", "train_ngram"]
