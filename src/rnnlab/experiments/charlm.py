"""Character-level language models on a text file: every architecture at an equal parameter
count and an equal training-time budget, compared by validation bits per character.

The task of Graves 2013 ("Generating Sequences With Recurrent Neural Networks") and of the
Grid LSTM paper's Wikipedia experiment (Kalchbrenner et al. 2015), at CPU scale: tiny
Shakespeare (``--set text=PATH``) split 90/5/5, one recurrent layer whose hidden size is
chosen per architecture so that core + output layer hold about ``budget`` parameters, the
same embedding for all, trained with truncated BPTT (rnnlab.train.Trainer) for the same
number of seconds each. Validation time does not count towards the budget. The learning
curves plot validation bpc against training seconds.
"""
from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ..data.corpus import CorpusConfig, generate
from ..models.lm import LMConfig
from ..progress import Progress
from ..train import TrainConfig, Trainer, load_corpus
from . import atomic_write_text, machine_description, write_outputs
from ._compare import architectures, hidden_for_budget, markdown_table, pyplot, threads

NAME = "charlm"
DESCRIPTION = ("character language models at equal parameters and equal training time on a "
               "text file: validation bits per character and learning curves")


@dataclass(frozen=True)
class Config:
    text: str = ""                     # UTF-8 file; empty: the built-in corpus as characters
    archs: tuple[str, ...] = ()        # empty: every registered architecture
    budget: int = 100_000              # parameters of recurrent core + output layer
    embedding: int = 32
    seconds: float = 90.0              # training time per architecture
    max_steps: int = 0                 # 0: no step limit (time only)
    batch: int = 32
    bptt: int = 100
    lr: float = 3e-3
    eval_every: int = 100              # steps between validation passes (learning curve)
    seed: int = 0
    threads: int = 0                   # torch threads (0: leave as is)


PRESETS = {
    "fast": Config(archs=("rnn", "lstm", "gru"), budget=6_000, embedding=16, seconds=2.0,
                   max_steps=15, batch=8, bptt=32, eval_every=5, threads=1),
    "full": Config(threads=1),
}


def train_config(cfg: Config, text: str, arch: str, hidden: int) -> TrainConfig:
    return TrainConfig(text=text, level="char", model=LMConfig(
                           arch=arch, embedding=cfg.embedding, hidden=hidden, layers=1,
                           dropout=0.0),
                       batch=cfg.batch, bptt=cfg.bptt, lr=cfg.lr,
                       schedule="cosine", min_lr=cfg.lr / 10, warmup=20,
                       max_steps=cfg.max_steps or None,
                       max_time=cfg.seconds, eval_every=cfg.eval_every, save_every=0,
                       seed=cfg.seed)


def curve(run_dir: Path) -> list[dict]:
    """(step, training seconds, validation bpc) at every validation of a run."""
    seconds, points = {0: 0.0}, []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if "time" in rec:
            seconds[rec["step"]] = rec["time"]
        if "valid_bpc" in rec:
            points.append({"step": rec["step"], "seconds": seconds.get(rec["step"], 0.0),
                           "valid_bpc": rec["valid_bpc"]})
    return points


def run(cfg: Config, out_dir: Path) -> dict:
    start = time.time()
    with threads(cfg.threads), tempfile.TemporaryDirectory(prefix="rnnlab-charlm-") as tmp:
        text = cfg.text
        if not text:                              # a small built-in text, for the fast preset
            text = str(Path(tmp) / "builtin.txt")
            atomic_write_text(Path(text), generate(CorpusConfig(train_tokens=30_000)).text)
        corpus = load_corpus(train_config(cfg, text, "lstm", 8))
        vocab = len(corpus.vocab)
        archs = architectures(cfg.archs)
        bar = Progress(len(archs) * cfg.seconds, desc=NAME, unit="s")
        results = {}
        for arch in archs:
            bar.desc = arch
            hidden = hidden_for_budget(arch, cfg.embedding, cfg.budget,
                                       extra=lambda out: out * vocab + vocab)
            run_dir = Path(tmp) / arch
            trainer = Trainer(train_config(cfg, text, arch, hidden), run_dir, quiet=True)
            final = trainer.run()
            params = sum(p.numel() for p in trainer.model.parameters())
            results[arch] = {"hidden": hidden, "params": params,
                             "params_core_and_output": params - vocab * cfg.embedding,
                             "steps": trainer.step, "train_seconds": trainer.elapsed,
                             "valid_bpc": final["valid_bpc"], "curve": curve(run_dir)}
            bar.update(cfg.seconds)
        bar.close()
        machine = machine_description()
    result = {"experiment": NAME, "config": dataclasses.asdict(cfg),
              "text": cfg.text or "built-in corpus (30k words) as characters",
              "vocab_size": vocab, "chars": {"train": len(corpus.train),
                                             "valid": len(corpus.valid)},
              "results": results, "seconds": time.time() - start, "machine": machine}
    write_outputs(out_dir, NAME, result, table(result))
    plot(result, Path(out_dir) / f"{NAME}.png")
    return result


def table(result: dict) -> str:
    cfg = result["config"]
    rows = [[arch, r["hidden"], r["params_core_and_output"], r["steps"],
             f"{r['train_seconds']:.0f}", f"{r['valid_bpc']:.3f}"]
            for arch, r in sorted(result["results"].items(), key=lambda kv: kv[1]["valid_bpc"])]
    cap = f" (at most {cfg['max_steps']} steps)" if cfg["max_steps"] else ""
    head = (f"# {NAME}\n\nText: {result['text']} ({result['chars']['train']} training and "
            f"{result['chars']['valid']} validation characters, {result['vocab_size']} "
            f"symbols). Every architecture: one layer, embedding {cfg['embedding']}, hidden "
            f"size chosen so that core + output layer hold at most {cfg['budget']} "
            f"parameters, {cfg['seconds']:.0f} s of training{cap}, "
            f"batch {cfg['batch']} × {cfg['bptt']} characters, AdamW lr {cfg['lr']} "
            f"(cosine decay), seed {cfg['seed']}. Lower bpc is better.\n\n")
    foot = f"\n\nTotal time {result['seconds']:.0f} s. Machine: {result['machine']}."
    return head + markdown_table(("arch", "hidden", "params", "steps", "train s",
                                  "valid bpc"), rows) + foot


def plot(result: dict, path: Path) -> None:
    plt = pyplot()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.6), gridspec_kw={"width_ratios": [3, 2]})
    for arch, r in result["results"].items():
        pts = r["curve"]
        ax.plot([p["seconds"] for p in pts], [p["valid_bpc"] for p in pts], marker=".",
                label=f"{arch} (H={r['hidden']})")
    ax.set_xlabel("training seconds")
    ax.set_ylabel("validation bits per character")
    ax.set_title(f"equal budget: {result['config']['budget']} parameters, "
                 f"{result['config']['seconds']:.0f} s each")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ranked = sorted(result["results"].items(), key=lambda kv: kv[1]["valid_bpc"])
    bx.barh([a for a, _ in ranked], [r["valid_bpc"] for _, r in ranked], color="tab:blue")
    for k, (_, r) in enumerate(ranked):
        bx.text(r["valid_bpc"], k, f" {r['valid_bpc']:.3f}", va="center", fontsize=8)
    bx.invert_yaxis()
    bx.set_xlabel("final validation bpc (lower is better)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
