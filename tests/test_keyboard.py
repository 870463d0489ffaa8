"""Keyboard metrics equal hand-computed values on a model whose probabilities are fixed by
construction; eval --json keys are present and typed; the keyboard preset has the Gboard
shape (about 1.4M parameters at 10k words) and trains on the LSTM kernel path."""
import json
import math
from dataclasses import replace

import pytest
import torch

from rnnlab.cli import build_parser, main
from rnnlab.commands.train import config_from_args
from rnnlab.data.text import Vocab
from rnnlab.kernels import STATS, use_kernels
from rnnlab.keyboard import Strip, keyboard_metrics, preset_config
from rnnlab.models.lm import LMConfig
from rnnlab.train import TrainConfig, build_model

TOKENS = ["<unk>", "\n", ".", "the", "then", "cat", "car", "cart"]
BASE = {"<unk>": .01, "\n": .04, ".": .05, "the": .30, "then": .05, "cat": .25, "car": .2,
        "cart": .1}
AFTER_THE = {"<unk>": .01, "\n": .02, ".": .02, "the": .01, "then": .04, "cat": .6, "car": .2,
             "cart": .1}


class FixedModel:
    """P(next) = AFTER_THE after "the", BASE otherwise; state = the previous token id."""

    def __init__(self):
        self.vocab = Vocab("word", TOKENS)
        self.start_id = 1
        self.calls = 0

    def step(self, token, state):
        self.calls += 1
        table = AFTER_THE if TOKENS[token] == "the" else BASE
        return torch.log(torch.tensor([table[t] for t in TOKENS])), token


def test_metrics_equal_hand_computed_values():
    text = ["the", "cart", "then", "dog", "."]
    model = FixedModel()
    r = keyboard_metrics(model, text)
    # words: the (start top-3: the, cat, car -> first), cart (after "the": cat, car, cart
    # -> third), then (base: not in top 3; after "t": the, then -> shown), dog (unknown)
    assert (r["tokens"], r["words"], r["oov_words"]) == (5, 4, 1)
    assert r["top1"] == pytest.approx(1 / 4)
    assert r["top3"] == pytest.approx(2 / 4)
    assert r["top3_in_vocab"] == pytest.approx(2 / 3)
    # keystrokes: the 1, cart 1, then 2 ("t" + tap), dog 4 (d, o, g, space; nothing starts
    # with "d"); without suggestions 4 + 5 + 5 + 4
    assert r["keystroke_savings"] == pytest.approx(1 - 8 / 18)
    nats = -sum(math.log(p) for p in (.30, .1, .05, .01, .05)) / 5
    assert r["nats"] == pytest.approx(nats, rel=1e-6)
    assert r["perplexity"] == pytest.approx(math.exp(nats), rel=1e-6)
    assert 0 <= r["latency_ms_p50"] <= r["latency_ms_p95"]
    assert model.calls == 6                                  # start token + one per token


def test_a_word_never_suggested_costs_its_length_plus_space():
    r = keyboard_metrics(FixedModel(), ["then", "then"])
    # "then": start top-3 the, cat, car; after "t": the, then -> 2 keystrokes each
    assert r["top3"] == 0 and r["keystroke_savings"] == pytest.approx(1 - 4 / 10)


def test_strip_filters_by_prefix_case_sensitively():
    strip = Strip(TOKENS + ["Cat"])
    scores = torch.arange(9.0).numpy()
    assert strip.top(scores).tolist() == [8, 7, 6]           # words only, best first
    assert strip.top(scores, "ca").tolist() == [7, 6, 5]
    assert strip.top(scores, "C").tolist() == [8]
    assert strip.top(scores, "x").tolist() == []


TINY = ["--embedding", "16", "--hidden", "24", "--batch", "4", "--bptt", "12",
        "--corpus-tokens", "4000", "--eval-every", "0", "--quiet", "--max-steps", "3"]


def test_eval_json_keys_are_present_and_typed(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), *TINY]) == 0
    text = tmp_path / "t.txt"
    text.write_text("Maria was born in France. She grew up speaking French.\n" * 5)
    capsys.readouterr()
    assert main(["eval", str(run), str(text), "--json"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    r = json.loads(out)
    for key in ("nats", "perplexity", "top1", "top3", "top3_in_vocab", "keystroke_savings",
                "latency_ms_p50", "latency_ms_p95", "size_mb"):
        assert isinstance(r[key], float), key
    assert isinstance(r["params"], int) and r["params"] == sum(
        p.numel() for p in build_model(TrainConfig(model=LMConfig(embedding=16, hidden=24,
                                                                  layers=1)),
                                       len(json.loads((run / "vocab.json").read_text())
                                           ["tokens"])).parameters())
    assert r["size_mb"] == pytest.approx(r["params"] * 4 / 1e6)
    assert all(0 <= r[k] <= 1 for k in ("top1", "top3", "top3_in_vocab"))
    assert r["top1"] <= r["top3"] and r["words"] == 50
    with pytest.raises(SystemExit):
        main(["eval", str(run), str(text), "--limit", "0"])
    assert "--limit" in capsys.readouterr().err


def test_keyboard_preset_has_the_gboard_shape():
    model = build_model(preset_config("keyboard"), 10_000)
    params = sum(p.numel() for p in model.parameters())
    assert abs(params - 1.4e6) / 1.4e6 < 0.02, params
    assert model.decoder.weight is model.embed.weight and model.proj is None
    cell = model.core.cells[0]
    assert (cell.coupled, cell.hidden_size, cell.proj_size, len(model.core.cells)) == \
        (True, 670, 96, 1)


def test_preset_flags_override():
    args = build_parser().parse_args(["train", "t.txt", "--preset", "keyboard", "--hidden",
                                      "128", "--no-tie-weights"])
    cfg, _ = config_from_args(args)
    m = cfg.model
    assert (m.hidden, m.tie_weights, m.options, m.arch, cfg.level, cfg.max_vocab) == \
        (128, False, {"proj_size": 96}, "lstm_cifg", "word", 10_000)
    args = build_parser().parse_args(["train", "t.txt", "--preset", "keyboard",
                                      "--arch-option", "forget_bias=1.0"])
    cfg, _ = config_from_args(args)
    assert cfg.model.tie_weights and cfg.model.options == {"proj_size": 96, "forget_bias": 1.0}


def test_cifg_with_projection_trains_on_the_kernel_path():
    cfg = preset_config("keyboard")
    cfg.model = replace(cfg.model, hidden=20, embedding=6, dropout=0.0,
                        options={"proj_size": 6})
    model = build_model(cfg, 30).double()
    x = torch.randint(0, 30, (7, 3))
    grads = []
    for kernels in (True, False):
        STATS.clear()
        model.zero_grad()
        with use_kernels(kernels):
            logits, _ = model(x)
            logits.pow(2).mean().backward()
        assert STATS["lstm"] == (1 if kernels else 0)
        grads.append([p.grad.clone() for p in model.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
