"""Interactive suggest (prompt_toolkit) and word completion: arrow keys edit instead of
ending the session, a typed prefix that is itself a word is still completed, options may
come before the text."""
import pytest
from prompt_toolkit.application import create_app_session
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from rnnlab.cli import main
from rnnlab.commands.suggest import SuggestCompleter, interactive
from rnnlab.infer import Predictor

TEXT = "free software is free . so we share software . so it goes . free so free\n" * 40
LEFT, RIGHT, UP, DOWN = "\x1b[D", "\x1b[C", "\x1b[A", "\x1b[B"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("soft")
    (root / "t.txt").write_text(TEXT)
    assert main(["train", str(root / "t.txt"), "--level", "word", "--out", str(root / "run"),
                 "--max-steps", "30", "--embedding", "8", "--hidden", "16", "--layers", "1",
                 "--batch", "2", "--bptt", "8", "--lr", "0.01", "--eval-every", "0",
                 "--quiet", "--threads", "1"]) == 0
    return root / "run"


def test_a_prefix_that_is_a_word_is_completed(run):
    pred = Predictor.load(run)
    words = dict(pred.suggest("free so", 5))
    assert "software" in words                     # was only ever the words after "so"
    assert "so" not in words and all(0 < p <= 1 for p in words.values())
    after = dict(pred.suggest("free so ", 5))      # a space: the word is finished
    assert "software" in after or "we" in after


def test_options_before_the_text(run, capsys):
    assert main(["suggest", str(run), "-k", "2", "free so"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 2


def test_completer_replaces_the_partial_word_and_appends_next_words(run):
    comp = SuggestCompleter(Predictor.load(run), 5, [])
    got = list(comp.get_completions(Document("free so"), CompleteEvent()))
    soft = [c for c in got if c.text == "software"]
    assert soft and soft[0].start_position == -2
    assert all(c.start_position == 0 and c.text.startswith(" ") for c in got
               if not c.text.startswith("so"))


def _session(run, keys: str, width: int = 80) -> list[str]:
    with create_pipe_input() as inp:
        inp.send_text(keys)
        with create_app_session(input=inp, output=DummyOutput()):
            return interactive(Predictor.load(run), 3, input=inp, output=DummyOutput())


def test_arrow_keys_edit_and_keep_the_text(run):
    lines = _session(run, f"free sx{LEFT}{RIGHT}\x7fo{UP}{DOWN}\t\rso we\r\x04")
    assert lines[0].startswith("free so") and lines[1] == "so we\n"
    assert len(lines) == 2


def test_tab_takes_the_first_suggestion(run):
    pred = Predictor.load(run)
    first = pred.suggest("free so", 1)[0][0]
    lines = _session(run, "free so\t\r\x04")
    assert lines == [("free " + first if first.startswith("so") else "free so " + first)
                     + "\n"]
