"""rnnlab train [TEXT | DATA]: train a language model on a text file, a token store made by
``rnnlab prepare`` or the built-in corpus; under ``torchrun`` every process runs this and
they train one model together (rnnlab.distributed)."""
from __future__ import annotations

import os
import sys
from dataclasses import fields
from pathlib import Path

import torch

from .. import available
from ..data.store import is_store, open_store
from ..distributed import DEFAULT_TIMEOUT, Distributed, PeerLost
from ..errors import UserError
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
    ("eval_batch", int, "parallel streams in a validation pass"),
    ("seed", int, "random seed (same seed and settings: same run)"),
    ("min_count", int, "drop tokens seen fewer times from the vocabulary"),
    ("max_vocab", int, "keep at most this many tokens (the rest become <unk>)"),
    ("corpus_tokens", int, "size of the built-in corpus in tokens"),
    ("corpus_max_gap", int, "longest dependency gap in the built-in corpus"),
]


def add_arguments(parser) -> None:
    parser.add_argument("text", nargs="?", help="UTF-8 text file or folder of .txt files, "
                        "or a token store from `rnnlab prepare` (omit: the built-in "
                        "long-dependency corpus)")
    parser.add_argument("--out", type=Path, help="run directory (default runs/ARCH-LEVEL)")
    parser.add_argument("--level", choices=("char", "word"),
                        help="tokens: characters or words (default char for TEXT, word for "
                        "the built-in corpus)")
    parser.add_argument("--max-time", type=float, metavar="S", help="time budget in seconds")
    parser.add_argument("--max-steps", type=int, metavar="N", help="budget in training steps")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its last checkpoint")
    parser.add_argument("--tie-weights", action="store_true",
                        help="share the embedding and decoder matrices")
    for name, kind, text in _OPTIONS:
        default = getattr(_DEFAULTS, name)
        if name in _BUILTIN:
            default = f"{default}; built-in corpus {_BUILTIN[name]}"
        parser.add_argument("--" + name.replace("_", "-"), type=kind, default=None,
                            metavar="N" if kind is int else "X" if kind is float else "NAME",
                            help=f"{text} (default {default})")
    parser.add_argument("--threads", type=int, metavar="N", help="torch CPU threads (default: torch's)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--dist-timeout", type=float, default=DEFAULT_TIMEOUT, metavar="S",
                        help="under torchrun: seconds a process waits for the others before "
                        f"it gives up (default {DEFAULT_TIMEOUT:g})")


def config_from_args(args) -> TrainConfig:
    given = {f.name: getattr(args, f.name) for f in fields(TrainConfig)
             if getattr(args, f.name, None) is not None}
    given.pop("level", None)
    cfg = TrainConfig(**given)
    cfg.text = str(args.text) if args.text else None
    cfg.level = args.level or ("char" if args.text else "word")
    if is_store(args.text):
        cfg.level = args.level or open_store(args.text).vocab.level
        for name in ("min_count", "max_vocab"):
            if getattr(args, name) is not None:
                raise UserError(f"--{name.replace('_', '-')} does not apply to a token store "
                                f"(its vocabulary is fixed); give it to `rnnlab prepare`")
    cfg.tie_weights = bool(args.tie_weights)
    if not args.text:                       # the built-in corpus wants a small word model
        for name, value in _BUILTIN.items():
            if getattr(args, name) is None:
                setattr(cfg, name, value)
    if cfg.arch not in available():
        raise UserError(f"unknown architecture {cfg.arch!r}; available: "
                        f"{', '.join(available())}")
    return cfg


def run(args) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = config_from_args(args)
    out = args.out or Path("runs") / f"{cfg.arch}-{cfg.level}"
    if not args.resume and args.max_steps is None and args.max_time is None:
        raise UserError("give a budget: --max-steps N and/or --max-time SECONDS")
    if args.dist_timeout <= 0:
        raise UserError(f"--dist-timeout must be positive, received {args.dist_timeout}")
    dist = Distributed.from_env(args.dist_timeout)
    try:
        trainer = dist.guard(lambda: Trainer(cfg, out, resume=args.resume, quiet=args.quiet,
                                             dist=dist))
        result = trainer.run()
    except RuntimeError as e:              # PeerLost, or a collective inside DDP's backward
        if not isinstance(e, PeerLost) and not dist.is_comm_error(e):
            raise
        print(f"rnnlab train: error: {dist.lost(e) if not isinstance(e, PeerLost) else e}",
              file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(3)          # with a peer gone the process group cannot shut down cleanly
    dist.close()
    if not dist.is_main:
        return 130 if result["interrupted"] else 0
    if result["interrupted"]:
        print(f"interrupted at step {result['step']}; saved to {out}; "
              f"continue with: rnnlab train --out {out} --resume")
        return 130
    shown = "  ".join(f"{k} {v:.4g}" for k, v in result.items()
                      if k.startswith("valid_") and isinstance(v, float))
    print(f"step {trainer.step}  {shown}  ({result['elapsed']:.0f} s)  run: {out}")
    return 0
