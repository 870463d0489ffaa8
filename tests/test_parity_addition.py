"""The parity and addition experiments: their fast presets write the JSON the results pages
read (largest_solved; exact match per D), sweeps summarise seeds honestly, the curriculum
keeps the parity, and an experiment given a checkpoint folder picks up where it was."""
import json

import torch

from rnnlab.experiments import run_experiment
from rnnlab.experiments.parity import Config, largest, vectors


def test_parity_fast_preset_writes_largest_solved(tmp_path):
    result = run_experiment("parity", "fast", tmp_path)
    saved = json.loads((tmp_path / "parity.json").read_text())
    assert saved["largest_solved"] == result["largest_solved"]
    for m in ("grid", "relu", "tanh"):
        solved = [r["bits"] for r in saved["records"] if r["model"] == m and r["solved"]]
        assert saved["largest_solved"][m] == max(solved, default=0)
        for r in saved["records"]:
            assert r["solved"] == (r["test_accuracy"] >= 0.99)
    assert saved["largest_solved"]["grid"] >= 3          # 3-bit parity is learnt in seconds
    assert (tmp_path / "parity.png").stat().st_size > 1000


def test_addition_fast_preset_writes_exact_match_per_digits(tmp_path):
    run_experiment("addition", "fast", tmp_path)
    saved = json.loads((tmp_path / "addition.json").read_text())
    assert sorted(saved["exact_match"]) == ["1", "2"]
    for r in saved["records"]:
        assert saved["exact_match"][str(r["digits"])][r["model"]] == r["exact_match"]
        assert r["exact_by_digits"] == {str(r["digits"]): r["exact_match"]}
        assert 0 <= r["exact_match"] <= r["digit_accuracy"] <= 1
        assert r["curve"][-1][0] <= r["samples"]
    assert "Exact match by digits" in (tmp_path / "addition.md").read_text()


def test_largest_is_the_best_depths_median_over_seeds():
    cfg = Config(models=("grid",), depth=(2, 4), seed=(0, 1, 2))
    solved = {(2, 0): 8, (2, 1): 16, (2, 2): 4, (4, 0): 32, (4, 1): 4, (4, 2): 4}
    records = [{"model": "grid", "depth": d, "seed": s, "bits": k, "solved": True}
               for (d, s), k in solved.items()]
    best, by_depth = largest(records, cfg)
    assert by_depth["grid"] == {2: [8, 16, 4], 4: [32, 4, 4]}
    assert best == {"grid": 8}                 # not 32, the one lucky seed


def test_curriculum_vectors_keep_the_parity():
    gen = torch.Generator().manual_seed(0)
    x, y = vectors(200, 10, gen, "cpu", live=3)
    assert (x[:, 3:] == -1).all()
    assert torch.equal(((x[:, :3] > 0).sum(1) % 2), y)


def test_a_stopped_experiment_resumes_from_its_checkpoints(tmp_path):
    kw = dict(bits=(3,), models=("grid",), max_samples=2_560, check_every=640,
              checkpoint=str(tmp_path / "ck"), target=1.01)     # never stops early
    first = run_experiment("parity", "fast", tmp_path / "a", **kw)
    assert (tmp_path / "ck" / "grid-d3-s0-k3" / "last.json").exists()
    again = run_experiment("parity", "fast", tmp_path / "b", **kw)   # finished: read back
    strip = ("seconds",)
    for r1, r2 in zip(first["records"], again["records"]):
        assert {k: v for k, v in r1.items() if k not in strip} == \
               {k: v for k, v in r2.items() if k not in strip}
    fresh = run_experiment("parity", "fast", tmp_path / "c", **{**kw, "checkpoint": ""})
    assert fresh["records"][0]["test_accuracy"] == first["records"][0]["test_accuracy"]


def test_addition_curriculum_tests_every_digit_count(tmp_path):
    r = run_experiment("addition", "fast", tmp_path, digits=3, models=("lstm",),
                       curriculum=True, max_samples=2_048, check_every=512, test_size=200)
    rec = r["records"][0]
    assert sorted(rec["exact_by_digits"]) == ["1", "2", "3"]
    assert rec["exact_by_digits"]["3"] == rec["exact_match"]
    assert r["exact_by_digits"]["3"]["lstm"] == rec["exact_by_digits"]
    assert [c[3] for c in rec["curve"]] == sorted(c[3] for c in rec["curve"])   # level rises
