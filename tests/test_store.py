"""The token store: `prepare` gives exactly what tokenising the whole text gives (pieces,
workers and folders notwithstanding), training on it equals training on the text, and
windows read in place equal the in-memory batches."""
import hashlib
import json

import numpy as np
import pytest
import torch

from rnnlab.cli import main
from rnnlab.data.corpus import CorpusConfig, generate
from rnnlab.data.store import build_store, id_dtype, open_store
from rnnlab.data.streams import Streams
from rnnlab.data.text import batchify, prepare, read_text


def _folder(tmp_path):
    """Three files: BOM, CRLF, non-ASCII, a long line without newlines, an empty file."""
    root = tmp_path / "corpus"
    (root / "sub").mkdir(parents=True)
    long_line = " ".join(f"w{i % 37}" for i in range(400))
    (root / "a.txt").write_bytes("\ufeffÉté, l'été -- naïve café!\r\n".encode() * 8
                                 + long_line.encode() + "\r\n🙂 done.\r\n".encode())
    (root / "b.txt").write_bytes(b"")
    (root / "sub" / "c.txt").write_text("The end? Yes: the end\n" * 20, encoding="utf-8")
    return root


@pytest.mark.parametrize("level, vocab_size", [("char", None), ("word", None), ("word", 20)])
def test_store_equals_tokenising_the_whole_text(tmp_path, level, vocab_size):
    src = _folder(tmp_path)
    build_store(src, tmp_path / "data", level, vocab_size, workers=2, piece_bytes=40)
    store = open_store(tmp_path / "data")
    text = read_text(src)
    want = prepare(text, level, max_size=vocab_size)
    assert store.vocab.tokens == want.vocab.tokens
    for split in ("train", "valid", "test"):
        assert getattr(store, split)[:].tolist() == getattr(want, split), split
    if level == "char" and vocab_size is None:         # every character occurs in train
        ids = np.concatenate([store.train[:], store.valid[:], store.test[:]])
        assert "".join(store.vocab.decode(ids)) == text


def test_manifest_records_sources_counts_and_the_smallest_dtype(tmp_path):
    src = _folder(tmp_path)
    m = build_store(src, tmp_path / "data", "char", workers=1)
    assert m["dtype"] == "uint8" and id_dtype(256) == np.uint8 and id_dtype(257) == np.uint16
    assert (tmp_path / "data" / "ids.bin").stat().st_size == m["tokens"]
    assert [s["name"] for s in m["sources"]] == ["a.txt", "b.txt", "sub/c.txt"]
    digest = hashlib.sha256((src / "a.txt").read_bytes()).hexdigest()
    assert m["sources"][0]["sha256"] == digest
    s = m["splits"]
    assert s["train"][0] == 0 and s["train"][1] == s["valid"][0]
    assert s["valid"][1] == s["test"][0] and s["test"][1] == m["tokens"]


def test_streams_read_the_same_windows_as_batchify():
    ids = list(np.random.default_rng(0).integers(0, 50, 1003))
    full = batchify(ids, 6)
    for lo, hi in [(0, 6), (2, 4), (3, 3)]:
        s = Streams(np.asarray(ids, dtype=np.uint16), 6, lo, hi)
        assert s.shape == (full.shape[0], hi - lo)
        for a, b in [(0, 10), (160, 200), (165, 168)]:
            assert torch.equal(s[a:b], full[a:b, lo:hi])


def test_train_on_a_store_equals_train_on_the_text(tmp_path, capsys):
    text = tmp_path / "words.txt"
    text.write_text(generate(CorpusConfig(train_tokens=4000)).text, encoding="utf-8")
    assert main(["prepare", str(text), "--out", str(tmp_path / "data"), "--workers", "2"]) == 0
    assert "word tokens" in capsys.readouterr().out
    common = ["--max-steps", "6", "--embedding", "8", "--hidden", "12", "--batch", "4",
              "--bptt", "10", "--eval-every", "3", "--threads", "1", "--quiet"]
    assert main(["train", str(text), "--level", "word", "--out", str(tmp_path / "a"),
                 *common]) == 0
    assert main(["train", str(tmp_path / "data"), "--out", str(tmp_path / "b"), *common]) == 0
    a, b = ((tmp_path / r / "metrics.jsonl").read_text().splitlines() for r in "ab")
    assert len(a) == 8 and [json.loads(x) | {"time": 0} for x in a] == \
        [json.loads(x) | {"time": 0} for x in b]


def test_prepare_refuses_bad_input_in_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine text\n" * 30 + b"caf\xe9\n")
    assert main(["prepare", str(bad), "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert "byte offset 303" in err and err.count("\n") == 1
    assert not (tmp_path / "d").exists() and not list(tmp_path.glob(".d.*"))
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "mine").write_text("keep")
    good = tmp_path / "good.txt"
    good.write_text("some words here\n" * 50)
    assert main(["prepare", str(good), "--out", str(tmp_path / "d")]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (tmp_path / "d" / "mine").read_text() == "keep"
    assert main(["prepare", str(good), "--out", str(tmp_path / "w"), "--level", "word"]) == 0
    capsys.readouterr()
    assert main(["train", str(tmp_path / "w"), "--level", "char", "--max-steps", "1"]) == 2
    assert "word-level token store" in capsys.readouterr().err
