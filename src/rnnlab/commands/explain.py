"""rnnlab explain RUN "text": the gates of a trained model at work, token by token."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from ..data.text import tokenize
from ..errors import UserError
from ..experiments import atomic_write_text
from ..explain import explain_ids, summary, token_means
from ..explain_view import heatmap, html_page
from ..infer import Predictor
from ..settings import number

HELP = ("show what each layer's gates keep and discard while reading a text "
        "(PNG heatmap, HTML page, text summary)")


def add_arguments(parser) -> None:
    parser.add_argument("run", type=Path, help="run directory written by `rnnlab train`")
    parser.add_argument("text", help="the text to read")
    parser.add_argument("--out", type=Path, default=Path("explain-output"),
                        help="folder for explain.png, explain.html, explain.json, explain.txt")
    parser.add_argument("--units", type=number(int, "positive"), default=48,
                        help="at most this many units per heatmap panel (the most variable)")
    parser.add_argument("--top", type=number(int, "nonneg"), default=0,
                        help="tokens listed per line of the summary (0: about a quarter, <= 4)")


def run(args) -> int:
    pred = Predictor.load(args.run)
    tokens = tokenize(args.text, pred.level)
    if not tokens:
        raise UserError("the text is empty: give a few words to read")
    ids = pred.encode(args.text)
    if pred.unknown:
        print(f"note: not in the vocabulary, read as <unk>: {' '.join(pred.unknown)}",
              file=sys.stderr)
    expl = explain_ids(pred.model, ids, tokens, pred.vocab.tokens, start_id=pred.start_id)
    args.out.mkdir(parents=True, exist_ok=True)
    title = f"{pred.model.config.arch} from {args.run}: gates reading {args.text!r}"
    text = summary(expl, args.top or None)
    heatmap(expl, args.out / "explain.png", args.units, title=title)
    atomic_write_text(args.out / "explain.html", html_page(expl, args.out / "explain.png", title))
    atomic_write_text(args.out / "explain.txt", text + "\n")
    atomic_write_text(args.out / "explain.json", json.dumps(
        {"run": str(args.run), "arch": pred.model.config.arch, "text": args.text,
         "tokens": tokens, "predictions": expl.predictions, "gates": token_means(expl)},
        indent=1) + "\n")
    print(text)
    print(f"heatmap, page and data written to {args.out}/explain.{{png,html,json,txt}}")
    return 0
