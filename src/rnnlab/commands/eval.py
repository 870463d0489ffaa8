"""rnnlab eval RUN TEXT: loss of a trained model on a text (nats, bits, perplexity)."""
from __future__ import annotations

import math
from pathlib import Path

import torch

from ..data.text import read_text, split_ids, tokenize
from ..export.predictor import ExportPredictor, evaluate_export, load_predictor
from ..settings import number
from ..train import evaluate, metrics

HELP = "evaluate a trained run on TEXT: nats per token, bits per char/token, perplexity"
SPLITS = {"train": 0, "valid": 1, "test": 2}


def add_arguments(parser) -> None:
    parser.add_argument("run", type=Path, help="run directory written by `rnnlab train`, or "
                        "an export folder written by `rnnlab export`")
    parser.add_argument("text", help="UTF-8 text file or folder of .txt files")
    parser.add_argument("--split", choices=("all", *SPLITS), default="all",
                        help="score all of TEXT or one part of its 90/5/5 split")
    parser.add_argument("--batch", type=number(int, "positive"), default=16,
                        help="parallel streams")
    parser.add_argument("--threads", type=number(int, "positive"),
                        help="torch CPU threads (default: torch's)")


def run(args) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    pred = load_predictor(args.run)
    vocab = pred.vocab
    toks = tokenize(read_text(args.text), vocab.level)
    if args.split != "all":
        toks = split_ids(toks)[SPLITS[args.split]]
    ids = vocab.encode(toks)
    if isinstance(pred, ExportPredictor):
        nats = evaluate_export(pred.runtime, ids, args.batch)
    else:
        nats = evaluate(pred.model, ids, args.batch)
    unk = sum(1 for i in ids if i == 0)
    shown = "  ".join(f"{k.removeprefix('eval_')} {v:.4f}"
                      for k, v in metrics(nats, "eval", vocab.level).items())
    print(f"{args.text} ({args.split}, {len(ids)} {vocab.level} tokens, "
          f"{unk / max(len(ids), 1):.2%} unknown): {shown}")
    if math.isnan(nats):
        return 1
    return 0
