"""rnnlab demo: the README's main job.

Trains a word-level next-word model with each architecture on the built-in corpus
(rnnlab.data.corpus: "Maria was born in France ... She grew up speaking French", "The
clouds in the sky are blue") and prints next-word accuracy on held-out probes by the gap
between cue and target, each model's top-3 suggestions for the seed's two sentences, and
writes a plot of accuracy against gap (see rnnlab.experiments.next_word)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from ..experiments import next_word
from ..settings import number

HELP = "train RNN, LSTM, GRU (and others within the budget) on the built-in corpus and " \
       "show which keep a long dependency"


def add_arguments(parser) -> None:
    d = next_word.PRESETS["demo"]
    parser.add_argument("--out", type=Path, default=Path("demo-output"),
                        help="output folder (table, JSON, plot, one run folder per model)")
    parser.add_argument("--steps", type=number(int, "positive"), default=d.steps,
                        help=f"training steps per architecture (default {d.steps})")
    parser.add_argument("--budget", type=number(float, "nonneg"), default=d.budget,
                        help=f"seconds in all; rnn, lstm, gru always finish, the other "
                        f"architectures share the rest (default {d.budget:g})")
    parser.add_argument("--archs", help="comma-separated architectures (default: rnn, lstm, "
                        "gru, then every other registered one)")
    parser.add_argument("--seed", type=number(int, "seed"), default=d.seed,
                        help="corpus and model seed")
    parser.add_argument("--resume", action="store_true",
                        help="continue or reuse the runs already in OUT/runs (after Ctrl-C)")
    parser.add_argument("--threads", type=number(int, "nonneg"), default=0,
                        help="torch CPU threads (default: torch's)")


def run(args) -> int:
    cfg = dataclasses.replace(
        next_word.PRESETS["demo"], steps=args.steps, budget=args.budget, seed=args.seed,
        threads=args.threads, resume=args.resume,
        archs=tuple(a.strip() for a in args.archs.split(",")) if args.archs else ())
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"rnnlab demo: {cfg.steps} steps per architecture on the built-in corpus "
          f"(budget {cfg.budget:g} s); results in {args.out}")
    result = next_word.run(cfg, args.out)
    print()
    print(next_word.table_markdown(result))
    print(f"\nplot: {args.out / (next_word.NAME + '.png')}; try a model with "
          f"`rnnlab suggest {args.out}/runs/lstm \"She grew up speaking\"`")
    return 0
