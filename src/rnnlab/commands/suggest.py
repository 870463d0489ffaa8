"""rnnlab suggest RUN "text": the most likely next words; interactive as you type.

The interactive mode is a prompt_toolkit prompt: line editing, arrow keys, history and
redrawing on any terminal width are the library's; the model only supplies completions."""
from __future__ import annotations

import sys
from pathlib import Path

from prompt_toolkit import PromptSession
from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.key_binding import KeyBindings

from ..infer import Predictor
from ..settings import number

HELP = "suggest the next word(s) for a text, or interactively as you type (no text)"


def add_arguments(parser) -> None:
    parser.add_argument("run", type=Path, help="run directory written by `rnnlab train`")
    parser.add_argument("text", nargs="?", help="the text typed so far (omit: interactive)")
    parser.add_argument("-k", type=number(int, "positive"), default=3,
                        help="how many suggestions")
    parser.add_argument("-i", "--interactive", action="store_true",
                        help="read keystrokes (or lines, when piped) and update suggestions")


def show(words: list[tuple[str, float]]) -> str:
    return "   ".join(f"{w} ({p:.1%})" for w, p in words) or "(no suggestion)"


def note_unknown(pred: Predictor) -> None:
    if pred.unknown:
        print(f"note: not in the vocabulary, read as <unk>: {' '.join(pred.unknown)}",
              file=sys.stderr)


def run(args) -> int:
    pred = Predictor.load(args.run)
    if args.text is not None and not args.interactive:
        words = pred.suggest(args.text, args.k)
        note_unknown(pred)
        for w, p in words:
            print(f"{w}\t{p:.4f}")
        return 0
    if sys.stdin.isatty():
        interactive(pred, args.k, args.text or "")
        return 0
    for line in sys.stdin:                                    # piped: one prompt per line
        print(show(pred.suggest(line.rstrip("\n"), args.k)), flush=True)
        note_unknown(pred)
    return 0


class SuggestCompleter(Completer):
    """prompt_toolkit completions from the model: the word being typed is replaced, a
    next word is appended (after a space when one is needed)."""

    def __init__(self, pred: Predictor, k: int, context: list[str]) -> None:
        self.pred, self.k, self.context = pred, k, context

    def get_completions(self, document, complete_event):
        typed = document.text_before_cursor
        text = "".join(self.context) + typed
        partial = _trailing_word(typed)
        for word, p in self.pred.suggest(text, self.k):
            if partial and word.lower().startswith(partial.lower()) and word != partial:
                yield Completion(word, -len(partial), display_meta=f"{p:.1%}")
            else:
                space = "" if not typed or typed[-1].isspace() else " "
                yield Completion(space + word, 0, display=word, display_meta=f"{p:.1%}")


def interactive(pred: Predictor, k: int, text: str = "", **io) -> list[str]:
    """Suggestions update as you type (a menu under the cursor; arrows move, Tab takes the
    first or the selected one, Enter ends the line, Ctrl-D quits). Lines typed so far are
    the context of the next. ``io``: prompt_toolkit ``input``/``output`` (for tests)."""
    context: list[str] = []
    completer = SuggestCompleter(pred, k, context)
    keys = KeyBindings()

    @keys.add("tab")
    def _accept(event) -> None:
        buf = event.current_buffer
        state = buf.complete_state
        chosen = state.current_completion if state else None
        if chosen is None:
            chosen = next(iter(completer.get_completions(buf.document, CompleteEvent())), None)
        if chosen is not None:
            buf.apply_completion(chosen)

    session = PromptSession(completer=completer, complete_while_typing=True,
                            key_bindings=keys, **io)
    if not io:
        print("type; suggestions update per key (Tab accepts, Enter ends a line, "
              "Ctrl-D quits)")
    while True:
        try:
            line = session.prompt("> ", default=text)
        except (EOFError, KeyboardInterrupt):
            break
        text = ""
        context.append(line + "\n")
    return context


def _trailing_word(text: str) -> str:
    i = len(text)
    while i > 0 and (text[i - 1].isalnum() or text[i - 1] in "_'"):
        i -= 1
    return text[i:]
