"""A token store: a corpus tokenised once into a file of ids that training reads in place.

    DATA/ids.bin        token ids, raw little-endian, the smallest unsigned type for the vocab
    DATA/vocab.json     the vocabulary (``rnnlab.data.text.Vocab``)
    DATA/manifest.json  format, level, dtype, token count, split boundaries, source files
                        (name, bytes, sha256), settings

``build_store`` gives exactly what ``prepare(read_text(SOURCE))`` gives (same tokens, same
90/5/5 split, same vocabulary built on the training part), without ever holding the text:
files are cut into pieces of a few MB at newlines (a newline is a token boundary at both
levels), a pool of worker processes tokenises the pieces and numbers each piece's tokens
locally (a small file of local ids per piece), the parent merges the local tables into one
count table in first-seen order, builds the vocabulary on the training part, then the pool
maps every piece's local ids to final ids straight into ``ids.bin``. Memory is a few pieces
plus the table of distinct tokens, whatever the corpus size.

``open_store(DATA)`` gives a ``StoreCorpus`` whose splits are ``TokenSlice`` views that read
ids with ``os.pread`` on demand (nothing is loaded whole).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path

import numpy as np

from ..errors import UserError
from ._pieces import encode_piece, find_pieces, hash_file, list_sources, tokenize_piece
from .text import Vocab, check_level

FORMAT = "rnnlab-store"
VERSION = 1
PIECE_BYTES = 4 << 20


def is_store(path: str | Path | None) -> bool:
    """True when path is a folder holding a token store's manifest."""
    return path is not None and (Path(path) / "manifest.json").is_file()


def id_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned integer type holding ids 0 .. vocab_size - 1."""
    for dt in (np.uint8, np.uint16, np.uint32):
        if vocab_size - 1 <= np.iinfo(dt).max:
            return np.dtype(dt)
    return np.dtype(np.uint64)


def _pool(workers: int):
    method = "fork" if "fork" in get_all_start_methods() else "spawn"
    return get_context(method).Pool(workers)


def build_store(source: str | Path, out: str | Path, level: str = "word",
                vocab_size: int | None = None, min_count: int = 1,
                fractions: Sequence[float] = (0.9, 0.05, 0.05), workers: int | None = None,
                piece_bytes: int = PIECE_BYTES) -> dict:
    """Tokenise SOURCE (a UTF-8 file or a folder of .txt files) into a new store at OUT."""
    check_level(level)
    out = Path(out)
    if out.exists():
        raise UserError(f"{out} already exists; choose a new --out (prepare never "
                        f"overwrites)")
    files = list_sources(source)
    workers = max(1, workers or len(os.sched_getaffinity(0)))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)                    # mkdtemp makes 0700
    try:
        with _pool(workers) as pool:
            manifest = _build(pool, source, files, tmp, level, vocab_size, min_count,
                              fractions, piece_bytes)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def _build(pool, source, files, tmp: Path, level, vocab_size, min_count, fractions,
           piece_bytes) -> dict:
    hashes = [pool.apply_async(hash_file, (str(f),)) for f in files]
    pieces = list(find_pieces(files, piece_bytes))            # (file index, start, end)
    parts = tmp / "parts"
    parts.mkdir()
    jobs = [(str(files[fi]), start, end, level, str(parts / f"{k}"),
             fi < len(files) - 1 and end == files[fi].stat().st_size, len(files) > 1)
            for k, (fi, start, end) in enumerate(pieces)]
    seen: dict[str, int] = {}                                  # token -> first-seen number
    counts = np.zeros(0, np.int64)
    sizes, blank = [], {}
    for k, (n, tokens, local_counts, nonblank) in enumerate(
            pool.imap(tokenize_piece, jobs)):
        table = np.fromiter((seen.setdefault(t, len(seen)) for t in tokens), np.int64,
                            count=len(tokens))
        np.save(parts / f"{k}.map.npy", table)
        if len(seen) > len(counts):
            counts = np.concatenate([counts, np.zeros(len(seen) - len(counts), np.int64)])
        counts[table] += local_counts
        sizes.append(n)
        fi = pieces[k][0]
        blank[fi] = blank.get(fi, True) and not nonblank
    _check_not_blank(source, files, blank)
    total = int(sum(sizes))
    if total < 100:
        raise UserError(f"{source}: text too short to train: {total} {level} tokens "
                        f"(need at least 100)")
    n_train = int(total * fractions[0])
    n_valid = int(total * fractions[1])
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    _drop_held_out(counts, parts, starts, n_train)
    tokens_by_seen = list(seen)
    seen.clear()
    train_counts = Counter({tokens_by_seen[i]: int(c) for i, c in enumerate(counts) if c})
    try:
        vocab = Vocab.build(train_counts, level, min_count, vocab_size)
    except UserError as e:
        raise UserError(f"{source}: {e}") from None
    final = np.fromiter((vocab.index.get(t, 0) for t in tokens_by_seen), np.int64,
                        count=len(tokens_by_seen))
    del tokens_by_seen, train_counts
    np.save(parts / "final.npy", final)
    dtype = id_dtype(len(vocab))
    with open(tmp / "ids.bin", "wb") as f:
        f.truncate(total * dtype.itemsize)
    enc = [(str(parts / f"{k}"), str(parts / "final.npy"), str(tmp / "ids.bin"),
            dtype.str, int(starts[k]), sizes[k]) for k in range(len(pieces))]
    for _ in pool.imap_unordered(encode_piece, enc):
        pass
    shutil.rmtree(parts)
    sources = [{"name": _name(f, source), "bytes": f.stat().st_size, "sha256": h.get()}
               for f, h in zip(files, hashes)]
    splits = {"train": [0, n_train], "valid": [n_train, n_train + n_valid],
              "test": [n_train + n_valid, total]}
    manifest = {"format": FORMAT, "version": VERSION, "level": level, "dtype": dtype.name,
                "tokens": total, "vocab_size": len(vocab), "splits": splits,
                "fractions": list(fractions), "min_count": min_count,
                "max_vocab": vocab_size, "sources": sources}
    manifest["id"] = hashlib.sha256(json.dumps([manifest, vocab.tokens]).encode()
                                    ).hexdigest()
    _write_json(tmp / "vocab.json", vocab.to_json())
    _write_json(tmp / "manifest.json", manifest)
    return manifest


def _check_not_blank(source, files, blank: dict[int, bool]) -> None:
    if len(files) == 1 and blank[0]:
        raise UserError(f"{files[0]}: file is empty; give a file with text in it")
    if all(blank.values()):
        raise UserError(f"{source}: all {len(files)} .txt files are empty")


def _drop_held_out(counts: np.ndarray, parts: Path, starts: np.ndarray, n_train: int) -> None:
    """Subtract the tokens after the training part from the counts (vocab is train-only)."""
    for k in range(len(starts) - 1):
        if starts[k + 1] <= n_train:
            continue
        local = np.fromfile(parts / f"{k}", dtype=_part_dtype(parts / f"{k}"))
        cut = max(0, n_train - int(starts[k]))
        table = np.load(parts / f"{k}.map.npy")
        held = np.bincount(local[cut:], minlength=len(table))
        counts[table] -= held


def _part_dtype(path: Path) -> np.dtype:
    return np.dtype(Path(str(path) + ".dtype").read_text())


def _name(f: Path, source) -> str:
    src = Path(source)
    return f.relative_to(src).as_posix() if src.is_dir() else f.name


def _write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=1) + "\n", encoding="utf-8")


# -- reading ------------------------------------------------------------------------------
class TokenSlice:
    """Ids [lo, hi) of a store file, read on demand (``len``, ``read``, slicing)."""

    def __init__(self, path: Path, dtype: np.dtype, lo: int, hi: int) -> None:
        self.path, self.dtype, self.lo, self.hi = Path(path), np.dtype(dtype), lo, hi
        self._fd: int | None = None

    def __len__(self) -> int:
        return self.hi - self.lo

    def read(self, start: int, count: int) -> np.ndarray:
        """count ids from position start (relative to this slice)."""
        if start < 0 or count < 0 or start + count > len(self):
            raise IndexError(f"ids {start}..{start + count} outside 0..{len(self)}")
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)
        size = self.dtype.itemsize
        data = os.pread(self._fd, count * size, (self.lo + start) * size)
        if len(data) != count * size:
            raise UserError(f"{self.path}: truncated (expected {count * size} bytes at "
                            f"offset {(self.lo + start) * size}); prepare the store again")
        return np.frombuffer(data, dtype=self.dtype)

    def __getitem__(self, index: slice) -> np.ndarray:
        start, stop, step = index.indices(len(self))
        return self.read(start, max(0, stop - start))[::step]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_fd": None}

    def __del__(self) -> None:
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)


@dataclass
class StoreCorpus:
    """A store opened for training: vocabulary and splits as ``TokenSlice`` views."""

    vocab: Vocab
    train: TokenSlice
    valid: TokenSlice
    test: TokenSlice
    manifest: dict

    @property
    def fingerprint(self) -> list[int]:
        return [self.manifest["tokens"], int(self.manifest["id"][:15], 16)]


def open_store(path: str | Path) -> StoreCorpus:
    """Open a store made by ``build_store``; a damaged one is a one-line UserError."""
    path = Path(path)
    try:
        manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
        vocab = Vocab.from_json(json.loads((path / "vocab.json").read_text(encoding="utf-8")))
        if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
            raise UserError(f"{path}: not an rnnlab token store of version {VERSION}")
        dtype = np.dtype(manifest["dtype"])
        total, splits = int(manifest["tokens"]), manifest["splits"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"{path}: damaged token store ({e.__class__.__name__}: "
                        f"{str(e)[:80]}); prepare it again") from None
    ids = path / "ids.bin"
    expected = total * dtype.itemsize
    if not ids.is_file() or ids.stat().st_size != expected:
        raise UserError(f"{ids}: expected {expected} bytes for {total} ids of {dtype.name}; "
                        f"prepare the store again")
    if len(vocab) != manifest.get("vocab_size"):
        raise UserError(f"{path}: vocab.json has {len(vocab)} tokens, the manifest says "
                        f"{manifest.get('vocab_size')}; prepare the store again")
    parts = [TokenSlice(ids, dtype, *splits[k]) for k in ("train", "valid", "test")]
    return StoreCorpus(vocab, *parts, manifest)


def load_store(path: str | Path, level: str, vocab: Vocab | None = None) -> StoreCorpus:
    """``open_store`` for training: the level must match, and a resumed run's vocabulary."""
    corpus = open_store(path)
    if corpus.vocab.level != level:
        raise UserError(f"{path}: a {corpus.vocab.level}-level token store; --level {level} "
                        f"does not apply (omit --level, or prepare a {level}-level store)")
    if vocab is not None and vocab.tokens != corpus.vocab.tokens:
        raise UserError(f"{path}: the store's vocabulary differs from the run's; resume with "
                        f"the store the run started with")
    return corpus
