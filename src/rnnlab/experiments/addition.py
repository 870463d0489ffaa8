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
digits right; the learning curve is both on ``check_size`` fresh problems by samples
seen. The paper's target is D = 15 (preset ``gpu``: ``rnnlab experiment addition --preset gpu``).
"""
from __future__ import annotations

import dataclasses
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
from ._compare import markdown_table, pyplot, threads

NAME = "addition"
DESCRIPTION = "D-digit integer addition: tied 2-D Grid LSTM vs stacked LSTM of equal size"
MODELS = {"grid": "tied 2-D Grid LSTM", "lstm": "stacked LSTM"}
PLUS, EQUALS, BLANK, VOCAB = 10, 11, 12, 13


@dataclass(frozen=True)
class Config:
    digits: int = 2
    models: tuple[str, ...] = ("grid", "lstm")
    hidden: int = 48                         # Grid LSTM width; the LSTM's is matched by size
    layers: int = 3                          # depth of both models
    batch: int = 64
    lr: float = 3e-3
    forget_bias: float = 1.0
    output_form: str = "paper"
    reverse: bool = True                     # least significant digit first
    max_samples: int = 60_000
    max_seconds: float = 0.0                 # wall-clock cap per model; 0: none
    check_every: int = 6_000
    check_size: int = 1_000
    test_size: int = 10_000
    seed: int = 0
    threads: int = 1
    device: str = "cpu"


PRESETS = {
    "fast": Config(hidden=32, layers=2, max_samples=20_000, check_every=4_000, check_size=500),
    "full": Config(digits=15, hidden=400, layers=18, batch=100, lr=1e-3,
                   max_samples=5_000_000, check_every=50_000),
}
PRESETS["gpu"] = dataclasses.replace(PRESETS["full"], device="cuda")


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
    """One-hot tokens (T, B) -> digit logits (D+1, B, 10) at the answer steps."""

    def __init__(self, core: nn.Module, answer_len: int) -> None:
        super().__init__()
        self.core, self.answer_len = core, answer_len
        self.head = nn.Linear(core.output_size if hasattr(core, "output_size")
                              else core.hidden_size, 10)

    def forward(self, tokens: Tensor) -> Tensor:
        out, _ = self.core(F.one_hot(tokens, VOCAB).float())
        return self.head(out[-self.answer_len:])


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
    return AdditionNet(core, cfg.digits + 1)


def lstm_net_params(width: int, layers: int) -> int:
    """Parameters of AdditionNet around a stacked LSTM of this width (with biases)."""
    first = 4 * width * (VOCAB + width) + 8 * width
    return first + (layers - 1) * (4 * width * 2 * width + 8 * width) + 10 * (width + 1)


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def scores(model: AdditionNet, n: int, cfg: Config, gen, batch: int = 1_000):
    """(exact match, digit accuracy) on n fresh problems."""
    model.eval()
    right, digits = 0, 0
    for start in range(0, n, batch):
        x, y = problems(min(batch, n - start), cfg.digits, gen, cfg.reverse)
        ok = model(x.to(cfg.device)).argmax(-1).cpu() == y                # (D+1, b)
        right, digits = right + int(ok.all(0).sum()), digits + int(ok.sum())
    model.train()
    return right / n, digits / (n * (cfg.digits + 1))


def train_one(name: str, cfg: Config, bar: Progress) -> dict:
    """Train one model; returns its record with the learning curve."""
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    check_gen = torch.Generator().manual_seed(cfg.seed + 1)
    model = build_model(name, cfg).to(cfg.device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    seen, curve, start = 0, [], time.perf_counter()
    while seen < cfg.max_samples:
        x, y = problems(cfg.batch, cfg.digits, gen, cfg.reverse)
        x, y = x.to(cfg.device), y.to(cfg.device)
        loss = F.cross_entropy(model(x).reshape(-1, 10), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        seen += cfg.batch
        bar.update(cfg.batch, loss=loss.item())
        if seen % cfg.check_every < cfg.batch or seen >= cfg.max_samples:
            curve.append((seen, *scores(model, cfg.check_size, cfg, check_gen)))
            if curve[-1][1] == 1.0 or (cfg.max_seconds and
                                       time.perf_counter() - start > cfg.max_seconds):
                break
    test, digit = scores(model, cfg.test_size, cfg, torch.Generator().manual_seed(10**6))
    return {"model": name, "params": count(model), "samples": seen, "exact_match": test,
            "digit_accuracy": digit,
            "curve": curve, "seconds": round(time.perf_counter() - start, 1),
            "width": model.head.in_features}


def run(cfg: Config, out_dir: Path) -> dict:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    records = []
    with threads(cfg.threads):
        for name in cfg.models:
            bar = Progress(cfg.max_samples, desc=f"addition {name}", unit="samples")
            records.append(train_one(name, cfg, bar))
            bar.close()
        machine = machine_description()
    result = {"experiment": NAME, "config": dataclasses.asdict(cfg), "records": records,
              "seconds": round(time.perf_counter() - t0, 1), "machine": machine}
    write_outputs(out_dir, NAME, result, table(result))
    plot(result, out_dir / f"{NAME}.png")
    return result


def table(result: dict) -> str:
    cfg = result["config"]
    rows = [(MODELS[r["model"]], cfg["layers"], r["width"], r["params"], r["samples"],
             f"{r['exact_match']:.4f}", f"{r['digit_accuracy']:.4f}", r["seconds"])
            for r in result["records"]]
    return "\n".join([
        f"# {cfg['digits']}-digit addition", "",
        markdown_table(["model", "layers", "width", "parameters", "samples seen",
                        f"exact match on {cfg['test_size']} fresh problems",
                        "digit accuracy", "seconds"], rows),
        "", f"Total time {result['seconds']} s on {result['machine']}."])


def plot(result: dict, path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for r, color in zip(result["records"], ("C0", "C1", "C2")):
        xs, exact, digit = zip(*r["curve"]) if r["curve"] else ((), (), ())
        ax.plot(xs, exact, "-", color=color, label=f"{MODELS[r['model']]} ({r['params']} params)")
        ax.plot(xs, digit, ":", color=color, label=f"{MODELS[r['model']]}, digit accuracy")
    ax.set_xlabel("training samples seen")
    ax.set_ylabel("exact match (solid), digit accuracy (dotted)")
    ax.set_title(f"{result['config']['digits']}-digit addition")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
