"""Train a language model with truncated backpropagation through time.

The training split is cut into B contiguous streams (``batchify``); each step reads the
next window of ``bptt`` tokens of every stream, starting from the recurrent state the
previous window ended in, detached (``rnnlab.detach_state``), so the model sees context
beyond the window while gradients stop at its edge. AdamW, gradient-norm clipping, linear
warm-up, then a constant learning rate or, when ``min_lr`` is given, cosine decay to it over
a horizon that is ``max_steps`` or, with only a time budget, estimated from the speed of the first steps (and saved, so a resumed run
follows the same schedule). Validation is a full pass over the validation split.

Reproducible: the same config and seed give the same losses, and a run resumed from its
last checkpoint continues exactly as if it had not stopped (model, optimizer moments, RNG,
carried state and data position are all saved; see rnnlab.checkpoint).
"""
from __future__ import annotations

import json
import math
import signal
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .checkpoint import (RunDir, atomic_write_bytes, flatten_state, load_model_state,
                         unflatten_state)
from .data.corpus import CorpusConfig, generate
from .data.text import Corpus, Vocab, batchify, prepare, read_text
from .errors import UserError
from .layers import detach_state
from .models.lm import LanguageModel
from .progress import Progress


@dataclass
class TrainConfig:
    text: str | None = None          # a UTF-8 file or folder; None: the built-in corpus
    level: str = "char"
    arch: str = "lstm"
    embedding: int = 128
    hidden: int = 512
    layers: int = 2
    dropout: float = 0.0
    tie_weights: bool = False
    proj_size: int = 0               # LSTM only: project each layer's output to this size
    batch: int = 32
    bptt: int = 128
    lr: float = 2e-3
    min_lr: float | None = None     # None: constant lr after warm-up
    warmup: int = 50
    weight_decay: float = 0.01
    clip: float = 1.0
    max_steps: int | None = None
    max_time: float | None = None    # seconds, training and evaluation together
    eval_every: int = 500
    eval_batch: int = 16
    save_every: int = 100
    seed: int = 0
    min_count: int = 1
    max_vocab: int | None = None
    corpus_tokens: int = 300_000     # built-in corpus size
    corpus_max_gap: int = 90

    @classmethod
    def from_json(cls, data: dict) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def corpus_config(cfg: TrainConfig) -> CorpusConfig:
    return CorpusConfig(seed=cfg.seed, train_tokens=cfg.corpus_tokens,
                        max_gap=cfg.corpus_max_gap)


def load_corpus(cfg: TrainConfig, vocab: Vocab | None = None) -> Corpus:
    text = read_text(cfg.text) if cfg.text else generate(corpus_config(cfg)).text
    try:
        return prepare(text, cfg.level, cfg.min_count, cfg.max_vocab, vocab=vocab)
    except UserError as e:
        raise UserError(f"{cfg.text or 'built-in corpus'}: {e}") from None


@torch.no_grad()
def evaluate(model: LanguageModel, ids: list[int] | Tensor, batch: int = 16,
             bptt: int = 256) -> float:
    """Mean nats per predicted token over ids, read as ``batch`` contiguous streams."""
    was = model.training
    model.eval()
    data = batchify(ids, min(batch, max(1, len(ids) // 2)))
    total, count, state = 0.0, 0, None
    for pos in range(0, data.shape[0] - 1, bptt):
        x = data[pos: pos + bptt]
        y = data[pos + 1: pos + 1 + bptt]
        logits, state = model(x[: len(y)], state)
        total += F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum").item()
        count += y.numel()
    model.train(was)
    return total / max(count, 1)


def metrics(nats: float, prefix: str, level: str) -> dict[str, float]:
    bits = "bpc" if level == "char" else "bits"
    return {f"{prefix}_nats": nats, f"{prefix}_{bits}": nats / math.log(2),
            f"{prefix}_ppl": math.exp(min(nats, 50.0))}


def lr_at(step: int, cfg: TrainConfig, horizon: int | None) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    if not horizon or cfg.min_lr is None:
        return cfg.lr
    frac = min(1.0, (step - cfg.warmup) / max(1, horizon - cfg.warmup))
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * frac))


def build_model(cfg: TrainConfig, vocab_size: int) -> LanguageModel:
    extra = {"proj_size": cfg.proj_size} if cfg.proj_size else {}
    return LanguageModel(vocab_size, cfg.arch, cfg.embedding, cfg.hidden, cfg.layers,
                         cfg.dropout, cfg.tie_weights, **extra)


class Trainer:
    """One training run in a run directory: ``Trainer(cfg, out).run()``."""

    def __init__(self, cfg: TrainConfig, out: str | Path, resume: bool = False,
                 quiet: bool = False) -> None:
        self.run_dir, self.quiet = RunDir(out), quiet
        if resume:
            saved = self.run_dir.config()
            self.cfg = _merge_resume(TrainConfig.from_json(saved["train"]), cfg)
            self.corpus = load_corpus(self.cfg, Vocab.from_json(self.run_dir.vocab()))
            _check_same_data(saved, self.corpus, self.run_dir.path)
        else:
            self.cfg = cfg
            self.corpus = load_corpus(cfg)
        torch.manual_seed(self.cfg.seed)
        self.model = build_model(self.cfg, len(self.corpus.vocab))
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=self.cfg.lr,
                                     weight_decay=self.cfg.weight_decay)
        self.data = batchify(self.corpus.train, self.cfg.batch)              # (N, B)
        self.step, self.pos, self.epoch, self.elapsed = 0, 0, 0, 0.0
        self.horizon, self.estimated = self.cfg.max_steps, False
        self.best = math.inf
        self.state: Any = None
        if resume:
            self._restore()
        else:
            self.run_dir.create(self._config_json(), self.corpus.vocab.to_json())
            (self.run_dir.path / "metrics.jsonl").write_text("")

    # -- persistence ----------------------------------------------------------------------
    def _config_json(self) -> dict:
        c = self.corpus
        return {"train": asdict(self.cfg), "model": self.model.config.to_json(),
                "data": {"train_tokens": len(c.train), "valid_tokens": len(c.valid),
                         "test_tokens": len(c.test), "vocab_size": len(c.vocab),
                         "fingerprint": _fingerprint(c)}}

    def save(self) -> None:
        tensors, structure = flatten_state(self.state)
        opt = self.opt.state_dict()
        for i, st in opt["state"].items():
            for k, v in st.items():
                tensors[f"opt.{i}.{k}"] = v if isinstance(v, Tensor) else torch.tensor(v)
        tensors["rng"] = torch.get_rng_state()
        info = {"pos": self.pos, "epoch": self.epoch, "elapsed": self.elapsed,
                "horizon": self.horizon, "estimated": self.estimated, "best": self.best if self.best < math.inf else None,
                "state": structure, "param_groups": opt["param_groups"]}
        self.run_dir.save_checkpoint(self.step, self.model.state_dict(), tensors, info)

    def _restore(self) -> None:
        weights, tensors, info = self.run_dir.load_checkpoint()
        load_model_state(self.model, weights, self.run_dir.path)
        groups = info["param_groups"]
        for g in groups:
            g["betas"] = tuple(g["betas"])
        state: dict[int, dict] = {}
        for name, v in tensors.items():
            if name.startswith("opt."):
                _, i, k = name.split(".", 2)
                state.setdefault(int(i), {})[k] = v
        self.opt.load_state_dict({"state": state, "param_groups": groups})
        torch.set_rng_state(tensors["rng"])
        self.state = unflatten_state(info["state"], tensors)
        self.step, self.pos, self.epoch = info["step"], info["pos"], info["epoch"]
        self.elapsed = info["elapsed"]
        self.horizon, self.estimated = info["horizon"], info.get("estimated", False)
        if self.cfg.max_steps and not self.estimated:                # a new step budget
            self.horizon = self.cfg.max_steps
        self.best = info["best"] if info["best"] is not None else math.inf
        _truncate_log(self.run_dir.path / "metrics.jsonl", self.step)

    def log(self, record: dict) -> None:
        with open(self.run_dir.path / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    # -- training -------------------------------------------------------------------------
    def train_step(self) -> float:
        T = self.cfg.bptt
        if self.pos + 1 >= self.data.shape[0]:
            self.pos, self.state, self.epoch = 0, None, self.epoch + 1
        x = self.data[self.pos: self.pos + T]
        y = self.data[self.pos + 1: self.pos + 1 + T]
        x = x[: len(y)]
        lr = lr_at(self.step, self.cfg, self.horizon)
        for g in self.opt.param_groups:
            g["lr"] = lr
        logits, state = self.model(x, self.state)
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip)
        self.opt.step()
        self.state = detach_state(state)
        self.pos += len(y)
        self.step += 1
        return loss.item()

    def validate(self) -> dict:
        nats = evaluate(self.model, self.corpus.valid, self.cfg.eval_batch)
        rec = {"step": self.step, **metrics(nats, "valid", self.cfg.level)}
        if nats < self.best:
            self.best = nats
            self.run_dir.save_best(self.model.state_dict(), rec)
        self.log(rec)
        return rec

    def _done(self) -> bool:
        c = self.cfg
        return ((c.max_steps is not None and self.step >= c.max_steps)
                or (c.max_time is not None and self.elapsed >= c.max_time))

    def _estimate_horizon(self, t0: float, s0: int) -> None:
        """With a time budget: fix the schedule length from the measured speed, once."""
        if not self.estimated and self.cfg.max_time and self.step - s0 >= 20:
            per_step = (time.time() - t0) / (self.step - s0)
            left = self.cfg.max_time - self.elapsed
            guess = self.step + int(0.92 * left / per_step)
            self.horizon = min(self.cfg.max_steps or guess, guess)
            self.estimated = True

    def run(self) -> dict:
        """Train until the budget is spent or SIGINT/SIGTERM; returns final metrics."""
        c = self.cfg
        if c.max_steps is None and c.max_time is None:
            raise UserError("give a budget: --max-steps N and/or --max-time SECONDS")
        stop = _StopFlag()
        bar = Progress(c.max_steps or c.max_time, desc=c.arch, enabled=not self.quiet)
        bar.n = self.step if c.max_steps else self.elapsed
        self.model.train()
        t0, s0, last = time.time(), self.step, time.time()
        interrupted = False
        with stop:
            while not self._done():
                loss = self.train_step()
                now = time.time()
                self.elapsed += now - last
                last = now
                self._estimate_horizon(t0, s0)
                self.log({"step": self.step, "loss": loss, "lr": self.opt.param_groups[0]["lr"],
                          "time": round(self.elapsed, 3)})
                if not c.max_steps:
                    bar.n = self.elapsed
                bar.update(1 if c.max_steps else 0, loss=loss)
                if c.eval_every and self.step % c.eval_every == 0 and not self._done():
                    self.validate()
                    last = time.time()
                if stop.requested:
                    interrupted = True
                    break
                if c.save_every and self.step % c.save_every == 0:
                    self.save()
            bar.close()
            if not interrupted:
                result = self.validate()
            self.save()
        if interrupted:
            return {"step": self.step, "interrupted": True}
        return {**result, "elapsed": self.elapsed, "epoch": self.epoch, "interrupted": False}


class _StopFlag:
    """SIGINT/SIGTERM set a flag checked between steps (a second SIGINT aborts at once)."""

    def __init__(self) -> None:
        self.requested = False
        self.old: dict = {}

    def _handle(self, signum, frame) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self):
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.old[sig] = signal.signal(sig, self._handle)
        except ValueError:                                  # not the main thread
            self.old = {}
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self.old.items():
            signal.signal(sig, handler)


def _fingerprint(c: Corpus) -> list[int]:
    ids = c.train + c.valid + c.test
    return [len(ids), sum(i * (k % 9973 + 1) for k, i in enumerate(ids)) % (2**61 - 1)]


def _check_same_data(saved: dict, corpus: Corpus, where: Path) -> None:
    if saved.get("data", {}).get("fingerprint") != _fingerprint(corpus):
        raise UserError(f"{where}: the training text differs from the one this run started "
                        f"with; resume with the same text or start a new run")


def _merge_resume(saved: TrainConfig, given: TrainConfig) -> TrainConfig:
    """A resumed run keeps its saved settings, except the budgets (and a moved text file)."""
    out = TrainConfig.from_json(asdict(saved))
    out.max_steps = given.max_steps if given.max_steps is not None else saved.max_steps
    out.max_time = given.max_time if given.max_time is not None else saved.max_time
    if given.text:
        out.text = given.text
    return out


def _truncate_log(path: Path, step: int) -> None:
    """Drop log lines written after the checkpoint (the resumed run writes them again)."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                keep.append(line)
        except ValueError:
            break                                           # a torn last line
    atomic_write_bytes(path, "".join(k + "\n" for k in keep).encode())
