"""The experiments' shared training loop: seeded runs repeat exactly, a stopped run resumes
to the same weights and curve as one that never stopped, and checks end a run early."""
import math

import pytest
import torch
from torch import nn

from rnnlab.errors import UserError
from rnnlab.experiments._loop import Loop, schedule_fn


class Interrupt(Exception):
    pass


def make_loop(seed=0, steps=20, checkpoint=None, die_at=None, key="a", stop_at=None):
    torch.manual_seed(123)                       # the model's initial weights
    model = nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Dropout(0.2), nn.Linear(16, 1))
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    w = torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0])

    def batch(step, gen):
        if step == die_at:
            raise Interrupt
        x = torch.randn(8, 5, generator=gen)
        return x, (x @ w)[:, None]

    def loss(b):
        x, y = b
        return ((model(x) - y) ** 2).mean()

    def check(step):
        model.eval()
        x = torch.randn(64, 5, generator=torch.Generator().manual_seed(7))
        with torch.no_grad():
            err = float(((model(x) - (x @ w)[:, None]) ** 2).mean())
        model.train()
        return {"mse": err}

    stop = (lambda m: m["mse"] < stop_at) if stop_at else None
    loop = Loop(model, opt, batch, loss, steps=steps, seed=seed, check_every=5, check=check,
                stop=stop, clip=1.0, schedule=schedule_fn("cosine", steps, warmup=3),
                checkpoint=checkpoint, save_every=4, key=key)
    return loop, model


def weights(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_seeded_runs_repeat_exactly_and_seeds_differ():
    (a, ma), (b, mb), (c, mc) = make_loop(0), make_loop(0), make_loop(1)
    ra, rb, _ = a.run(), b.run(), c.run()
    assert torch.equal(weights(ma), weights(mb))

    def strip(curve):
        return [{k: v for k, v in c.items() if k != "train_seconds"} for c in curve]
    assert strip(ra.curve) == strip(rb.curve) and [r["step"] for r in ra.curve] == [5, 10, 15, 20]
    assert not torch.equal(weights(ma), weights(mc))
    assert ra.curve[-1]["mse"] < ra.curve[0]["mse"]         # it trains
    assert ra.stopped == "steps" and ra.steps == 20


def test_a_stopped_run_resumes_exactly(tmp_path):
    whole, m_whole = make_loop(0, checkpoint=tmp_path / "whole")
    r_whole = whole.run()
    broken, _ = make_loop(0, checkpoint=tmp_path / "broken", die_at=10)
    with pytest.raises(Interrupt):
        broken.run()                                          # dies after the step-8 save
    assert (tmp_path / "broken" / "checkpoints" / "step-000000008").is_dir()
    resumed, m_res = make_loop(0, checkpoint=tmp_path / "broken")
    r_res = resumed.run()
    assert torch.equal(weights(m_res), weights(m_whole))
    assert [r["step"] for r in r_res.curve] == [5, 10, 15, 20]
    for x, y in zip(r_res.curve, r_whole.curve):
        assert x["mse"] == y["mse"] and math.isclose(x["loss"], y["loss"], rel_tol=1e-12)
    again, m_again = make_loop(0, checkpoint=tmp_path / "broken")   # finished: no more steps
    assert again.run().steps == 20 and torch.equal(weights(m_again), weights(m_whole))


def test_a_checkpoint_of_other_settings_is_refused(tmp_path):
    make_loop(0, steps=4, checkpoint=tmp_path)[0].run()
    with pytest.raises(UserError, match="other settings"):
        make_loop(0, steps=4, checkpoint=tmp_path, key="b")[0].run()


def test_a_check_can_end_the_run():
    loop, _ = make_loop(0, steps=200, stop_at=1e9)
    r = loop.run()
    assert r.stopped == "check" and r.steps == 5 and len(r.curve) == 1


def test_schedules():
    cos, lin = schedule_fn("cosine", 10, warmup=2), schedule_fn("linear", 10)
    assert [cos(0), cos(1), cos(2)] == [0.5, 1.0, 1.0]
    assert cos(6) == pytest.approx(0.5) and lin(5) == pytest.approx(0.5) and lin(10) == 0.0
    assert schedule_fn("constant", 10)(9) == 1.0
    with pytest.raises(ValueError, match="schedule must be one of"):
        schedule_fn("step", 10)
