"""Distributed training with real processes and gloo on 127.0.0.1: two ranks equal one
process with the same global batch (float64, 1e-9); a run resumes with another process
count; a killed rank makes the other exit quickly with one line, and --resume continues
exactly as an uninterrupted run (started by torchrun) did."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file

from rnnlab import available
from rnnlab.distributed import Distributed, state_batch_dims
from rnnlab.models.lm import LanguageModel, LMConfig
from rnnlab.train import TrainConfig, Trainer

CFG = dict(level="word", model=LMConfig(embedding=8, hidden=12, layers=2, dropout=0.0),
           batch=4, bptt=10,
           lr=1e-2,
           warmup=3, corpus_tokens=3000, eval_every=4, eval_batch=3, save_every=3)


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank, world, port, jobs):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=timedelta(seconds=60))
    try:
        for out, steps, resume in jobs:
            cfg = TrainConfig(**CFG, max_steps=steps)
            Trainer(cfg, out, resume=resume, quiet=True, dist=Distributed.from_env()).run()
    finally:
        dist.barrier()          # as Distributed.close: no rank tears down while another is
        dist.destroy_process_group()  # in its last collective (SIGABRT at exit otherwise)


def _two_ranks(*jobs):
    """Runs (out, max_steps, resume) one after the other in two gloo processes."""
    mp.spawn(_rank, args=(2, _port(), [(str(o), n, r) for o, n, r in jobs]), nprocs=2)


def _one(out, steps, resume=False):
    Trainer(TrainConfig(**CFG, max_steps=steps), out, resume=resume, quiet=True).run()


def _records(run):
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(x).items() if k != "time"} for x in lines]


def _weights(run):
    last = json.loads((run / "last.json").read_text())["dir"]
    return load_file(run / last / "model.safetensors")


def _assert_same_run(a, b, tol):
    """b's records equal a's (b may have one more validation: where its first part ended)."""
    ra = _records(a)
    keys = {(r["step"], "loss" in r) for r in ra}
    rb = [r for r in _records(b) if (r["step"], "loss" in r) in keys]
    assert [sorted(r) for r in ra] == [sorted(r) for r in rb]
    for x, y in zip(ra, rb):
        for k in x:
            assert x[k] == pytest.approx(y[k], abs=tol, rel=0), (x, y)
    wa, wb = _weights(a), _weights(b)
    assert max((wa[k] - wb[k]).abs().max().item() for k in wa) <= tol


@pytest.fixture
def float64():
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)


def test_two_ranks_equal_one_process_and_resume_with_either_count(tmp_path, float64):
    """Tolerance 1e-9 in float64 on every logged loss, every validation (3 streams split
    2 + 1 over the ranks) and the final weights; the only difference is the order in
    which DDP and the loss reduction add equal shares."""
    ref, a, b = tmp_path / "ref", tmp_path / "two-then-one", tmp_path / "one-then-two"
    _one(ref, 12)
    assert len([r for r in _records(ref) if "loss" in r]) == 12
    _one(b, 6)                                 # b started with 1 ...
    _two_ranks((a, 6, False),                  # a started with 2
               (b, 12, True))                  # ... b resumed with 2
    _one(a, 12, resume=True)                   # ... a resumed with 1
    _assert_same_run(ref, a, 1e-9)
    _assert_same_run(ref, b, 1e-9)


@pytest.mark.parametrize("arch", available())
def test_state_batch_dims_split_every_architecture(arch):
    model = LanguageModel(10, arch, 8, 12, 2)
    dims = state_batch_dims(model)
    _, state = model(torch.zeros(3, 4, dtype=torch.long))
    from rnnlab.checkpoint import flatten_state
    tensors = list(flatten_state(state)[0].values())
    assert len(dims) == len(tensors) and all(t.shape[d] == 4 for t, d in zip(tensors, dims))
    halves = [Distributed(r, 2).split_state(state, dims) for r in (0, 1)]
    for i, (t, d) in enumerate(zip(tensors, dims)):
        parts = [list(flatten_state(h)[0].values())[i] for h in halves]
        assert torch.equal(torch.cat(parts, dim=d), t)


TINY = ["--embedding", "16", "--hidden", "24", "--batch", "4", "--bptt", "12",
        "--corpus-tokens", "6000", "--eval-every", "0", "--threads", "1", "--quiet",
        "--dropout", "0.1", "--max-steps", "120", "--save-every", "10"]


def _cli(*args):
    return [sys.executable, "-m", "rnnlab", "train", *args]


def _ranks(args, port, **kw):
    procs = []
    for r in (0, 1):
        env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
               "RANK": str(r), "LOCAL_RANK": str(r), "WORLD_SIZE": "2"}
        procs.append(subprocess.Popen(_cli(*args), env=env, **kw))
    return procs


def test_a_killed_rank_stops_the_job_quickly_and_resume_matches(tmp_path):
    """The survivor exits within 30 s (the process group timeout is 60 s) with exit code 3
    and one line; the resumed job's losses equal the uninterrupted job's to 1e-6 (dropout
    0.1: every rank's random state is in the checkpoint)."""
    ref, run = tmp_path / "ref", tmp_path / "run"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc-per-node", "2", "-m", "rnnlab", "train"]
    r0, r1 = _ranks(["--out", str(run), "--dist-timeout", "60", *TINY], _port(),
                    stderr=subprocess.PIPE, text=True)
    try:
        end = time.time() + 200
        while time.time() < end and r1.poll() is None:
            try:
                if json.loads((run / "last.json").read_text())["step"] >= 20:
                    break
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.02)
        r1.send_signal(signal.SIGKILL)
        t0 = time.time()
        err = r0.communicate(timeout=30)[1]
        took = time.time() - t0
    finally:
        for p in (r0, r1):
            p.kill()
            p.wait()
    assert r1.returncode == -signal.SIGKILL, "rank 1 ended before it could be killed"
    assert r0.returncode == 3 and took < 30
    assert "lost contact with another process" in err and "--resume" in err
    assert "Traceback" not in err and err.strip().count("\n") == 0
    saved = json.loads((run / "last.json").read_text())["step"]
    assert 20 <= saved < 120
    for p in _ranks(["--out", str(run), "--resume", "--quiet", "--threads", "1"], _port()):
        assert p.wait(timeout=300) == 0
    # the uninterrupted reference runs after the killed job, not beside it: two jobs at once
    # could pick the same free port for their rendezvous
    reference = subprocess.run([*torchrun, "--out", str(ref), *TINY], timeout=300,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert reference.returncode == 0, reference.stderr[-2000:]
    a, b = _records(ref), _records(run)
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for x, y in zip(a, b):
        assert all(abs(x[k] - y[k]) <= 1e-6 for k in x if k != "lr"), (x, y)
