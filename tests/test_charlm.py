"""The charlm experiment's fast preset: equal budgets, learning curves, any text file."""
import json
from pathlib import Path

import pytest

from rnnlab.errors import UserError
from rnnlab.experiments import run_experiment

SHAKESPEARE = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "tinyshakespeare.txt"


def test_fast_preset(tmp_path):
    res = run_experiment("charlm", "fast", tmp_path)
    for ext in ("json", "md", "png"):
        assert (tmp_path / f"charlm.{ext}").stat().st_size > 0
    saved = json.loads((tmp_path / "charlm.json").read_text())
    assert set(saved["results"]) == {"rnn", "lstm", "gru"}
    budget = res["config"]["budget"]
    for arch, r in saved["results"].items():
        assert 0.85 * budget <= r["params_core_and_output"] <= budget, arch
        assert r["steps"] <= 15 and 0 < r["valid_bpc"] < 8
        steps = [p["step"] for p in r["curve"]]
        assert steps == sorted(steps) and steps[-1] == r["steps"] and len(steps) >= 2
        assert r["curve"][-1]["valid_bpc"] == pytest.approx(r["valid_bpc"])


def test_text_file(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("the cat sat on the mat. " * 300, encoding="utf-8")
    res = run_experiment("charlm", "fast", tmp_path / "out", text=str(text), archs="lstm")
    assert res["vocab_size"] == len(set("the cat sat on the mat. ")) + 1      # + <unk>
    assert res["text"] == str(text)


@pytest.mark.skipif(not SHAKESPEARE.is_file(), reason="shared/data/tinyshakespeare.txt absent")
def test_tiny_shakespeare(tmp_path):
    res = run_experiment("charlm", "fast", tmp_path, text=str(SHAKESPEARE), archs="gru",
                         max_steps=3)
    assert res["vocab_size"] == 66 and res["chars"]["train"] > 900_000


def test_missing_text(tmp_path):
    with pytest.raises(UserError):
        run_experiment("charlm", "fast", tmp_path, text=str(tmp_path / "nope.txt"))


def test_record_fast_preset_scores_the_best_model_on_nanogpts_split(tmp_path):
    """The scores are the best model's (not the last one's): valid equals best.json's, and
    nanoGPT's split (the last 10%) is the token-weighted mean of valid and test."""
    res = run_experiment("charlm-record", "fast", tmp_path)
    for ext in ("json", "md", "png"):
        assert (tmp_path / f"charlm-record.{ext}").stat().st_size > 0
    best = json.loads((tmp_path / "run" / "best.json").read_text())
    s, n = res["scores"], res["chars"]
    assert s["valid"]["valid_nats"] == pytest.approx(best["valid_nats"], abs=1e-9)
    assert res["best_step"] == best["step"] and res["dropout"] > 0
    mixed = (s["valid"]["valid_nats"] * (n["valid"] - 1) + s["test"]["test_nats"]
             * (n["test"] - 1)) / (n["valid"] + n["test"] - 2)
    assert s["nanogpt_val"]["nanogpt_val_nats"] == pytest.approx(mixed, abs=0.05)


def test_record_needs_a_text(tmp_path):
    with pytest.raises(UserError, match="text=PATH"):
        run_experiment("charlm-record", "record", tmp_path)
