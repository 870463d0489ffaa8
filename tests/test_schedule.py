"""Training defaults for small text: dropout chosen from the corpus size (active in training,
absent in evaluation), the plateau learning-rate schedule on scripted validation losses, the
best model as what the commands load, and a resumed run that keeps the schedule's state."""
import json

import pytest
import torch

import rnnlab.train as train
from rnnlab.cli import main
from rnnlab.infer import Predictor
from rnnlab.models.lm import LMConfig
from rnnlab.train import TrainConfig, Trainer, auto_dropout, lr_at


def _cfg(**kw) -> TrainConfig:
    base = dict(level="word", model=LMConfig(embedding=8, hidden=12, layers=2), batch=4,
                bptt=8, lr=1e-2, warmup=0, eval_every=1, save_every=0, corpus_tokens=3000)
    return TrainConfig(**{**base, **kw})


@pytest.mark.parametrize("tokens, params, p", [
    (1_000_000, 1_000_000, 0.2),        # one token per parameter
    (1_003_854, 2_467_000, 0.25),       # Tiny Shakespeare, 2 x 512 GRU
    (929_589, 19_800_000, 0.4),         # Penn Treebank, Zaremba et al.'s medium model
    (929_589, 66_000_000, 0.5),         # ... and their large one (0.65 in the paper): capped
    (100_000_000, 1_000_000, 0.0),      # plenty of text: none
    (300_000, 100_000, 0.15)])
def test_auto_dropout_follows_tokens_per_parameter(tokens, params, p):
    assert auto_dropout(tokens, params) == pytest.approx(p)


def test_unset_dropout_is_chosen_from_the_corpus_active_in_training_only(tmp_path):
    tr = Trainer(_cfg(max_steps=1), tmp_path / "run", quiet=True)
    params = sum(p.numel() for p in tr.model.parameters())
    expected = auto_dropout(len(tr.corpus.train), params)
    assert expected > 0                                    # 2,700 tokens, more parameters
    saved = json.loads((tmp_path / "run" / "config.json").read_text())["model"]["dropout"]
    assert tr.model.config.dropout == saved == expected
    assert tr.model.core.dropout == expected               # between the two layers too
    x = torch.tensor(tr.corpus.valid[:40]).view(10, 4)
    tr.model.train()
    a, b = tr.model(x)[0], tr.model(x)[0]
    assert (a - b).abs().max() > 1e-3                      # masks differ from call to call
    tr.model.eval()
    c, d = tr.model(x)[0], tr.model(x)[0]
    assert torch.equal(c, d)
    tr.close()


def _scripted(monkeypatch, losses: dict[int, float]):
    """Validation returns losses[step] (the trainer's step at the time of the call)."""
    calls = []

    def fake(model, ids, batch=16, bptt=256, dist=None):
        step = fake.trainer.step
        calls.append((step, {k: v.clone() for k, v in model.state_dict().items()}))
        return losses[step]
    monkeypatch.setattr(train, "evaluate", fake)
    return fake, calls


def _lr_after_validations(run) -> dict[int, float]:
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["lr"] for r in lines if "lr" in r}


LOSSES = {1: 3.0, 2: 2.0, 3: 2.1, 4: 2.2, 5: 2.3, 6: 2.4, 7: 1.0, 8: 1.5, 9: 1.6, 10: 1.7,
          11: 1.8, 12: 1.9, 13: 2.0, 14: 2.1}


def test_plateau_halves_the_rate_after_patience_and_stops_at_the_floor(tmp_path, monkeypatch):
    """patience 1: the second validation in a row without improvement halves the rate
    (after steps 4 and 6, then 9, where min_lr 2e-3 stops it: 2.5e-3 -> 2e-3, and after
    step 11 it stays there)."""
    fake, _ = _scripted(monkeypatch, LOSSES)
    cfg = _cfg(max_steps=14, patience=1, lr_decay=0.5, min_lr=2e-3)
    fake.trainer = tr = Trainer(cfg, tmp_path / "run", quiet=True)
    tr.run()
    lr = _lr_after_validations(tmp_path / "run")
    # the lr logged at step s was used for step s; a decision after step s shows at s + 1
    expected = {1: 1e-2, 4: 1e-2, 5: 5e-3, 6: 5e-3, 7: 2.5e-3, 9: 2.5e-3, 10: 2e-3, 14: 2e-3}
    for step, value in expected.items():
        assert lr[step] == pytest.approx(value), (step, lr)


def test_cosine_and_constant_schedules_when_asked():
    cfg = TrainConfig(lr=1.0, min_lr=0.1, warmup=10, schedule="cosine")
    assert lr_at(0, cfg, 100) == pytest.approx(0.1)
    assert lr_at(9, cfg, 100) == pytest.approx(1.0)
    assert lr_at(100, cfg, 100) == pytest.approx(0.1)
    assert lr_at(55, cfg, 100) == pytest.approx(0.55)
    assert lr_at(500, TrainConfig(lr=1.0, schedule="constant"), 100) == 1.0
    assert lr_at(500, TrainConfig(lr=1.0), 100) is None          # plateau: the optimizer's


def test_the_best_model_is_what_the_commands_load(tmp_path, monkeypatch, capsys):
    """Validation is best at step 7 of 14; suggest/eval/export load those weights (not the
    last ones), and the final line names the best and its step."""
    fake, calls = _scripted(monkeypatch, LOSSES)
    run = tmp_path / "run"
    fake.trainer = tr = Trainer(_cfg(max_steps=14), run, quiet=True)
    result = tr.run()
    assert (result["best_step"], result["best_nats"]) == (7, 1.0)
    best = dict(calls)[7]
    loaded = Predictor.load(run).model.state_dict()
    assert all(torch.equal(loaded[k], best[k]) for k in best)
    last = calls[-1][1]
    assert any(not torch.equal(loaded[k], last[k]) for k in last)
    assert json.loads((run / "best.json").read_text())["step"] == 7


def test_the_final_line_reports_the_best_validation(tmp_path, capsys):
    run = tmp_path / "run"
    code = main(["train", "--out", str(run), "--embedding", "8", "--hidden", "12", "--batch",
                 "4", "--bptt", "8", "--corpus-tokens", "3000", "--eval-every", "5",
                 "--max-steps", "20", "--quiet", "--threads", "1"])
    assert code == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    best = json.loads((run / "best.json").read_text())
    assert last.startswith(f"best valid_nats {best['valid_nats']:.4g} at step {best['step']}")


def test_a_resumed_run_keeps_the_schedule_state(tmp_path, monkeypatch):
    """Stopped after step 5 (one bad validation counted, the rate halved once) and resumed
    to step 14: the learning rates and the plateau's counters equal an uninterrupted run's."""
    fake, _ = _scripted(monkeypatch, LOSSES)
    cfg = _cfg(max_steps=14, patience=1, min_lr=2e-3, save_every=1)
    fake.trainer = tr = Trainer(cfg, tmp_path / "ref", quiet=True)
    tr.run()
    ref_state = tr._plateau_state()
    fake.trainer = tr = Trainer(_cfg(max_steps=5, patience=1, min_lr=2e-3, save_every=1),
                                tmp_path / "run", quiet=True)
    tr.run()
    fake.trainer = tr = Trainer(cfg, tmp_path / "run", resume=True, quiet=True)
    assert tr.plateau.num_bad_epochs == 1 and tr.opt.param_groups[0]["lr"] == 5e-3
    tr.run()
    assert tr._plateau_state() == ref_state
    ref, run = _lr_after_validations(tmp_path / "ref"), _lr_after_validations(tmp_path / "run")
    assert ref == run
