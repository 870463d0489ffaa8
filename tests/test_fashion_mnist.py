"""The fashion-mnist experiment: fast preset on synthetic images, and the IDX path."""
import json

import numpy as np
import pytest

from rnnlab.data.images import write_idx
from rnnlab.experiments import run_experiment
from rnnlab.experiments.fashion_mnist import published_baselines, synthetic_split


def test_fast_preset_learns_and_writes_outputs(tmp_path):
    res = run_experiment("fashion-mnist", "fast", tmp_path)
    for ext in ("json", "md", "png"):
        assert (tmp_path / f"fashion-mnist.{ext}").stat().st_size > 0
    saved = json.loads((tmp_path / "fashion-mnist.json").read_text())
    models = saved["models"]
    assert {"rnn", "lstm", "gru", "grid3d"} <= set(models)
    for name in ("lstm", "gru", "grid3d"):          # chance is 0.1
        assert models[name]["test_accuracy"] >= 0.6, (name, models[name])
    for name in ("rnn", "lstm", "gru"):             # equal budget: within 15 % of 3000
        assert 2550 <= models[name]["params"] <= 3000
        assert len(models[name]["curve"]) == res["config"]["epochs"]
    assert "| lstm | rows as a sequence |" in (tmp_path / "fashion-mnist.md").read_text()


def test_reads_idx_folder_and_lists_baselines(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for split, stem in (("train", "train"), ("test", "t10k")):
        s = synthetic_split(40, seed=3 if split == "train" else 4)
        write_idx(data / f"{stem}-images-idx3-ubyte.gz", s.images, compress=True)
        write_idx(data / f"{stem}-labels-idx1-ubyte.gz", s.labels.astype(np.uint8), True)
    res = run_experiment("fashion-mnist", "fast", tmp_path / "out", data=str(data),
                         archs="lstm", grid=False, epochs=1, train_size=0, test_size=0)
    assert res["train_size"] == 40 and res["test_size"] == 40
    assert set(res["models"]) == {"lstm"}
    names = [b["name"] for b in res["baselines"]]
    assert any(n.startswith("GRU+SVM") for n in names) and "HOG+SVM" in names
    assert all(0.8 < b["accuracy"] < 1 for b in res["baselines"])
    assert "HOG+SVM" in (tmp_path / "out" / "fashion-mnist.md").read_text()


def test_missing_data_is_a_user_error(tmp_path):
    from rnnlab.errors import UserError
    with pytest.raises(UserError, match="dataset-fashion-mnist"):
        run_experiment("fashion-mnist", "fast", tmp_path, data=str(tmp_path / "none"))


def test_baselines_are_published_numbers():
    rows = published_baselines()
    assert rows and all({"name", "accuracy", "source"} <= set(r) for r in rows)
