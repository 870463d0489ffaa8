"""Text for language models: read, tokenise, build a vocabulary, split, batch.

- ``read_text(path)``: a UTF-8 file, or a folder whose ``.txt`` files (sorted, recursive)
  are joined with a newline. ``\\r\\n`` becomes ``\\n``. Bad input raises a one-line
  ``UserError`` naming the file (and the byte offset for invalid UTF-8).
- ``tokenize(text, level)``: ``"char"`` gives characters; ``"word"`` gives words (letters,
  digits, inner apostrophes), each punctuation mark, and each newline as tokens.
  ``detokenize`` is its inverse on canonical spacing, and
  ``tokenize(detokenize(tokens)) == tokens`` for any list of tokens.
- ``Vocab``: tokens by id, id 0 the unknown token, built with min count / max size.
- ``split_ids``: contiguous train/valid/test (default 90/5/5, the enwik8 convention).
- ``batchify``: B contiguous streams, time-major (N, B), for truncated BPTT.
"""
from __future__ import annotations

import functools
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor

from ..errors import UserError

LEVELS = ("char", "word")
UNK = "<unk>"
_RI = "\U0001F1E6-\U0001F1FF"                       # regional indicators: flags are pairs
_NO_SPACE_BEFORE = set(".,;:!?)]}")
_NO_SPACE_AFTER = set("([{")


# -- reading ------------------------------------------------------------------------------
def read_text(path: str | Path) -> str:
    """The text of a UTF-8 file, or of all ``.txt`` files under a folder (sorted)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file or folder; give a UTF-8 text file or a "
                        f"folder of .txt files")
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.txt") if p.is_file())
        if not files:
            raise UserError(f"{path}: folder has no .txt files; put UTF-8 .txt files in it")
        text = "\n".join(_read_file(p, allow_empty=True) for p in files)
        if not text.strip():
            raise UserError(f"{path}: all {len(files)} .txt files are empty")
        return text
    return _read_file(path)


def _read_file(path: Path, allow_empty: bool = False) -> str:
    data = path.read_bytes()
    if not data.strip() and not allow_empty:
        raise UserError(f"{path}: file is empty; give a file with text in it")
    return decode_utf8(path, data)


def decode_utf8(path, data: bytes, start: int = 0) -> str:
    """``data`` (the bytes of ``path`` from offset ``start``) as text with "\n" line ends;
    a clear one-line error for a binary file or invalid UTF-8 (naming the file offset).
    At the start of a file: the NUL check and the byte-order mark."""
    if start == 0:
        nul = data.find(b"\0", 0, 1 << 16)
        if nul >= 0:
            raise UserError(f"{path}: looks like a binary file (NUL byte at offset {nul}); "
                            f"give a UTF-8 text file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not valid UTF-8 at byte offset {start + e.start} "
                        f"(byte 0x{data[e.start]:02x}); convert the file to UTF-8") from None
    if start == 0:
        text = text.removeprefix("\ufeff")
    return text.replace("\r\n", "\n")


# -- tokens -------------------------------------------------------------------------------
def check_level(level: str) -> str:
    if level not in LEVELS:
        raise UserError(f"level must be one of {', '.join(LEVELS)}, received {level!r}")
    return level


def tokenize(text: str, level: str) -> list[str]:
    """Characters, or words / punctuation marks / newlines."""
    if check_level(level) == "char":
        return list(text)
    return _word_pattern().findall(text)


@functools.cache
def _word_pattern() -> re.Pattern:
    """Words, newlines, and single symbols, each a whole grapheme: combining marks,
    variation selectors, skin tones and zero-width-joined emoji stay with the character
    they modify, and a pair of regional indicators (a flag) is one token."""
    marks, start = [], None
    for c in range(0x300, 0x20000):                     # Unicode categories Mn, Mc, Me
        if unicodedata.category(chr(c))[0] == "M":
            start = c if start is None else start
        elif start is not None:
            marks.append(f"{chr(start)}-{chr(c - 1)}")
            start = None
    ext = "[" + re.escape("".join(marks)).replace("\\-", "-") + \
        "\U0001F3FB-\U0001F3FF\U000E0020-\U000E007F\U000E0100-\U000E01EF]"
    word = rf"\w(?:\w|{ext})*"
    symbol = rf"[^\w\s]{ext}*(?:\u200d[^\w\s]{ext}*)*"
    return re.compile(rf"{word}(?:'{word})*|\n|[{_RI}]{{2}}|{symbol}")


def detokenize(tokens: Sequence[str], level: str) -> str:
    """Join tokens back into text (canonical spacing at word level)."""
    if check_level(level) == "char":
        return "".join(tokens)
    parts: list[str] = []
    prev = "\n"
    for tok in tokens:
        glue = (prev == "\n" or tok == "\n" or tok in _NO_SPACE_BEFORE
                or prev in _NO_SPACE_AFTER)
        parts.append(tok if glue else " " + tok)
        prev = tok
    return "".join(parts)


def is_word_char(ch: str) -> bool:
    """True for characters that may be part of a word token (letters, digits, _, ')."""
    return ch.isalnum() or ch in "_'"


@dataclass
class Vocab:
    """Tokens by id; id 0 is the unknown token ``<unk>``."""

    level: str
    tokens: list[str] = field(default_factory=lambda: [UNK])

    def __post_init__(self) -> None:
        check_level(self.level)
        if not self.tokens or self.tokens[0] != UNK:
            raise UserError(f"vocabulary must start with {UNK!r}")
        self.index = {t: i for i, t in enumerate(self.tokens)}

    @classmethod
    def build(cls, tokens: Sequence[str], level: str, min_count: int = 1,
              max_size: int | None = None) -> "Vocab":
        """Most frequent tokens first (ties by first appearance); ``max_size`` counts <unk>."""
        counts = Counter(tokens)
        ranked = sorted(counts.items(), key=lambda kv: -kv[1])      # stable: first seen
        kept = [t for t, c in ranked if c >= min_count and t != UNK]
        if max_size is not None:
            kept = kept[: max(0, max_size - 1)]
        vocab = cls(level, [UNK] + kept)
        if len(kept) < 2:
            raise UserError(
                f"vocabulary too small to train: {len(kept)} token(s) besides {UNK} "
                f"(from {len(counts)} distinct, min count {min_count}, max size {max_size}); "
                f"give more text or lower --min-count")
        return vocab

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, tokens: Sequence[str]) -> list[int]:
        get = self.index.get
        return [get(t, 0) for t in tokens]

    def unknown(self, tokens: Sequence[str]) -> list[str]:
        """The distinct tokens of ``tokens`` not in the vocabulary, in order."""
        return list(dict.fromkeys(t for t in tokens if t not in self.index))

    def decode(self, ids: Sequence[int]) -> list[str]:
        return [self.tokens[int(i)] for i in ids]

    def to_json(self) -> dict:
        return {"level": self.level, "tokens": self.tokens}

    @classmethod
    def from_json(cls, data: dict) -> "Vocab":
        return cls(data["level"], list(data["tokens"]))


# -- splits and batches -------------------------------------------------------------------
def split_ids(ids: Sequence[int], fractions: Sequence[float] = (0.9, 0.05, 0.05)
              ) -> tuple[list[int], list[int], list[int]]:
    """Contiguous train / valid / test parts: the first 90%, the next 5%, the last 5%."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, "
                         f"received {tuple(fractions)}")
    n = len(ids)
    a = int(n * fractions[0])
    b = a + int(n * fractions[1])
    return list(ids[:a]), list(ids[a:b]), list(ids[b:])


def batchify(ids: Sequence[int] | Tensor, batch: int) -> Tensor:
    """(N, B) int64: B contiguous streams side by side (the tail that does not fit is cut)."""
    ids = torch.as_tensor(ids, dtype=torch.long)
    n = ids.numel() // batch
    if n < 2:
        raise UserError(f"text too short: {ids.numel()} tokens cannot fill {batch} streams "
                        f"of at least 2 tokens; give more text or a smaller --batch")
    return ids[: n * batch].view(batch, n).t().contiguous()


@dataclass
class Corpus:
    """A tokenised text: vocabulary and the three splits as id lists."""

    vocab: Vocab
    train: list[int]
    valid: list[int]
    test: list[int]


def prepare(text: str, level: str, min_count: int = 1, max_size: int | None = None,
            fractions: Sequence[float] = (0.9, 0.05, 0.05),
            vocab: Vocab | None = None) -> Corpus:
    """Tokenise, split contiguously, build the vocabulary on the train part, encode."""
    tokens = tokenize(text, level)
    if len(tokens) < 100:
        raise UserError(f"text too short to train: {len(tokens)} {level} tokens "
                        f"(need at least 100)")
    parts = split_ids(tokens, fractions)
    if vocab is None:
        vocab = Vocab.build(parts[0], level, min_count, max_size)
    return Corpus(vocab, *(vocab.encode(p) for p in parts))
