"""Training: exact resume after SIGKILL, clean Ctrl-C, run directories that refuse to be
overwritten and that report damage in one line."""
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rnnlab.checkpoint import flatten_state, unflatten_state
from rnnlab.cli import main
from rnnlab.models.lm import LMConfig
from rnnlab.rundir import RunDir
from rnnlab.train import TrainConfig, Trainer, evaluate

# a small word model on a small built-in corpus: a few milliseconds per step
TINY = ["--embedding", "16", "--hidden", "24", "--batch", "4", "--bptt", "12",
        "--corpus-tokens", "6000", "--eval-every", "0", "--threads", "1", "--quiet",
        "--dropout", "0.1"]


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "rnnlab", "train", *args]


def _losses(run: Path) -> list[tuple[int, float]]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [(r["step"], r["loss"]) for r in map(json.loads, lines) if "loss" in r]


def _wait_for_checkpoint(proc: subprocess.Popen, run: Path, step: int, timeout: float) -> int:
    end = time.time() + timeout
    while time.time() < end and proc.poll() is None:
        try:
            saved = json.loads((run / "last.json").read_text())["step"]
            if saved >= step:
                return saved
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.02)
    raise AssertionError(f"no checkpoint at step >= {step} (process status {proc.poll()})")


def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path):
    """Tolerance: the loss of every step after the resume equals the uninterrupted run's
    to 1e-6 (in practice bit for bit: model, AdamW moments, dropout RNG, carried state and
    data position all come back)."""
    steps = ["--max-steps", "200", "--save-every", "20"]
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    subprocess.run(_cli("--out", str(ref), *steps, *TINY), check=True, timeout=300)
    proc = subprocess.Popen(_cli("--out", str(killed), *steps, *TINY))
    try:
        saved = _wait_for_checkpoint(proc, killed, 60, timeout=200)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert saved < 200
    subprocess.run(_cli("--out", str(killed), "--resume", "--threads", "1", "--quiet"),
                   check=True, timeout=300)
    a, b = _losses(ref), _losses(killed)
    assert [s for s, _ in a] == [s for s, _ in b] == list(range(1, 201))
    assert max(abs(x - y) for (_, x), (_, y) in zip(a, b)) <= 1e-6
    va = json.loads((ref / "best.json").read_text())["valid_nats"]
    vb = json.loads((killed / "best.json").read_text())["valid_nats"]
    assert abs(va - vb) <= 1e-6


def test_ctrl_c_saves_and_exits_cleanly(tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen(_cli("--out", str(run), "--max-steps", "100000",
                                 "--save-every", "20", *TINY),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_checkpoint(proc, run, 20, timeout=200)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in err
    assert "--resume" in out
    last = json.loads((run / "last.json").read_text())["step"]
    assert _losses(run)[-1][0] == last                    # saved exactly where it stopped


def test_a_failed_run_does_not_touch_a_saved_one(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--max-steps", "3", *TINY]) == 0
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main(["train", "--out", str(run), "--max-steps", "3", *TINY]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert main(["train", str(tmp_path / "missing.txt"), "--out", str(run),
                 "--resume", "--max-steps", "9"]) == 2
    after = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert after == before


@pytest.mark.parametrize("damage, expected", [
    (lambda r: (r / "model.safetensors").write_bytes(b"\x10\x00garbage"), "corrupt"),
    (lambda r: (r / "config.json").write_text("{not json"), "corrupt config.json"),
    (lambda r: (r / "config.json").write_text(json.dumps(
        {**json.loads((r / "config.json").read_text()), "version": 99})), "version 99"),
    (lambda r: (r / "vocab.json").unlink(), "missing vocab.json"),
])
def test_damaged_run_directories_give_one_line_errors(tmp_path, capsys, damage, expected):
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--max-steps", "2", *TINY]) == 0
    damage(run)
    capsys.readouterr()
    assert main(["suggest", str(run), "She grew up"]) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and "\n" not in err and "Traceback" not in err
    assert main(["sample", str(tmp_path / "nowhere")]) == 2
    assert "no such run directory" in capsys.readouterr().err


def test_state_flattening_round_trips_nested_tuples():
    state = ((torch.ones(2, 3), torch.zeros(2, 3)), (torch.full((1, 2), 2.0),))
    tensors, structure = flatten_state(state)
    json.dumps(structure)
    back = unflatten_state(structure, tensors)
    assert all(torch.equal(a, b) for a, b in zip(
        [t for pair in state for t in pair], [t for pair in back for t in pair]))


def test_training_lowers_validation_loss(tmp_path):
    cfg = TrainConfig(level="word", model=LMConfig(embedding=16, hidden=32, layers=1),
                      batch=8, bptt=20,
                      lr=1e-2, max_steps=60, eval_every=0, save_every=0,
                      corpus_tokens=8000)
    tr = Trainer(cfg, tmp_path / "run", quiet=True)
    before = evaluate(tr.model, tr.corpus.valid)
    after = tr.run()["valid_nats"]
    assert after < before - 0.5
    assert RunDir(tmp_path / "run").config()["model"]["arch"] == "lstm"


def test_elapsed_time_counts_validation(tmp_path, monkeypatch):
    import rnnlab.train as train

    def slow_evaluate(*args, **kwargs):
        time.sleep(0.4)
        return 3.0
    monkeypatch.setattr(train, "evaluate", slow_evaluate)
    cfg = TrainConfig(level="word", model=LMConfig(embedding=8, hidden=8, layers=1), batch=4,
                      bptt=8, max_steps=2, eval_every=1, save_every=0, corpus_tokens=3000)
    result = Trainer(cfg, tmp_path / "run", quiet=True).run()
    assert result["elapsed"] >= 0.8 and result["session"] >= 0.8   # was 0.01 s: steps only
