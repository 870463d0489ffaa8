"""rnnlab train [TEXT | DATA]: train a language model on a text file, a token store made by
``rnnlab prepare`` or the built-in corpus; under ``torchrun`` every process runs this and
they train one model together (rnnlab.distributed).

The flags come from the settings dataclasses: every field of ``LMConfig`` (the model) and
of ``TrainConfig`` that has a ``help`` is a flag, checked as it is parsed
(rnnlab.settings); architecture options go through ``--arch-option NAME=VALUE``.
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import fields, replace
from pathlib import Path

import torch

from .. import available
from ..data.store import is_store, open_store
from ..distributed import DEFAULT_TIMEOUT, Distributed, PeerLost
from ..errors import UserError
from ..keyboard import PRESETS
from ..layers.registry import factory
from ..models.lm import LMConfig
from ..settings import arch_options, flag_type, number
from ..train import TrainConfig, Trainer

HELP = "train a next-token language model on TEXT (a UTF-8 file or folder; default built-in)"
_DEFAULTS = TrainConfig()
_BUILTIN = {"embedding": 64, "hidden": 128, "layers": 1, "bptt": 100}
_SPECIAL = {"options"}                  # model fields with a flag of their own


def _flags(cls, defaults) -> list[tuple[str, object]]:
    return [(f, getattr(defaults, f.name)) for f in fields(cls)
            if "help" in f.metadata and f.name not in _SPECIAL]


def add_arguments(parser) -> None:
    parser.add_argument("text", nargs="?", help="UTF-8 text file or folder of .txt files, "
                        "or a token store from `rnnlab prepare` (omit: the built-in "
                        "long-dependency corpus)")
    parser.add_argument("--out", type=Path, help="run directory (default runs/ARCH-LEVEL)")
    parser.add_argument("--level", choices=("char", "word"),
                        help="tokens: characters or words (default char for TEXT, word for "
                        "the built-in corpus)")
    parser.add_argument("--max-time", type=flag_type(TrainConfig, "max_time"), metavar="S",
                        help="time budget in seconds (training and validation)")
    parser.add_argument("--max-steps", type=flag_type(TrainConfig, "max_steps"), metavar="N",
                        help="budget in training steps")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its last checkpoint")
    for cls, defaults in ((LMConfig, _DEFAULTS.model), (TrainConfig, _DEFAULTS)):
        for f, default in _flags(cls, defaults):
            flag = "--" + f.name.replace("_", "-")
            if f.type in (bool, "bool"):
                parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None,
                                    help=f"{f.metadata['help']} (default {default})")
                continue
            if f.name in _BUILTIN:
                default = f"{default}; built-in corpus {_BUILTIN[f.name]}"
            shown = "" if default is None else f" (default {default})"   # the help says
            kind = flag_type(cls, f.name)
            parser.add_argument(flag, type=kind, default=None, choices=f.metadata.get("choices"),
                                metavar={"int": "N", "float": "X"}.get(kind.__name__, "NAME"),
                                help=f"{f.metadata['help']}{shown}")
    parser.add_argument("--arch-option", action="append", default=[], metavar="NAME=VALUE",
                        help="an option of the architecture, VALUE a JSON literal, e.g. "
                        "--arch-option num_modules=8 (repeatable; see the architecture's "
                        "parameters)")
    parser.add_argument("--preset", choices=sorted(PRESETS),
                        help="start from a named configuration; any flag given overrides it. "
                        "keyboard: word level, 10k vocabulary, one CIFG LSTM layer of 670 "
                        "units projected to 96, tied 96-wide embeddings (~1.4M parameters)")
    parser.add_argument("--order", type=number(int, "positive"), metavar="N",
                        help="n-gram order for --arch ngram (default 5)")
    parser.add_argument("--threads", type=number(int, "positive"), metavar="N",
                        help="torch CPU threads (default: torch's)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--dist-timeout", type=number(float, "positive"),
                        default=DEFAULT_TIMEOUT, metavar="S",
                        help="under torchrun: seconds a process waits for the others before "
                        f"it gives up (default {DEFAULT_TIMEOUT:g})")


def config_from_args(args) -> tuple[TrainConfig, set[str]]:
    """The settings, and the names of those given on the command line."""
    given: set[str] = set()
    preset = PRESETS[args.preset] if getattr(args, "preset", None) else {"model": {},
                                                                          "train": {}}
    model = dict(preset["model"])
    for f, _ in _flags(LMConfig, _DEFAULTS.model):
        if getattr(args, f.name, None) is not None:
            model[f.name] = getattr(args, f.name)
            given.add(f"model.{f.name}")
    train = {k: v for k, v in preset["train"].items() if k != "level"}
    for f in fields(TrainConfig):
        if f.name not in ("model", "text") and getattr(args, f.name, None) is not None:
            train[f.name] = getattr(args, f.name)
            given.add(f.name)
    cfg = TrainConfig(**train, model=LMConfig(**model))
    cfg.text = str(args.text) if args.text else None
    if args.text:
        given.add("text")
    cfg.level = args.level or preset["train"].get("level") or ("char" if args.text else "word")
    if is_store(args.text):
        cfg.level = args.level or open_store(args.text).vocab.level
        for name in ("min_count", "max_vocab"):
            if getattr(args, name) is not None:
                raise UserError(f"--{name.replace('_', '-')} does not apply to a token store "
                                f"(its vocabulary is fixed); give it to `rnnlab prepare`")
    if not args.text:                       # the built-in corpus wants a small word model
        for name, value in _BUILTIN.items():
            if getattr(args, name) is None and name not in {**preset["model"],
                                                            **preset["train"]}:
                target = cfg.model if hasattr(cfg.model, name) else cfg
                setattr(target, name, value)
    arch = cfg.model.arch
    if arch == "ngram":
        return cfg, given
    if arch not in available():
        raise UserError(f"unknown architecture {arch!r}; available: {', '.join(available())}"
                        f", or ngram (Kneser-Ney, with --order)")
    if getattr(args, "order", None) is not None:
        raise UserError("--order is the n-gram order: use it with --arch ngram")
    if args.arch_option:
        options = {**cfg.model.options, **arch_options(arch, args.arch_option, factory(arch))}
        cfg.model = replace(cfg.model, options=options)
        given.add("model.options")
    return cfg, given


def run(args) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg, given = config_from_args(args)
    out = args.out or Path("runs") / f"{cfg.model.arch}-{cfg.level}"
    if cfg.model.arch == "ngram":
        return _train_ngram(cfg, out, args)
    if not args.resume and args.max_steps is None and args.max_time is None:
        raise UserError("give a budget: --max-steps N and/or --max-time SECONDS")
    dist = Distributed.from_env(args.dist_timeout)
    try:
        trainer = dist.guard(lambda: Trainer(cfg, out, resume=args.resume, quiet=args.quiet,
                                             given=given, dist=dist))
        if dist.is_main and trainer.took_over:
            print(f"note: {out} held a run that stopped before its first checkpoint; "
                  f"starting it again", file=sys.stderr)
        if dist.is_main and trainer.changes:
            print(f"note: resuming with changed settings: {', '.join(trainer.changes)}",
                  file=sys.stderr)
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
    print(f"step {trainer.step}  {shown}  ({result['session']:.0f} s, {result['elapsed']:.0f} s "
          f"in all)  run: {out}")
    print(f"best valid_nats {result['best_nats']:.4g} at step {result['best_step']}: the "
          f"model suggest, eval, sample and export use ({out / 'model.safetensors'})")
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
