"""Inference from a run directory: next-word suggestions and sampling.

    p = Predictor.load("runs/lstm-word")
    p.suggest("She grew up speaking", k=3)   # [("French", 0.91), ("German", 0.03), ...]
    p.sample("The clouds", n=40, temperature=0.8, top_k=10, seed=1)

The predictor keeps the recurrent state after every token it has read, so text that
extends the previous call (typing) costs one ``step`` per new token, and deleting
characters goes back to a saved state instead of re-reading the prefix.

- Word level: the next-word distribution; if the text ends inside a word, the vocabulary
  words that complete it, with their probabilities. When the typed word is itself a word
  ("free so"), its longer completions ("software") and the words after it compete by the
  probability of the whole continuation, P(so) P(next | so) against P(software).
- Char level: beam search over characters until a non-word character ends the word; the
  probability of a word includes the character that ends it.
"""
from __future__ import annotations

import bisect
import copy
import heapq
import math
from collections import deque
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .checkpoint import model_from_weights
from .data.text import UNK, Vocab, detokenize, is_word_char, tokenize
from .errors import UserError
from .models.lm import LanguageModel
from .rundir import RunDir, load_vocab, model_config
from .stepper import Stepper

CACHE = 256           # positions whose state and logits a predictor keeps
CHUNK = 1024          # tokens per forward pass when reading a long new stretch


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
        """The run's best model and vocabulary, every file checked (rnnlab.rundir)."""
        run = RunDir(run_dir)
        model = run.config()["model"]
        if model.get("arch") == "ngram":                   # a counted model, not a network
            from .ngram_run import NgramPredictor
            return NgramPredictor.load(run_dir)
        mcfg = model_config(run)
        vocab = load_vocab(run)
        if len(vocab) != mcfg.vocab_size:
            raise UserError(f"{run.path}: vocab.json has {len(vocab)} tokens but the model "
                            f"expects {mcfg.vocab_size}; the run directory is inconsistent")
        return cls(model_from_weights(mcfg, run.model_weights(), run.path), vocab)

    def fork(self) -> "Predictor":
        """A predictor sharing this one's model, vocabulary and prepared stepper, with its
        own incremental state (as if just reset): one per typing session, no weight copy."""
        if self.level == "word" and not hasattr(self, "_by_lower"):
            self._index_words()                               # built once, shared
        self._enders()
        other = copy.copy(self)
        other._ids = []
        other._states, other._logits = deque([self._start[0]]), deque([self._start[1]])
        other.unknown = []
        return other

    def param_count(self) -> int:
        """Distinct parameters of the model (a tied matrix counts once)."""
        return sum(p.numel() for p in self.model.parameters())

    def size_bytes(self) -> int:
        """Bytes of the distinct parameters at their stored precision (float32)."""
        return sum(p.numel() * p.element_size() for p in self.model.parameters())

    @property
    def cached_tokens(self) -> int:
        """How many tokens of the last text the incremental state holds (memory grows
        by one state and one logits vector per token)."""
        return len(self._ids)

    # -- the incremental state ------------------------------------------------------------
    def reset(self) -> None:
        """Forget everything read; the cache holds the state after the start token."""
        logits, state = self.step(self.start_id, None)
        self._start = (state, logits)                 # shared by forks (never modified)
        self._ids: list[int] = []
        self._states: deque[Any] = deque([state])
        self._logits: deque[Tensor] = deque([logits])

    @torch.inference_mode()
    def step(self, token: int, state: Any) -> tuple[Tensor, Any]:
        """One token in, next-token logits (V,) and the new state out."""
        if self._stepper is None:
            logits, state = self.model.step(torch.tensor([token]), state)
            return logits[0], state
        h, state = self._stepper(self.model.embed.weight[token][None], state)   # (1, H)
        return self.model.head(h)[0], state

    @torch.inference_mode()
    def step_many(self, tokens: list[int], states: list[Any]) -> list[tuple[Tensor, Any]]:
        """``step`` for several independent (token, state) pairs at once: one batched
        matrix product per layer instead of one per pair (states of batch 1, as ``step``
        returns them). Cores whose state layout is not known step one pair at a time."""
        if self._stepper is None or len(tokens) == 1:
            return [self.step(t, s) for t, s in zip(tokens, states)]
        dim = self._stepper.batch_dim                    # torch's (L, B, H) or (B, ...)
        state = stack_states(states, dim)
        h, state = self._stepper(self.model.embed.weight[tokens], state)      # (B, H)
        logits = self.model.head(h)                                          # (B, V)
        rows = [row.clone() for row in logits]                              # own copies
        return list(zip(rows, unstack_states(state, len(tokens), dim)))

    def read(self, ids: list[int]) -> tuple[Tensor, Any]:
        """Logits and state after ``ids``, reusing the longest cached prefix.

        The states and logits of the last ``CACHE`` positions are kept (typing and
        deleting); a longer new stretch is read in chunks of ``CHUNK`` tokens through the
        model's forward, keeping nothing per token, so memory does not grow with the
        prompt's length times the vocabulary."""
        p = 0
        for a, b in zip(self._ids, ids):
            if a != b:
                break
            p += 1
        first = len(self._ids) + 1 - len(self._states)      # position of _states[0]
        if p < first:                                        # before the window: start over
            self.reset()
            p = first = 0
        del self._ids[p:]
        while len(self._states) > p - first + 1:
            self._states.pop()
            self._logits.pop()
        new = ids[p:]
        bulk = new[: max(0, len(new) - CACHE)]
        if bulk:
            state = self._states[-1]
            with torch.inference_mode():
                for i in range(0, len(bulk), CHUNK):
                    out, state = self.model(torch.tensor(bulk[i: i + CHUNK])[:, None], state)
            self._ids.extend(bulk)
            self._states, self._logits = deque([state]), deque([out[-1, 0]])
        for tok in new[len(bulk):]:
            logits, state = self.step(tok, self._states[-1])
            self._ids.append(tok)
            self._states.append(state)
            self._logits.append(logits)
            if len(self._states) > CACHE + 1:
                self._states.popleft()
                self._logits.popleft()
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
        if not (toks and text and is_word_char(text[-1])):
            return self._next_words(toks, "", k)                 # after a space: next words
        partial = toks[-1]
        completions = self._next_words(toks[:-1], partial, k + 1)
        if partial not in self.vocab.index:                      # complete the word typed
            return completions[:k] or self._next_words(toks, "", k)
        # the typed text is itself a word ("so"): the longer words it starts ("software")
        # compete with the words after it, each by the probability of the whole continuation
        p_word = next((p for w, p in completions if w == partial), 0.0)
        longer = [(w, p) for w, p in completions if w.lower() != partial.lower()]
        after = [(w, p_word * p) for w, p in self._next_words(toks, "", k)
                 if not w.lower().startswith(partial.lower())]
        return sorted(longer + after, key=lambda wp: -wp[1])[:k]

    def _next_words(self, toks: list[str], partial: str, k: int) -> list[tuple[str, float]]:
        self.unknown = self.vocab.unknown(toks)
        logits, _ = self.read(self.vocab.encode(toks))
        probs = torch.softmax(logits.float(), -1)
        ids = self._candidates(partial)
        if not len(ids):
            return []
        top = torch.topk(probs[ids], min(k, len(ids)))
        return [(self.vocab.tokens[i], p) for i, p in
                zip(ids[top.indices].tolist(), top.values.tolist())]

    def _candidates(self, partial: str) -> Tensor:
        """Ids of the words that may be suggested after ``partial``: those that start with
        it (any case); with no partial word, every token with a word character
        (punctuation is not a suggestion). Never <unk> or the newline. Found by bisection
        in the lower-cased vocabulary (sorted once, shared by forks)."""
        if not hasattr(self, "_by_lower"):
            self._index_words()
        if not partial:
            return self._by_lower_ids
        low = partial.lower()
        a = bisect.bisect_left(self._by_lower, low)
        b = bisect.bisect_left(self._by_lower, low + "\U0010ffff", lo=a)
        return self._by_lower_ids[a:b]

    def _index_words(self) -> None:
        words = sorted((t.lower(), i) for i, t in enumerate(self.vocab.tokens)
                       if t not in (UNK, "\n") and any(is_word_char(ch) for ch in t))
        self._by_lower = [w for w, _ in words]
        self._by_lower_ids = torch.tensor([i for _, i in words], dtype=torch.long)

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
            logp = torch.log_softmax(torch.stack([b[2] for b in beams]).float(), -1)  # (W, V)
            ended = logp[:, enders].exp().sum(-1).tolist()
            logp[:, enders] = -math.inf
            logp[:, 0] = -math.inf                              # <unk>
            top = torch.topk(logp, min(width, logp.shape[1]), -1)
            grown = []
            for (cost, suffix, _, st), p_end, lps, ids in zip(
                    beams, ended, top.values.tolist(), top.indices.tolist()):
                if partial or suffix:
                    done[partial + suffix] = math.exp(-cost) * p_end
                for lp, i in zip(lps, ids):
                    if lp > -math.inf:
                        grown.append((cost - lp, suffix + self.vocab.tokens[i], st, i))
            grown = heapq.nsmallest(width, grown, key=lambda b: b[0])
            kth = sorted(done.values(), reverse=True)[k - 1] if len(done) >= k else 0.0
            if not grown or math.exp(-grown[0][0]) <= kth:
                break                                    # no longer word can overtake
            stepped = self.step_many([b[3] for b in grown], [b[2] for b in grown])
            beams = [(cost, suffix, lg, st2)
                     for (cost, suffix, _, _), (lg, st2) in zip(grown, stepped)]
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


def stack_states(states: list[Any], dim: int) -> Any:
    """Batch-1 states (tensors or nested tuples of them) joined along the batch dimension."""
    first = states[0]
    if isinstance(first, Tensor):
        return torch.cat(states, dim)
    parts = [stack_states([s[i] for s in states], dim) for i in range(len(first))]
    return type(first)(*parts) if hasattr(first, "_fields") else tuple(parts)


def unstack_states(state: Any, n: int, dim: int) -> list[Any]:
    """The inverse of ``stack_states``: n batch-1 states, each its own copy (a kept view
    would keep the whole batch alive)."""
    if isinstance(state, Tensor):
        return [t.clone() for t in state.split(1, dim)]
    per_part = [unstack_states(p, n, dim) for p in state]
    make = (lambda xs: type(state)(*xs)) if hasattr(state, "_fields") else tuple
    return [make([p[j] for p in per_part]) for j in range(n)]


def _trailing_word(text: str) -> str:
    """The word characters at the end of text ("" after a space)."""
    n = 0
    while n < len(text) and is_word_char(text[len(text) - 1 - n]):
        n += 1
    return text[len(text) - n:]
