"""Next-word prediction measured the way a phone keyboard's suggestion strip is measured.

``keyboard_metrics(pred, tokens)`` reads a word-level text one token at a time through a
predictor (any object with ``step(token, state) -> (logits (V,), state)``, ``start_id``
and ``vocab``: a neural ``Predictor`` or an ``NgramPredictor``) and reports, over the text:

- ``nats`` / ``perplexity``: mean -log P(token) over every token (words, punctuation,
  newlines), read in order from the start token, one stream.
- ``top1`` / ``top3``: share of the text's *words* (tokens with a letter or digit) that are
  the first suggestion / among the first three at the start of the word. Suggestions are
  the most probable vocabulary words (not punctuation, newline or ``<unk>``). A word
  outside the vocabulary is a miss. ``top3_in_vocab``: the same over in-vocabulary words.
- ``keystroke_savings``: a typist enters each word character by character. At the start of
  the word and after each character the strip shows the three most probable vocabulary
  words that begin with what has been typed (case-sensitive); as soon as the word shows,
  one tap takes it, its space included. A word costs (characters typed before it showed)
  + 1; without suggestions it costs its length + 1 (the space). Savings = 1 - used / plain,
  summed over the words (punctuation and newlines are typed in both cases and not counted).
- ``latency_ms_p50`` / ``latency_ms_p95``: wall time to produce the three suggestions at
  each point the simulated typist looked at them, on one thread. At the start of a word it
  includes reading the previous token (one model step); inside a word it is the filtering
  of the next-word distribution by the typed prefix.
"""
from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .data.text import UNK, is_word_char
from .progress import Progress

# The Gboard shape (Hard et al. 2018, "Federated Learning for Mobile Keyboard Prediction"):
# one CIFG LSTM layer of 670 units projected to 96, tied 96-wide embeddings, 10k words.
KEYBOARD_PRESET: dict[str, dict[str, Any]] = {
    "model": {"arch": "lstm_cifg", "layers": 1, "hidden": 670, "embedding": 96,
              "tie_weights": True, "dropout": 0.1, "options": {"proj_size": 96}},
    "train": {"level": "word", "max_vocab": 10_000, "batch": 32, "bptt": 64, "lr": 3e-3,
              "warmup": 50},
}
PRESETS = {"keyboard": KEYBOARD_PRESET}


def preset_config(name: str = "keyboard"):
    """The TrainConfig of a named preset (what ``rnnlab train --preset NAME`` starts from)."""
    from .models.lm import LMConfig
    from .train import TrainConfig

    p = PRESETS[name]
    return TrainConfig(**p["train"], model=LMConfig(**p["model"]))


def is_word(tok: str) -> bool:
    """A token the strip may suggest and the metrics score: has a letter or digit."""
    return tok != UNK and any(is_word_char(ch) for ch in tok)


class Strip:
    """Top-3 suggestions for a next-token distribution, optionally under a typed prefix."""

    def __init__(self, tokens: Sequence[str], k: int = 3) -> None:
        self.k = k
        self.words = np.array([is_word(t) for t in tokens], dtype=bool)
        by_prefix: dict[str, list[int]] = defaultdict(list)
        for i, t in enumerate(tokens):
            if self.words[i]:
                for j in range(1, len(t) + 1):
                    by_prefix[t[:j]].append(i)
        self.by_prefix = {p: np.array(ids, dtype=np.int64) for p, ids in by_prefix.items()}
        self.word_ids = np.flatnonzero(self.words)

    def top(self, scores: np.ndarray, prefix: str = "") -> np.ndarray:
        """Ids of the k best-scoring words that start with prefix, best first."""
        ids = self.by_prefix.get(prefix) if prefix else self.word_ids
        if ids is None or not len(ids):
            return ids if ids is not None else np.zeros(0, dtype=np.int64)
        s = scores[ids]
        if len(ids) > self.k:
            part = np.argpartition(-s, self.k - 1)[: self.k]
        else:
            part = np.arange(len(ids))
        return ids[part[np.argsort(-s[part], kind="stable")]]


def keyboard_metrics(pred, tokens: Sequence[str], k: int = 3, progress: bool = False
                     ) -> dict[str, Any]:
    """The metrics in this module's docstring for ``tokens`` read through ``pred``."""
    vocab = pred.vocab
    ids = vocab.encode(tokens)
    strip = Strip(vocab.tokens, k)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    nats, words, oov, hit1, hitk, used, plain = 0.0, 0, 0, 0, 0, 0, 0
    lat: list[float] = []
    bar = Progress(len(ids), desc="keyboard", enabled=progress)
    try:
        t0 = time.perf_counter()
        logits, state = pred.step(pred.start_id, None)
        for tok, i in zip(tokens, ids):
            logp = torch.log_softmax(logits.float(), -1).numpy()
            nats -= float(logp[i])
            if is_word(tok):
                top = strip.top(logp)
                lat.append(time.perf_counter() - t0)
                words += 1
                oov += i == 0
                hit1 += bool(i and len(top) and top[0] == i)
                hitk += bool(i and i in top)
                cost = _typed(tok, i, top, logp, strip, lat)
                used += cost
                plain += len(tok) + 1
            bar.update(1)
            t0 = time.perf_counter()
            logits, state = pred.step(i, state)
    finally:
        torch.set_num_threads(threads)
        bar.close()
    n = max(len(ids), 1)
    ms = np.array(lat) * 1e3
    return {"tokens": len(ids), "words": words, "oov_words": oov,
            "nats": nats / n, "perplexity": math.exp(min(nats / n, 50.0)),
            "top1": hit1 / max(words, 1), f"top{k}": hitk / max(words, 1),
            f"top{k}_in_vocab": hitk / max(words - oov, 1),
            "keystroke_savings": 1 - used / plain if plain else 0.0,
            "latency_ms_p50": float(np.percentile(ms, 50)) if len(ms) else None,
            "latency_ms_p95": float(np.percentile(ms, 95)) if len(ms) else None}


def _typed(tok: str, i: int, top: np.ndarray, logp: np.ndarray, strip: Strip,
           lat: list[float]) -> int:
    """Keystrokes for one word: shown at the start costs 1, after j characters j + 1."""
    if i and i in top:
        return 1
    for j in range(1, len(tok)):
        t0 = time.perf_counter()
        shown = strip.top(logp, tok[:j])
        lat.append(time.perf_counter() - t0)
        if not len(shown):
            break                                # no vocabulary word starts like this
        if i and i in shown:
            return j + 1
    return len(tok) + 1
