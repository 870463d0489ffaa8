"""rnnlab eval RUN TEXT: loss and keyboard metrics of a trained run on a text."""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from ..data.text import read_text, split_ids, tokenize
from ..export.predictor import ExportPredictor, evaluate_export, load_predictor
from ..keyboard import keyboard_metrics
from ..settings import number
from ..train import evaluate

HELP = ("evaluate a trained run (network or n-gram) on TEXT: nats, perplexity and, at word "
        "level, top-1/top-3, keystroke savings and suggestion latency")
SPLITS = {"train": 0, "valid": 1, "test": 2}
KEYS = ("nats", "perplexity", "top1", "top3", "top3_in_vocab", "keystroke_savings",
        "latency_ms_p50", "latency_ms_p95", "params", "size_mb")


def add_arguments(parser) -> None:
    parser.add_argument("run", type=Path, help="run directory written by `rnnlab train`, or "
                        "an export folder written by `rnnlab export`")
    parser.add_argument("text", help="UTF-8 text file or folder of .txt files")
    parser.add_argument("--split", choices=("all", *SPLITS), default="all",
                        help="score all of TEXT or one part of its 90/5/5 split")
    parser.add_argument("--limit", type=number(int, "positive"), metavar="N",
                        help="score only the first N tokens (of the split)")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object on one line (nothing else on stdout)")
    parser.add_argument("--batch", type=number(int, "positive"), default=16,
                        help="parallel streams for a char-level network's loss")
    parser.add_argument("--threads", type=number(int, "positive"),
                        help="torch CPU threads (default: torch's)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    pred = load_predictor(args.run)
    vocab = pred.vocab
    toks = tokenize(read_text(args.text), vocab.level)
    if args.split != "all":
        toks = split_ids(toks)[SPLITS[args.split]]
    if args.limit is not None:
        toks = toks[: args.limit]
    if not toks:
        raise ValueError(f"{args.text}: no {vocab.level} tokens to score")
    result = _measure(pred, toks, progress=not args.quiet and not args.json, batch=args.batch)
    result.update(params=pred.param_count(), size_mb=pred.size_bytes() / 1e6,
                  arch=_arch(pred), level=vocab.level)
    if args.json:
        print(json.dumps(result))
    else:
        print(_table(args.text, args.split, result))
    return 1 if math.isnan(result["nats"]) else 0


def _measure(pred, toks, progress: bool, batch: int) -> dict:
    if pred.level == "word":
        return keyboard_metrics(pred, toks, progress=progress)
    ids = pred.vocab.encode(toks)                   # char level: the loss, not the strip
    if isinstance(pred, ExportPredictor):
        nats = evaluate_export(pred.runtime, ids, batch)
    elif pred.model is not None:
        nats = evaluate(pred.model, ids, batch)
    else:
        nats = pred.lm.nats(ids, start=[pred.start_id])
    out = {k: None for k in KEYS}
    out.update(tokens=len(ids), nats=nats, perplexity=math.exp(min(nats, 50.0)))
    return out


def _arch(pred) -> str:
    if isinstance(pred, ExportPredictor):
        return f"{pred.runtime.meta.get('architecture')} (onnx)"
    return "ngram" if pred.model is None else pred.model.config.arch


def _table(text: str, split: str, r: dict) -> str:
    unit = "char" if r["level"] == "char" else "token"
    head = f"{text} ({split}, {r['tokens']} {r['level']} tokens"
    if r.get("words"):
        head += f", {r['words']} words, {r['oov_words'] / r['words']:.2%} out of vocabulary"
    rows = [("nats", f"{r['nats']:.4f} per {unit}  ({r['nats'] / math.log(2):.4f} bits)"),
            ("ppl", f"{r['perplexity']:.2f}")]
    if r.get("top1") is not None:
        rows += [("top-1", f"{r['top1']:.2%}"), ("top-3", f"{r['top3']:.2%}"),
                 ("top-3 in vocabulary", f"{r['top3_in_vocab']:.2%}"),
                 ("keystroke savings", f"{r['keystroke_savings']:.2%}"),
                 ("latency p50 / p95", (f"{r['latency_ms_p50']:.3f} / "
                                        f"{r['latency_ms_p95']:.3f} ms per keystroke"))]
    rows += [("parameters", f"{r['params']:,} ({r['arch']})"),
             ("size", f"{r['size_mb']:.2f} MB")]
    return head + "):\n" + "\n".join(f"  {k:<20} {v}" for k, v in rows)
