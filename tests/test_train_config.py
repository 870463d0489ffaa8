"""One model config: TrainConfig holds LMConfig instead of repeating its fields, the
`train` flags come from both, and every registered architecture's options are reachable
through --arch-option (checked against the architecture's factory)."""
import inspect
import json
from dataclasses import fields

import pytest

from rnnlab.cli import build_parser, main
from rnnlab.commands.train import config_from_args
from rnnlab.infer import Predictor
from rnnlab.layers.registry import available, factory
from rnnlab.models.lm import LMConfig
from rnnlab.settings import _parameters, arch_options
from rnnlab.train import TrainConfig

TINY = ["--embedding", "8", "--hidden", "16", "--batch", "4", "--bptt", "8",
        "--corpus-tokens", "3000", "--eval-every", "0", "--threads", "1", "--quiet"]


def _args(*argv):
    return build_parser().commands["train"].parse_intermixed_args(list(argv))


def test_model_fields_live_only_in_lmconfig_and_are_flags():
    train = {f.name for f in fields(TrainConfig)}
    model = {f.name for f in fields(LMConfig)}
    assert not (train & model) and "model" in train
    cfg, given = config_from_args(_args("some.txt"))
    assert cfg.model == LMConfig() and given == {"text"}        # defaults: LMConfig's own
    cfg, given = config_from_args(_args("t.txt", "--hidden", "64", "--tie-weights",
                                        "--lr", "0.01"))
    assert (cfg.model.hidden, cfg.model.tie_weights, cfg.lr) == (64, True, 0.01)
    assert given == {"text", "model.hidden", "model.tie_weights", "lr"}
    helps = {a.dest for a in build_parser().commands["train"]._actions}
    assert {f.name for f in fields(LMConfig)} - {"vocab_size", "options"} <= helps


@pytest.mark.parametrize("arch", list(available()))
def test_every_architecture_option_is_reachable(arch):
    fn = factory(arch)
    names, _ = _parameters(fn)
    params = inspect.signature(fn).parameters
    for name in names:
        default = params[name].default
        if default is inspect.Parameter.empty or not isinstance(
                default, (bool, int, float, str, type(None), tuple, list)):
            continue
        pair = f"{name}={json.dumps(list(default) if isinstance(default, tuple) else default)}"
        assert arch_options(arch, [pair], fn) == {name: json.loads(pair.split('=', 1)[1])}
    with pytest.raises(ValueError, match="not an option of"):
        arch_options(arch, ["no_such_option=1"], fn)
    with pytest.raises(ValueError, match="not an option of"):
        arch_options(arch, ["bidirectional=true"], fn)


def test_clockwork_modules_from_the_command_line(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--arch", "clockwork_rnn", "--arch-option",
                 "num_modules=8", "--arch-option", "periods=[1,2,4,8,16,32,64,128]",
                 "--max-steps", "3", *TINY]) == 0
    saved = json.loads((run / "config.json").read_text())
    assert saved["model"]["options"] == {"num_modules": 8,
                                         "periods": [1, 2, 4, 8, 16, 32, 64, 128]}
    assert "hidden" not in saved["train"] and saved["model"]["hidden"] == 16
    pred = Predictor.load(run)
    assert "periods=(1, 2, 4, 8, 16, 32, 64, 128)" in repr(pred.model.core)
    capsys.readouterr()
    assert main(["train", "--out", str(tmp_path / "bad"), "--arch", "clockwork_rnn",
                 "--arch-option", "num_modules=99", "--max-steps", "2", *TINY]) == 2
    err = capsys.readouterr().err
    assert "num_modules" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "bad").exists()                  # nothing left behind
