"""The dependency-gap experiment's fast preset: every file, equal budgets, seed statistics."""
import json
import statistics

from rnnlab.experiments import run_experiment
from rnnlab.experiments.dependency_gap import _summarise


def test_fast_preset(tmp_path):
    res = run_experiment("dependency-gap", "fast", tmp_path)
    for ext in ("json", "md", "png"):
        assert (tmp_path / f"dependency-gap.{ext}").stat().st_size > 0
    saved = json.loads((tmp_path / "dependency-gap.json").read_text())
    assert set(saved["results"]) == {"rnn", "lstm"}
    budget = res["config"]["budget"]
    for arch, r in saved["results"].items():
        assert 0.8 * budget <= r["params_core_and_output"] <= budget, arch
        assert [run["seed"] for run in r["runs"]] == [0, 1]
        acc = r["summary"]["language"]
        assert set(acc) == {"5", "40"} and set(r["summary"]["colour"]) == {"40"}
        for gap, s in acc.items():
            vals = [run["accuracy"]["language"][gap] for run in r["runs"]]
            assert s["min"] <= s["mean"] <= s["max"] and 0 <= s["mean"] <= 1
            assert abs(s["mean"] - statistics.fmean(vals)) < 1e-12
    assert "| rnn |" in (tmp_path / "dependency-gap.md").read_text()


def test_summary_spread():
    runs = [{"accuracy": {"language": {"10": a}}} for a in (0.2, 0.4, 0.9)]
    s = _summarise(runs)["language"]["10"]
    assert abs(s["mean"] - 0.5) < 1e-12 and s["min"] == 0.2 and s["max"] == 0.9
    assert abs(s["std"] - statistics.pstdev([0.2, 0.4, 0.9])) < 1e-12
