"""Interpolated Kneser-Ney: probabilities equal counts worked out by hand on a toy corpus,
every distribution sums to one, the one-word path equals the vector path; an n-gram run
survives suggest, sample, eval and a damaged file (one-line error, exit 2)."""
import json

import numpy as np
import pytest
import torch

from rnnlab.checkpoint import load_tensors, read_json, save_tensors, write_json
from rnnlab.cli import main
from rnnlab.ngram import KneserNey, discount

# ids: 0 <unk>, 1 a, 2 b, 3 c.   text: a b a b a b c
TOY = [1, 2, 1, 2, 1, 2, 3]


def test_unigram_and_bigram_by_hand():
    lm = KneserNey.fit(TOY, 4, order=2, discounts=[0.5, 0.5])
    # continuation counts N1+(. w): a after {start, b} = 2, b after {a} = 1, c after {b} = 1
    # P1(w) = max(N - 0.5, 0) / 4 + 0.5 * 3 / 4 * 1/4
    assert lm.probs([]) == pytest.approx([0.09375, 0.46875, 0.21875, 0.21875])
    # bigram raw counts: a b x3, b a x2, b c x1
    # P(w | a) = max(c - .5, 0) / 3 + .5 * 1 / 3 * P1(w)
    u = np.array([0.09375, 0.46875, 0.21875, 0.21875])
    want_a = u * 0.5 / 3
    want_a[2] += 2.5 / 3
    assert lm.probs([1]) == pytest.approx(want_a)
    # P(w | b) = max(c - .5, 0) / 3 + .5 * 2 / 3 * P1(w)
    want_b = u * 1 / 3
    want_b[1] += 1.5 / 3
    want_b[3] += 0.5 / 3
    assert lm.probs([2]) == pytest.approx(want_b)
    assert lm.probs([3]) == pytest.approx(u)                 # c never seen as a context


def test_trigram_uses_continuation_counts_below_the_top_order():
    lm = KneserNey.fit(TOY, 4, order=3, discounts=[0.5, 0.5, 0.5])
    u = np.array([0.09375, 0.46875, 0.21875, 0.21875])
    # middle order, continuation counts N1+(. x w): (a b) after {start, b} = 2,
    # (b a) after {a} = 1, (b c) after {a} = 1 (raw counts would be 3, 2, 1)
    p2_b = u * 0.5 * 2 / 2
    p2_b[1] += 0.5 / 2
    p2_b[3] += 0.5 / 2
    p2_a = u * 0.5 * 1 / 2
    p2_a[2] += 1.5 / 2
    assert lm.probs([3, 2]) == pytest.approx(p2_b)           # (c b) unseen: order 2
    assert lm.probs([3, 1]) == pytest.approx(p2_a)
    # top order, raw counts: (a b) -> a x2, c x1; (b a) -> b x2
    want = p2_b * 0.5 * 2 / 3
    want[1] += 1.5 / 3
    want[3] += 0.5 / 3
    assert lm.probs([1, 2]) == pytest.approx(want)
    assert want == pytest.approx([0.015625, 0.66145833, 0.03645833, 0.28645833])
    want = p2_a * 0.5 * 1 / 2
    want[2] += 1.5 / 2
    assert lm.probs([2, 1]) == pytest.approx(want)


def test_distributions_sum_to_one_and_one_word_matches_the_vector():
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 12, 3000) // rng.integers(1, 4, 3000)   # skewed, some zeros
    lm = KneserNey.fit(ids, 12, order=4)
    assert all(0.05 <= d <= 0.95 for d in lm.discounts)
    for t in range(50):
        hist = [int(i) for i in rng.integers(0, 12, int(rng.integers(0, 5)))]
        p = lm.probs(hist)
        assert p.sum() == pytest.approx(1.0, abs=1e-12) and p.min() > 0
        for w in (0, 3, 11):
            assert lm.prob(hist, w) == pytest.approx(p[w], rel=1e-12)
    hist = list(ids[100:103])
    assert lm.probs(hist)[ids[103]] > lm.probs([])[ids[103]]  # context helps on its text


def test_discount_from_count_of_counts():
    assert discount(np.array([1, 1, 1, 2, 5])) == pytest.approx(3 / 5)
    assert discount(np.array([1] * 10)) == 0.95               # clipped
    assert discount(np.array([7, 9])) == 0.5                  # no n1, n2


TEXT = ("the cat sat on the mat . the dog sat on the log .\n"
        "a cat and a dog sat on a mat .\n") * 20


@pytest.fixture(scope="module")
def ngram_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("ngram")
    (root / "t.txt").write_text(TEXT)
    assert main(["train", str(root / "t.txt"), "--arch", "ngram", "--order", "3",
                 "--level", "word", "--out", str(root / "run")]) == 0
    return root


def test_ngram_run_is_a_run(ngram_run, capsys):
    run, text = ngram_run / "run", ngram_run / "t.txt"
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["model"]["arch"] == "ngram" and cfg["model"]["order"] == 3
    assert not list(run.rglob("*.pkl")) and not list(run.rglob("*.pt"))
    capsys.readouterr()
    assert main(["suggest", str(run), "the cat sat on the", "-k", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split("\t")[0] for ln in lines] == ["mat", "log"]
    assert main(["sample", str(run), "--prime", "the", "--length", "6", "--seed", "3"]) == 0
    assert capsys.readouterr().out.startswith("the ")
    assert main(["eval", str(run), str(text), "--json", "--quiet"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["arch"] == "ngram" and out["top3"] > 0.5 and out["params"] > 0


def _damage(run, how):
    """Break the run; all but "truncated" keep valid checksums (a writer's bug, not a torn
    file), so the n-gram's own checks must catch them."""
    path = run / "model.safetensors"
    t = load_tensors(path)
    if how == "truncated":
        path.write_bytes(path.read_bytes()[:100])
    elif how == "unsorted":
        t["order2.context"] = t["order2.context"].flip(0).contiguous()
    elif how == "missing-table":
        del t["order3.count"]
    elif how == "float":
        t["order1.count"] = t["order1.count"].to(torch.float32)
    elif how == "discounts":
        cfg = read_json(run / "config.json", "config", checked=True)
        cfg["model"]["discounts"] = [0.5]
        write_json(run / "config.json", {k: v for k, v in cfg.items() if k != "sha256"},
                   checked=True)
    if how not in ("truncated", "discounts"):
        save_tensors(path, t)


@pytest.mark.parametrize("how", ["truncated", "unsorted", "missing-table", "float",
                                 "discounts"])
def test_damaged_ngram_run_is_a_one_line_error(ngram_run, tmp_path, capsys, how):
    run = tmp_path / "run"
    import shutil
    shutil.copytree(ngram_run / "run", run)
    _damage(run, how)
    capsys.readouterr()
    for argv in (["suggest", str(run), "the"], ["eval", str(run), str(ngram_run / "t.txt")],
                 ["sample", str(run), "--length", "3"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and str(run) in err, err
        assert "damaged" in err or "corrupt" in err, err


def test_ngram_option_errors(ngram_run, capsys):
    text = str(ngram_run / "t.txt")
    assert main(["train", text, "--arch", "ngram", "--out", str(ngram_run / "run")]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert main(["train", text, "--arch", "ngram", "--out", str(ngram_run / "run"),
                 "--resume"]) == 2
    assert "resume" in capsys.readouterr().err
    assert main(["train", text, "--arch", "lstm", "--order", "3", "--max-steps", "1",
                 "--out", str(ngram_run / "x")]) == 2
    assert "--order" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", text, "--arch", "ngram", "--order", "0", "--level", "word",
              "--out", str(ngram_run / "y")])
    assert "--order" in capsys.readouterr().err
