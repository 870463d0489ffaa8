"""rnnlab prepare TEXT --out DATA: tokenise a corpus once into a token store for training."""
from __future__ import annotations

import time
from pathlib import Path

from ..data.store import build_store
from ..errors import UserError
from ..settings import number

HELP = "tokenise TEXT (a UTF-8 file or folder) once into a token store for `rnnlab train DATA`"


def add_arguments(parser) -> None:
    parser.add_argument("text", help="UTF-8 text file or folder of .txt files")
    parser.add_argument("--out", type=Path, required=True, help="new store folder")
    parser.add_argument("--level", choices=("char", "word"), default="word",
                        help="tokens: characters or words (default word)")
    parser.add_argument("--vocab-size", type=number(int, "positive"), metavar="N",
                        help="keep the N - 1 most frequent training tokens plus <unk> "
                        "(default: all)")
    parser.add_argument("--min-count", type=number(int, "positive"), default=1, metavar="N",
                        help="drop tokens seen fewer times in the training part (default 1)")
    parser.add_argument("--workers", type=number(int, "positive"), metavar="N",
                        help="worker processes (default: every core this process may use)")


def run(args) -> int:
    if args.vocab_size is not None and args.vocab_size < 3:
        raise UserError(f"--vocab-size must be at least 3 (<unk> and two tokens), received "
                        f"{args.vocab_size}")
    t0 = time.time()
    m = build_store(args.text, args.out, args.level, args.vocab_size, args.min_count,
                    workers=args.workers)
    size = sum(s["bytes"] for s in m["sources"])
    took = time.time() - t0
    s = m["splits"]
    print(f"{args.out}: {m['tokens']} {m['level']} tokens ({s['train'][1]} train, "
          f"{s['valid'][1] - s['valid'][0]} valid, {s['test'][1] - s['test'][0]} test), "
          f"vocabulary {m['vocab_size']} ({m['dtype']}), {size / 1e6:.1f} MB in {took:.1f} s")
    return 0
