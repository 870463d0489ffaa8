"""The language-model commands end to end (in process): train, suggest, sample, eval, demo;
every option documented; user errors are one line and exit 2."""
import json

import pytest

from rnnlab.cli import build_parser, main
from rnnlab.experiments import next_word

TINY = ["--embedding", "16", "--hidden", "24", "--batch", "4", "--bptt", "12",
        "--corpus-tokens", "5000", "--eval-every", "0", "--quiet", "--max-steps", "8"]
COMMANDS = ("train", "eval", "sample", "suggest", "demo")


def test_every_option_has_a_help_line():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for name in COMMANDS:
        for action in sub.choices[name]._actions:
            assert action.help, f"rnnlab {name} {action.option_strings or action.dest}"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", "--out", str(out), *TINY]) == 0
    return out


def test_train_writes_a_complete_run_directory(run_dir):
    names = {p.name for p in run_dir.iterdir()}
    assert {"config.json", "vocab.json", "model.safetensors", "metrics.jsonl",
            "last.json", "best.json"} <= names
    cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["train"]["level"] == "word" and cfg["model"]["arch"] == "lstm"
    assert not list(run_dir.rglob("*.pt")) and not list(run_dir.rglob("*.pkl"))


def test_suggest_sample_and_eval(run_dir, tmp_path, capsys):
    assert main(["suggest", str(run_dir), "She grew up speaking", "-k", "4"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4 and all(float(line.split("\t")[1]) > 0 for line in lines)
    assert main(["suggest", str(run_dir), "Qwerty grew up", "-k", "2"]) == 0
    assert "Qwerty" in capsys.readouterr().err                  # unseen word: said
    assert main(["sample", str(run_dir), "--prime", "The", "--length", "5",
                 "--seed", "1"]) == 0
    first = capsys.readouterr().out
    assert main(["sample", str(run_dir), "--prime", "The", "--length", "5",
                 "--seed", "1"]) == 0
    assert capsys.readouterr().out == first and first.startswith("The")
    text = tmp_path / "t.txt"
    text.write_text("Maria was born in France. She grew up speaking French.\n" * 3)
    assert main(["eval", str(run_dir), str(text)]) == 0
    out = capsys.readouterr().out
    assert "nats" in out and "ppl" in out


def test_budget_and_architecture_errors(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "r")]) == 2
    assert "budget" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "r"), "--arch", "nope",
                 "--max-steps", "1"]) == 2
    assert "unknown architecture" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "r"), "--resume"]) == 2
    assert "no such run directory" in capsys.readouterr().err


def test_demo_runs_end_to_end_on_a_tiny_budget(tmp_path, capsys, monkeypatch):
    small = next_word.Config(corpus_tokens=5000, probes=4, hidden=16, embedding=8, batch=4,
                             bptt=20)
    monkeypatch.setitem(next_word.PRESETS, "demo", small)
    assert main(["demo", "--out", str(tmp_path / "demo"), "--steps", "3", "--budget", "0",
                 "--archs", "rnn,lstm"]) == 0
    out = capsys.readouterr().out
    assert "gap 80" in out and "The clouds in the sky are" in out
    result = json.loads((tmp_path / "demo" / "next_word.json").read_text())
    assert set(result["results"]) == {"rnn", "lstm"}
    assert set(result["results"]["lstm"]["accuracy"]["language"]) == {"5", "10", "20", "40",
                                                                      "80"}
    assert (tmp_path / "demo" / "next_word.png").stat().st_size > 1000
    assert main(["demo", "--out", str(tmp_path / "demo"), "--steps", "3", "--budget", "0",
                 "--archs", "rnn,lstm", "--resume"]) == 0      # reuses the finished runs
    again = json.loads((tmp_path / "demo" / "next_word.json").read_text())
    assert again["results"]["lstm"]["accuracy"] == result["results"]["lstm"]["accuracy"]
    assert again["results"]["lstm"]["steps"] == 3


@pytest.mark.slow
def test_lstm_beats_the_plain_rnn_at_the_longest_gap(tmp_path):
    """The seed's claim on the built-in corpus, at the demo's own 2000 steps (about a
    minute and a half per model on an idle core): the LSTM predicts the language 80 tokens
    after the birthplace well above chance (1/8) and the tanh RNN does not. Seeds 0-2 of
    the demo configuration gave the LSTM 0.92-1.00 at gap 80 and the RNN 0.12-0.13
    (docs/results/next-word); the bar leaves room for other builds."""
    cfg = next_word.Config(archs=("rnn", "lstm"), steps=2000, probes=60)
    result = next_word.run(cfg, tmp_path)
    lstm = result["results"]["lstm"]["accuracy"]["language"]["80"]
    rnn = result["results"]["rnn"]["accuracy"]["language"]["80"]
    assert lstm > 0.6 and lstm > rnn + 0.4, (lstm, rnn)
