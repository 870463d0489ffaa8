"""Sequence generation from the Clockwork RNN paper (Koutník, Greff, Gomez, Schmidhuber 2014,
"A Clockwork RNN", §4.1): with no input at all, a network with one hidden layer and a linear
output learns to reproduce a 320-point waveform scaled to [-1, 1].

Setup as in the paper: MSE, SGD with momentum 0.95, learning rate 3e-4 (SRN, CW-RNN) and
3e-5 (LSTM, forget-gate bias 5), 2000 epochs (one epoch = one pass over the sequence), weights
drawn from N(0, 0.1), a CW-RNN with 9 modules of periods 1, 2, ..., 256, and hidden sizes
chosen for budgets of 100/250/500/1000 parameters (SRN 9/15/22/31, LSTM 4/7/10/15 with
peepholes, CW-RNN 11/19/27/40). The squared error is summed over the 320 steps (the gradient
of the whole sequence's error, as BPTT of the time computed it); NMSE = MSE / var(target).

The paper's audio clip is not available, so the target is generated: several seeded voices
of harmonics, each with an attack-decay envelope, plus a little noise. ``wav=PATH`` reads
real audio instead (PCM WAV, first channel, ``wav_offset`` and ``wav_stride`` in frames).

All runs of one architecture, at every budget, train as ONE batched computation: N networks
padded to a common width (padded units have zero weights in and out, and stay at zero), each
step one ``bmm`` over the network dimension. Counters start at t = 0, as in rnnlab.ClockworkRNN.
"""
from __future__ import annotations

import dataclasses
import math
import time
import wave
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ..progress import Progress
from . import machine_description, write_outputs
from ._generation_nets import build_nets, generate
from ._loop import Loop

NAME = "clockwork-generation"
DESCRIPTION = ("Clockwork RNN paper's sequence generation: SRN, LSTM and CW-RNN reproduce a "
               "320-point waveform from no input at 100-1000 parameters; NMSE vs the paper")
HIDDEN = {"srn": (9, 15, 22, 31), "lstm": (4, 7, 10, 15), "cwrnn": (11, 19, 27, 40)}
BUDGETS = (100, 250, 500, 1000)
LABELS = {"srn": "SRN", "lstm": "LSTM", "cwrnn": "CW-RNN"}
PAPER_BEST = {"srn": (0.46, 0.08), "lstm": (0.04, 0.01), "cwrnn": (0.007, 0.004)}


@dataclass(frozen=True)
class Config:
    archs: tuple[str, ...] = ("srn", "lstm", "cwrnn")
    budgets: tuple[int, ...] = BUDGETS    # subset of 100, 250, 500, 1000
    runs: int = 10                        # independent networks per (arch, budget)
    epochs: int = 2000
    length: int = 320
    lr: float = 3e-4                      # SRN and CW-RNN
    lr_lstm: float = 3e-5
    momentum: float = 0.95
    init_std: float = 0.1
    forget_bias: float = 5.0
    periods: tuple[int, ...] = tuple(2 ** i for i in range(9))
    wav: str = ""                         # a WAV file; empty: the generated target
    wav_offset: int = 0
    wav_stride: int = 1
    seed: int = 0
    threads: int = 0                      # torch threads; 0 leaves torch's setting


PRESETS = {"fast": Config(runs=3, epochs=60, budgets=(100, 1000)), "full": Config()}


# -- the target --------------------------------------------------------------------------
def generated_target(length: int, seed: int) -> Tensor:
    """Audio-like: 3 voices of 1-4 harmonics with attack-decay envelopes, plus noise."""
    g = torch.Generator().manual_seed(seed)
    u = lambda *s: torch.rand(*s, generator=g, dtype=torch.float64)  # noqa: E731
    t = torch.arange(length, dtype=torch.float64)
    y = torch.zeros(length, dtype=torch.float64)
    for _ in range(3):
        period = 8 + 72 * float(u(1))                   # fundamental: 8..80 samples
        onset, decay = float(u(1)) * length / 2, length * (0.15 + 0.6 * float(u(1)))
        env = (t >= onset) * (1 - torch.exp(-(t - onset).clamp(min=0) / 6)) \
            * torch.exp(-(t - onset).clamp(min=0) / decay)
        for k in range(1, 2 + int(u(1) * 3)):
            y += env / k * torch.sin(2 * math.pi * k * t / period + 2 * math.pi * float(u(1)))
    y += 0.02 * torch.randn(length, generator=g, dtype=torch.float64)
    return scale(y)


def scale(y: Tensor) -> Tensor:
    lo, hi = float(y.min()), float(y.max())
    return (2 * (y - lo) / (hi - lo) - 1) if hi > lo else torch.zeros_like(y)


def wav_target(path: str, length: int, offset: int, stride: int) -> Tensor:
    """``length`` samples of a PCM WAV file's first channel, scaled to [-1, 1]."""
    try:
        with wave.open(path, "rb") as f:
            ch, width, n = f.getnchannels(), f.getsampwidth(), f.getnframes()
            raw = f.readframes(n)
    except (wave.Error, EOFError) as e:
        raise ValueError(f"{path}: not a readable PCM WAV file ({e})") from e
    need = offset + (length - 1) * stride + 1
    if n < need:
        raise ValueError(f"{path}: {n} frames, but offset {offset}, stride {stride} and "
                         f"length {length} need {need}")
    frame = ch * width
    samples = [int.from_bytes(raw[i * frame:i * frame + width], "little", signed=width > 1)
               for i in range(offset, need, stride)]
    return scale(torch.tensor(samples, dtype=torch.float64))


def train(arch: str, target: Tensor, cfg: Config, bar: Progress) -> dict:
    budgets = [BUDGETS.index(b) for b in cfg.budgets]
    hidden = tuple(HIDDEN[arch][i] for i in budgets)
    g = torch.Generator().manual_seed(cfg.seed * 1000 + list(HIDDEN).index(arch) + 1)
    nets = build_nets(arch, hidden, cfg.runs, cfg.length, init_std=cfg.init_std,
                      forget_bias=cfg.forget_bias, periods=cfg.periods, generator=g)
    lr = cfg.lr_lstm if arch == "lstm" else cfg.lr
    opt = torch.optim.SGD(list(nets.params.values()), lr=lr, momentum=cfg.momentum)
    cpu = time.process_time()

    def loss(_):            # squared error summed over steps; the networks are independent
        return ((generate(nets, len(target)) - target[:, None]) ** 2).sum()

    res = Loop(nets.params, opt, lambda step, gen: None, loss, steps=cfg.epochs,
               seed=cfg.seed).run(bar)
    with torch.no_grad():
        y = generate(nets, len(target))
    nmse = ((y - target[:, None]) ** 2).mean(0) / target.var()           # (N,)
    R = cfg.runs
    rows = []
    for s, h in enumerate(hidden):
        v = nmse[s * R:(s + 1) * R]
        ok = v[torch.isfinite(v)]
        n = nets.num_parameters(s * R)
        best = s * R + int(torch.nan_to_num(v, nan=math.inf).argmin())
        rows.append({"arch": arch, "budget": cfg.budgets[s], "hidden": h, "params": n,
                     "nmse_mean": float(ok.mean()) if len(ok) else math.nan,
                     "nmse_std": float(ok.std()) if len(ok) > 1 else 0.0,
                     "nmse_min": float(ok.min()) if len(ok) else math.nan,
                     "diverged": R - len(ok), "best_output": y[:, best].tolist()})
    return {"rows": rows, "seconds": round(res.seconds, 1),
            "cpu_seconds": round(time.process_time() - cpu, 1)}


def run(cfg: Config, out_dir: Path) -> dict:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    bad = [a for a in cfg.archs if a not in HIDDEN] + [b for b in cfg.budgets if b not in BUDGETS]
    if bad or cfg.runs < 1:
        raise ValueError(f"archs must be among {tuple(HIDDEN)}, budgets among {BUDGETS} and "
                         f"runs >= 1; received {cfg.archs}, {cfg.budgets}, runs={cfg.runs}")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    target = (wav_target(cfg.wav, cfg.length, cfg.wav_offset, cfg.wav_stride) if cfg.wav
              else generated_target(cfg.length, cfg.seed))
    t0 = time.perf_counter()
    rows, seconds, cpu = [], {}, {}
    for arch in cfg.archs:
        bar = Progress(cfg.epochs, desc=f"clockwork-generation {arch}", unit="epochs")
        res = train(arch, target, cfg, bar)
        bar.close()
        rows += res["rows"]
        seconds[arch], cpu[arch] = res["seconds"], res["cpu_seconds"]
    result = {"experiment": NAME, "config": dataclasses.asdict(cfg), "rows": rows,
              "paper_best": PAPER_BEST, "target": target.tolist(), "seconds": seconds,
              "cpu_seconds": cpu,
              "total_seconds": round(time.perf_counter() - t0, 1),
              "machine": machine_description()}
    write_outputs(out_dir, NAME, result, table(result))
    plot(result, out_dir / f"{NAME}.png")
    return result


def table(result: dict) -> str:
    cfg = result["config"]
    lines = [f"# Clockwork RNN sequence generation ({cfg['runs']} runs per setup, "
             f"{cfg['epochs']} epochs, target: {cfg['wav'] or 'generated'})", "",
             "| network | budget | hidden | parameters | NMSE mean ± std | best run | "
             "diverged | paper's best NMSE |", "|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        pm, ps = result["paper_best"][r["arch"]]
        lines.append(f"| {LABELS[r['arch']]} | {r['budget']} | {r['hidden']} | {r['params']} "
                     f"| {r['nmse_mean']:.4f} ± {r['nmse_std']:.4f} | {r['nmse_min']:.4f} "
                     f"| {r['diverged']} | {pm} ± {ps} |")
    secs = ", ".join(f"{LABELS[a]} {s} s (CPU {result['cpu_seconds'][a]} s)"
                     for a, s in result["seconds"].items())
    lines += ["", f"Training wall time: {secs}; total {result['total_seconds']} s on "
              f"{result['machine']}."]
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.2))
    colors = {"srn": "tab:blue", "lstm": "tab:orange", "cwrnn": "tab:green"}
    for arch in result["config"]["archs"]:
        rs = [r for r in result["rows"] if r["arch"] == arch]
        ax.errorbar([r["params"] for r in rs], [r["nmse_mean"] for r in rs],
                    yerr=[r["nmse_std"] for r in rs], marker="o", capsize=3,
                    color=colors[arch], label=f"{LABELS[arch]} (ours)")
        ax.axhline(result["paper_best"][arch][0], ls="--", color=colors[arch],
                   label=f"{LABELS[arch]} paper's best")
        bx.plot(rs[-1]["best_output"], color=colors[arch], lw=1,
                label=f"{LABELS[arch]}, {rs[-1]['params']} params")
    bx.plot(result["target"], color="k", lw=2, alpha=0.35, label="target")
    ax.set(xscale="log", yscale="log", xlabel="parameters", ylabel="NMSE (mean ± std)",
           title="NMSE vs parameters")
    bx.set(xlabel="step", ylabel="output", title="best run at the largest budget")
    ax.legend(fontsize=7)
    bx.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
