"""Inference from a run directory: next-word suggestions and sampling.

    p = Predictor.load("runs/lstm-word")
    p.suggest("She grew up speaking", k=3)   # [("French", 0.91), ("German", 0.03), ...]
    p.sample("The clouds", n=40, temperature=0.8, top_k=10, seed=1)

The predictor keeps the recurrent state after every token it has read, so text that
extends the previous call (typing) costs one ``step`` per new token, and deleting
characters goes back to a saved state instead of re-reading the prefix.

- Word level: the next-word distribution; if the text ends inside a word, the vocabulary
  words that complete it, with their probabilities.
- Char level: beam search over characters until a non-word character ends the word; the
  probability of a word includes the character that ends it.
"""
from __future__ import annotations

import heapq
import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .checkpoint import RunDir, load_model_state
from .data.text import UNK, Vocab, detokenize, is_word_char, tokenize
from .errors import UserError
from .stepper import Stepper
from .models.lm import LanguageModel, LMConfig
from .registry import available


class Predictor:
    def __init__(self, model: LanguageModel, vocab: Vocab) -> None:
        self.model = model.eval()
        self.vocab = vocab
        try:                              # fused one-token path, prepared once (rnnlab.stepper)
            self._stepper: Stepper | None = Stepper(model.core)
        except ValueError:                # a core it cannot step: the model's own step
            self._stepper = None
        self.level = vocab.level
        self.start_id = vocab.index.get("\n", 1)     # the model reads a newline first
        self.unknown: list[str] = []                 # unseen tokens of the last prompt
        self.reset()

    @classmethod
    def load(cls, run_dir: str | Path) -> "Predictor":
        run = RunDir(run_dir)
        cfg = run.config()
        if isinstance(cfg.get("model"), dict) and cfg["model"].get("arch") == "ngram":
            from .ngram_run import NgramPredictor          # a counted model, not a network
            return NgramPredictor.load(run_dir)
        try:
            mcfg = LMConfig(**cfg["model"])
        except (KeyError, TypeError) as e:
            raise UserError(f"{run.path}/config.json: model settings are damaged ({e})") from None
        if mcfg.arch not in available():
            raise UserError(f"{run.path}: architecture {mcfg.arch!r} is not available in this "
                            f"rnnlab (have: {', '.join(available())})")
        try:
            vocab = Vocab.from_json(run.vocab())
        except (KeyError, TypeError) as e:
            raise UserError(f"{run.path}/vocab.json: damaged ({e})") from None
        if len(vocab) != mcfg.vocab_size:
            raise UserError(f"{run.path}: vocab.json has {len(vocab)} tokens but the model "
                            f"expects {mcfg.vocab_size}; the run directory is inconsistent")
        model = LanguageModel.from_config(mcfg)
        load_model_state(model, run.model_weights(), run.path)
        return cls(model, vocab)

    def param_count(self) -> int:
        """Distinct parameters of the model (a tied matrix counts once)."""
        return sum(p.numel() for p in self.model.parameters())

    def size_bytes(self) -> int:
        """Bytes of the distinct parameters at their stored precision (float32)."""
        return sum(p.numel() * p.element_size() for p in self.model.parameters())

    # -- the incremental state ------------------------------------------------------------
    def reset(self) -> None:
        """Forget everything read; the cache holds the state after the start token."""
        logits, state = self.step(self.start_id, None)
        self._ids: list[int] = []
        self._states: list[Any] = [state]
        self._logits: list[Tensor] = [logits]

    @torch.inference_mode()
    def step(self, token: int, state: Any) -> tuple[Tensor, Any]:
        """One token in, next-token logits (V,) and the new state out."""
        if self._stepper is None:
            logits, state = self.model.step(torch.tensor([token]), state)
            return logits[0], state
        h, state = self._stepper(self.model.embed.weight[token][None], state)   # (1, H)
        return self.model.head(h)[0], state

    def read(self, ids: list[int]) -> tuple[Tensor, Any]:
        """Logits and state after ``ids``, reusing the longest cached prefix."""
        p = 0
        for a, b in zip(self._ids, ids):
            if a != b:
                break
            p += 1
        del self._ids[p:], self._states[p + 1:], self._logits[p + 1:]
        for tok in ids[p:]:
            logits, state = self.step(tok, self._states[-1])
            self._ids.append(tok)
            self._states.append(state)
            self._logits.append(logits)
        return self._logits[-1], self._states[-1]

    def encode(self, text: str) -> list[int]:
        toks = tokenize(text, self.level)
        self.unknown = self.vocab.unknown(toks)
        return self.vocab.encode(toks)

    # -- suggestions ----------------------------------------------------------------------
    def suggest(self, text: str, k: int = 3) -> list[tuple[str, float]]:
        """The k most likely next words (or completions of the word being typed)."""
        if k < 1:
            raise UserError(f"k must be at least 1, received {k}")
        if self.level == "word":
            return self._suggest_words(text, k)
        return self._suggest_chars(text, k)

    def _suggest_words(self, text: str, k: int) -> list[tuple[str, float]]:
        toks = tokenize(text, "word")
        if toks and text and is_word_char(text[-1]) and toks[-1] not in self.vocab.index:
            words = self._next_words(toks[:-1], toks[-1], k)   # complete the word typed
            if words:
                return words
        return self._next_words(toks, "", k)                   # a known word is complete

    def _next_words(self, toks: list[str], partial: str, k: int) -> list[tuple[str, float]]:
        self.unknown = self.vocab.unknown(toks)
        logits, _ = self.read(self.vocab.encode(toks))
        probs = torch.softmax(logits.float(), -1)
        order = torch.argsort(probs, descending=True).tolist()
        low = partial.lower()
        out = []
        for i in order:
            tok = self.vocab.tokens[i]
            if tok in (UNK, "\n") or not tok.lower().startswith(low):
                continue
            if not partial and not any(is_word_char(ch) for ch in tok):
                continue                                 # punctuation is not a suggestion
            out.append((tok, float(probs[i])))
            if len(out) == k:
                break
        return out

    def _suggest_chars(self, text: str, k: int) -> list[tuple[str, float]]:
        words = self._beam(text, k)
        partial = _trailing_word(text)
        if partial and words and words[0][0] == partial:
            return self._beam(text + " ", k)             # the word is finished: next words
        return words

    def _beam(self, text: str, k: int, width: int = 8,
              max_len: int = 24) -> list[tuple[str, float]]:
        """Words (partial + suffix) by beam search; P(word) = P(its characters) times
        P(a non-word character next), summed over every such character."""
        ids = self.encode(text)
        partial = _trailing_word(text)
        logits, state = self.read(ids)
        enders = self._enders()
        beams = [(0.0, "", logits, state)]                 # (-log p, suffix, logits, state)
        done: dict[str, float] = {}
        for _ in range(max_len):
            grown = []
            for cost, suffix, lg, st in beams:
                logp = torch.log_softmax(lg.float(), -1)
                if partial or suffix:
                    done[partial + suffix] = math.exp(-cost) * float(logp[enders].exp().sum())
                logp[enders] = -math.inf
                logp[0] = -math.inf                             # <unk>
                top = torch.topk(logp, min(width, logp.numel()))
                for lp, i in zip(top.values.tolist(), top.indices.tolist()):
                    if lp > -math.inf:
                        grown.append((cost - lp, suffix + self.vocab.tokens[i], st, i))
            grown = heapq.nsmallest(width, grown, key=lambda b: b[0])
            kth = sorted(done.values(), reverse=True)[k - 1] if len(done) >= k else 0.0
            if not grown or math.exp(-grown[0][0]) <= kth:
                break                                    # no longer word can overtake
            beams = []
            for cost, suffix, st, i in grown:
                lg, st2 = self.step(i, st)
                beams.append((cost, suffix, lg, st2))
        return sorted(done.items(), key=lambda wp: -wp[1])[:k]

    def _enders(self) -> Tensor:
        """Ids of the characters that end a word (not word characters, not <unk>)."""
        if not hasattr(self, "_ender_ids"):
            self._ender_ids = torch.tensor([i for i, t in enumerate(self.vocab.tokens)
                                            if i and not is_word_char(t)], dtype=torch.long)
        return self._ender_ids

    # -- sampling -------------------------------------------------------------------------
    @torch.inference_mode()
    def sample(self, prime: str = "", n: int = 200, temperature: float = 1.0,
               top_k: int | None = None, seed: int | None = None) -> str:
        """prime followed by n sampled tokens (temperature 0: always the most likely)."""
        if temperature < 0:
            raise UserError(f"temperature must be >= 0, received {temperature}")
        gen = torch.Generator().manual_seed(seed if seed is not None else
                                            int(torch.randint(0, 2**31, ()).item()))
        prime_toks = tokenize(prime, self.level)
        logits, state = self.read(self.encode(prime))
        out: list[str] = []
        for _ in range(n):
            tok = self._draw(logits, temperature, top_k, gen)
            out.append(self.vocab.tokens[tok])
            logits, state = self.step(tok, state)
        if self.level == "char":
            return prime + "".join(out)
        return detokenize(prime_toks + out, "word")

    @staticmethod
    def _draw(logits: Tensor, temperature: float, top_k: int | None,
              gen: torch.Generator) -> int:
        logits = logits.float().clone()
        logits[0] = -math.inf                               # never emit <unk>
        if temperature == 0:
            return int(logits.argmax())
        if top_k:
            kth = torch.topk(logits, min(top_k, logits.numel())).values[-1]
            logits[logits < kth] = -math.inf
        probs = torch.softmax(logits / temperature, -1)
        return int(torch.multinomial(probs, 1, generator=gen))


def _trailing_word(text: str) -> str:
    """The word characters at the end of text ("" after a space)."""
    n = 0
    while n < len(text) and is_word_char(text[len(text) - 1 - n]):
        n += 1
    return text[len(text) - n:]
