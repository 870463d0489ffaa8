"""Tiny trained runs shared by the server tests (seconds to train)."""
import pytest

from rnnlab.models.lm import LMConfig
from rnnlab.train import TrainConfig, Trainer

TEXT = ("She was born in France and grew up speaking French. He was born in Spain and "
        "grew up speaking Spanish. The clouds in the sky are blue. The grass is green.\n")


@pytest.fixture(scope="session")
def tiny_word_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("serve-word") / "word-lstm"
    cfg = TrainConfig(level="word", model=LMConfig(embedding=16, hidden=24, layers=2),
                      batch=4, bptt=16,
                      lr=1e-2, max_steps=40, eval_every=0, save_every=0, corpus_tokens=6000)
    Trainer(cfg, out, quiet=True).run()
    return out


@pytest.fixture(scope="session")
def tiny_char_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve-char")
    (root / "t.txt").write_text(TEXT * 30)
    cfg = TrainConfig(text=str(root / "t.txt"), level="char",
                      model=LMConfig(arch="gru", embedding=16, hidden=32, layers=1), batch=8,
                      bptt=32, lr=1e-2, max_steps=60,
                      eval_every=0, save_every=0)
    Trainer(cfg, root / "char-gru", quiet=True).run()
    return root / "char-gru"
