"""k-bit parity (Kalchbrenner, Danihelka & Graves 2015, "Grid Long Short-Term Memory", §4.1).

The whole k-bit vector (bits as ±1) enters a tied 1-D Grid LSTM through one projection into
h and m of the first block; the output is read from the last block. Baselines: feed-forward
ReLU and tanh nets of the same width and depth (``GridLSTM1d`` with a non-LSTM kind, untied).
For each model the bit counts are tried in increasing order; a k counts as solved when the
accuracy on ``test_size`` fresh vectors reaches ``target``. Training draws fresh random
vectors every step (so "samples used" is the number of vectors seen). Every ``check_every``
samples it checks ``check_size`` fresh vectors; when they reach the target it runs the test
set, and stops if that passes too, else trains on, up to ``max_samples`` (or ``max_seconds``).
The paper solves k = 250 with the tied 1-D Grid LSTM.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..layers.grid import GridLSTM1d
from ..progress import Progress
from . import machine_description, write_outputs
from ._compare import markdown_table, pyplot, threads

NAME = "parity"
DESCRIPTION = "k-bit parity: tied 1-D Grid LSTM vs feed-forward ReLU/tanh nets (Grid LSTM paper)"
MODELS = {"grid": "tied 1-D Grid LSTM", "relu": "feed-forward ReLU", "tanh": "feed-forward tanh"}


@dataclass(frozen=True)
class Config:
    bits: tuple[int, ...] = (8, 12, 16)        # k values, tried in increasing order
    models: tuple[str, ...] = ("grid", "relu", "tanh")
    hidden: int = 64                           # width of every model
    depth: int = 8                             # blocks / hidden layers of every model
    batch: int = 64
    lr: float = 3e-3
    forget_bias: float = 1.0
    output_form: str = "paper"                 # h' = tanh(o * m'), the paper's form
    max_samples: int = 100_000                 # training vectors per (model, k)
    max_seconds: float = 0.0                   # wall-clock cap per (model, k); 0: none
    check_every: int = 8_000                   # samples between checks
    check_size: int = 1_000
    test_size: int = 10_000
    target: float = 0.99
    stop_after_failure: bool = True            # skip larger k once a model fails one
    seed: int = 0
    threads: int = 1                           # torch threads (0: leave as is)
    device: str = "cpu"


PRESETS = {
    "fast": Config(bits=(4, 8), hidden=32, depth=4, lr=1e-2, max_samples=40_000,
                   check_every=4_000, check_size=500),
    "full": Config(bits=(8, 16, 32, 64, 128, 250), hidden=256, depth=16, batch=100,
                   lr=1e-3, max_samples=2_000_000, check_every=20_000),
}
PRESETS["gpu"] = dataclasses.replace(PRESETS["full"], device="cuda")


def make_model(name: str, k: int, cfg: Config) -> GridLSTM1d:
    if name not in MODELS:
        raise ValueError(f"parity models are {', '.join(MODELS)}, received {name!r}")
    kind = "lstm" if name == "grid" else name
    return GridLSTM1d(k, cfg.hidden, cfg.depth, 2, kind=kind, share_along_depth=name == "grid",
                      output_form=cfg.output_form, forget_bias=cfg.forget_bias)


def vectors(n: int, k: int, gen: torch.Generator, device) -> tuple[torch.Tensor, torch.Tensor]:
    """n random k-bit vectors as ±1 floats (n, k) and their parities (n,)."""
    bits = torch.randint(0, 2, (n, k), generator=gen)
    return (2 * bits - 1).float().to(device), (bits.sum(1) % 2).to(device)


@torch.no_grad()
def accuracy(model, n: int, k: int, gen, device, batch: int = 2_000) -> float:
    model.eval()
    right = 0
    for start in range(0, n, batch):
        x, y = vectors(min(batch, n - start), k, gen, device)
        right += int((model(x).argmax(1) == y).sum())
    model.train()
    return right / n


def train_one(name: str, k: int, cfg: Config, bar: Progress) -> dict:
    """Train one model on k bits; returns its record (solved, samples, accuracy, seconds)."""
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed * 7919 + k)
    model = make_model(name, k, cfg).to(cfg.device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    test_gen = lambda: torch.Generator().manual_seed(10**6 + k)    # noqa: E731 same vectors
    seen, test, start = 0, None, time.perf_counter()
    while seen < cfg.max_samples:
        x, y = vectors(cfg.batch, k, gen, cfg.device)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        seen += cfg.batch
        bar.update(cfg.batch, loss=loss.item())
        test = None
        if seen % cfg.check_every < cfg.batch:
            if accuracy(model, cfg.check_size, k, gen, cfg.device) >= cfg.target:
                test = accuracy(model, cfg.test_size, k, test_gen(), cfg.device)
                if test >= cfg.target:
                    break
            if cfg.max_seconds and time.perf_counter() - start > cfg.max_seconds:
                break
    if test is None:
        test = accuracy(model, cfg.test_size, k, test_gen(), cfg.device)
    params = sum(p.numel() for p in model.parameters())
    return {"model": name, "bits": k, "solved": test >= cfg.target, "samples": seen,
            "test_accuracy": test, "seconds": round(time.perf_counter() - start, 1),
            "params": params}


def run(cfg: Config, out_dir: Path) -> dict:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    records = []
    with threads(cfg.threads):
        for name in cfg.models:
            for k in sorted(cfg.bits):
                bar = Progress(cfg.max_samples, desc=f"parity {name} k={k}", unit="samples")
                rec = train_one(name, k, cfg, bar)
                bar.close()
                records.append(rec)
                if not rec["solved"] and cfg.stop_after_failure:
                    break
        machine = machine_description()
    best = {m: max([r["bits"] for r in records if r["model"] == m and r["solved"]], default=0)
            for m in cfg.models}
    result = {"experiment": NAME, "config": dataclasses.asdict(cfg), "records": records,
              "largest_solved": best, "seconds": round(time.perf_counter() - t0, 1),
              "machine": machine}
    write_outputs(out_dir, NAME, result, table(result))
    plot(result, out_dir / f"{NAME}.png")
    return result


def table(result: dict) -> str:
    cfg = result["config"]
    rows = [(MODELS[r["model"]], r["bits"], f"{r['test_accuracy']:.4f}",
             "yes" if r["solved"] else "no", r["samples"], r["params"], r["seconds"])
            for r in result["records"]]
    best = ", ".join(f"{MODELS[m]}: {k or 'none'}" for m, k in result["largest_solved"].items())
    return "\n".join([
        f"# k-bit parity (width {cfg['hidden']}, depth {cfg['depth']})", "",
        markdown_table(["model", "k", f"accuracy on {cfg['test_size']} fresh vectors",
                        f"solved (>= {cfg['target']})", "samples used", "parameters",
                        "seconds"], rows), "",
        f"Largest k solved: {best}. The paper solves k = 250 with a tied 1-D Grid LSTM.",
        f"Total time {result['seconds']} s on {result['machine']}."])


def plot(result: dict, path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for m in result["largest_solved"]:
        rs = [r for r in result["records"] if r["model"] == m]
        ax.plot([r["bits"] for r in rs], [r["test_accuracy"] for r in rs], "o-", label=MODELS[m])
    ax.axhline(result["config"]["target"], color="gray", ls=":", lw=1)
    ax.set_xscale("log", base=2)
    ks = sorted({r["bits"] for r in result["records"]})
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.minorticks_off()
    ax.set_xlabel("bits k")
    ax.set_ylabel("test accuracy")
    ax.set_title("k-bit parity")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
