"""Fashion-MNIST (Xiao, Rasul & Vollgraf 2017) read by recurrent networks.

(a) Every registered architecture reads a 28x28 image row by row, as a 28-step sequence of
    28 pixels, and classifies it from its last output; all cores get the same parameter
    budget (hidden size chosen per architecture).
(b) The 3-D Grid LSTM of Kalchbrenner, Danihelka & Graves 2015 ("Grid Long Short-Term
    Memory", their MNIST experiment): the image is cut into patches, and a grid of LSTM
    blocks along the two image axes and depth scans it, scaled down to fit a CPU.

Test accuracy is reported next to the dataset's published baselines (submitted results in
its README: GRU+SVM, MLP, HOG+SVM), with learning curves and training time.
The fast preset uses small synthetic images so that it runs in seconds without the data.
"""
from __future__ import annotations

import dataclasses
import gzip
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import build
from ..data.images import DEFAULT_DIR, ImageSplit, load_split
from ..progress import Progress
from . import machine_description, write_outputs
from ._compare import (
    architectures,
    count_params,
    hidden_for_budget,
    markdown_table,
    pyplot,
    threads,
)
from ._loop import Loop

NAME = "fashion-mnist"
DESCRIPTION = ("Fashion-MNIST: every architecture reading rows as a 28-step sequence, and a "
               "3-D Grid LSTM over patches; accuracy vs the published baselines")
README = Path("/usr/share/doc/dataset-fashion-mnist/README.md.gz")
# Submitted results quoted in the Fashion-MNIST README (used when the Debian package's copy
# of the README is not installed; otherwise its table is read).
FALLBACK_BASELINES = (("GRU+SVM", 0.888), ("GRU+SVM with dropout", 0.897),
                      ("MLP 256-128-64", 0.900), ("HOG+SVM", 0.926))


@dataclass(frozen=True)
class Config:
    data: str = "synthetic"          # "synthetic", "" (Debian's folder) or a folder path
    archs: tuple[str, ...] = ()      # empty: every registered architecture
    budget: int = 20_000             # parameters of core + head per row model
    train_size: int = 0              # 0: the whole training split
    test_size: int = 0               # 0: the whole test split
    epochs: int = 3
    batch: int = 128
    lr: float = 2e-3
    clip: float = 1.0
    grid: bool = True                # also train the 3-D Grid LSTM when it is available
    grid_patch: int = 4              # patch side (28 must be divisible by it)
    grid_hidden: int = 32
    grid_depth: int = 2              # layers, each scanning from the next corner
    grid_fc: int = 128               # ReLU layer on top (the paper: 4096)
    grid_epochs: int = 0             # 0: same as epochs
    grid_train_size: int = 0         # 0: the same training images as the row models
    seed: int = 0
    threads: int = 0                 # torch threads (0: leave as is)


PRESETS = {
    "fast": Config(data="synthetic", archs=("rnn", "lstm", "gru"), budget=3000,
                   train_size=512, test_size=200, epochs=3, batch=32, lr=1e-2,
                   grid_patch=7, grid_hidden=8, grid_depth=1, grid_fc=16, threads=1),
    "full": Config(data="", budget=20_000, train_size=20_000, test_size=0, epochs=3,
                   batch=128, grid_patch=4, grid_hidden=32, grid_depth=4, grid_fc=128,
                   grid_epochs=2, grid_train_size=10_000, threads=1),
}


# -- data ------------------------------------------------------------------------------------

def synthetic_split(n: int, seed: int) -> ImageSplit:
    """Ten classes of 28x28 images: a bright band starting at a class-specific row (and at
    one of three columns), jittered by a pixel, on noise. Learnable from rows in seconds."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
    for k, c in enumerate(labels):
        r0 = 1 + 2 * c + rng.integers(-1, 2)
        c0 = 3 + 7 * (c % 3) + rng.integers(-1, 2)
        images[k, max(r0, 0):r0 + 6, c0:c0 + 10] = rng.integers(180, 256)
    return ImageSplit(images, labels.astype(np.int64))


def _subsample(split: ImageSplit, size: int, seed: int) -> ImageSplit:
    if not size or size >= len(split):
        return split
    idx = np.random.default_rng(seed).permutation(len(split))[:size]
    return ImageSplit(split.images[idx], split.labels[idx])


def load_data(cfg: Config) -> tuple[ImageSplit, ImageSplit, str]:
    """(train, test, description of the source)."""
    if cfg.data == "synthetic":
        n_train, n_test = cfg.train_size or 1000, cfg.test_size or 500
        return (synthetic_split(n_train, cfg.seed), synthetic_split(n_test, cfg.seed + 1),
                "synthetic rectangles (10 classes)")
    folder = Path(cfg.data) if cfg.data else DEFAULT_DIR
    train = _subsample(load_split(folder, "train"), cfg.train_size, cfg.seed)
    test = _subsample(load_split(folder, "test"), cfg.test_size, cfg.seed + 1)
    return train, test, f"IDX files in {folder}"


def to_tensor(split: ImageSplit, mean: float, std: float) -> tuple[Tensor, Tensor]:
    x = torch.from_numpy(split.images).float().div_(255).sub_(mean).div_(std)   # (N, 28, 28)
    return x, torch.from_numpy(split.labels)


def published_baselines() -> list[dict]:
    """The recurrent/MLP/HOG rows of the dataset README's benchmark table."""
    wanted = ("GRU+SVM", "MLP", "HOG+SVM")
    if README.is_file():
        rows = []
        for line in gzip.open(README, "rt", encoding="utf-8", errors="replace"):
            cols = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cols) > 3 and cols[0].startswith(wanted):
                try:
                    rows.append({"name": cols[0], "accuracy": float(cols[2]),
                                 "source": str(README)})
                except ValueError:
                    continue
        if rows:
            return rows
    return [{"name": n, "accuracy": a, "source": "Fashion-MNIST README (submitted results)"}
            for n, a in FALLBACK_BASELINES]


# -- models ----------------------------------------------------------------------------------

class RowClassifier(nn.Module):
    """Image (B, 28, 28) -> rows as a sequence (28, B, 28) -> core -> last output -> logits."""

    def __init__(self, arch: str, hidden: int, rows: int = 28, classes: int = 10) -> None:
        super().__init__()
        self.core = build(arch, rows, hidden)
        self.head = nn.Linear(self.core.output_size, classes)

    def forward(self, images: Tensor) -> Tensor:
        out, _ = self.core(images.transpose(0, 1))                   # (T, B, H)
        return self.head(out[-1])                                    # (B, 10)


class GridImageClassifier(nn.Module):
    """Images (B, 28, 28) -> rnnlab.layers.grid.GridLSTM3dImage (which takes (B, 1, H, W))."""

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        from ..layers.grid import GridLSTM3dImage
        self.net = GridLSTM3dImage(patch=cfg.grid_patch, hidden=cfg.grid_hidden,
                                   depth=cfg.grid_depth, num_classes=10, image_size=28,
                                   fc=cfg.grid_fc)

    def forward(self, images: Tensor) -> Tensor:
        return self.net(images.unsqueeze(1))


def grid_model(cfg: Config) -> nn.Module | None:
    """The 3-D Grid LSTM classifier, or None when rnnlab.layers.grid is not installed."""
    try:
        return GridImageClassifier(cfg)
    except ImportError:
        return None


# -- training --------------------------------------------------------------------------------

def accuracy(model: nn.Module, x: Tensor, y: Tensor, batch: int = 500) -> float:
    model.eval()
    right = 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            right += int((model(x[i:i + batch]).argmax(-1) == y[i:i + batch]).sum())
    model.train()
    return right / max(1, len(x))


def train(model: nn.Module, data: tuple, cfg: Config, epochs: int, bar: Progress) -> dict:
    """Adam with gradient clipping (the shared loop); test accuracy after every epoch."""
    x, y, xt, yt = data
    per_epoch = -(-len(x) // cfg.batch)
    order: dict[int, Tensor] = {}

    def batch(step, gen):
        epoch = step // per_epoch                   # a fixed shuffle per epoch
        if epoch not in order:
            order.clear()
            g = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
            order[epoch] = torch.randperm(len(x), generator=g)
        idx = order[epoch][(step % per_epoch) * cfg.batch:][:cfg.batch]
        return x[idx], y[idx]

    def loss(b):
        return F.cross_entropy(model(b[0]), b[1])

    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    res = Loop(model, opt, batch, loss, steps=epochs * per_epoch, seed=cfg.seed,
               check_every=per_epoch, check=lambda step: {"test_accuracy": accuracy(model, xt, yt)},
               clip=cfg.clip, units_per_step=cfg.batch).run(bar)
    curve = [{"epoch": c["step"] // per_epoch, "train_loss": c["loss"],
              "test_accuracy": c["test_accuracy"], "train_seconds": c["train_seconds"]}
             for c in res.curve]
    return {"test_accuracy": curve[-1]["test_accuracy"], "train_seconds": res.train_seconds,
            "curve": curve}


def run(cfg: Config, out_dir: Path) -> dict:
    start = time.time()
    with threads(cfg.threads):
        train_split, test_split, source = load_data(cfg)
        mean = float(train_split.images.mean()) / 255
        std = float(train_split.images.std()) / 255 or 1.0
        x, y = to_tensor(train_split, mean, std)
        xt, yt = to_tensor(test_split, mean, std)
        models = _build_models(cfg)
        bar = Progress(sum(_epochs(cfg, n) * _n_train(cfg, n, len(x)) for n in models),
                       desc=NAME, unit="img")
        results = {}
        for name, (model, hidden) in models.items():
            bar.desc = name
            torch.manual_seed(cfg.seed)
            n = _n_train(cfg, name, len(x))
            res = train(model, (x[:n], y[:n], xt, yt), cfg, _epochs(cfg, name), bar)
            results[name] = {"params": count_params(model), "hidden": hidden,
                             "train_size": n, "epochs": _epochs(cfg, name), **res}
        bar.close()
        machine = machine_description()
    result = {
        "experiment": NAME, "config": dataclasses.asdict(cfg), "data": source,
        "train_size": len(x), "test_size": len(xt), "models": results,
        "baselines": published_baselines() if cfg.data != "synthetic" else [],
        "grid_available": "grid3d" in models, "seconds": time.time() - start,
        "machine": machine,
    }
    write_outputs(out_dir, NAME, result, table(result))
    plot(result, out_dir / f"{NAME}.png")
    return result


def _epochs(cfg: Config, name: str) -> int:
    return (cfg.grid_epochs or cfg.epochs) if name == "grid3d" else cfg.epochs


def _n_train(cfg: Config, name: str, n: int) -> int:
    return min(n, cfg.grid_train_size or n) if name == "grid3d" else n


def _build_models(cfg: Config) -> dict[str, tuple[nn.Module, int]]:
    models = {}
    head = lambda out: out * 10 + 10                                  # noqa: E731
    for arch in architectures(cfg.archs):
        hidden = hidden_for_budget(arch, 28, cfg.budget, extra=head)
        torch.manual_seed(cfg.seed)
        models[arch] = (RowClassifier(arch, hidden), hidden)
    if cfg.grid:
        torch.manual_seed(cfg.seed)
        g = grid_model(cfg)
        if g is not None:
            models["grid3d"] = (g, cfg.grid_hidden)
    return models


# -- report ----------------------------------------------------------------------------------

def table(result: dict) -> str:
    rows = []
    for name, r in sorted(result["models"].items(), key=lambda kv: -kv[1]["test_accuracy"]):
        kind = "3-D Grid LSTM over patches" if name == "grid3d" else "rows as a sequence"
        rows.append((name, kind, r["hidden"], r["params"], r["train_size"], r["epochs"],
                     f"{r['test_accuracy']:.4f}", f"{r['train_seconds']:.1f}"))
    for b in result["baselines"]:
        rows.append((b["name"], "published (dataset README)", "", "", "60000", "",
                     f"{b['accuracy']:.4f}", ""))
    cfg = result["config"]
    head = (f"# {NAME}\n\nData: {result['data']}; {result['train_size']} training and "
            f"{result['test_size']} test images; {cfg['epochs']} epochs, batch {cfg['batch']}, "
            f"Adam lr {cfg['lr']}, core+head budget {cfg['budget']} parameters.\n"
            f"Machine: {result.get('machine', '')}. Total time {result['seconds']:.0f} s.\n\n")
    if not result["grid_available"] and cfg["grid"]:
        head += "The 3-D Grid LSTM model (rnnlab.layers.grid) was not available.\n\n"
    return head + markdown_table(("model", "reads", "hidden", "params", "train images",
                                  "epochs", "test accuracy", "train s"), rows)


def plot(result: dict, path: Path) -> None:
    plt = pyplot()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(14, 5),
                                 gridspec_kw={"width_ratios": [3, 2], "wspace": 0.75})
    for name, r in result["models"].items():
        ep = [c["epoch"] for c in r["curve"]]
        ax.plot(ep, [c["test_accuracy"] for c in r["curve"]], marker="o", label=name,
                linewidth=2.5 if name == "grid3d" else 1.5)
    last = -1.0
    for b in sorted(result["baselines"], key=lambda b: b["accuracy"]):
        ax.axhline(b["accuracy"], color="grey", linestyle=":", linewidth=1)
        y = max(b["accuracy"], last + 0.009)                       # keep labels apart
        ax.annotate(f"{b['name']} {b['accuracy']:.3f}", (1.0, b["accuracy"]),
                    xytext=(1.01, y), textcoords=("axes fraction", "data"), fontsize=7,
                    color="dimgrey", va="center", xycoords=("axes fraction", "data"))
        last = y
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"Fashion-MNIST ({result['train_size']} train / {result['test_size']} test)"
                 + ("; dotted: published" if result["baselines"] else ""))
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    names = list(result["models"])
    secs = [result["models"][n]["train_seconds"] for n in names]
    bx.barh(names, secs, color="tab:blue")
    bx.set_xlabel("training seconds (this machine)")
    bx.set_title("training time")
    bx.invert_yaxis()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
