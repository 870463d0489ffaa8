"""rnnlab train [TEXT]: train a language model on a text file or the built-in corpus."""
from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path

import torch

from .. import available
from ..errors import UserError
from ..keyboard import PRESETS
from ..train import Trainer, TrainConfig

HELP = "train a next-token language model on TEXT (a UTF-8 file or folder; default built-in)"
_DEFAULTS = TrainConfig()
_BUILTIN = {"embedding": 64, "hidden": 128, "layers": 1, "bptt": 100}
# (option, type, help); default shown from TrainConfig
_OPTIONS = [
    ("arch", str, "recurrent core, any name from `rnnlab list`"),
    ("embedding", int, "embedding size"),
    ("hidden", int, "hidden units per layer"),
    ("layers", int, "stacked recurrent layers"),
    ("proj_size", int, "LSTM only: project each layer's output to N units (0: none)"),
    ("dropout", float, "dropout on embeddings, between layers and before the decoder"),
    ("batch", int, "parallel contiguous streams per step"),
    ("bptt", int, "tokens per truncated-BPTT window"),
    ("lr", float, "AdamW learning rate after the linear warm-up"),
    ("min_lr", float, "decay by cosine to this learning rate (default: keep lr constant)"),
    ("warmup", int, "linear warm-up steps"),
    ("weight_decay", float, "AdamW weight decay"),
    ("clip", float, "gradient-norm clipping threshold (0: off)"),
    ("eval_every", int, "steps between validation passes (0: only at the end)"),
    ("save_every", int, "steps between checkpoints"),
    ("seed", int, "random seed (same seed and settings: same run)"),
    ("min_count", int, "drop tokens seen fewer times from the vocabulary"),
    ("max_vocab", int, "keep at most this many tokens (the rest become <unk>)"),
    ("corpus_tokens", int, "size of the built-in corpus in tokens"),
    ("corpus_max_gap", int, "longest dependency gap in the built-in corpus"),
]


def add_arguments(parser) -> None:
    parser.add_argument("text", nargs="?", help="UTF-8 text file or folder of .txt files "
                        "(omit: the built-in long-dependency corpus)")
    parser.add_argument("--out", type=Path, help="run directory (default runs/ARCH-LEVEL)")
    parser.add_argument("--level", choices=("char", "word"),
                        help="tokens: characters or words (default char for TEXT, word for "
                        "the built-in corpus)")
    parser.add_argument("--max-time", type=float, metavar="S", help="time budget in seconds")
    parser.add_argument("--max-steps", type=int, metavar="N", help="budget in training steps")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its last checkpoint")
    parser.add_argument("--tie-weights", action=argparse.BooleanOptionalAction, default=None,
                        help="share the embedding and decoder matrices (default off)")
    parser.add_argument("--preset", choices=sorted(PRESETS),
                        help="start from a named configuration; any flag given overrides it. "
                        "keyboard: word level, 10k vocabulary, one CIFG LSTM layer of 670 "
                        "units projected to 96, tied 96-wide embeddings (~1.4M parameters)")
    parser.add_argument("--order", type=int, metavar="N",
                        help="n-gram order for --arch ngram (default 5)")
    for name, kind, text in _OPTIONS:
        default = getattr(_DEFAULTS, name)
        if name in _BUILTIN:
            default = f"{default}; built-in corpus {_BUILTIN[name]}"
        parser.add_argument("--" + name.replace("_", "-"), type=kind, default=None,
                            metavar="N" if kind is int else "X" if kind is float else "NAME",
                            help=f"{text} (default {default})")
    parser.add_argument("--threads", type=int, metavar="N", help="torch CPU threads (default: torch's)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def config_from_args(args) -> TrainConfig:
    given = {f.name: getattr(args, f.name) for f in fields(TrainConfig)
             if getattr(args, f.name, None) is not None}
    given.pop("level", None)
    preset = dict(PRESETS[args.preset]) if getattr(args, "preset", None) else {}
    cfg = TrainConfig(**{**preset, **given})
    cfg.text = str(args.text) if args.text else None
    cfg.level = args.level or preset.get("level") or ("char" if args.text else "word")
    cfg.tie_weights = bool(preset.get("tie_weights", False) if args.tie_weights is None
                           else args.tie_weights)
    if not args.text:                       # the built-in corpus wants a small word model
        for name, value in _BUILTIN.items():
            if getattr(args, name) is None and name not in preset:
                setattr(cfg, name, value)
    if cfg.arch == "ngram":
        return cfg
    if cfg.arch not in available():
        raise UserError(f"unknown architecture {cfg.arch!r}; available: "
                        f"{', '.join(available())}, or ngram (Kneser-Ney, with --order)")
    if cfg.proj_size and not cfg.arch.startswith("lstm"):
        raise UserError(f"--proj-size needs an LSTM architecture (lstm, lstm_cifg, ...), "
                        f"received {cfg.arch!r}")
    if getattr(args, "order", None) is not None:
        raise UserError("--order is the n-gram order: use it with --arch ngram")
    return cfg


def run(args) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = config_from_args(args)
    out = args.out or Path("runs") / f"{cfg.arch}-{cfg.level}"
    if cfg.arch == "ngram":
        return _train_ngram(cfg, out, args)
    if not args.resume and args.max_steps is None and args.max_time is None:
        raise UserError("give a budget: --max-steps N and/or --max-time SECONDS")
    trainer = Trainer(cfg, out, resume=args.resume, quiet=args.quiet)
    result = trainer.run()
    if result["interrupted"]:
        print(f"interrupted at step {result['step']}; saved to {out}; "
              f"continue with: rnnlab train --out {out} --resume")
        return 130
    shown = "  ".join(f"{k} {v:.4g}" for k, v in result.items()
                      if k.startswith("valid_") and isinstance(v, float))
    print(f"step {trainer.step}  {shown}  ({result['elapsed']:.0f} s)  run: {out}")
    return 0


def _train_ngram(cfg: TrainConfig, out: Path, args) -> int:
    """Count an interpolated Kneser-Ney n-gram (no budget: one pass over the text)."""
    from ..ngram_run import train_ngram

    if args.resume:
        raise UserError("an n-gram run is built in one pass; it has nothing to resume")
    result = train_ngram(cfg, out, args.order if args.order is not None else 5)
    shown = "  ".join(f"{k} {v:.4g}" for k, v in result.items() if k.startswith("valid_"))
    print(f"{result['entries']} n-grams  {shown}  ({result['elapsed']:.0f} s)  run: {out}")
    return 0
