"""Text data: tokenisation round-trips, vocabulary, splits, streams, the built-in corpus,
and one-line errors for bad input files."""
import random

import pytest
import torch

from rnnlab.cli import main
from rnnlab.data.corpus import CorpusConfig, colour_story, filler, generate, language_story
from rnnlab.data.text import (
    UNK,
    Vocab,
    batchify,
    detokenize,
    prepare,
    read_text,
    split_ids,
    tokenize,
)
from rnnlab.errors import UserError

SAMPLE = "First Citizen:\nBefore we proceed, don't you hear me speak?\n\nAll: Speak, speak (now)!"


def test_char_round_trip_is_exact():
    text = SAMPLE + " \t ünïcode — ✓"
    assert detokenize(tokenize(text, "char"), "char") == text


def test_word_tokens_and_canonical_round_trip():
    toks = tokenize(SAMPLE, "word")
    assert toks[:4] == ["First", "Citizen", ":", "\n"]
    assert "don't" in toks and "(" in toks and toks[-1] == "!"
    canonical = detokenize(toks, "word")
    assert tokenize(canonical, "word") == toks
    assert detokenize(tokenize(canonical, "word"), "word") == canonical


def test_word_round_trip_on_random_token_lists():
    rng = random.Random(0)
    pool = ["a", "word", "don't", ".", ",", "(", ")", "'", "\n", "!", "x1", "é", "-", "["]
    for _ in range(200):
        toks = [rng.choice(pool) for _ in range(rng.randint(0, 12))]
        assert tokenize(detokenize(toks, "word"), "word") == toks, toks


def test_vocab_min_count_max_size_and_unknown():
    toks = list("aaaabbbccd")
    v = Vocab.build(toks, "char", min_count=2)
    assert v.tokens == [UNK, "a", "b", "c"]
    assert v.encode(list("abd")) == [1, 2, 0]
    assert v.unknown(list("adxd")) == ["d", "x"]
    assert Vocab.build(toks, "char", max_size=3).tokens == [UNK, "a", "b"]
    assert Vocab.from_json(v.to_json()).tokens == v.tokens


def test_splits_are_contiguous_disjoint_and_deterministic():
    ids = list(range(1000))
    train, valid, test = split_ids(ids)
    assert (len(train), len(valid), len(test)) == (900, 50, 50)
    assert train + valid + test == ids                        # contiguous, in order
    assert not set(train) & set(valid) and not set(valid) & set(test)
    assert split_ids(ids) == (train, valid, test)
    a, b = prepare(SAMPLE * 20, "char"), prepare(SAMPLE * 20, "char")
    assert (a.train, a.valid, a.test, a.vocab.tokens) == (b.train, b.valid, b.test,
                                                          b.vocab.tokens)


def test_batchify_makes_contiguous_streams():
    data = batchify(list(range(23)), 4)                       # 5 tokens per stream, 3 cut
    assert data.shape == (5, 4)
    assert data[:, 1].tolist() == [5, 6, 7, 8, 9]
    assert torch.equal(data[1:, 0], data[:-1, 0] + 1)


def test_corpus_gaps_are_exact_and_text_is_canonical():
    rng = random.Random(3)
    for gap in (5, 6, 17, 80):
        toks, cue, target = language_story(gap, rng)
        assert target - cue - 1 == gap
    for gap in (4, 7, 40):
        toks, cue, target = colour_story(gap, rng)
        assert target - cue - 1 == gap
    assert all(len(filler(n, rng)) == n for n in range(0, 40))
    c = generate(CorpusConfig(train_tokens=5000, probes_per_gap=3))
    assert tokenize(detokenize(tokenize(c.text, "word"), "word"), "word") == \
        tokenize(c.text, "word")
    assert generate(CorpusConfig(train_tokens=5000, probes_per_gap=3)).text == c.text
    lengths = {}
    for p in c.probes:                                        # same length per (kind, gap)
        lengths.setdefault((p.kind, p.gap), set()).add(len(tokenize(p.context, "word")))
    assert all(len(s) == 1 for s in lengths.values())
    assert {p.gap for p in c.probes if p.kind == "language"} == {5, 10, 20, 40, 80}


# -- bad input: one line on stderr, exit status 2 ----------------------------------------
def _cli_error(capsys, *argv) -> str:
    assert main(list(argv)) == 2
    err = capsys.readouterr().err.strip()
    assert err and "\n" not in err and "Traceback" not in err
    return err


@pytest.fixture
def bad_files(tmp_path):
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "binary.bin").write_bytes(b"GIF89a\x00\x01\x02" + bytes(range(256)))
    (tmp_path / "latin1.txt").write_bytes("abc héllo".encode("latin-1"))
    (tmp_path / "notext").mkdir()
    (tmp_path / "notext" / "image.png").write_bytes(b"\x89PNG")
    (tmp_path / "tiny.txt").write_text("a" * 400)
    return tmp_path


@pytest.mark.parametrize("name, expected", [
    ("missing.txt", "no such file"),
    ("empty.txt", "empty"),
    ("binary.bin", "binary"),
    ("latin1.txt", "byte offset 5"),
    ("notext", "no .txt files"),
    ("tiny.txt", "vocabulary too small"),
])
def test_bad_text_inputs_give_one_line_errors(bad_files, capsys, name, expected):
    err = _cli_error(capsys, "train", str(bad_files / name), "--out",
                     str(bad_files / "run"), "--max-steps", "1")
    assert expected in err and name in err
    assert not (bad_files / "run" / "model.safetensors").exists()


def test_read_text_reads_a_folder_of_txt_files_in_order(tmp_path):
    (tmp_path / "b.txt").write_text("second\r\n")
    (tmp_path / "a.txt").write_text("first")
    assert read_text(tmp_path) == "first\nsecond\n"
    with pytest.raises(UserError, match="level"):
        tokenize("x", "byte")


def test_word_tokens_keep_graphemes_whole():
    text = "cafe\u0301 and caf\u00e9 \U0001F1EB\U0001F1F7 \U0001F44D\U0001F3FD " \
           "\U0001F468\u200d\U0001F469\u200d\U0001F467 \u0928\u092e\u0938\u094d\u0924\u0947 ok"
    toks = tokenize(text, "word")
    assert toks == ["cafe\u0301", "and", "caf\u00e9", "\U0001F1EB\U0001F1F7",
                    "\U0001F44D\U0001F3FD", "\U0001F468\u200d\U0001F469\u200d\U0001F467",
                    "\u0928\u092e\u0938\u094d\u0924\u0947", "ok"]
    assert detokenize(toks, "word") == text            # was "cafe \u0301", "\U0001F1EB \U0001F1F7"
    assert tokenize(detokenize(toks, "word"), "word") == toks
