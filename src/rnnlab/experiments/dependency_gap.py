"""How far back can each architecture carry a word? Accuracy against the dependency gap.

The seed's central claim, measured: "as that gap grows, RNNs become unable to learn to
connect the information" (Bengio, Simard & Frasconi 1994; Hochreiter & Schmidhuber 1997).
Every registered architecture trains the same word-level language model on the built-in
corpus (rnnlab.data.corpus: "Maria was born in France . <filler> She grew up speaking
French", "The clouds in the sky , <clause> , are blue"), with training gaps up to
``max_gap`` tokens, at an equal parameter budget (hidden size chosen per architecture so
that recurrent core + output layer hold about ``budget`` parameters; the embedding is the
same for all), for several seeds. Held-out probes score the next-word accuracy at the
target for each gap; the table and plot give the mean and spread across seeds.
"""
from __future__ import annotations

import dataclasses
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ..data.corpus import COUNTRIES, OBJECTS, CorpusConfig, make_probes
from ..models.lm import LMConfig
from ..progress import Progress
from ..train import TrainConfig, Trainer, load_corpus
from . import machine_description, write_outputs
from ._compare import architectures, hidden_for_budget, markdown_table, pyplot, threads
from .next_word import probe_accuracy

NAME = "dependency-gap"
DESCRIPTION = ("accuracy vs dependency gap (up to hundreds of tokens) for every architecture "
               "at an equal parameter budget, mean and spread over seeds")
PROBE_SEED = 7_777_777          # probes are drawn apart from every training seed


@dataclass(frozen=True)
class Config:
    archs: tuple[str, ...] = ()            # empty: every registered architecture
    seeds: tuple[int, ...] = (0, 1, 2)
    budget: int = 40_000                   # parameters of recurrent core + output layer
    embedding: int = 32
    steps: int = 1500                      # training steps per run (equal for all) ...
    max_seconds: float = 600.0             # ... or fewer, when a run reaches this time
    batch: int = 32
    bptt: int = 100
    lr: float = 5e-3
    corpus_tokens: int = 200_000
    max_gap: int = 300                     # longest training gap
    eval_gaps: tuple[int, ...] = (5, 10, 20, 40, 80, 160, 320)
    probes: int = 40                       # per kind and gap
    threads: int = 0                       # torch threads (0: leave as is)
    keep_runs: str = ""                    # folder to keep the run directories in


PRESETS = {
    "fast": Config(archs=("rnn", "lstm"), seeds=(0, 1), budget=8_000, embedding=16, steps=30,
                   max_seconds=10.0, batch=8, bptt=40, corpus_tokens=15_000, max_gap=40,
                   eval_gaps=(5, 40), probes=12, threads=1),
    "full": Config(threads=1),
}


def train_config(cfg: Config, arch: str, hidden: int, seed: int) -> TrainConfig:
    return TrainConfig(text=None, level="word", model=LMConfig(
                           arch=arch, embedding=cfg.embedding, hidden=hidden, layers=1,
                           dropout=0.0),
                       batch=cfg.batch, bptt=cfg.bptt, lr=cfg.lr,
                       schedule="cosine", min_lr=cfg.lr / 10, warmup=20, max_steps=cfg.steps,
                       max_time=cfg.max_seconds, eval_every=0, save_every=0, seed=seed,
                       corpus_tokens=cfg.corpus_tokens, corpus_max_gap=cfg.max_gap)


def run(cfg: Config, out_dir: Path) -> dict:
    start = time.time()
    probes = make_probes(CorpusConfig(eval_gaps=cfg.eval_gaps, probes_per_gap=cfg.probes),
                         seed=PROBE_SEED)
    archs = architectures(cfg.archs)
    with threads(cfg.threads), tempfile.TemporaryDirectory(prefix="rnnlab-gap-") as tmp:
        runs_dir = Path(cfg.keep_runs or tmp)
        vocab = len(load_corpus(train_config(cfg, "lstm", 8, cfg.seeds[0])).vocab)
        bar = Progress(len(archs) * len(cfg.seeds), desc=NAME, unit="run")
        results = {}
        for arch in archs:
            hidden = hidden_for_budget(arch, cfg.embedding, cfg.budget,
                                       extra=lambda out: out * vocab + vocab)
            runs = []
            for seed in cfg.seeds:
                bar.desc = f"{arch} seed {seed}"
                trainer = Trainer(train_config(cfg, arch, hidden, seed),
                                  runs_dir / f"{arch}-{seed}", quiet=True)
                final = trainer.run()
                acc = probe_accuracy(trainer.model, trainer.corpus.vocab, probes)
                runs.append({"seed": seed, "steps": trainer.step,
                             "train_seconds": trainer.elapsed,
                             "valid_nats": final.get("valid_nats"),
                             "accuracy": {k: {str(g): v[0] for g, v in d.items()}
                                          for k, d in acc.items()}})
                bar.update(1)
            params = sum(p.numel() for p in trainer.model.parameters())
            results[arch] = {"hidden": hidden, "params": params,
                             "params_core_and_output": params - vocab * cfg.embedding,
                             "runs": runs, "summary": _summarise(runs)}
        bar.close()
        machine = machine_description()
    result = {"experiment": NAME, "config": dataclasses.asdict(cfg), "vocab_size": vocab,
              "results": results, "seconds": time.time() - start,
              "chance": {"language": 1 / len(COUNTRIES), "colour": 1 / len(OBJECTS)},
              "machine": machine}
    write_outputs(out_dir, NAME, result, table(result))
    plot(result, Path(out_dir) / f"{NAME}.png")
    return result


def _summarise(runs: list[dict]) -> dict:
    """{kind: {gap: {mean, std, min, max}}} across seeds."""
    out: dict = {}
    for kind in runs[0]["accuracy"]:
        for gap in runs[0]["accuracy"][kind]:
            vals = [r["accuracy"][kind][gap] for r in runs]
            out.setdefault(kind, {})[gap] = {
                "mean": statistics.fmean(vals),
                "std": statistics.pstdev(vals) if len(vals) > 1 else 0.0,
                "min": min(vals), "max": max(vals)}
    return out


def table(result: dict) -> str:
    cfg, res = result["config"], result["results"]
    parts = [f"# {NAME}\n",
             f"Next-word accuracy at the target word, mean ± standard deviation over "
             f"{len(cfg['seeds'])} seeds ({', '.join(map(str, cfg['seeds']))}). Every "
             f"architecture: one layer, embedding {cfg['embedding']}, hidden size chosen so "
             f"that core + output layer hold at most {cfg['budget']} parameters; "
             f"{cfg['steps']} steps (or {cfg['max_seconds']:.0f} s, whichever comes first) "
             f"of batch {cfg['batch']} × {cfg['bptt']} tokens, AdamW lr {cfg['lr']}; "
             f"training gaps up to {cfg['max_gap']} tokens; {cfg['probes']} probes per gap.\n"]
    for kind, title in (("language", "born in COUNTRY … speaking LANGUAGE"),
                        ("colour", "The OBJECT … is COLOUR")):
        gaps = sorted({int(g) for r in res.values() for g in r["summary"].get(kind, {})})
        rows = []
        for arch, r in res.items():
            s = r["summary"].get(kind, {})
            steps = statistics.fmean(x["steps"] for x in r["runs"])
            secs = statistics.fmean(x["train_seconds"] for x in r["runs"])
            rows.append([arch, r["hidden"], r["params_core_and_output"], f"{steps:.0f}",
                         f"{secs:.0f}"] + [f"{s[str(g)]['mean']:.0%} ± {s[str(g)]['std']:.0%}"
                                           if str(g) in s else "-" for g in gaps])
        parts.append(f"\n## {title} (chance {result['chance'][kind]:.0%})\n")
        parts.append(markdown_table(["arch", "hidden", "params", "steps", "train s"]
                                    + [f"gap {g}" for g in gaps], rows))
    parts.append(f"\nTotal time {result['seconds']:.0f} s. Machine: {result['machine']}.")
    return "\n".join(parts)


def plot(result: dict, path: Path) -> None:
    plt = pyplot()
    kinds = [k for k in ("language", "colour")
             if any(k in r["summary"] for r in result["results"].values())]
    fig, axes = plt.subplots(1, len(kinds), figsize=(6.5 * len(kinds), 4.6), sharey=True,
                             squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        for arch, r in result["results"].items():
            s = r["summary"].get(kind, {})
            gaps = sorted(int(g) for g in s)
            mean = [s[str(g)]["mean"] for g in gaps]
            std = [s[str(g)]["std"] for g in gaps]
            line, = ax.plot(gaps, mean, marker="o", label=f"{arch} (H={r['hidden']})")
            ax.fill_between(gaps, [m - d for m, d in zip(mean, std)],
                            [m + d for m, d in zip(mean, std)], color=line.get_color(),
                            alpha=0.15)
        ax.axhline(result["chance"][kind], color="grey", ls=":", label="chance")
        ax.set_xscale("log")
        ax.set_xlabel("gap: tokens between the cue and the word to predict")
        ax.set_title({"language": "born in France … speaking French",
                      "colour": "The clouds … are blue"}[kind])
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"next-word accuracy (mean ± sd, {len(result['config']['seeds'])} "
                          f"seeds)")
    axes[0][-1].legend(fontsize=7, loc="upper right")
    fig.suptitle(f"Equal budget of {result['config']['budget']} parameters per architecture")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
