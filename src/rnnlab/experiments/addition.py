"""Integer addition (Kalchbrenner, Danihelka & Graves 2015, "Grid Long Short-Term Memory", §4.2).

Two D-digit numbers are read one digit per step, then the network writes the D+1 digits of
their sum, one per step:

    input   a_1 … a_D  +  b_1 … b_D  =  _ _ … _        (one-hot over 0-9 + = _; T = 3D + 3)
    target                                  s_1 … s_{D+1}   (read at the last D+1 steps)

With ``reverse`` (default) every number is written least significant digit first; the paper
does not say which order it used. Models: a tied 2-D Grid LSTM (``GridLSTM`` with
``share_along_depth``; time × depth, depth the priority dimension) and a stacked LSTM of the
same depth whose width is chosen so that the whole model has the same parameter count.
Metric: exact match (all D+1 digits right) on ``test_size`` fresh problems, and the share of
digits right; the learning curve is both on ``check_size`` fresh problems by samples seen.
``digits`` and ``seed`` take one value or several; the result holds exact match per D (the
median over seeds). Training runs through the shared loop (``_loop.Loop``): ``schedule``,
``warmup`` and ``clip`` shape it, and ``checkpoint=DIR`` makes a stopped experiment resume.
``curriculum``: each batch has d digits, d drawn from 1..level; the level starts at 1 and
rises by one whenever a check's exact match at the level reaches ``curriculum_target``
(the net's weights do not depend on D). Curve entries: (samples, exact match at D, digit
accuracy at D, level).
The paper's target is D = 15 (preset ``gpu``: ``rnnlab experiment addition --preset gpu``).
"""
from __future__ import annotations

import dataclasses
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import LSTM
from ..layers.grid import GridLSTM
from ..progress import Progress
from . import machine_description, write_outputs
from ._compare import ints, markdown_table, pyplot, threads
from ._loop import Loop, schedule_fn

NAME = "addition"
DESCRIPTION = "D-digit integer addition: tied 2-D Grid LSTM vs stacked LSTM of equal size"
MODELS = {"grid": "tied 2-D Grid LSTM", "lstm": "stacked LSTM"}
PLUS, EQUALS, BLANK, VOCAB = 10, 11, 12, 13


@dataclass(frozen=True)
class Config:
    digits: tuple[int, ...] = (2,)           # D: one or several
    models: tuple[str, ...] = ("grid", "lstm")
    hidden: int = 48                         # Grid LSTM width; the LSTM's is matched by size
    layers: int = 3                          # depth of both models
    seed: tuple[int, ...] = (0,)             # one or several seeds
    batch: int = 64
    lr: float = 3e-3
    schedule: str = "constant"               # constant | cosine | linear (decay to 0)
    warmup: int = 0                          # steps of linear warm-up
    clip: float = 1.0                        # gradient-norm clip; 0: none
    forget_bias: float = 1.0
    output_form: str = "paper"
    reverse: bool = True                     # least significant digit first
    curriculum: bool = False                 # batches of 1..level digits, level growing
    curriculum_target: float = 0.9           # exact match at level that raises the level
    max_samples: int = 60_000
    max_seconds: float = 0.0                 # wall-clock cap per run; 0: none
    check_every: int = 6_000
    check_size: int = 1_000
    test_size: int = 10_000
    threads: int = 1
    device: str = "cpu"
    checkpoint: str = ""                     # folder for resumable runs; "": none


PRESETS = {
    "fast": Config(digits=(1, 2), hidden=16, layers=2, max_samples=8_192, check_every=2_048,
                   check_size=256, test_size=1_000, lr=1e-2),
    "full": Config(digits=(15,), hidden=400, layers=18, batch=100, lr=1e-3,
                   max_samples=5_000_000, check_every=50_000),
}
PRESETS["gpu"] = dataclasses.replace(PRESETS["full"], device="cuda",
                                     checkpoint="runs/addition-gpu-checkpoints")


def problems(n: int, D: int, gen: torch.Generator, reverse: bool = True):
    """n problems: inputs (3D+3, n) token ids and targets (D+1, n) digits."""
    a = torch.randint(0, 10, (n, D), generator=gen)              # most significant first
    b = torch.randint(0, 10, (n, D), generator=gen)
    s, carry = torch.zeros(n, D + 1, dtype=torch.long), torch.zeros(n, dtype=torch.long)
    for i in range(D - 1, -1, -1):
        t = a[:, i] + b[:, i] + carry
        s[:, i + 1], carry = t % 10, t // 10
    s[:, 0] = carry
    if reverse:
        a, b, s = a.flip(1), b.flip(1), s.flip(1)
    col = lambda v: torch.full((n, 1), v, dtype=torch.long)      # noqa: E731
    seq = torch.cat([a, col(PLUS), b, col(EQUALS), col(BLANK).expand(n, D + 1)], 1)
    return seq.t().contiguous(), s.t().contiguous()


class AdditionNet(nn.Module):
    """One-hot tokens (3D+3, B) -> digit logits (D+1, B, 10) at the answer steps; the
    weights do not depend on D."""

    def __init__(self, core: nn.Module) -> None:
        super().__init__()
        self.core = core
        self.head = nn.Linear(core.output_size if hasattr(core, "output_size")
                              else core.hidden_size, 10)

    def forward(self, tokens: Tensor) -> Tensor:
        out, _ = self.core(F.one_hot(tokens, VOCAB).float())
        return self.head(out[-(tokens.shape[0] // 3):])


def build_model(name: str, cfg: Config) -> AdditionNet:
    if name == "grid":
        core = GridLSTM(VOCAB, cfg.hidden, cfg.layers, share_along_depth=True,
                        output_form=cfg.output_form, forget_bias=cfg.forget_bias)
    elif name == "lstm":
        target = count(build_model("grid", cfg))
        width = min(range(1, 4 * cfg.hidden + 1),
                    key=lambda w: abs(lstm_net_params(w, cfg.layers) - target))
        core = LSTM(VOCAB, width, cfg.layers, forget_bias=cfg.forget_bias)
    else:
        raise ValueError(f"addition models are {', '.join(MODELS)}, received {name!r}")
    return AdditionNet(core)


def lstm_net_params(width: int, layers: int) -> int:
    """Parameters of AdditionNet around a stacked LSTM of this width (with biases)."""
    first = 4 * width * (VOCAB + width) + 8 * width
    return first + (layers - 1) * (4 * width * 2 * width + 8 * width) + 10 * (width + 1)


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def scores(model: AdditionNet, n: int, D: int, cfg: Config, gen, batch: int = 1_000):
    """(exact match, digit accuracy) on n fresh D-digit problems."""
    model.eval()
    right, digits = 0, 0
    for start in range(0, n, batch):
        x, y = problems(min(batch, n - start), D, gen, cfg.reverse)
        ok = model(x.to(cfg.device)).argmax(-1).cpu() == y                # (D+1, b)
        right, digits = right + int(ok.all(0).sum()), digits + int(ok.sum())
    model.train()
    return right / n, digits / (n * (D + 1))


def train_one(name: str, D: int, seed: int, cfg: Config, bar: Progress) -> dict:
    """Train one model on D digits; returns its record with the learning curve."""
    torch.manual_seed(seed)
    model = build_model(name, cfg).to(cfg.device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    steps = -(-cfg.max_samples // cfg.batch)
    state = {"level": 1 if cfg.curriculum else D}

    def batch(step, gen):
        d = int(torch.randint(1, state["level"] + 1, (1,), generator=gen)) \
            if state["level"] < D else D
        x, y = problems(cfg.batch, d, gen, cfg.reverse)
        return x.to(cfg.device), y.to(cfg.device)

    def loss(b):
        return F.cross_entropy(model(b[0]).reshape(-1, 10), b[1].reshape(-1))

    def check(step):
        gen = torch.Generator().manual_seed(seed * 1_000_003 + D * 10_007 + step)
        exact, digit = scores(model, cfg.check_size, D, cfg, gen)
        out = {"exact": exact, "digit": digit, "level": state["level"]}
        level = state["level"]
        if level < D and scores(model, cfg.check_size, level, cfg, gen)[0] >= \
                cfg.curriculum_target:
            state["level"] = level + 1
        return out

    folder = Path(cfg.checkpoint) / f"{name}-D{D}-s{seed}" if cfg.checkpoint else None
    skip = ("digits", "models", "seed", "threads", "checkpoint")
    key = {"run": [name, D, seed],
           **{k: v for k, v in dataclasses.asdict(cfg).items() if k not in skip}}
    loop = Loop(model, opt, batch, loss, steps=steps, seed=seed,
                check_every=max(1, cfg.check_every // cfg.batch), check=check,
                stop=lambda m: m["exact"] == 1.0, clip=cfg.clip,
                schedule=schedule_fn(cfg.schedule, steps, cfg.warmup),
                max_seconds=cfg.max_seconds, checkpoint=folder, state=state,
                save_every=max(1, 5 * cfg.check_every // cfg.batch), key=key,
                units_per_step=cfg.batch)
    res = loop.run(bar)
    by_digits = {str(d): scores(model, cfg.test_size, d, cfg,
                                torch.Generator().manual_seed(10**6 + d))
                 for d in (range(1, D + 1) if cfg.curriculum else (D,))}
    test, digit = by_digits[str(D)]
    return {"model": name, "digits": D, "seed": seed, "params": count(model),
            "samples": res.steps * cfg.batch, "exact_match": test, "digit_accuracy": digit,
            "exact_by_digits": {d: v[0] for d, v in by_digits.items()},
            "curve": [(c["step"] * cfg.batch, c["exact"], c["digit"], c["level"])
                      for c in res.curve],
            "seconds": round(res.seconds, 1), "width": model.head.in_features}


def run(cfg: Config, out_dir: Path) -> dict:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    records = []
    with threads(cfg.threads):
        for name in cfg.models:
            for D in ints(cfg.digits):
                for seed in ints(cfg.seed):
                    bar = Progress(cfg.max_samples, unit="samples",
                                   desc=f"addition {name} D={D} seed {seed}")
                    records.append(train_one(name, D, seed, cfg, bar))
                    bar.close()
        machine = machine_description()
    result = {"experiment": NAME, "config": dataclasses.asdict(cfg), "records": records,
              "exact_match": per_digits(records, "exact_match"),
              "digit_accuracy": per_digits(records, "digit_accuracy"),
              "exact_by_digits": by_eval_digits(records),
              "seconds": round(time.perf_counter() - t0, 1), "machine": machine}
    write_outputs(out_dir, NAME, result, table(result))
    plot(result, out_dir / f"{NAME}.png")
    return result


def per_digits(records: list[dict], field: str) -> dict:
    """{D: {model: median over seeds of field}} (keys as strings, as JSON has them)."""
    out: dict = {}
    for r in records:
        out.setdefault(str(r["digits"]), {}).setdefault(r["model"], []).append(r[field])
    return {D: {m: statistics.median(v) for m, v in per.items()} for D, per in out.items()}


def by_eval_digits(records: list[dict]) -> dict:
    """{trained D: {model: {tested d: median over seeds of exact match}}}: with the
    curriculum every d up to D is tested, else D alone."""
    out: dict = {}
    for r in records:
        per = out.setdefault(str(r["digits"]), {}).setdefault(r["model"], {})
        for d, v in r["exact_by_digits"].items():
            per.setdefault(d, []).append(v)
    return {D: {m: {d: statistics.median(v) for d, v in per.items()} for m, per in x.items()}
            for D, x in out.items()}


def table(result: dict) -> str:
    cfg = result["config"]
    rows = [(MODELS[r["model"]], r["digits"], r["seed"], cfg["layers"], r["width"],
             r["params"], r["samples"], f"{r['exact_match']:.4f}",
             f"{r['digit_accuracy']:.4f}", r["seconds"]) for r in result["records"]]
    summary = [(D, *(f"{per.get(m, float('nan')):.4f}" for m in cfg["models"]))
               for D, per in result["exact_match"].items()]
    return "\n".join([
        f"# Integer addition (layers {cfg['layers']}, grid width {cfg['hidden']})", "",
        markdown_table(["model", "D", "seed", "layers", "width", "parameters", "samples seen",
                        f"exact match on {cfg['test_size']} fresh problems",
                        "digit accuracy", "seconds"], rows), "",
        "Exact match by digits (median over seeds):", "",
        markdown_table(["D", *(MODELS[m] for m in cfg["models"])], summary), "",
        "Exact match of the final models tested at every d (median over seeds):", "",
        markdown_table(["trained on D", "tested on d", *(MODELS[m] for m in cfg["models"])],
                       [(D, d, *(f"{per.get(m, {}).get(d, float('nan')):.4f}"
                                 for m in cfg["models"]))
                        for D, per in result["exact_by_digits"].items()
                        for d in sorted({d for v in per.values() for d in v}, key=int)]), "",
        f"Total time {result['seconds']} s on {result['machine']}."])


def plot(result: dict, path: Path) -> None:
    plt = pyplot()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4))
    models = result["config"]["models"]
    for i, m in enumerate(models):
        rs = [r for r in result["records"] if r["model"] == m]
        ax.plot([r["digits"] for r in rs], [r["exact_match"] for r in rs], "o", color=f"C{i}",
                alpha=0.5)
        Ds = sorted(result["exact_match"], key=int)
        ax.plot([int(D) for D in Ds], [result["exact_match"][D].get(m) for D in Ds], "-",
                color=f"C{i}", label=f"{MODELS[m]} ({rs[0]['params']} params)" if rs else m)
        for n, r in enumerate(rs):
            if r["curve"]:
                xs, exact = [c[0] for c in r["curve"]], [c[1] for c in r["curve"]]
                bx.plot(xs, exact, "-", color=f"C{i}", alpha=0.3 + 0.7 / (1 + r["digits"]),
                        label=MODELS[m] if n == 0 else None)
    ax.set(xlabel="digits D", ylabel="exact match (test)",
           title="exact match by digits (dots: seeds, line: median)")
    bx.set(xlabel="training samples seen", ylabel="exact match (check)",
           title="learning curves (fainter: more digits)")
    ax.legend(fontsize=8)
    bx.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
