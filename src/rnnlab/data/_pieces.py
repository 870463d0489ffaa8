"""The worker side of ``build_store``: cut files into pieces, tokenise and encode a piece.

A piece ends just after a newline (or, on a line longer than a block, after a space or a
tab): no token crosses it at either level and ``\\r\\n`` is never split, so tokenising the
pieces one by one gives the tokens of the whole text. These functions run in pool workers
and pass only paths, numbers and small tables; the ids go through files.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from ..errors import UserError
from .text import decode_utf8, tokenize

_BLOCK = 1 << 16


def list_sources(source) -> list[Path]:
    """The files ``read_text`` would read, in its order."""
    path = Path(source)
    if not path.exists():
        raise UserError(f"{path}: no such file or folder; give a UTF-8 text file or a "
                        f"folder of .txt files")
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.txt") if p.is_file())
        if not files:
            raise UserError(f"{path}: folder has no .txt files; put UTF-8 .txt files in it")
        return files
    return [path]


def find_pieces(files: list[Path], piece_bytes: int):
    """(file index, start, end) byte ranges, about piece_bytes each; every file has one."""
    for fi, path in enumerate(files):
        size = path.stat().st_size
        if size == 0:
            yield fi, 0, 0
            continue
        with open(path, "rb") as f:
            pos = 0
            while pos < size:
                cut = _next_cut(f, pos + max(1, piece_bytes), size)
                yield fi, pos, cut
                pos = cut


def _next_cut(f, at: int, size: int) -> int:
    while at < size:
        f.seek(at)
        block = f.read(_BLOCK)
        i = block.find(b"\n")
        if i < 0:
            i = min((j for j in (block.find(b" "), block.find(b"\t")) if j >= 0), default=-1)
        if i >= 0:
            return at + i + 1
        at += len(block)
    return size


def hash_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _local_ids(text: str, level: str) -> tuple[np.ndarray, list[str]]:
    """Ids numbered by first appearance in this piece, and the tokens in that order."""
    if level == "char":
        cps = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        uniq, first, inverse = np.unique(cps, return_index=True, return_inverse=True)
        order = np.argsort(first, kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        return rank[inverse].reshape(-1), [chr(c) for c in uniq[order]]
    tokens = tokenize(text, "word")
    index = {t: i for i, t in enumerate(dict.fromkeys(tokens))}
    ids = np.fromiter(map(index.__getitem__, tokens), dtype=np.int64, count=len(tokens))
    return ids, list(index)


def tokenize_piece(job) -> tuple[int, list[str], np.ndarray, bool]:
    """Tokenise one piece; its local ids go to a file, the local table comes back."""
    path, start, end, level, part, add_newline, in_folder = job
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read(end - start)
    text = decode_utf8(path, data, start)
    nonblank = bool(text.strip()) if in_folder else bool(data.strip())
    if add_newline:                      # the newline that joins a folder's files
        text += "\n"
    ids, tokens = _local_ids(text, level)
    dtype = np.uint16 if len(tokens) <= 1 << 16 else np.uint32
    ids.astype(dtype).tofile(part)
    Path(part + ".dtype").write_text(np.dtype(dtype).str)
    return len(ids), tokens, np.bincount(ids, minlength=len(tokens)), nonblank


def encode_piece(job) -> None:
    """Map one piece's local ids to final ids and write them at their place in ids.bin."""
    part, final_path, ids_path, dtype, offset, _ = job
    local = np.fromfile(part, dtype=np.dtype(Path(part + ".dtype").read_text()))
    table = np.load(part + ".map.npy")
    final = np.load(final_path, mmap_mode="r")
    ids = np.asarray(final[table], dtype=np.dtype(dtype))[local]
    fd = os.open(ids_path, os.O_WRONLY)
    try:
        os.pwrite(fd, ids.tobytes(), offset * np.dtype(dtype).itemsize)
    finally:
        os.close(fd)
