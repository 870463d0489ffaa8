"""rnnlab sample RUN: generate text from a trained model."""
from __future__ import annotations

import sys
from pathlib import Path

from ..infer import Predictor
from ..settings import number

HELP = "generate text from a trained run, optionally continuing a prime"


def add_arguments(parser) -> None:
    parser.add_argument("run", type=Path, help="run directory written by `rnnlab train`")
    parser.add_argument("--prime", default="", help="text to start from")
    parser.add_argument("--length", type=number(int, "nonneg"), default=200,
                        help="tokens to generate")
    parser.add_argument("--temperature", type=number(float, "nonneg"), default=0.8,
                        help="softmax temperature (0: always the most likely token)")
    parser.add_argument("--top-k", type=number(int, "positive"),
                        help="sample only among the k most likely tokens")
    parser.add_argument("--seed", type=number(int, "seed"),
                        help="random seed (same seed: same text)")


def run(args) -> int:
    pred = Predictor.load(args.run)
    text = pred.sample(args.prime, args.length, args.temperature, args.top_k, args.seed)
    if pred.unknown:
        print(f"note: not in the vocabulary, read as <unk>: {' '.join(pred.unknown)}",
              file=sys.stderr)
    print(text)
    return 0
