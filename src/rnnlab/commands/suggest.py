"""rnnlab suggest RUN "text": the most likely next words; interactive as you type."""
from __future__ import annotations

import sys
from pathlib import Path

from ..export.predictor import load_predictor
from ..infer import Predictor

HELP = "suggest the next word(s) for a text, or interactively as you type (no text)"


def add_arguments(parser) -> None:
    parser.add_argument("run", type=Path, help="run directory written by `rnnlab train`, or "
                        "an export folder written by `rnnlab export`")
    parser.add_argument("text", nargs="?", help="the text typed so far (omit: interactive)")
    parser.add_argument("-k", type=int, default=3, help="how many suggestions")
    parser.add_argument("-i", "--interactive", action="store_true",
                        help="read keystrokes (or lines, when piped) and update suggestions")


def show(words: list[tuple[str, float]]) -> str:
    return "   ".join(f"{w} ({p:.1%})" for w, p in words) or "(no suggestion)"


def note_unknown(pred: Predictor) -> None:
    if pred.unknown:
        print(f"note: not in the vocabulary, read as <unk>: {' '.join(pred.unknown)}",
              file=sys.stderr)


def run(args) -> int:
    pred = load_predictor(args.run)
    if args.text is not None and not args.interactive:
        words = pred.suggest(args.text, args.k)
        note_unknown(pred)
        for w, p in words:
            print(f"{w}\t{p:.4f}")
        return 0
    if sys.stdin.isatty():
        return _keystrokes(pred, args.k, args.text or "")
    for line in sys.stdin:                                    # piped: one prompt per line
        print(show(pred.suggest(line.rstrip("\n"), args.k)), flush=True)
        note_unknown(pred)
    return 0


def _keystrokes(pred: Predictor, k: int, text: str) -> int:
    """Raw terminal: redraw `text | suggestions` after every key; Ctrl-D or Esc quits."""
    import termios
    import tty

    fd = sys.stdin.fileno()
    old = termios.tcgetattr(fd)
    print("type; suggestions update per key (Tab accepts the first, Ctrl-D quits)")
    try:
        tty.setcbreak(fd)
        while True:
            words = pred.suggest(text, k)
            tail = text.replace("\n", " ")[-50:]
            sys.stdout.write(f"\r\033[K{tail}\033[2m  → {show(words)}\033[0m")
            sys.stdout.flush()
            ch = sys.stdin.read(1)
            if ch in ("\x04", "\x1b", ""):
                break
            if ch in ("\x7f", "\b"):
                text = text[:-1]
            elif ch == "\t" and words:
                text = _accept(text, words[0][0]) + " "
            elif ch == "\n":
                text += "\n"
            elif ch.isprintable():
                text += ch
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, old)
        print()
    return 0


def _accept(text: str, word: str) -> str:
    """Replace the word being typed (or append) with the accepted suggestion."""
    i = len(text)
    while i > 0 and (text[i - 1].isalnum() or text[i - 1] in "_'"):
        i -= 1
    partial = text[i:]
    if partial and word.lower().startswith(partial.lower()) and word != partial:
        return text[:i] + word
    return text + ("" if not text or text[-1].isspace() else " ") + word
