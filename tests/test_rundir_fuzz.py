"""Fuzzing run directories and flags: whatever the JSON files of a run hold (garbage, wrong
types, re-signed edits) and whatever the numeric flags say, a command ends with status 0
or with one line and status 2, never a traceback, and writes nothing outside the run."""
import json
import os
import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rnnlab.checkpoint import read_json, write_json
from rnnlab.cli import build_parser, main

TINY = ["--embedding", "8", "--hidden", "12", "--batch", "4", "--bptt", "8",
        "--corpus-tokens", "3000", "--eval-every", "0", "--threads", "1", "--quiet"]
FILES = ["config.json", "last.json", "best.json", "vocab.json",
         "checkpoints/step-000000004/trainer.json"]
FUZZ = settings(max_examples=int(os.environ.get("RNNLAB_FUZZ_EXAMPLES", 25)), deadline=None,
                database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12)


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    out = tmp_path_factory.mktemp("template") / "run"
    assert main(["train", "--out", str(out), "--max-steps", "4", "--save-every", "2",
                 *TINY]) == 0
    return out


def _paths(obj, prefix=()):
    """Every key path into a JSON object (so an edit can target a nested value)."""
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:3]):
            yield from _paths(v, prefix + (i,))


def _set(obj, path, value):
    if not path:
        return value
    obj[path[0]] = _set(obj[path[0]], path[1:], value)
    return obj


def _check(capsys, argv) -> None:
    capsys.readouterr()
    try:
        rc = main(argv)
    except SystemExit as e:
        rc = e.code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert rc in (0, 2), (rc, err)
    if rc == 2:
        lines = [x for x in err.splitlines() if not x.startswith("note:")]
        assert len(lines) == 1, err


@FUZZ
@given(file=st.sampled_from(FILES), resign=st.booleans(), value=values, pick=st.integers(0, 99),
       raw=st.binary(max_size=40), mode=st.sampled_from(["edit", "replace", "bytes"]))
def test_damaged_json_never_gives_a_traceback(template, tmp_path_factory, capsys, file,
                                              resign, value, pick, raw, mode):
    root = tmp_path_factory.mktemp("fuzz")
    run = root / "run"
    shutil.copytree(template, run)
    (root / "neighbour.txt").write_text("not rnnlab's")
    path = run / file
    if mode == "bytes":
        path.write_bytes(raw)
    else:
        obj = read_json(path, file, checked=True)
        if mode == "edit":
            paths = list(_paths(obj))[1:] or [()]
            obj = _set(obj, paths[pick % len(paths)], value)
        else:
            obj = value
        if resign and isinstance(obj, dict):
            write_json(path, obj, checked=True)
        else:
            path.write_text(json.dumps(obj))
    outside = {p: p.read_bytes() for p in [root / "neighbour.txt"]}
    listing = sorted(p.name for p in root.iterdir())
    _check(capsys, ["suggest", str(run), "the"])
    _check(capsys, ["sample", str(run), "--length", "3", "--seed", "1"])
    _check(capsys, ["train", "--out", str(run), "--resume", "--max-steps", "6", "--quiet"])
    assert sorted(p.name for p in root.iterdir()) == listing
    assert {p: p.read_bytes() for p in outside} == outside


flag_text = st.one_of(st.text(max_size=8), st.integers(-10**25, 10**25).map(str),
                      st.floats().map(repr), st.sampled_from(["inf", "-inf", "nan", "1e20",
                                                              "0", "-1", "1e-30", ""]))


@FUZZ
@given(flag=st.sampled_from(["--batch", "--bptt", "--hidden", "--embedding", "--layers",
                             "--lr", "--clip", "--dropout", "--seed", "--max-time",
                             "--max-steps", "--warmup", "--min-lr", "--threads"]),
       text=flag_text)
def test_train_flags_parse_or_fail_in_one_line(capsys, flag, text):
    parser = build_parser().commands["train"]
    try:
        args = parser.parse_intermixed_args([flag, text])
    except SystemExit as e:
        assert e.code == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
        return
    value = getattr(args, flag[2:].replace("-", "_"))
    assert value == value and abs(value) != float("inf")          # finite
    if flag not in ("--seed", "--warmup", "--clip", "--min-lr", "--dropout"):
        assert value > 0


@FUZZ
@given(temperature=flag_text, top_k=flag_text, seed=flag_text)
def test_sample_flags_never_give_a_traceback(template, capsys, temperature, top_k, seed):
    _check(capsys, ["sample", str(template), "--length", "2", "--temperature", temperature,
                    "--top-k", top_k, "--seed", seed])
