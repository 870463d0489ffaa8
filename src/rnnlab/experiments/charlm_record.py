"""The Tiny Shakespeare record: the lowest validation nats per character one `rnnlab train`
run reaches in a fixed time (30 minutes in the ``record`` preset), scored like for like with
nanoGPT.

One run of ``rnnlab.train.Trainer`` with the given settings; dropout left at -1 is
``rnnlab train``'s default (chosen from the corpus size). The ``record`` preset decays the
learning rate by cosine over its fixed time budget (``rnnlab train``'s default, the plateau
schedule, is for runs whose length is not known in advance; ``--set schedule=plateau``
runs it).
The run directory is kept under OUT/run, so ``rnnlab suggest OUT/run`` and friends work on
the result. The best model (what the commands load) is then scored on

- rnnlab's validation split (the 5% after the first 90% of the characters) and test split
  (the last 5%), and
- nanoGPT's validation split, the last 10% of the file (``int(0.9 n)`` onwards), which is
  rnnlab's validation and test splits together: the training text is the same 90%.

Scoring reads each split as 16 contiguous streams with the recurrent state carried through
(an RNN's natural way to read a text); nanoGPT's reported loss conditions each character on
at most 256 before it. The text is Tiny Shakespeare (``--set text=PATH``), from
https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt
(1,115,394 characters); rnnlab downloads nothing.
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

from ..data.corpus import CorpusConfig, generate
from ..errors import UserError
from ..infer import Predictor
from ..models.lm import LMConfig
from ..train import TrainConfig, Trainer, evaluate, metrics
from . import atomic_write_text, machine_description, write_outputs
from ._compare import markdown_table, pyplot, threads
from .charlm import curve

NAME = "charlm-record"
DESCRIPTION = ("the best validation nats/char in a fixed training time on a text file "
               "(Tiny Shakespeare), also on nanoGPT's split")


@dataclass(frozen=True)
class Config:
    text: str = ""                     # UTF-8 file; "" with builtin=True: the built-in corpus
    builtin: bool = False              # allow the built-in corpus (tests)
    arch: str = "gru"
    hidden: int = 512
    layers: int = 2
    embedding: int = 128
    dropout: float = -1.0              # -1: rnnlab train's default (from the corpus size)
    schedule: str = "plateau"
    lr: float = 2e-3
    min_lr: float = -1.0               # -1: lr / 100
    batch: int = 32
    bptt: int = 128
    seconds: float = 1800.0            # training and validation time
    max_steps: int = 0                 # 0: time only
    eval_every: int = 250
    seed: int = 0
    threads: int = 2                   # torch threads (0: leave as is)


PRESETS = {
    "fast": Config(builtin=True, hidden=24, layers=2, embedding=16, batch=8, bptt=32,
                   seconds=30.0, max_steps=30, eval_every=10, threads=1),
    "record": Config(schedule="cosine"),
}
PRESETS["full"] = PRESETS["record"]


def train_config(cfg: Config, text: str) -> TrainConfig:
    return TrainConfig(
        text=text, level="char", model=LMConfig(
            arch=cfg.arch, embedding=cfg.embedding, hidden=cfg.hidden, layers=cfg.layers,
            dropout=None if cfg.dropout < 0 else cfg.dropout),
        batch=cfg.batch, bptt=cfg.bptt, lr=cfg.lr, schedule=cfg.schedule,
        min_lr=None if cfg.min_lr < 0 else cfg.min_lr, max_time=cfg.seconds,
        max_steps=cfg.max_steps or None, eval_every=cfg.eval_every, save_every=500,
        seed=cfg.seed)


def run(cfg: Config, out_dir: Path) -> dict:
    start = time.time()
    out_dir = Path(out_dir)
    text = cfg.text
    if not text:
        if not cfg.builtin:
            raise UserError("charlm-record needs --set text=PATH (Tiny Shakespeare: see "
                            "`rnnlab experiment --help` or docs/results/tinyshakespeare.md)")
        text = str(out_dir / "builtin.txt")
        atomic_write_text(Path(text), generate(CorpusConfig(train_tokens=20_000)).text)
    run_dir = out_dir / "run"
    with threads(cfg.threads):
        trainer = Trainer(train_config(cfg, text), run_dir, quiet=False)
        final = trainer.run()
        corpus = trainer.corpus
        best = Predictor.load(run_dir).model
        scores = {name: evaluate(best, ids)
                  for name, ids in (("valid", corpus.valid), ("test", corpus.test),
                                    ("nanogpt_val", corpus.valid + corpus.test))}
        machine = machine_description()
    params = sum(p.numel() for p in best.parameters())
    result = {
        "experiment": NAME, "config": dataclasses.asdict(cfg), "text": cfg.text or "built-in",
        "chars": {"train": len(corpus.train), "valid": len(corpus.valid),
                  "test": len(corpus.test)}, "vocab_size": len(corpus.vocab),
        "params": params, "dropout": best.config.dropout, "steps": trainer.step,
        "train_seconds": trainer.elapsed, "best_step": final["best_step"],
        "final_valid_nats": final["valid_nats"],
        "scores": {k: metrics(v, k, "char") for k, v in scores.items()},
        "curve": curve(run_dir), "lr": _lr_curve(run_dir),
        "seconds": time.time() - start, "machine": machine}
    write_outputs(out_dir, NAME, result, table(result))
    plot(result, out_dir / f"{NAME}.png")
    return result


def _lr_curve(run_dir: Path) -> list[tuple[int, float]]:
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["lr"]) for r in rows if "lr" in r][::10]


def table(result: dict) -> str:
    cfg, s = result["config"], result["scores"]
    rows = [[name, f"{s[name][name + '_nats']:.4f}", f"{s[name][name + '_bpc']:.4f}"]
            for name in ("valid", "test", "nanogpt_val")]
    head = (f"# {NAME}\n\nText: {result['text']} ({result['chars']['train']:,} training "
            f"characters, {result['vocab_size']} symbols). {cfg['arch']} {cfg['layers']} × "
            f"{cfg['hidden']}, embedding {cfg['embedding']}, dropout {result['dropout']}, "
            f"{result['params']:,} parameters; batch {cfg['batch']} × {cfg['bptt']}, AdamW lr "
            f"{cfg['lr']} ({cfg['schedule']} schedule), {result['steps']} steps in "
            f"{result['train_seconds']:.0f} s; best validation at step {result['best_step']}"
            f" (final {result['final_valid_nats']:.4f}). Scores of the best model:\n\n")
    foot = f"\n\nTotal time {result['seconds']:.0f} s. Machine: {result['machine']}."
    return head + markdown_table(("split", "nats/char", "bits/char"), rows) + foot


def plot(result: dict, path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.6))
    pts = result["curve"]
    nats = [p["valid_bpc"] * math.log(2) for p in pts]
    ax.plot([p["seconds"] / 60 for p in pts], nats, marker=".", label="validation")
    ax.axhline(1.4697, color="gray", ls="--", lw=1, label="nanoGPT (A100): 1.4697")
    ax.axhline(1.40, color="tab:red", ls=":", lw=1, label="goal: 1.40")
    ax.set_xlabel("training minutes")
    ax.set_ylabel("validation nats per character")
    ax.set_ylim(min(nats + [1.40]) - 0.05, min(2.2, max(nats)) + 0.05)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
