"""Scale benchmark: token-store throughput and memory, training memory against corpus size,
and 2 ranks x 1 thread against 1 process x 2 threads.

    python benchmarks/scale.py corpus --text ../shared/data/tinyshakespeare.txt --out DIR --mb 2100
    python benchmarks/scale.py prepare --text DIR --level word --out RESULTS.json
    python benchmarks/scale.py train-rss --store STORE [--store STORE2] --out RESULTS.json
    python benchmarks/scale.py speed --text ../shared/data/tinyshakespeare.txt --out RESULTS.json

Peak memory of a process tree is the largest sum of VmRSS over the process and all its
descendants (proportional set size, so pages a forked worker shares with its parent count
once), sampled every 0.2 s from /proc (pool workers included). Results are appended
to the JSON file, one record per measurement, with the command and the machine load.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RNNLAB = [sys.executable, "-m", "rnnlab"]


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return out


def _rss_mb(pid: int) -> float:
    """Proportional set size of the tree: pages shared by forked workers counted once."""
    total = 0
    for p in _tree(pid):
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def measure(cmd: list[str], env: dict | None = None) -> dict:
    """Wall time and peak tree RSS of a command."""
    load = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.time()
    proc = subprocess.Popen(cmd, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    peak = 0.0
    while proc.poll() is None:
        peak = max(peak, _rss_mb(proc.pid))
        time.sleep(0.2)
    out, err = proc.communicate()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {err[-2000:]}")
    return {"command": " ".join(Path(c).name if os.sep in c else c for c in cmd),
            "seconds": round(time.time() - t0, 2), "cpu_seconds": round(cpu, 1),
            "peak_rss_mb": round(peak, 1),
            "load_before": round(load, 2), "stdout": out.strip()[-500:]}


def _save(path: str, record: dict) -> None:
    p = Path(path)
    data = json.loads(p.read_text()) if p.exists() else []
    data.append({**record, "cores": len(os.sched_getaffinity(0))})
    p.write_text(json.dumps(data, indent=1) + "\n")
    print(json.dumps(record))


def corpus(args) -> None:
    """A folder of 100 MB files, each real text repeated (nothing generated)."""
    src = Path(args.text).read_bytes().rstrip(b"\n") + b"\n"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    per = max(1, (100 << 20) // len(src))
    left = args.mb << 20
    k = 0
    while left > 0:
        reps = min(per, -(-left // len(src)))
        (out / f"part-{k:03d}.txt").write_bytes(src * reps)
        left -= reps * len(src)
        k += 1


def prepare(args) -> None:
    size = sum(f.stat().st_size for f in Path(args.text).rglob("*.txt")) \
        if Path(args.text).is_dir() else Path(args.text).stat().st_size
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        store = args.keep or f"{tmp}/store"
        rec = measure([*RNNLAB, "prepare", args.text, "--out", store, "--level", args.level])
        m = json.loads(Path(f"{store}/manifest.json").read_text())
    _save(args.out, {"what": "prepare", "level": args.level, "mb": round(size / 1e6, 1),
                     "tokens": m["tokens"], "vocab": m["vocab_size"],
                     "mb_per_s": round(size / 1e6 / rec["seconds"], 2),
                     "mb_per_cpu_s": round(size / 1e6 / max(rec["cpu_seconds"], 1e-9), 2), **rec})


def train_rss(args) -> None:
    """Peak RSS of one training process: model, optimizer, steps and a validation slice."""
    code = (
        "import sys, resource, torch; torch.set_num_threads(1)\n"
        "from rnnlab.train import Trainer, TrainConfig, evaluate\n"
        "from rnnlab.models.lm import LMConfig\n"
        "from rnnlab.data.store import TokenSlice\n"
        f"cfg = TrainConfig(text=sys.argv[1], level=sys.argv[2], "
        f"model=LMConfig(hidden=128, embedding=64, layers=1), batch=32, bptt=64, "
        f"max_steps={args.steps})\n"
        "tr = Trainer(cfg, sys.argv[3], quiet=True)\n"
        f"for _ in range({args.steps}): tr.train_step()\n"
        "v = tr.corpus.valid\n"
        f"part = v[:{args.valid_tokens}] if not hasattr(v, 'path') else "
        f"TokenSlice(v.path, v.dtype, v.lo, min(v.hi, v.lo + {args.valid_tokens}))\n"
        "print(evaluate(tr.model, part, 16))\n")
    for store in args.store:
        m = json.loads((Path(store) / "manifest.json").read_text()) \
            if (Path(store) / "manifest.json").exists() else None
        level = m["level"] if m else args.level
        with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
            rec = measure([sys.executable, "-c", code, store, level, f"{tmp}/run"])
        rec["command"] = (f"python benchmarks/scale.py train-rss --store {Path(store).name} "
                          f"--steps {args.steps} --valid-tokens {args.valid_tokens}")
        _save(args.out, {"what": "train-rss", "source": Path(store).name,
                         "kind": "store" if m else "text", "level": level,
                         "tokens": m["tokens"] if m else None, "steps": args.steps,
                         "valid_tokens_scored": args.valid_tokens, **rec})


def speed(args) -> None:
    """tokens/s over the same global batch: torchrun 2 x 1 thread vs 1 process x 2 threads."""
    model = ["--level", "char", "--hidden", "256", "--embedding", "64", "--layers", "1",
             "--batch", "32", "--bptt", "64", "--eval-every", "0", "--save-every", "0",
             "--max-steps", str(args.steps), "--quiet"]
    runs = {"1 process x 2 threads": [*RNNLAB, "train", args.text, "--threads", "2"],
            "1 process x 1 thread": [*RNNLAB, "train", args.text, "--threads", "1"],
            "2 ranks x 1 thread": [sys.executable, "-m", "torch.distributed.run",
                                   "--standalone", "--nproc-per-node", "2", "-m", "rnnlab",
                                   "train", args.text, "--threads", "1"]}
    for rep in range(args.reps):
        for name, cmd in runs.items():
            with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
                rec = measure([*cmd, *model, "--out", f"{tmp}/run"])
                times = {r["step"]: r["time"] for r in map(
                    json.loads, Path(f"{tmp}/run/metrics.jsonl").read_text().splitlines())
                    if "time" in r}
            skip = 10
            tokens = (args.steps - skip) * 32 * 64
            tps = tokens / (times[args.steps] - times[skip])
            _save(args.out, {"what": "speed", "setup": name, "rep": rep,
                             "steps": args.steps, "tokens_per_s": round(tps), **rec})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("corpus", "prepare", "train-rss", "speed"):
        s = sub.add_parser(name)
        s.add_argument("--out", required=True)
        s.add_argument("--tmp", default=None, help="folder for temporary stores and runs")
        s.add_argument("--text")
        s.add_argument("--mb", type=int, default=2100)
        s.add_argument("--level", default="word")
        s.add_argument("--store", action="append", default=[])
        s.add_argument("--steps", type=int, default=200)
        s.add_argument("--valid-tokens", type=int, default=200_000)
        s.add_argument("--reps", type=int, default=2)
        s.add_argument("--keep", help="prepare: keep the store here")
    args = p.parse_args()
    {"corpus": corpus, "prepare": prepare, "train-rss": train_rss, "speed": speed}[
        args.cmd](args)

if __name__ == "__main__":
    main()
