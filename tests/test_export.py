"""Export to ONNX: for every registered architecture the exported one-step graph run by
onnxruntime equals the PyTorch model step by step (from a zero state, from a carried one,
from an arbitrary one), suggestions and evaluation from the export equal those from the
run, int8 weights sit within one quantisation step of the float ones, the stepping module
works with torch unimportable, and damaged or mismatched folders give one-line errors."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper

import rnnlab
from rnnlab.cli import main
from rnnlab.data.text import Vocab, tokenize
from rnnlab.export.exporter import export_model, trace
from rnnlab.export.predictor import ExportPredictor, load_predictor
from rnnlab.export.quant import big_matrices, quantise_model_, quantise_rows
from rnnlab.export.runtime import Exported
from rnnlab.export.step import StepFunction
from rnnlab.infer import Predictor
from rnnlab.models.lm import LanguageModel, LMConfig
from rnnlab.train import TrainConfig, Trainer

ARCHS = list(rnnlab.available())
TEXT = ("She was born in France and grew up speaking French. He was born in Spain and "
        "grew up speaking Spanish. The clouds in the sky are blue. The grass is green.\n")
RUNTIME = Path(__file__).resolve().parents[1] / "src" / "rnnlab" / "export" / "runtime.py"


def make_run(root: Path, arch: str, level: str = "word", seed: int = 0) -> Path:
    """A run directory holding a tiny model after one training step."""
    text = root / "text.txt"
    text.write_text(TEXT * 20)
    out = root / f"{arch}-{level}-run"
    cfg = TrainConfig(text=str(text), level=level,
                      model=LMConfig(arch=arch, embedding=8, hidden=12, layers=2), batch=2,
                      bptt=8, lr=1e-2, max_steps=1, eval_every=0, save_every=0, seed=seed)
    Trainer(cfg, out, quiet=True).run()
    return out


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """arch -> (run directory, float export, int8 export)."""
    root = tmp_path_factory.mktemp("exports")
    out = {}
    for arch in ARCHS:
        run = make_run(root, arch)
        pred = Predictor.load(run)
        vocab = pred.vocab.to_json()
        export_model(pred.model, vocab, root / f"{arch}-f32")
        export_model(pred.model, vocab, root / f"{arch}-int8", int8=True)
        out[arch] = (run, root / f"{arch}-f32", root / f"{arch}-int8")
    return out


def tolerance(folder: Path) -> float:
    """1e-5 of the logits' scale, or what float32 itself is off by where the model
    amplifies rounding (layer norm of a nearly constant vector), as the export measured."""
    check = json.loads((folder / "export.json").read_text())["check"]
    assert check["tolerance"] <= 1e-4
    return max(1e-5, check["tolerance"])


def compare(model, exported, tokens, state_t=None, state_o=None, tol=1e-5):
    """Step both over tokens (T, B); assert logits and flat states agree at every step."""
    fn = StepFunction(model)
    if state_o is None:
        state_o = exported.zero_state(tokens.shape[1])
    for tok in tokens:
        with torch.no_grad():
            logits_t, state_t = model.step(tok, state_t)
        logits_o, state_o = exported.step(tok.numpy(), state_o)
        scale = float(logits_t.abs().max())
        assert np.abs(logits_o - logits_t.numpy()).max() <= tol * scale
        assert np.abs(state_o - fn.to_flat(state_t).numpy()).max() <= tol * 10
    return state_t, state_o


@pytest.mark.parametrize("arch", ARCHS)
def test_export_equals_pytorch_from_zero_and_carried_state(exports, arch):
    run, f32, _ = exports[arch]
    model = Predictor.load(run).model
    exported = Exported(f32)
    gen = torch.Generator().manual_seed(1)
    V = model.config.vocab_size
    tokens = torch.randint(0, V, (12, 3), generator=gen)
    state_t, _ = compare(model, exported, tokens, tol=tolerance(f32))
    # carried: PyTorch's state after a prefix, handed to the export as a flat vector
    with torch.no_grad():
        flat = StepFunction(model).to_flat(state_t).numpy()
    more = torch.randint(0, V, (8, 3), generator=gen)
    compare(model, exported, more, state_t, flat, tol=tolerance(f32))
    # batch 1 and a larger batch run through the same graph
    compare(model, exported, torch.randint(0, V, (3, 1), generator=gen), tol=tolerance(f32))
    compare(model, exported, torch.randint(0, V, (2, 17), generator=gen), tol=tolerance(f32))


@pytest.mark.parametrize("arch", ARCHS)
def test_an_arbitrary_flat_state_means_the_same_to_both(exports, arch):
    run, f32, _ = exports[arch]
    model = Predictor.load(run).model
    fn = StepFunction(model)
    gen = torch.Generator().manual_seed(2)
    flat = torch.randn(4, fn.state_size, generator=gen) * 0.5
    for entry in fn.layout:                         # a Clockwork counter is an integer
        if entry["name"].endswith(".t"):
            flat[:, entry["offset"]] = torch.tensor([0.0, 1.0, 5.0, 6.0])
    assert torch.equal(fn.to_flat(fn.from_flat(flat)), flat)
    tok = torch.randint(0, model.config.vocab_size, (1, 4), generator=gen)
    compare(model, Exported(f32), tok, fn.from_flat(flat), flat.numpy(), tol=tolerance(f32))


def test_layout_names_the_fields(exports):
    run, f32, _ = exports["lstm"]
    meta = json.loads((f32 / "export.json").read_text())
    layout = {e["name"]: (e["offset"], e["size"]) for e in meta["state_layout"]}
    assert list(layout) == ["layer0.h", "layer0.c", "layer1.h", "layer1.c"]
    assert meta["state_size"] == 48 and sum(s for _, s in layout.values()) == 48
    model = Predictor.load(run).model
    with torch.no_grad():
        _, (_, c) = model.step(torch.tensor([3]), None)
    _, state = Exported(f32).step([3])
    o, s = layout["layer1.c"]
    np.testing.assert_allclose(state[0, o:o + s], c[1, 0].numpy(), atol=1e-6)
    clock = json.loads((exports["clockwork_rnn"][1] / "export.json").read_text())
    assert [e["name"] for e in clock["state_layout"]] == ["layer0.h", "layer0.t",
                                                          "layer1.h", "layer1.t"]


@pytest.mark.parametrize("arch", ARCHS)
def test_suggest_and_eval_from_the_export_equal_the_run(exports, arch, tmp_path, capsys):
    run, f32, _ = exports[arch]
    a, b = Predictor.load(run), load_predictor(f32)
    assert isinstance(b, ExportPredictor)
    long = TEXT * 8                                     # past the predictor's step cache
    for text in ("She was born in", "The clouds in the", "grew up spea", long + "She was"):
        sa, sb = a.suggest(text, 3), b.suggest(text, 3)
        assert [w for w, _ in sa] == [w for w, _ in sb]
        assert [p for _, p in sa] == pytest.approx([p for _, p in sb], rel=1e-4)
    for folder in (run, f32):                          # sample: the same seeded text
        assert main(["sample", str(folder), "--prime", "The", "--length", "6",
                     "--seed", "3"]) == 0
    outs = capsys.readouterr().out.splitlines()
    assert outs[0] == outs[1] and outs[0].startswith("The")
    (tmp_path / "t.txt").write_text(TEXT * 3)
    nats = []
    for folder in (run, f32):
        assert main(["eval", str(folder), str(tmp_path / "t.txt"), "--batch", "4"]) == 0
        nats.append(float(capsys.readouterr().out.split("nats ")[1].split()[0]))
    assert nats[0] == pytest.approx(nats[1], abs=2e-4)


def test_char_level_beam_search_from_the_export(tmp_path):
    run = make_run(tmp_path, "gru", "char")
    folder = tmp_path / "gru-char"
    pred = Predictor.load(run)
    export_model(pred.model, pred.vocab.to_json(), folder)
    for text in ("She gr", "The clouds "):
        sa, sb = pred.suggest(text, 3), load_predictor(folder).suggest(text, 3)
        assert [w for w, _ in sa] == [w for w, _ in sb]
        assert [p for _, p in sa] == pytest.approx([p for _, p in sb], rel=1e-4)


def test_quantised_rows_are_within_half_a_step():
    w = torch.randn(7, 33).numpy()
    w[3] = 0.0                                             # an all-zero row stays zero
    q, scale = quantise_rows(w)
    assert q.dtype == np.int8 and np.abs(q).max() == 127 and scale.shape == (7,)
    err = np.abs(q * scale[:, None] - w)
    assert (err <= scale[:, None] / 2 + 1e-7).all() and (q[3] == 0).all()
    qc, sc = quantise_rows(w.T.copy(), axis=1)            # per column of the transpose
    np.testing.assert_array_equal(qc, q.T)
    np.testing.assert_array_equal(sc, scale)


def assert_int8_kernels(folder, tmp_path):
    """onnxruntime's optimised graph: every int8 product on the 8-bit kernel."""
    opts = ort.SessionOptions()
    opts.optimized_model_filepath = str(tmp_path / "optimised.onnx")
    opts.log_severity_level = 3
    ort.InferenceSession(str(folder / "model.onnx"), opts)
    ops = [n.op_type for n in onnx.load(tmp_path / "optimised.onnx").graph.node]
    assert "DequantizeLinear" not in ops and "MatMulNBits" in ops


@pytest.mark.parametrize("arch", ARCHS)
def test_int8_weights_within_one_step_of_the_float_ones(exports, arch, tmp_path):
    run, _, i8 = exports[arch]
    model = Predictor.load(run).model
    float_weights = {n: p.detach().clone() for n, p in big_matrices(model)}
    done = quantise_model_(model)
    assert {d["name"] for d in done} == set(float_weights) and done
    for name, p in big_matrices(model):                  # PyTorch: half a step per row
        step = float_weights[name].abs().amax(1, keepdim=True) / 127
        assert ((p - float_weights[name]).abs() <= step / 2 + 1e-7).all()
    # ONNX: each stored int8 constant within half of its own step of the int8 PyTorch
    # model's matrix (the same matrix exactly, except Grid's column blocks, which the graph
    # reads separately and so get scales of their own): within one step of the float one
    g32 = {i.name: numpy_helper.to_array(i) for i in trace(StepFunction(model)).graph.initializer}
    g8 = {i.name: numpy_helper.to_array(i) for i in onnx.load(i8 / "model.onnx").graph.initializer}
    stored = json.loads((i8 / "export.json").read_text())["quantised"]["onnx"]
    assert len(stored) >= 4                       # embedding, two layers' matrices, output
    for entry in stored:
        name, axis = entry["tensor"], 0 if entry["per"] == "row" else 1
        q, scale = g8[f"{name}_int8_{axis}"], g8[f"{name}_scale_{axis}"]
        assert q.dtype == np.int8
        ref = g32[name].T if entry["transposed"] else g32[name]
        deq = q.astype(np.float32) * np.expand_dims(scale, 1 - axis)
        assert (np.abs(deq - ref) <= np.expand_dims(scale, 1 - axis) * 0.5001 + 1e-7).all()
        if arch != "grid_lstm":
            np.testing.assert_allclose(deq, ref, rtol=1e-6, atol=1e-7)
    assert not any(i.data_type == onnx.TensorProto.FLOAT and len(i.dims) == 2
                   and min(i.dims) > 3 for i in onnx.load(i8 / "model.onnx").graph.initializer)
    # onnxruntime runs every int8 product on its 8-bit kernel: no matrix is dequantised
    # at each step (a MatMul + Add fused into a Gemm first would be, 15x slower)
    assert_int8_kernels(i8, tmp_path)
    # the int8 graph (float products) is the int8 PyTorch model
    check = json.loads((i8 / "export.json").read_text())["check"]
    assert check["relative_logit_error"] <= (1e-2 if arch == "grid_lstm" else 1e-5)
    assert np.isfinite(check["default_session"]["relative_logit_error"])   # loss: bench


def test_runtime_steps_with_torch_unimportable(exports, tmp_path):
    _, f32, _ = exports["depth_gated_lstm"]
    expect, _ = Exported(f32).step([5, 7])
    script = (
        "import sys, importlib.util, json\n"
        "sys.modules['torch'] = None\n"                   # import torch now fails
        f"spec = importlib.util.spec_from_file_location('rt', {str(RUNTIME)!r})\n"
        "rt = importlib.util.module_from_spec(spec); spec.loader.exec_module(rt)\n"
        "try:\n    import torch\nexcept ImportError:\n    pass\nelse:\n    sys.exit(3)\n"
        f"m = rt.Exported({str(f32)!r})\n"
        "logits, state = m.step([5, 7], m.zero_state(2))\n"
        "print(json.dumps(logits.tolist()))\n")
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120, check=False)
    assert res.returncode == 0, res.stderr
    np.testing.assert_allclose(np.array(json.loads(res.stdout)), expect, rtol=0, atol=1e-6)


def _one_line_error(capsys, folder, *needles):
    assert main(["suggest", str(folder), "She was"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    for n in needles:
        assert n in err
    return err


def test_damaged_or_mismatched_export_folders_give_one_line_errors(exports, tmp_path, capsys):
    import shutil
    _, f32, _ = exports["lstm"]
    _, gru, _ = exports["gru"]

    def copy(name):
        dst = tmp_path / name
        shutil.copytree(f32, dst)
        return dst

    d = copy("no-model")
    (d / "model.onnx").unlink()
    _one_line_error(capsys, d, "model.onnx", "missing")
    d = copy("truncated")
    data = (d / "model.onnx").read_bytes()
    (d / "model.onnx").write_bytes(data[: len(data) // 2])
    _one_line_error(capsys, d, "model.onnx", "damaged")
    d = copy("bad-json")
    (d / "export.json").write_text("{not json")
    _one_line_error(capsys, d, "export.json", "damaged")
    d = copy("version")
    meta = json.loads((d / "export.json").read_text())
    (d / "export.json").write_text(json.dumps({**meta, "version": 99}))
    _one_line_error(capsys, d, "version 99")
    d = copy("other-model")                            # GRU graph: another state size
    shutil.copy(gru / "model.onnx", d / "model.onnx")
    _one_line_error(capsys, d, "mixes two exports")
    d = copy("other-vocab")
    vocab = json.loads((d / "vocab.json").read_text())
    (d / "vocab.json").write_text(json.dumps({**vocab, "tokens": vocab["tokens"][:-1]}))
    _one_line_error(capsys, d, "vocab.json", "mixes two exports")
    d = copy("not-onnx")
    (d / "model.onnx").write_text("hello")
    _one_line_error(capsys, d, "model.onnx")


def test_export_command_refuses_a_foreign_folder_and_replaces_its_own(exports, tmp_path,
                                                                       capsys):
    run, _, _ = exports["rnn"]
    out = tmp_path / "x"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["export", str(run), "--out", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "mine"
    fresh = tmp_path / "y"
    assert main(["export", str(run), "--out", str(fresh), "--int8"]) == 0
    assert "int8" in capsys.readouterr().out
    assert main(["export", str(run), "--out", str(fresh)]) == 0        # its own export
    assert json.loads((fresh / "export.json").read_text())["int8"] is False
    assert main(["export", str(tmp_path / "nope"), "--out", str(tmp_path / "z")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_tied_projected_model_stores_its_embedding_once(tmp_path):
    """The keyboard shape (CIFG with a projection, tied input/output embedding), small."""
    torch.manual_seed(0)
    vocab = Vocab.build(tokenize(TEXT, "word"), "word")
    model = LanguageModel(len(vocab), "lstm_cifg", embedding=8, hidden=16, layers=1,
                          tie_weights=True, proj_size=8)
    meta = export_model(model, vocab.to_json(), tmp_path / "kb", int8=True)
    assert meta["check"]["relative_logit_error"] <= 1e-5
    stored = meta["quantised"]["onnx"]
    assert sum(e["shape"] in ([8, len(vocab)], [len(vocab), 8]) for e in stored) == 1
    graph = onnx.load(tmp_path / "kb" / "model.onnx").graph
    tables = [i for i in graph.initializer if sorted(i.dims) == sorted([8, len(vocab)])]
    assert len(tables) == 1 and tables[0].data_type == onnx.TensorProto.INT8
    assert_int8_kernels(tmp_path / "kb", tmp_path)
    quantise_model_(model)
    compare(model, Exported(tmp_path / "kb", exact_int8=True),
            torch.randint(0, len(vocab), (6, 2)))


def test_the_bench_runs_and_writes_its_report(tmp_path, monkeypatch):
    """A smoke run of benchmarks/export_step.py at tiny shapes (no timing is judged)."""
    from rnnlab.export import bench
    monkeypatch.setattr(bench, "DEFAULT", {"vocab": 13, "embedding": 8, "hidden": 12,
                                           "layers": 2})
    monkeypatch.setattr(bench, "KEYBOARD", {"vocab": 13, "embedding": 8, "hidden": 16,
                                            "layers": 1, "tie_weights": True, "proj_size": 8})
    monkeypatch.setattr(bench, "read_bandwidth", lambda: 1e10)
    assert bench.main(["--out", str(tmp_path), "--arch", "gru", "--arch", "grid_lstm",
                       "--tokens", "3", "--reps", "1", "--agree-steps", "2",
                       "--train-seconds", "0"]) == 0
    result = json.loads((tmp_path / "export.json").read_text())
    assert [s["arch"] for s in result["step"]] == ["gru", "grid_lstm"]
    assert result["step"][0]["weight_bytes_per_step"]["int8"] < \
        result["step"][0]["weight_bytes_per_step"]["float32"]
    assert "| grid_lstm |" in (tmp_path / "export.md").read_text()


def test_serve_answers_from_an_export_as_from_the_run(exports):
    from starlette.testclient import TestClient

    from rnnlab.serve import Limits, create_app, load_models
    run, f32, i8 = exports["gru"]
    with TestClient(create_app(load_models([run, f32, i8]), Limits())) as client:
        info = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
        assert info[f32.name]["format"] == "onnx" and info[i8.name]["format"] == "onnx-int8"
        assert info[f32.name]["parameters"] == info[run.name]["parameters"]
        answers = [client.post("/v1/suggest", json={"text": "She was born in", "k": 3,
                                                    "model": m.name}).json()["suggestions"]
                   for m in (run, f32)]
        assert [s["word"] for s in answers[0]] == [s["word"] for s in answers[1]]
        assert [s["p"] for s in answers[0]] == pytest.approx([s["p"] for s in answers[1]],
                                                             rel=1e-4, abs=1e-6)


def test_export_leaves_a_model_with_dropout_in_eval_mode(tmp_path):
    """torch.onnx.export restores the traced wrapper's mode; the wrapper was in training
    mode, so the model's dropout came back on and the int8 export failed its own check."""
    torch.manual_seed(0)
    model = LanguageModel(20, "gru", 8, 12, 2, dropout=0.3).eval()
    vocab = {"level": "char", "tokens": [chr(97 + i) for i in range(20)]}
    for int8 in (False, True):
        meta = export_model(model, vocab, tmp_path / f"int8-{int8}", int8=int8)
        assert not model.training and meta["check"]["relative_logit_error"] <= 0.05
