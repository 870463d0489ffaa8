"""Run directories you can trust: rnnlab writes only into folders it made, one writer at a
time, damage is detected on load, and every bad flag or file is one line with exit 2.
Each test first builds the situation the issue reported, then checks the fixed behaviour."""
import errno
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rnnlab.checkpoint import load_tensors, read_json, save_tensors, write_json
from rnnlab.cli import main
from rnnlab.data.corpus import CorpusConfig, make_probes
from rnnlab.errors import UserError
from rnnlab.experiments import next_word
from rnnlab.models.lm import LMConfig
from rnnlab.rundir import LOCK, MARKER, RunDir
from rnnlab.train import TrainConfig, Trainer

TINY = ["--embedding", "8", "--hidden", "12", "--batch", "4", "--bptt", "8",
        "--corpus-tokens", "3000", "--eval-every", "0", "--threads", "1", "--quiet"]


def cli(capsys, *argv: str) -> tuple[int, str]:
    """Exit status and stderr of one in-process command (argparse exits count too)."""
    capsys.readouterr()
    try:
        rc = main(list(argv))
    except SystemExit as e:
        rc = e.code
    return rc, capsys.readouterr().err


def one_line(err: str) -> str:
    assert "Traceback" not in err
    lines = [x for x in err.splitlines() if not x.startswith("note:")]
    assert len(lines) == 1, err
    return lines[0]


def snapshot(root: Path) -> dict:
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


@pytest.fixture
def run(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli(capsys, "train", "--out", str(out), "--max-steps", "4", "--save-every", "2",
               *TINY)[0] == 0
    return out


def _rewrite_json(path: Path, change) -> None:
    """Edit a run's JSON file and re-sign it, as a deliberate (crafted) edit would."""
    data = read_json(path, path.name, checked=True)
    write_json(path, change(data), checked=True)


# -- 1. a folder that is not a run is never touched ------------------------------------------
def test_a_foreign_folder_is_refused_and_left_byte_identical(tmp_path, capsys):
    mine = tmp_path / "mydata"
    (mine / "checkpoints" / "other_run").mkdir(parents=True)
    (mine / "checkpoints" / "other_run" / "epoch=9.ckpt").write_text("precious")
    (mine / "metrics.jsonl").write_text("my own log\n")
    (mine / "vocab.json").write_text("[1, 2]")
    before = snapshot(mine)
    rc, err = cli(capsys, "train", "--out", str(mine), "--max-steps", "5", *TINY)
    assert rc == 2 and "not an rnnlab run" in one_line(err)
    assert snapshot(mine) == before and sorted(p.name for p in mine.iterdir()) == [
        "checkpoints", "metrics.jsonl", "vocab.json"]            # no marker, no lock either
    rc, err = cli(capsys, "train", "--out", str(mine), "--resume", "--max-steps", "5")
    assert rc == 2 and snapshot(mine) == before


def test_an_empty_folder_becomes_a_run_and_checkpoints_only_delete_their_own(tmp_path,
                                                                               capsys):
    out = tmp_path / "empty"
    out.mkdir()
    assert cli(capsys, "train", "--out", str(out), "--max-steps", "6", "--save-every", "2",
               *TINY)[0] == 0
    assert (out / MARKER).is_file()
    (out / "checkpoints" / "notes").mkdir()
    (out / "checkpoints" / "notes" / "keep.txt").write_text("mine")
    (out / "readme.txt").write_text("mine too")
    assert cli(capsys, "train", "--out", str(out), "--resume", "--max-steps", "10",
               "--quiet")[0] == 0
    assert (out / "checkpoints" / "notes" / "keep.txt").read_text() == "mine"
    assert (out / "readme.txt").read_text() == "mine too"
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "notes", "step-000000010"]


def test_a_demo_starts_its_run_over_deleting_only_what_rnnlab_wrote(tmp_path):
    cfg = next_word.Config(corpus_tokens=5000, probes=1, hidden=16, embedding=8, batch=4,
                           bptt=20, steps=2)
    probes = make_probes(CorpusConfig(eval_gaps=(5,), probes_per_gap=1), seed=1)
    out = tmp_path / "rnn"
    next_word.train_one(cfg, "rnn", out, probes)
    (out / "notes.txt").write_text("mine")
    holder = RunDir(out)
    holder.claim(fresh=False)                           # a live writer
    before = snapshot(out)
    with pytest.raises(UserError, match=f"pid {os.getpid()}"):
        next_word.train_one(cfg, "rnn", out, probes)
    assert snapshot(out) == before
    holder.release()
    assert next_word.train_one(cfg, "rnn", out, probes)["steps"] == 2   # started over
    assert (out / "notes.txt").read_text() == "mine"


def test_a_checkpoints_folder_that_is_a_link_is_refused(run, tmp_path, capsys):
    elsewhere = tmp_path / "elsewhere"
    (run / "checkpoints").rename(elsewhere)
    (run / "checkpoints").symlink_to(elsewhere, target_is_directory=True)
    (elsewhere / "keep.txt").write_text("mine")
    before, outside = snapshot(run), snapshot(elsewhere)
    rc, err = cli(capsys, "train", "--out", str(run), "--resume", "--max-steps", "6")
    assert rc == 2 and "symbolic link" in one_line(err)
    (run / "last.json").unlink()                   # as if it had no checkpoint: taken over
    del before[Path("last.json")]
    rc, err = cli(capsys, "train", "--out", str(run), "--max-steps", "2", *TINY)
    assert rc == 2 and "symbolic link" in one_line(err)
    assert snapshot(run) == before and snapshot(elsewhere) == outside


def test_a_run_of_an_older_format_is_named_as_such_and_kept(run, capsys):
    (run / MARKER).unlink()                            # what a version-1 run looked like
    before = snapshot(run)
    rc, err = cli(capsys, "train", "--out", str(run), "--resume", "--max-steps", "9")
    assert rc == 2 and "older rnnlab" in one_line(err) and snapshot(run) == before


def test_out_at_an_existing_file_is_one_line(tmp_path, capsys):
    f = tmp_path / "file.txt"
    f.write_text("x")
    rc, err = cli(capsys, "train", "--out", str(f), "--max-steps", "2", *TINY)
    assert rc == 2 and "not a folder" in one_line(err) and f.read_text() == "x"


# -- 2. one writer --------------------------------------------------------------------------
def test_a_second_writer_is_refused_with_the_holders_pid(tmp_path, capsys):
    out = tmp_path / "run"
    steps = 150
    proc = subprocess.Popen([sys.executable, "-m", "rnnlab", "train", "--out", str(out),
                             "--max-steps", str(steps), "--save-every", "10", *TINY])
    try:
        end = time.time() + 120
        while not (out / "config.json").exists() and time.time() < end:
            time.sleep(0.02)
        assert proc.poll() is None, "the first run ended before the test could race it"
        for argv in (["--resume"], ["--max-steps", "3", *TINY]):
            rc, err = cli(capsys, "train", "--out", str(out), *argv)
            assert rc == 2 and f"pid {proc.pid}" in one_line(err)
    finally:
        assert proc.wait(timeout=300) == 0
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines if "loss" in r] == list(range(1, steps + 1))
    assert (out / LOCK).read_text().strip() == str(proc.pid)


def test_the_lock_goes_with_a_killed_process(tmp_path):
    out = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom rnnlab.rundir import RunDir\n"
         "run = RunDir(sys.argv[1])\nrun.claim(fresh=True)\nprint('held', flush=True)\n"
         "time.sleep(300)", str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(UserError, match=f"pid {holder.pid}"):
            RunDir(out).claim(fresh=False)
        holder.send_signal(signal.SIGKILL)
        assert holder.wait(timeout=60) == -signal.SIGKILL
    finally:
        holder.kill()
        holder.wait()
    mine = RunDir(out)
    assert mine.claim(fresh=True) is False             # the kernel dropped the lock
    assert (out / LOCK).read_text().strip() == str(os.getpid())
    mine.release()


def test_one_process_cannot_hold_a_run_twice(run, capsys):
    first = Trainer(TrainConfig(max_steps=6), run, resume=True, quiet=True)
    rc, err = cli(capsys, "train", "--out", str(run), "--resume", "--max-steps", "8")
    assert rc == 2 and f"pid {os.getpid()}" in one_line(err)
    first.run()
    assert cli(capsys, "train", "--out", str(run), "--resume", "--max-steps", "8",
               "--quiet")[0] == 0


# -- 3. a run that stopped before its first checkpoint --------------------------------------
def test_a_run_without_a_checkpoint_is_taken_over_not_stuck(tmp_path, capsys):
    out = tmp_path / "run"
    cfg = TrainConfig(level="word", model=LMConfig(embedding=8, hidden=12, layers=1),
                      batch=4, bptt=8, corpus_tokens=3000, max_steps=3)
    Trainer(cfg, out, quiet=True).close()          # as if killed before its first save
    assert (out / "config.json").exists() and not (out / "last.json").exists()
    rc, err = cli(capsys, "train", "--out", str(out), "--resume")
    assert rc == 2 and "without --resume" in one_line(err)
    rc, err = cli(capsys, "train", "--out", str(out), "--max-steps", "3", *TINY)
    assert rc == 0 and "stopped before its first checkpoint" in err
    assert json.loads((out / "last.json").read_text())["step"] == 3
    rc, err = cli(capsys, "train", "--out", str(out), "--max-steps", "3", *TINY)
    assert rc == 2 and "already holds a run" in one_line(err)   # a real run is kept


# -- 4. damage is detected; non-finite values are refused -----------------------------------
def test_a_flipped_byte_in_tensor_data_is_detected(run, capsys):
    path = run / "model.safetensors"
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0x01                                   # inside the last tensor's data
    path.write_bytes(bytes(raw))
    rc, err = cli(capsys, "suggest", str(run), "the")
    assert rc == 2 and "checksum" in one_line(err)


def test_a_reordered_vocabulary_is_detected(run, capsys):
    data = json.loads((run / "vocab.json").read_text())
    data["tokens"][1], data["tokens"][2] = data["tokens"][2], data["tokens"][1]
    (run / "vocab.json").write_text(json.dumps(data))
    rc, err = cli(capsys, "suggest", str(run), "the")
    assert rc == 2 and "checksum" in one_line(err)


@pytest.mark.parametrize("change, expected", [
    (lambda t: t.to(torch.int64), "torch.int64"),
    (lambda t: t.fill_(math.nan), "NaN"),
])
def test_wrong_dtype_or_nan_weights_are_refused(run, capsys, change, expected):
    path = run / "model.safetensors"
    weights = load_tensors(path)
    weights["decoder.bias"] = change(weights["decoder.bias"])
    save_tensors(path, weights)                       # a valid checksum: crafted, not torn
    rc, err = cli(capsys, "suggest", str(run), "the")
    assert rc == 2 and expected in one_line(err)


def test_a_diverging_run_stops_without_saving_a_non_finite_model(tmp_path, capsys):
    out = tmp_path / "run"
    rc, err = cli(capsys, "train", "--out", str(out), "--max-steps", "50", "--save-every",
                  "1", "--lr", "1e30", "--clip", "0", "--warmup", "0", *TINY)
    line = one_line(err)
    assert rc == 2 and "diverged at step" in line and "last finite checkpoint" in line
    weights = load_tensors(RunDir(out).last() / "model.safetensors")
    assert all(bool(torch.isfinite(t).all()) for t in weights.values())
    for text in (out / "metrics.jsonl").read_text().splitlines():
        json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in metrics.jsonl"))


# -- 5. metrics.jsonl: only a torn tail is cut ----------------------------------------------
def test_a_damaged_middle_line_is_an_error_not_a_cut(run, capsys):
    log = run / "metrics.jsonl"
    lines = log.read_text().splitlines()
    lines[1] = lines[1][:5]
    log.write_text("\n".join(lines) + "\n")
    before = log.read_bytes()
    rc, err = cli(capsys, "train", "--out", str(run), "--resume", "--max-steps", "6")
    assert rc == 2 and "line 2 of" in one_line(err) and log.read_bytes() == before


def test_a_torn_tail_is_cut_and_the_run_continues(run, capsys):
    log = run / "metrics.jsonl"
    log.write_text(log.read_text() + '{"step": 5, "lo')
    assert cli(capsys, "train", "--out", str(run), "--resume", "--max-steps", "6",
               "--quiet")[0] == 0
    steps = [json.loads(x)["step"] for x in log.read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 4, 5, 6, 6]          # losses, validation at 4, then 5-6


# -- 6. one line, exit 2, for every bad flag and file ---------------------------------------
@pytest.mark.parametrize("argv", [
    ["train", "--batch", "0"], ["train", "--bptt", "0"], ["train", "--hidden", "0"],
    ["train", "--hidden", "-4"], ["train", "--threads", "-1"], ["train", "--lr", "inf"],
    ["train", "--clip", "nan"], ["train", "--lr", "0"], ["train", "--dropout", "1.5"],
    ["train", "--seed", "1e20"], ["train", "--seed", "100000000000000000000"],
    ["train", "--max-time", "-1"], ["train", "--arch-option", "num_modules"],
    ["train", "--arch", "clockwork_rnn", "--arch-option", "bogus=1"],
    ["train", "--arch-option", "x=nan"],
    ["sample", "RUN", "--temperature", "inf"], ["sample", "RUN", "--temperature", "nan"],
    ["sample", "RUN", "--top-k", "-1"], ["sample", "RUN", "--seed", "1e20"],
    ["suggest", "RUN", "-k", "0", "text"], ["eval", "RUN", "TEXT", "--batch", "0"],
])
def test_bad_flags_are_one_line_errors(tmp_path, capsys, argv):
    out = tmp_path / "out"
    argv = [str(out) if a == "RUN" else a for a in argv]
    if argv[0] == "train":
        argv += ["--out", str(out), "--max-steps", "2", "--quiet"]
    rc, err = cli(capsys, *argv)
    assert rc == 2 and one_line(err).startswith("rnnlab")
    assert not out.exists()


@pytest.mark.parametrize("argv", [
    ["prepare", "TEXT", "--out", "RUN", "--vocab-size", "0"],
    ["prepare", "TEXT", "--out", "RUN", "--min-count", "-1"],
    ["prepare", "TEXT", "--out", "RUN", "--workers", "0"],
    ["serve", "RUN", "--port", "70000"], ["serve", "RUN", "--port", "-1"],
    ["serve", "RUN", "--max-text", "0"], ["serve", "RUN", "--max-sessions", "-1"],
    ["serve", "RUN", "--max-cache-mb", "nan"], ["serve", "RUN", "--max-cache-mb", "inf"],
    ["serve", "RUN", "--threads", "0"], ["serve", "RUN", "--max-connections", "0"],
    ["train", "--out", "RUN", "--max-steps", "1", *TINY, "--dist-timeout", "nan"],
    ["train", "--out", "RUN", "--max-steps", "1", *TINY, "--dist-timeout", "inf"],
    ["train", "--out", "RUN", "--max-steps", "1", *TINY, "--dist-timeout", "0"],
])
def test_every_numeric_flag_is_checked_as_it_is_parsed(tmp_path, capsys, argv):
    out = tmp_path / "out"
    argv = [str(out) if a == "RUN" else a for a in argv]
    with pytest.raises(SystemExit) as e:                  # argparse's error, before run()
        main(argv)
    assert e.value.code == 2
    assert f"argument {argv[-2]}: must be" in one_line(capsys.readouterr().err)
    assert not out.exists()


@pytest.mark.parametrize("damage, expected", [
    (lambda r: (r / "last.json").write_text("[1, 2]"), "last.json"),
    (lambda r: _rewrite_json(r / "last.json", lambda d: {**d, "step": str(d["step"])}),
     "not a checkpoint folder"),
    (lambda r: _rewrite_json(r / "config.json", lambda d: {
        k: v for k, v in d.items() if k != "train"}), "no 'train' settings"),
    (lambda r: _rewrite_json(r / "config.json", lambda d: {
        **d, "train": {**d["train"], "batch": "4"}}), "'batch' must be an integer"),
    (lambda r: _rewrite_json(r / "checkpoints/step-000000004/trainer.json",
                             lambda d: {**d, "pos": -3}), "trainer state is damaged"),
    (lambda r: (r / "config.json").write_text("[]"), "not an rnnlab run directory"),
])
def test_wrongly_typed_json_is_one_line(run, capsys, damage, expected):
    damage(run)
    rc, err = cli(capsys, "train", "--out", str(run), "--resume", "--max-steps", "6")
    assert rc == 2 and expected in one_line(err)


def _wrong_state_shape(folder: Path) -> None:
    tensors = load_tensors(folder / "trainer.safetensors")
    tensors["state.0"] = torch.zeros(*tensors["state.0"].shape[:-1], 13)    # hidden is 12
    save_tensors(folder / "trainer.safetensors", tensors)


@pytest.mark.parametrize("damage", [
    _wrong_state_shape,
    lambda f: _rewrite_json(f / "trainer.json", lambda d: {**d, "state": [d["state"]]}),
])
def test_a_carried_state_that_does_not_fit_the_model_is_one_line(run, capsys, damage):
    damage(run / "checkpoints/step-000000004")
    before = snapshot(run)
    rc, err = cli(capsys, "train", "--out", str(run), "--resume", "--max-steps", "6")
    assert rc == 2 and "carried state does not fit the model" in one_line(err)
    assert snapshot(run) == before


@pytest.mark.parametrize("change", [{"layers": 1_000_000}, {"hidden": 1e9},
                                    {"hidden": 10**9}, {"embedding": 10**8}])
def test_crafted_sizes_fail_before_anything_is_built(run, capsys, change):
    _rewrite_json(run / "config.json", lambda d: {**d, "model": {**d["model"], **change}})
    t0 = time.perf_counter()
    rc, err = cli(capsys, "suggest", str(run), "the")
    line = one_line(err)
    assert rc == 2 and ("damaged" in line or "must be an integer" in line)
    assert time.perf_counter() - t0 < 5


def test_a_full_disk_is_one_line_and_leaves_no_temp_file(run, capsys, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr("rnnlab.checkpoint.os.fsync", full)
    rc, err = cli(capsys, "train", "--out", str(run), "--resume", "--max-steps", "6")
    assert rc == 2 and "No space left on device" in one_line(err)
    assert not [p for p in run.rglob(".tmp-*")]


# -- 7. --resume with changed settings ------------------------------------------------------
def test_resume_refuses_model_changes_and_applies_schedule_changes(run, capsys):
    for argv in (["--arch", "gru"], ["--hidden", "512"], ["--batch", "8"],
                 ["--arch-option", "peephole=true"]):
        rc, err = cli(capsys, "train", "--out", str(run), "--resume", *argv)
        assert rc == 2 and "resumed run keeps its" in one_line(err)
    rc, err = cli(capsys, "train", "--out", str(run), "--resume", "--lr", "0.1",
                  "--warmup", "0", "--max-steps", "6", "--quiet")
    assert rc == 0 and "lr 0.002 -> 0.1" in err and "warmup 50 -> 0" in err
    assert RunDir(run).config()["train"]["lr"] == 0.1
    lrs = [json.loads(x).get("lr") for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert lrs[-2] == pytest.approx(0.1)


def test_resume_of_a_finished_run_is_refused_without_writing(run, capsys):
    before = snapshot(run)
    rc, err = cli(capsys, "train", "--out", str(run), "--resume", "--max-steps", "4")
    assert rc == 2 and "already reached its budget" in one_line(err)
    elapsed = read_json(run / "checkpoints/step-000000004/trainer.json", "t")["elapsed"]
    rc, err = cli(capsys, "train", "--out", str(run), "--resume", "--max-time",
                  str(elapsed / 2))
    assert rc == 2 and snapshot(run) == before


# -- 8. last.json stays inside the run ------------------------------------------------------
@pytest.mark.parametrize("name", ["../elsewhere", "/tmp", "checkpoints/../../x",
                                  "checkpoints/step-000000004/.."])
def test_last_json_cannot_point_outside_the_run(run, capsys, name):
    _rewrite_json(run / "last.json", lambda d: {**d, "dir": name})
    (run / "model.safetensors").unlink()              # make suggest follow last.json
    rc, err = cli(capsys, "suggest", str(run), "the")
    assert rc == 2 and "not a checkpoint folder" in one_line(err)


# -- 10. temp files of killed writes are removed ---------------------------------------------
def test_dead_temp_files_are_removed_on_the_next_write(run, capsys):
    (run / ".tmp-config.json.x1").write_bytes(b"\0" * 1000)
    (run / "checkpoints" / ".tmp-step-000000006.x2").mkdir()
    (run / "checkpoints" / ".tmp-step-000000006.x2" / "model.safetensors").write_bytes(b"x")
    assert cli(capsys, "train", "--out", str(run), "--resume", "--max-steps", "6",
               "--quiet")[0] == 0
    assert not [p for p in run.rglob(".tmp-*")]
