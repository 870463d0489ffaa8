"""Interpolated Kneser-Ney n-gram language model over token ids (numpy, no pickle).

The baseline keyboards used before recurrent models (Kneser & Ney 1995; the interpolated
form of Chen & Goodman 1998, "An Empirical Study of Smoothing Techniques for Language
Modeling", section 3). For a history h of up to n-1 tokens and the next token w:

    highest order n (raw counts c):
        P_n(w | h) = max(c(h w) - D_n, 0) / c(h •)  +  D_n N1+(h •) / c(h •) · P_{n-1}(w | h')
    lower orders k < n (continuation counts N1+(• g w), the number of distinct tokens seen
    just before g w; the text's first token counts a start-of-text boundary as its left):
        P_k(w | g) = max(N1+(• g w) - D_k, 0) / N1+(• g •)  +  D_k N1+(g •) / N1+(• g •) · P_{k-1}
    order 1 interpolates with the uniform distribution over the vocabulary V:
        P_1(w) = max(N1+(• w) - D_1, 0) / N1+(• •)  +  D_1 N1+(•) / N1+(• •) · 1 / V

h' is h without its oldest token; c(h •) is the number of times h is followed by a token;
N1+(h •) is the number of distinct tokens that follow h. A context never seen at order k
is skipped (its weight goes to the lower order). Each level sums to one over the
vocabulary, so every distribution does, and every token has probability > 0.
Discounts: D_k = n1 / (n1 + 2 n2) from the count-of-counts of order k (Ney, Essen & Kneser
1994), clipped to [0.05, 0.95].

Storage: per order k a table sorted by (context key, word) with one count per row; the
context key packs the k-1 context ids in base V into one int64 (so V^(n-1) < 2^63).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .errors import UserError

D_RANGE = (0.05, 0.95)


def _runs(*cols: np.ndarray) -> np.ndarray:
    """Start indices of the runs of equal rows in columns sorted together."""
    n = len(cols[0])
    change = np.zeros(n, dtype=bool)
    if n:
        change[0] = True
        for c in cols:
            change[1:] |= c[1:] != c[:-1]
    return np.flatnonzero(change)


def check_size(vocab_size: int, order: int) -> None:
    """Refuse an order / vocabulary pair whose context keys would overflow int64."""
    if order < 1:
        raise UserError(f"n-gram order must be at least 1, received {order}")
    if vocab_size < 2:
        raise UserError(f"n-gram vocabulary must have at least 2 tokens, received {vocab_size}")
    if vocab_size ** (order - 1) >= 2 ** 63:
        raise UserError(f"order {order} with a vocabulary of {vocab_size} tokens is too large "
                        f"for this n-gram store; lower --order or --max-vocab")


def discount(counts: np.ndarray) -> float:
    """n1 / (n1 + 2 n2), clipped to D_RANGE (0.5 when there are no counts of 1 or 2)."""
    n1, n2 = int((counts == 1).sum()), int((counts == 2).sum())
    d = n1 / (n1 + 2 * n2) if n1 + n2 else 0.5
    return float(min(max(d, D_RANGE[0]), D_RANGE[1]))


class KneserNey:
    """``KneserNey.fit(ids, V, order)``; ``probs(history)`` -> (V,) float64 distribution."""

    def __init__(self, vocab_size: int, tables: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
                 discounts: Sequence[float]) -> None:
        self.V, self.order = vocab_size, len(tables)
        check_size(vocab_size, self.order)
        if len(discounts) != self.order:
            raise ValueError(f"need {self.order} discounts, received {len(discounts)}")
        self.discounts = [float(d) for d in discounts]
        self.tables = tables
        self._index = [self._context_index(t) for t in tables]
        _, words, counts = tables[0]
        d, total = self.discounts[0], counts.sum()
        uni = np.full(self.V, d * len(words) / total / self.V if total else 1.0 / self.V)
        if total:
            uni[words] += np.maximum(counts - d, 0) / total
        self.unigram = uni

    @staticmethod
    def _context_index(table):
        """Per distinct context: key, first row, row count, count total."""
        ctx, _, counts = table
        starts = _runs(ctx)
        totals = np.add.reduceat(counts, starts) if len(starts) else counts[:0]
        return ctx[starts], starts, np.diff(np.append(starts, len(ctx))), totals

    # -- estimation -----------------------------------------------------------------------
    @classmethod
    def fit(cls, ids: Sequence[int], vocab_size: int, order: int,
            discounts: Sequence[float] | None = None) -> KneserNey:
        """Count a token stream (ids in [0, V)); discounts default to n1 / (n1 + 2 n2)."""
        check_size(vocab_size, order)
        ids = np.asarray(ids, dtype=np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
            raise ValueError(f"ids must lie in [0, {vocab_size})")
        tables = [cls._count(ids, vocab_size, k, continuation=k < order)
                  for k in range(1, order + 1)]
        if discounts is None:
            discounts = [discount(t[2]) for t in tables]
        return cls(vocab_size, tables, discounts)

    @staticmethod
    def _count(ids: np.ndarray, V: int, k: int, continuation: bool):
        """The order-k table: (context key, word, count) rows sorted by (key, word)."""
        n = len(ids) - k + 1
        if n <= 0:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty.copy(), empty.copy()
        ctx = np.zeros(n, dtype=np.int64)
        for j in range(k - 1):
            ctx = ctx * V + ids[j: j + n]
        word = ids[k - 1: k - 1 + n]
        if continuation:                      # distinct left neighbours; V marks the start
            left = np.concatenate([[V], ids[: n - 1]])
            o = np.lexsort((left, word, ctx))
            ctx, word, left = ctx[o], word[o], left[o]
            first = _runs(ctx, word, left)    # distinct (left, context, word) triples
            ctx, word = ctx[first], word[first]
        else:
            o = np.lexsort((word, ctx))
            ctx, word = ctx[o], word[o]
        starts = _runs(ctx, word)
        counts = np.diff(np.append(starts, len(ctx)))
        return ctx[starts], word[starts], counts.astype(np.int64)

    # -- queries --------------------------------------------------------------------------
    def key(self, context: Sequence[int]) -> int:
        k = 0
        for t in context:
            k = k * self.V + int(t)
        return k

    def _find(self, k: int, history: Sequence[int]):
        """(first row, rows, total) of the order-k context ending history, or None."""
        keys, starts, sizes, totals = self._index[k - 1]
        key = self.key(history[len(history) - (k - 1):])
        i = int(np.searchsorted(keys, key))
        if i == len(keys) or keys[i] != key:
            return None
        return int(starts[i]), int(sizes[i]), float(totals[i])

    def probs(self, history: Sequence[int]) -> np.ndarray:
        """P(w | history) for every w, (V,) float64 summing to 1."""
        p = self.unigram.copy()
        for k in range(2, min(self.order, len(history) + 1) + 1):
            found = self._find(k, history)
            if found is None:
                break                         # a longer context containing it is unseen too
            s, m, total = found
            d = self.discounts[k - 1]
            _, words, counts = self.tables[k - 1]
            p *= d * m / total
            p[words[s: s + m]] += np.maximum(counts[s: s + m] - d, 0) / total
        return p

    def prob(self, history: Sequence[int], w: int) -> float:
        """P(w | history) for one w (the same recursion as ``probs``, without the vector)."""
        p = float(self.unigram[w])
        for k in range(2, min(self.order, len(history) + 1) + 1):
            found = self._find(k, history)
            if found is None:
                break
            s, m, total = found
            d = self.discounts[k - 1]
            words, counts = self.tables[k - 1][1][s: s + m], self.tables[k - 1][2][s: s + m]
            j = int(np.searchsorted(words, w))
            c = float(counts[j]) if j < m and words[j] == w else 0.0
            p = max(c - d, 0.0) / total + d * m / total * p
        return p

    def nats(self, ids: Sequence[int], start: Sequence[int] = ()) -> float:
        """Mean -log P of ids read in order after ``start`` (the history carried along)."""
        hist = list(start)
        total = 0.0
        for w in ids:
            total -= float(np.log(self.prob(hist[-(self.order - 1):] if self.order > 1
                                             else [], int(w))))
            hist.append(int(w))
        return total / max(len(ids), 1)

    def entries(self) -> int:
        """Stored n-gram rows over all orders (the model's size in counts)."""
        return sum(len(t[0]) for t in self.tables)
