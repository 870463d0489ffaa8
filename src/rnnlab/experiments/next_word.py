"""Next-word prediction across a growing gap: which architectures keep a dependency?

The seed's claim: a language model must carry "born in France" across unrelated text to
predict "She grew up speaking *French*", and a plain RNN loses such a dependency as the gap
grows while an LSTM keeps it (Hochreiter & Schmidhuber 1997; Bengio et al. 1994 on
vanishing gradients). Each architecture trains the same word-level language model on the
built-in corpus (rnnlab.data.corpus) for the same wall-clock time, then is scored on held-out
probes: the next-word accuracy (argmax over the whole vocabulary) at the target, by gap
in tokens between cue and target. Chance: 1/8 for languages, 1/6 for colours.

``rnnlab demo`` runs this with the "demo" preset and prints the table.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..data.corpus import COUNTRIES, OBJECTS, CorpusConfig, Probe, make_probes
from ..data.text import Vocab, tokenize
from ..infer import Predictor
from ..layers.registry import available
from ..models.lm import LanguageModel, LMConfig
from ..rundir import RunDir
from ..train import TrainConfig, Trainer, evaluate
from . import machine_description, write_outputs

NAME = "next_word"
DESCRIPTION = "next-word accuracy vs dependency gap (born in X ... speaking Y) per architecture"
CORE = ("rnn", "lstm", "gru")      # always trained for the full number of steps
MIN_SECONDS = 20.0                 # an extra architecture needs this much budget left
SEED_PROMPTS = ("The clouds in the sky are",
                "Maria was born in France. They waited. We opened the old box near the door. "
                "She grew up speaking")


@dataclass
class Config:
    archs: tuple[str, ...] = ()       # empty: rnn, lstm, gru, then every other registered
    steps: int = 2000                 # training steps per architecture
    budget: float = 360.0             # seconds in all; caps the architectures after the core
    embedding: int = 64
    hidden: int = 128
    layers: int = 1
    batch: int = 32
    bptt: int = 100
    lr: float = 1e-2
    corpus_tokens: int = 300_000
    max_gap: int = 90
    eval_gaps: tuple[int, ...] = (5, 10, 20, 40, 80)
    probes: int = 120                 # per kind and gap
    seed: int = 0
    threads: int = 0                  # 0: leave torch's setting
    resume: bool = False              # continue (or reuse) runs already in OUT/runs


PRESETS = {
    "fast": Config(archs=("rnn", "lstm"), steps=300, budget=60.0, corpus_tokens=100_000,
                   probes=60),
    "demo": Config(),
    "full": Config(steps=4000, budget=7200.0),
}


def arch_order(cfg: Config) -> list[str]:
    if cfg.archs:
        return list(cfg.archs)
    names = list(available())
    return [a for a in CORE if a in names] + [a for a in names if a not in CORE]


def train_config(cfg: Config, arch: str, max_time: float | None = None) -> TrainConfig:
    return TrainConfig(text=None, level="word", model=LMConfig(
                           arch=arch, embedding=cfg.embedding, hidden=cfg.hidden,
                           layers=cfg.layers, dropout=0.0), batch=cfg.batch, bptt=cfg.bptt,
                       lr=cfg.lr, schedule="cosine", min_lr=cfg.lr / 10, warmup=20,
                       max_steps=cfg.steps,
                       max_time=max_time,
                       eval_every=0, save_every=0, seed=cfg.seed,
                       corpus_tokens=cfg.corpus_tokens, corpus_max_gap=cfg.max_gap)


@torch.no_grad()
def probe_accuracy(model: LanguageModel, vocab: Vocab, probes: list[Probe]) -> dict:
    """{kind: {gap: (accuracy, mean target probability)}}, scored in one batch per group."""
    model.eval()
    start = vocab.index.get("\n", 1)
    groups: dict[tuple[str, int], list[Probe]] = {}
    for p in probes:
        groups.setdefault((p.kind, p.gap), []).append(p)
    out: dict[str, dict[int, tuple[float, float]]] = {}
    for (kind, gap), ps in sorted(groups.items()):
        ids = torch.tensor([[start] + vocab.encode(tokenize(p.context, "word")) for p in ps]).t()
        target = torch.tensor(vocab.encode([p.target for p in ps]))
        logits, _ = model(ids)                                         # (T, B, V)
        last = torch.softmax(logits[-1].float(), -1)                   # (B, V)
        acc = (last.argmax(-1) == target).float().mean().item()
        prob = last.gather(1, target[:, None]).mean().item()
        out.setdefault(kind, {})[gap] = (acc, prob)
    return out


def run(cfg: Config, out_dir: Path) -> dict:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out_dir = Path(out_dir)
    probes = make_probes(CorpusConfig(seed=cfg.seed, eval_gaps=cfg.eval_gaps,
                                      probes_per_gap=cfg.probes), seed=cfg.seed + 1_000_003)
    results, failed, skipped, t0 = {}, {}, [], time.time()
    result = {"config": asdict(cfg), "results": results, "failed": failed,
              "skipped": skipped, "machine": machine_description(),
              "chance": {"language": 1 / len(COUNTRIES), "colour": 1 / len(OBJECTS)}}
    for arch in arch_order(cfg):
        left = cfg.budget - (time.time() - t0)
        if arch not in CORE and left < MIN_SECONDS:
            skipped.append(arch)
            continue
        cap = None if arch in CORE else left
        try:
            results[arch] = train_one(cfg, arch, out_dir / "runs" / arch, probes, cap)
        except Exception as e:                       # one broken architecture: say so, go on
            failed[arch] = f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"
            print(f"{arch} failed: {failed[arch]}", file=sys.stderr)
        write_outputs(out_dir, NAME, result, table_markdown(result))   # after every model
    write_outputs(out_dir, NAME, result, table_markdown(result))
    plot(result, out_dir / f"{NAME}.png")
    return result


def train_one(cfg: Config, arch: str, run_dir: Path, probes: list[Probe],
              max_time: float | None = None) -> dict:
    t0 = time.time()
    resume = cfg.resume and (run_dir / "last.json").exists()
    if not resume and RunDir(run_dir).is_ours():       # a previous demo's run: start over
        _start_over(run_dir)
    trainer = Trainer(train_config(cfg, arch, max_time), run_dir, resume=resume)
    if trainer.finished():                            # reused as it is
        trainer.close()
        final = {"interrupted": False,
                 "valid_nats": evaluate(trainer.model, trainer.corpus.valid)}
    else:
        final = trainer.run()
    if final["interrupted"]:                          # Ctrl-C: saved; stop the whole demo
        raise KeyboardInterrupt
    acc = probe_accuracy(trainer.model, trainer.corpus.vocab, probes)
    pred = Predictor(trainer.model, trainer.corpus.vocab)
    return {"steps": trainer.step, "train_seconds": trainer.elapsed,
            "wall_seconds": time.time() - t0, "valid_nats": final.get("valid_nats", math.nan),
            "params": sum(p.numel() for p in trainer.model.parameters()),
            "accuracy": {k: {str(g): v[0] for g, v in d.items()} for k, d in acc.items()},
            "target_prob": {k: {str(g): v[1] for g, v in d.items()} for k, d in acc.items()},
            "suggestions": {s: pred.suggest(s, 3) for s in SEED_PROMPTS},
            "run_dir": str(run_dir)}


def _start_over(run_dir: Path) -> None:
    """Delete what rnnlab wrote in a run (files of others stay), under the writer's lock:
    refused with one line while another process writes it."""
    old = RunDir(run_dir)
    old.claim(fresh=False)
    try:
        old.clear()
    finally:
        old.release()


def table_markdown(result: dict) -> str:
    cfg, res = result["config"], result["results"]
    lines = []
    for kind, title in (("language", "born in COUNTRY … speaking LANGUAGE"),
                        ("colour", "The OBJECT … is COLOUR")):
        gaps = sorted({int(g) for r in res.values() for g in r["accuracy"].get(kind, {})})
        lines += [f"Next-word accuracy at the target, {title} "
                  f"(chance {result['chance'][kind]:.0%}), by gap in tokens:", "",
                  "| arch | steps | seconds | valid nats | "
                  + " | ".join(f"gap {g}" for g in gaps) + " |",
                  "|---|---|---|---|" + "---|" * len(gaps)]
        for arch, r in res.items():
            accs = r["accuracy"].get(kind, {})
            cells = " | ".join(f"{accs[str(g)]:.0%}" if str(g) in accs else "-" for g in gaps)
            lines.append(f"| {arch} | {r['steps']} | {r['train_seconds']:.0f} | "
                         f"{r['valid_nats']:.3f} | {cells} |")
        lines.append("")
    lines.append("Top-3 suggestions:")
    lines.append("")
    for arch, r in res.items():
        for prompt, words in r["suggestions"].items():
            shown = ", ".join(f"{w} {p:.0%}" for w, p in words)
            lines.append(f"- {arch}: “{_short(prompt)}” → {shown}")
    lines += ["", f"Each architecture: up to {cfg['steps']} training steps, word level, "
              f"embedding {cfg['embedding']}, hidden {cfg['hidden']}, {cfg['layers']} layer(s), "
              f"batch {cfg['batch']} × {cfg['bptt']} tokens, AdamW lr {cfg['lr']}, "
              f"{cfg['probes']} probes per gap and kind, seed {cfg['seed']}."]
    lines.append(f"rnn, lstm and gru always train all steps; the others share what is left "
                 f"of the {cfg['budget']:.0f} s budget (fewer steps where it ran out).")
    for arch, err in result.get("failed", {}).items():
        lines.append(f"Failed: {arch} ({err}).")
    if result["skipped"]:
        lines.append(f"Skipped, budget spent: {', '.join(result['skipped'])}.")
    lines.append(f"Machine: {result['machine']}.")
    return "\n".join(lines)


def _short(prompt: str) -> str:
    return prompt if len(prompt) < 40 else prompt[:22] + " … " + prompt[-18:]


def plot(result: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, kind in zip(axes, ("language", "colour")):
        for arch, r in result["results"].items():
            accs = r["accuracy"].get(kind, {})
            gaps = sorted(int(g) for g in accs)
            ax.plot(gaps, [accs[str(g)] for g in gaps], marker="o", label=arch)
        ax.axhline(result["chance"][kind], color="gray", ls=":", label="chance")
        ax.set_xscale("log")
        ticks = sorted({int(g) for r in result["results"].values()
                        for g in r["accuracy"].get(kind, {})})
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.minorticks_off()
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("gap (tokens between cue and target)")
        ax.set_title({"language": "born in X … speaking Y", "colour": "object … colour"}[kind])
    axes[0].set_ylabel("next-word accuracy")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
