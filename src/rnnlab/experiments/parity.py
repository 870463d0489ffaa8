"""k-bit parity (Kalchbrenner, Danihelka & Graves 2015, "Grid Long Short-Term Memory", §4.1).

The whole k-bit vector (bits as ±1) enters a tied 1-D Grid LSTM through one projection into
h and m of the first block; the output is read from the last block. Baselines: feed-forward
ReLU and tanh nets of the same width and depth (``GridLSTM1d`` with a non-LSTM kind, untied).
For each model, depth and seed the bit counts are tried in increasing order; a k counts as
solved when the accuracy on ``test_size`` fresh vectors reaches ``target``. Training draws
fresh random vectors every step (so "samples used" is the number of vectors seen). Every
``check_every`` samples it checks ``check_size`` fresh vectors; when they reach the target it
runs the test set, and stops if that passes too, else trains on, up to ``max_samples`` (or
``max_seconds``). ``depth`` and ``seed`` take one value or several (a sweep).

Options for the ablations: ``schedule`` (constant, cosine or linear decay, after ``warmup``
steps), ``forget_bias``, ``output_form`` (paper: h = tanh(o ⊙ m), standard: o ⊙ tanh(m)),
``curriculum`` (train first with only ``curriculum_start`` live bits, the others fixed at
-1 so the parity is unchanged; double the live bits whenever a check reaches the target).
``checkpoint=DIR`` keeps every run's state there, so a stopped experiment resumes.
The paper solves k = 250 with the tied 1-D Grid LSTM (preset ``gpu``).
"""
from __future__ import annotations

import dataclasses
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..layers.grid import GridLSTM1d
from ..progress import Progress
from . import machine_description, write_outputs
from ._compare import ints, markdown_table, pyplot, threads
from ._loop import Loop, schedule_fn

NAME = "parity"
DESCRIPTION = "k-bit parity: tied 1-D Grid LSTM vs feed-forward ReLU/tanh nets (Grid LSTM paper)"
MODELS = {"grid": "tied 1-D Grid LSTM", "relu": "feed-forward ReLU", "tanh": "feed-forward tanh"}


@dataclass(frozen=True)
class Config:
    bits: tuple[int, ...] = (8, 12, 16)        # k values, tried in increasing order
    models: tuple[str, ...] = ("grid", "relu", "tanh")
    hidden: int = 64                           # width of every model
    depth: tuple[int, ...] = (8,)              # blocks / hidden layers (one or several)
    seed: tuple[int, ...] = (0,)               # one or several seeds
    batch: int = 64
    lr: float = 3e-3
    schedule: str = "constant"                 # constant | cosine | linear (decay to 0)
    warmup: int = 0                            # steps of linear warm-up
    forget_bias: float = 1.0
    output_form: str = "paper"                 # h' = tanh(o * m'), the paper's form
    curriculum: bool = False
    curriculum_start: int = 4
    max_samples: int = 100_000                 # training vectors per (model, k)
    max_seconds: float = 0.0                   # wall-clock cap per (model, k); 0: none
    check_every: int = 8_000                   # samples between checks
    check_size: int = 1_000
    test_size: int = 10_000
    target: float = 0.99
    stop_after_failure: bool = True            # skip larger k once a model fails one
    threads: int = 1                           # torch threads (0: leave as is)
    device: str = "cpu"
    checkpoint: str = ""                       # folder for resumable runs; "": none


PRESETS = {
    "fast": Config(bits=(3, 5), hidden=16, depth=(3,), lr=1e-2, max_samples=12_800,
                   check_every=1_280, check_size=500, test_size=2_000),
    "full": Config(bits=(8, 16, 32, 64, 128, 250), hidden=256, depth=(16,), batch=100,
                   lr=1e-3, max_samples=2_000_000, check_every=20_000),
}
PRESETS["gpu"] = dataclasses.replace(PRESETS["full"], device="cuda",
                                     checkpoint="runs/parity-gpu-checkpoints")


def make_model(name: str, k: int, cfg: Config, depth: int | None = None) -> GridLSTM1d:
    if name not in MODELS:
        raise ValueError(f"parity models are {', '.join(MODELS)}, received {name!r}")
    kind = "lstm" if name == "grid" else name
    depth = depth if depth is not None else ints(cfg.depth)[0]
    return GridLSTM1d(k, cfg.hidden, depth, 2, kind=kind, share_along_depth=name == "grid",
                      output_form=cfg.output_form, forget_bias=cfg.forget_bias)


def vectors(n: int, k: int, gen: torch.Generator, device, live: int | None = None):
    """n random k-bit vectors as ±1 floats (n, k) and their parities (n,); with ``live``
    only the first ``live`` bits are random, the rest 0 (-1 as input)."""
    bits = torch.randint(0, 2, (n, k), generator=gen)
    if live is not None and live < k:
        bits[:, live:] = 0
    return (2 * bits - 1).float().to(device), (bits.sum(1) % 2).to(device)


@torch.no_grad()
def accuracy(model, n: int, k: int, gen, device, batch: int = 2_000,
             live: int | None = None) -> float:
    model.eval()
    right = 0
    for start in range(0, n, batch):
        x, y = vectors(min(batch, n - start), k, gen, device, live)
        right += int((model(x).argmax(1) == y).sum())
    model.train()
    return right / n


def train_one(name: str, k: int, depth: int, seed: int, cfg: Config, bar: Progress) -> dict:
    """Train one model on k bits; returns its record (solved, samples, accuracy, curve)."""
    torch.manual_seed(seed)
    model = make_model(name, k, cfg, depth).to(cfg.device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    steps = -(-cfg.max_samples // cfg.batch)
    test_gen = lambda: torch.Generator().manual_seed(10**6 + k)    # noqa: E731 same vectors
    state = {"live": min(k, cfg.curriculum_start) if cfg.curriculum else k}

    def batch(step, gen):
        return vectors(cfg.batch, k, gen, cfg.device, state["live"])

    def loss(b):
        return F.cross_entropy(model(b[0]), b[1])

    def check(step):
        gen = torch.Generator().manual_seed(seed * 1_000_003 + k * 10_007 + step)
        out = {"live": state["live"],
               "check": accuracy(model, cfg.check_size, k, gen, cfg.device,
                                 live=state["live"])}
        if out["check"] >= cfg.target:
            if state["live"] < k:
                state["live"] = min(k, 2 * state["live"])
            else:
                out["test"] = accuracy(model, cfg.test_size, k, test_gen(), cfg.device)
        return out

    folder = Path(cfg.checkpoint) / f"{name}-d{depth}-s{seed}-k{k}" if cfg.checkpoint else None
    loop = Loop(model, opt, batch, loss, steps=steps, seed=seed * 7919 + k,
                check_every=max(1, cfg.check_every // cfg.batch), check=check,
                stop=lambda m: m.get("test", 0.0) >= cfg.target,
                schedule=schedule_fn(cfg.schedule, steps, cfg.warmup),
                max_seconds=cfg.max_seconds, checkpoint=folder,
                save_every=max(1, 5 * cfg.check_every // cfg.batch), state=state,
                key=_key(cfg, name, k, depth, seed), units_per_step=cfg.batch)
    res = loop.run(bar)
    last = res.curve[-1] if res.curve else {}
    test = last["test"] if "test" in last else accuracy(model, cfg.test_size, k, test_gen(),
                                                        cfg.device)
    return {"model": name, "bits": k, "depth": depth, "seed": seed,
            "solved": test >= cfg.target, "samples": res.steps * cfg.batch,
            "test_accuracy": test, "seconds": round(res.seconds, 1),
            "params": sum(p.numel() for p in model.parameters()),
            "curve": [{"samples": c["step"] * cfg.batch, "loss": round(c["loss"], 5),
                       "check": c["check"], "live": c["live"]} for c in res.curve]}


def _key(cfg: Config, *run) -> dict:
    skip = ("bits", "models", "depth", "seed", "threads", "checkpoint", "stop_after_failure")
    return {"run": list(run), **{k: v for k, v in dataclasses.asdict(cfg).items()
                                 if k not in skip}}


def largest(records: list[dict], cfg: Config) -> tuple[dict, dict]:
    """(largest k solved per model: the best depth's median over seeds,
        per model and depth the largest k of each seed)."""
    by_depth: dict = {}
    for m in cfg.models:
        by_depth[m] = {}
        for d in ints(cfg.depth):
            by_depth[m][d] = [max([r["bits"] for r in records if r["model"] == m and
                                   r["depth"] == d and r["seed"] == s and r["solved"]],
                                  default=0) for s in ints(cfg.seed)]
    best = {m: max(statistics.median_low(ks) for ks in by_depth[m].values())
            for m in cfg.models}
    return best, by_depth


def run(cfg: Config, out_dir: Path) -> dict:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    records = []
    with threads(cfg.threads):
        for name in cfg.models:
            for depth in ints(cfg.depth):
                for seed in ints(cfg.seed):
                    for k in sorted(cfg.bits):
                        bar = Progress(cfg.max_samples, unit="samples",
                                       desc=f"parity {name} depth {depth} seed {seed} k={k}")
                        rec = train_one(name, k, depth, seed, cfg, bar)
                        bar.close()
                        records.append(rec)
                        if not rec["solved"] and cfg.stop_after_failure:
                            break
        machine = machine_description()
    best, by_depth = largest(records, cfg)
    result = {"experiment": NAME, "config": dataclasses.asdict(cfg), "records": records,
              "largest_solved": best, "largest_solved_by_depth": by_depth,
              "seconds": round(time.perf_counter() - t0, 1), "machine": machine}
    write_outputs(out_dir, NAME, result, table(result))
    plot(result, out_dir / f"{NAME}.png")
    return result


def table(result: dict) -> str:
    cfg = result["config"]
    rows = [(MODELS[r["model"]], r["depth"], r["seed"], r["bits"], f"{r['test_accuracy']:.4f}",
             "yes" if r["solved"] else "no", r["samples"], r["params"], r["seconds"])
            for r in result["records"]]
    best = ", ".join(f"{MODELS[m]}: {k or 'none'}" for m, k in result["largest_solved"].items())
    sweep = [(MODELS[m], d, ", ".join(map(str, ks)))
             for m, per in result["largest_solved_by_depth"].items() for d, ks in per.items()]
    return "\n".join([
        f"# k-bit parity (width {cfg['hidden']})", "",
        markdown_table(["model", "depth", "seed", "k",
                        f"accuracy on {cfg['test_size']} fresh vectors",
                        f"solved (>= {cfg['target']})", "samples used", "parameters",
                        "seconds"], rows), "",
        markdown_table(["model", "depth", "largest k solved, per seed"], sweep), "",
        f"Largest k solved (best depth, median over seeds): {best}.",
        f"Total time {result['seconds']} s on {result['machine']}."])


def plot(result: dict, path: Path) -> None:
    plt = pyplot()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4))
    for i, (m, per) in enumerate(result["largest_solved_by_depth"].items()):
        ds = sorted(per, key=int)
        for d in ds:
            bx.plot([int(d)] * len(per[d]), per[d], "o", color=f"C{i}", alpha=0.4)
        bx.plot([int(d) for d in ds], [statistics.median_low(per[d]) for d in ds], "-",
                color=f"C{i}", label=MODELS[m])
        rs = [r for r in result["records"] if r["model"] == m]
        keys = sorted({(r["depth"], r["seed"]) for r in rs})
        for n, (d, s) in enumerate(keys):
            sel = [r for r in rs if (r["depth"], r["seed"]) == (d, s)]
            ax.plot([r["bits"] for r in sel], [r["test_accuracy"] for r in sel], "o-",
                    color=f"C{i}", alpha=0.6, lw=1, label=MODELS[m] if n == 0 else None)
    ax.axhline(result["config"]["target"], color="gray", ls=":", lw=1)
    ax.set_xscale("log", base=2)
    ks = sorted({r["bits"] for r in result["records"]})
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.minorticks_off()
    ax.set(xlabel="bits k", ylabel="test accuracy", title="accuracy by k (every depth, seed)")
    bx.set(xlabel="depth", ylabel="largest k solved",
           title="largest k solved (dots: seeds, line: median)")
    ax.legend(fontsize=8)
    bx.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
