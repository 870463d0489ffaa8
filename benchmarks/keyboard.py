"""Keyboard comparison: the keyboard preset, a 2 x 512 LSTM, a 2 x 512 GRU and a Kneser-Ney
5-gram, each trained for the same wall time on a corpus and judged on its held-out test
part with ``rnnlab eval --json`` (top-1, top-3, keystroke savings, latency, size).

    python benchmarks/keyboard.py --minutes 30 --out docs/results/keyboard    # full length
    python benchmarks/keyboard.py --minutes 5 --limit 20000 --out ...         # reduced

Corpora (``--corpus NAME=PATH``, repeatable; defaults below): Tiny Shakespeare from
../shared/data (or ../../shared/data), and the reStructuredText sources of the Python
documentation (Debian: ``apt-get install python3.11-doc``; read from
/usr/share/doc/python3.11/html/_sources).
Runs go to ``--runs`` (kept: a rerun skips a model whose result is already there), the
results to OUT/keyboard.json and OUT/keyboard.png; the markdown table is printed.
Every model uses the same 10,000-word vocabulary built from the training part.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = next((p for p in (ROOT.parent / "shared", ROOT.parents[1] / "shared")
               if (p / "data").is_dir()), ROOT.parent / "shared")
CORPORA = {"tinyshakespeare": str(SHARED / "data/tinyshakespeare.txt"),
           "python-docs": "/usr/share/doc/python3.11/html/_sources"}
MODELS = {   # name: train flags (all at word level, 10k vocabulary)
    "keyboard": ["--preset", "keyboard"],
    "lstm-2x512": ["--arch", "lstm", "--level", "word", "--max-vocab", "10000"],
    "gru-2x512": ["--arch", "gru", "--level", "word", "--max-vocab", "10000"],
    "kn-5gram": ["--arch", "ngram", "--order", "5", "--level", "word", "--max-vocab", "10000"],
}


def rnnlab(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "rnnlab", *args]
    print("$", " ".join(cmd[2:]), flush=True)
    return subprocess.run(cmd, capture_output=True, text=True, check=True)


def one(name: str, text: str, model: str, runs: Path, args) -> dict:
    run = runs / name / model
    done = run / "keyboard-eval.json"
    if done.exists():
        return json.loads(done.read_text())
    flags = MODELS[model]
    t0 = time.time()
    if model.startswith("kn-"):
        rnnlab("train", text, *flags, "--out", str(run))
    else:
        rnnlab("train", text, *flags, "--out", str(run), "--max-time", str(args.minutes * 60),
               "--threads", str(args.threads), "--eval-every", "0", "--quiet",
               "--seed", str(args.seed))
    wall = time.time() - t0
    limit = ["--limit", str(args.limit)] if args.limit else []
    ev = rnnlab("eval", str(run), text, "--split", "test", "--json", *limit, "--threads", "1")
    result = json.loads(ev.stdout)
    best = json.loads((run / "best.json").read_text())
    last = (run / "last.json")
    result.update(model=model, corpus=name, train_wall_s=round(wall, 1),
                  valid_nats=best.get("valid_nats"),
                  steps=json.loads(last.read_text())["step"] if last.exists() else None)
    done.write_text(json.dumps(result) + "\n")
    return result


def table(results: list[dict]) -> str:
    head = ("| corpus | model | params | size MB | train s | steps | test nats | ppl | top-1 | "
            "top-3 | top-3 in vocab | keystroke savings | latency p50 / p95 ms |")
    rows = [head, "|" + "---|" * 13]
    for r in results:
        rows.append(
            f"| {r['corpus']} | {r['model']} | {r['params']:,} | {r['size_mb']:.1f} | "
            f"{r['train_wall_s']:.0f} | {r['steps'] if r['steps'] is not None else '-'} | "
            f"{r['nats']:.3f} | {r['perplexity']:.0f} | {r['top1']:.1%} | {r['top3']:.1%} | "
            f"{r['top3_in_vocab']:.1%} | {r['keystroke_savings']:.1%} | "
            f"{r['latency_ms_p50']:.2f} / {r['latency_ms_p95']:.2f} |")
    return "\n".join(rows)


def plot(results: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    corpora = list(dict.fromkeys(r["corpus"] for r in results))
    models = list(dict.fromkeys(r["model"] for r in results))
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, key, label in zip(axes, ("top3", "keystroke_savings", "latency_ms_p95"),
                              ("top-3 (held-out words)", "keystroke savings",
                               "latency p95 (ms, one thread)")):
        width = 0.8 / len(models)
        for j, m in enumerate(models):
            vals = [next((r[key] for r in results if r["corpus"] == c and r["model"] == m),
                         0) for c in corpora]
            ax.bar([i + j * width for i in range(len(corpora))], vals, width, label=m)
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(corpora))], corpora)
        ax.set_title(label)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=30, help="training time per network")
    p.add_argument("--limit", type=int, help="score only the first N held-out tokens")
    p.add_argument("--threads", type=int, default=2, help="torch threads for training")
    p.add_argument("--seed", type=int, default=0, help="training seed")
    p.add_argument("--corpus", action="append", help="NAME=PATH (default: both corpora)")
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated subset")
    p.add_argument("--runs", type=Path, default=ROOT / "runs/keyboard-bench")
    p.add_argument("--out", type=Path, default=ROOT / "docs/results/keyboard")
    args = p.parse_args()
    corpora = dict(c.split("=", 1) for c in args.corpus) if args.corpus else CORPORA
    results = []
    for name, text in corpora.items():
        if not Path(text).exists():
            print(f"skip {name}: {text} is missing", file=sys.stderr)
            continue
        for model in args.models.split(","):
            results.append(one(name, text, model, args.runs, args))
            print(json.dumps(results[-1]), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {"minutes_per_network": args.minutes, "eval_limit_tokens": args.limit,
            "train_threads": args.threads, "seed": args.seed,
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
            "load_average_at_end": os.getloadavg()}
    (args.out / "keyboard.json").write_text(json.dumps({"meta": meta, "results": results},
                                                       indent=1) + "\n")
    plot(results, args.out / "keyboard.png")
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
