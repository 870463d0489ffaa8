"""Predictor: incremental suggestions equal re-reading the prefix, one step per new token,
char-level completion by beam search, seeded sampling, unseen words reported."""
import pytest
import torch

from rnnlab.data.text import is_word_char
from rnnlab.infer import Predictor
from rnnlab.models.lm import LMConfig
from rnnlab.train import TrainConfig, Trainer

TEXT = ("She was born in France and grew up speaking French. He was born in Spain and "
        "grew up speaking Spanish. The clouds in the sky are blue. The grass is green.\n")


@pytest.fixture(scope="module")
def word_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("word") / "run"
    cfg = TrainConfig(level="word", model=LMConfig(embedding=16, hidden=24, layers=2),
                      batch=4, bptt=16,
                      lr=1e-2, max_steps=40, eval_every=0, save_every=0, corpus_tokens=6000)
    Trainer(cfg, out, quiet=True).run()
    return out


@pytest.fixture(scope="module")
def char_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("char")
    (root / "t.txt").write_text(TEXT * 30)
    cfg = TrainConfig(text=str(root / "t.txt"), level="char",
                      model=LMConfig(arch="gru", embedding=16, hidden=48, layers=1), batch=8,
                      bptt=32, lr=1e-2, max_steps=120,
                      eval_every=0, save_every=0)
    Trainer(cfg, root / "run", quiet=True).run()
    return root / "run"


def _same(a, b):
    assert [w for w, _ in a] == [w for w, _ in b]
    assert [p for _, p in a] == pytest.approx([p for _, p in b], rel=1e-5, abs=1e-7)


@pytest.mark.parametrize("fixture", ["word_run", "char_run"])
def test_incremental_suggest_equals_rereading_the_prefix(request, fixture):
    run = request.getfixturevalue(fixture)
    typing = Predictor.load(run)
    prompt = "Maria was born in France. She grew up speaking "
    for end in (1, 9, 10, 25, 33, len(prompt), 20, len(prompt)):
        text = prompt[:end]                                # types, deletes, types again
        _same(typing.suggest(text, 3), Predictor.load(run).suggest(text, 3))


def test_each_new_word_costs_one_step(word_run):
    pred = Predictor.load(word_run)
    calls = []
    step = pred.step
    pred.step = lambda tok, st: calls.append(tok) or step(tok, st)
    pred.suggest("Maria was born in France .", 3)
    calls.clear()
    pred.suggest("Maria was born in France . She", 3)
    assert len(calls) == 1
    calls.clear()
    pred.suggest("Maria was born in France . She grew up", 3)
    assert len(calls) == 2


def test_word_suggestions_are_distributions_and_complete_partial_words(word_run):
    pred = Predictor.load(word_run)
    words = pred.suggest("The clouds in the sky are", 5)
    assert len(words) == 5 and all(0 < p <= 1 for _, p in words)
    assert sorted((p for _, p in words), reverse=True) == [p for _, p in words]
    for w, _ in pred.suggest("Maria was born in Fr", 3):
        assert w.lower().startswith("fr")


def test_unseen_words_are_read_as_unknown_and_reported(word_run):
    pred = Predictor.load(word_run)
    assert pred.suggest("Zebulon was born in Atlantis", 3)
    assert pred.unknown == ["Zebulon", "Atlantis"]


def test_char_model_completes_the_current_word(char_run):
    pred = Predictor.load(char_run)
    words = pred.suggest("She grew up spe", 3)
    assert words and all(w.startswith("spe") and all(map(is_word_char, w)) for w, _ in words)
    assert words[0][0] == "speaking"                      # learned from the text
    nxt = pred.suggest("She grew up speaking ", 3)
    assert nxt and all(all(map(is_word_char, w)) for w, _ in nxt)
    assert sum(p for _, p in nxt) <= 1 + 1e-6


def test_sampling_is_seeded(char_run):
    pred = Predictor.load(char_run)
    a = pred.sample("The ", 40, temperature=0.8, top_k=5, seed=3)
    b = Predictor.load(char_run).sample("The ", 40, temperature=0.8, top_k=5, seed=3)
    assert a == b and a.startswith("The ") and len(a) == 44
    greedy = pred.sample("The clouds in the sky are ", 4, temperature=0)
    assert greedy == pred.sample("The clouds in the sky are ", 4, temperature=0)


def test_predictor_step_matches_the_full_sequence_forward(word_run):
    pred = Predictor.load(word_run)
    ids = pred.encode("Maria was born in France . She grew up speaking")
    logits, _ = pred.read(ids)
    with torch.no_grad():
        full, _ = pred.model(torch.tensor([pred.start_id] + ids)[:, None])
    assert torch.allclose(logits, full[-1, 0], atol=1e-5)


def test_a_long_prompt_is_read_in_chunks_with_bounded_memory(char_run, monkeypatch):
    import rnnlab.infer as infer
    prompt = (TEXT * 8)[: 3 * infer.CACHE + 77]
    pred = Predictor.load(char_run)
    logits, _ = pred.read(pred.encode(prompt))
    assert len(pred._states) == len(pred._logits) <= infer.CACHE + 1
    monkeypatch.setattr(infer, "CACHE", 10**9)                # every token stepped, all kept
    ref = Predictor.load(char_run)
    ref_logits, _ = ref.read(ref.encode(prompt))
    assert len(ref._states) == len(prompt) + 1
    assert torch.allclose(logits, ref_logits, atol=1e-4)
    monkeypatch.undo()
    short = prompt[:40]                                    # deleting past the window
    _same(pred.suggest(short, 3), Predictor.load(char_run).suggest(short, 3))


@pytest.mark.parametrize("arch", ["rnn", "lstm", "gru", "lstm_ln", "clockwork_rnn",
                                  "depth_gated_lstm", "grid_lstm"])
def test_step_many_equals_one_step_per_pair(arch):
    """The batched step (the server's lever, and the char beam's) gives each pair what a
    step of its own gives."""
    from rnnlab.data.text import Vocab
    from rnnlab.models.lm import LanguageModel
    torch.manual_seed(0)
    vocab = Vocab("char", ["<unk>", "\n"] + list("abcdefgh "))
    pred = Predictor(LanguageModel(len(vocab), arch, embedding=8, hidden=12, layers=2), vocab)
    states, state = [], pred._states[0]
    for tok in (3, 4, 5, 6):                              # four different histories
        _, state = pred.step(tok, state)
        states.append(state)
    tokens = [7, 2, 9, 7]
    many = pred.step_many(tokens, states)
    for tok, st, (logits, new) in zip(tokens, states, many):
        one_logits, one_new = pred.step(tok, st)
        assert torch.allclose(logits, one_logits, atol=1e-6)
        again, _ = pred.step(5, new)                     # the returned state carries on right
        assert torch.allclose(again, pred.step(5, one_new)[0], atol=1e-6)


def test_fork_has_its_own_state_and_shares_the_weights(word_run):
    base = Predictor.load(word_run)
    a, b = base.fork(), base.fork()
    a.suggest("Maria was born in France .", 3)
    assert a.cached_tokens == 6 and b.cached_tokens == 0 and base.cached_tokens == 0
    assert a.model is base.model and a._stepper is base._stepper
    _same(b.suggest("She grew up", 3), Predictor.load(word_run).suggest("She grew up", 3))
