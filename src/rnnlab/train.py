"""Train a language model with truncated backpropagation through time.

The training split is cut into B contiguous streams (``batchify``); each step reads the
next window of ``bptt`` tokens of every stream, starting from the recurrent state the
previous window ended in, detached (``rnnlab.detach_state``), so the model sees context
beyond the window while gradients stop at its edge. AdamW, gradient-norm clipping, linear
warm-up, then one of three schedules: ``plateau`` (the default: torch's ReduceLROnPlateau
multiplies the learning rate by ``lr_decay`` when ``patience`` + 1 validations in a row did
not improve on the best, never below ``min_lr``), ``cosine`` (decay to ``min_lr`` over a
horizon that is ``max_steps`` or, with only a time budget, estimated from the speed of the
first steps and saved, so a resumed run follows the same schedule) or ``constant``.
Validation is a full pass over the validation split; the best model it saw is kept as the
run's model (``RunDir.save_best``), which suggest, eval, sample and export load.

Dropout left unset (``LMConfig.dropout = None``) is chosen from the corpus: ``auto_dropout``
of the training tokens per model parameter.

Reproducible: the same config and seed give the same losses, and a run resumed from its
last checkpoint continues exactly as if it had not stopped (model, optimizer moments, RNG,
carried state and data position are all saved; see rnnlab.checkpoint).
"""
from __future__ import annotations

import math
import signal
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .checkpoint import flatten_state, model_from_weights, unflatten_state
from .data.corpus import CorpusConfig, generate
from .data.store import is_store, load_store
from .data.streams import Streams
from .data.text import Corpus, Vocab, prepare, read_text
from .distributed import Distributed, state_batch_dims
from .errors import UserError
from .layers import detach_state
from .models.lm import LanguageModel, LMConfig
from .progress import Progress
from .resume import merge_resume
from .rundir import RunDir, load_vocab
from .settings import from_json

SCHEDULES = ("plateau", "cosine", "constant")


def _opt(default, help: str | None = None, check: str | None = None):
    meta = {k: v for k, v in (("help", help), ("check", check)) if v is not None}
    return field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    """A training run's settings; ``model`` is the one model config (rnnlab.models.lm).
    Fields with a ``help`` are ``rnnlab train`` flags (rnnlab.commands.train)."""

    text: str | None = None          # a UTF-8 file or folder; None: the built-in corpus
    level: str = "char"
    model: LMConfig = field(default_factory=LMConfig)
    batch: int = _opt(32, "parallel contiguous streams per step", "positive")
    bptt: int = _opt(128, "tokens per truncated-BPTT window", "positive")
    lr: float = _opt(2e-3, "AdamW learning rate after the linear warm-up", "positive")
    schedule: str = field(default="plateau", metadata={
        "help": "learning rate after warm-up: plateau (lower it when validation stops "
                "improving), cosine (decay to --min-lr over the budget) or constant",
        "choices": SCHEDULES})
    min_lr: float | None = _opt(None, "the lowest learning rate of the plateau and cosine "
                                "schedules (default: lr / 100)", "nonneg")
    lr_decay: float = _opt(0.5, "plateau schedule: factor applied to the learning rate",
                           "fraction")
    patience: int = _opt(1, "plateau schedule: validations in a row without improvement "
                         "that are tolerated; the next one lowers the learning rate", "nonneg")
    warmup: int = _opt(50, "linear warm-up steps", "nonneg")
    weight_decay: float = _opt(0.01, "AdamW weight decay", "nonneg")
    clip: float = _opt(1.0, "gradient-norm clipping threshold (0: off)", "nonneg")
    max_steps: int | None = _opt(None, check="positive")
    max_time: float | None = _opt(None, check="positive")  # seconds, training and evaluation
    eval_every: int = _opt(250, "steps between validation passes (0: only at the end)",
                           "nonneg")
    eval_batch: int = _opt(16, "parallel streams in a validation pass", "positive")
    save_every: int = _opt(100, "steps between checkpoints (0: only at the end)", "nonneg")
    seed: int = _opt(0, "random seed (same seed and settings: same run)", "seed")
    min_count: int = _opt(1, "drop tokens seen fewer times from the vocabulary", "positive")
    max_vocab: int | None = _opt(None, "keep at most this many tokens (the rest become "
                                 "<unk>)", "positive")
    corpus_tokens: int = _opt(300_000, "size of the built-in corpus in tokens", "positive")
    corpus_max_gap: int = _opt(90, "longest dependency gap in the built-in corpus",
                               "positive")

    def to_json(self) -> dict:
        """The training settings (the model's are saved beside them)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "model"}

    @classmethod
    def from_json(cls, train: dict, model: dict, where: str) -> "TrainConfig":
        """Settings saved by ``to_json`` and ``LMConfig.to_json``, every value checked."""
        mcfg = from_json(LMConfig, model, f"{where} model")
        if "schedule" not in train:       # runs from before the schedule setting existed
            train = {**train, "schedule": "constant" if train.get("min_lr") is None
                     else "cosine"}
        return from_json(cls, train, f"{where} train", model=mcfg)

    @property
    def floor_lr(self) -> float:
        """The lowest learning rate of the plateau and cosine schedules."""
        return self.lr / 100 if self.min_lr is None else self.min_lr


def corpus_config(cfg: TrainConfig) -> CorpusConfig:
    return CorpusConfig(seed=cfg.seed, train_tokens=cfg.corpus_tokens,
                        max_gap=cfg.corpus_max_gap)


def load_corpus(cfg: TrainConfig, vocab: Vocab | None = None) -> Corpus:
    if is_store(cfg.text):
        return load_store(cfg.text, cfg.level, vocab)            # read in place, not loaded
    text = read_text(cfg.text) if cfg.text else generate(corpus_config(cfg)).text
    try:
        return prepare(text, cfg.level, cfg.min_count, cfg.max_vocab, vocab=vocab)
    except UserError as e:
        raise UserError(f"{cfg.text or 'built-in corpus'}: {e}") from None


@torch.no_grad()
def evaluate(model: LanguageModel, ids: list[int] | Tensor, batch: int = 16,
             bptt: int = 256, dist: Distributed | None = None) -> float:
    """Mean nats per predicted token over ids, read as ``batch`` contiguous streams
    (with ``dist``, each process scores its share of the streams and the sums are added)."""
    was = model.training
    model.eval()
    dist = dist or Distributed()
    streams = min(batch, max(1, len(ids) // 2))
    data = Streams(ids, streams, *dist.share(streams))
    device = next(model.parameters()).device
    total, count, state = 0.0, 0, None
    for pos in range(0, data.shape[0] - 1, bptt) if data.shape[1] else ():   # share may be 0
        x = data[pos: pos + bptt].to(device)
        y = data[pos + 1: pos + 1 + bptt].to(device)
        logits, state = model(x[: len(y)], state)
        total += F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum").item()
        count += y.numel()
    model.train(was)
    total, count = dist.sums(total, count)
    return total / max(count, 1)


def metrics(nats: float, prefix: str, level: str) -> dict[str, float]:
    bits = "bpc" if level == "char" else "bits"
    return {f"{prefix}_nats": nats, f"{prefix}_{bits}": nats / math.log(2),
            f"{prefix}_ppl": math.exp(min(nats, 50.0))}


def lr_at(step: int, cfg: TrainConfig, horizon: int | None) -> float | None:
    """The learning rate of a step; None after warm-up under the plateau schedule, whose
    learning rate is the optimizer's own (lowered by ReduceLROnPlateau)."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    if cfg.schedule == "plateau":
        return None if step > cfg.warmup else cfg.lr
    if cfg.schedule == "constant" or not horizon:
        return cfg.lr
    frac = min(1.0, (step - cfg.warmup) / max(1, horizon - cfg.warmup))
    low = cfg.floor_lr
    return low + 0.5 * (cfg.lr - low) * (1 + math.cos(math.pi * frac))


def auto_dropout(tokens: int, params: int) -> float:
    """Dropout for a model of ``params`` parameters trained on ``tokens`` tokens: 0.2 at one
    token per parameter, 0.15 more for every tenfold fewer tokens (0.15 less for every
    tenfold more), rounded to 0.05, within [0, 0.5]. Calibrated on Zaremba et al. 2014
    (Penn Treebank, 0.93M tokens: 0.5 for 20M parameters, 0.65 for 66M; this rule gives
    0.4 and 0.5) and on Tiny Shakespeare with a 2 x 512 GRU (1.0M characters, 2.5M
    parameters: 0.25; docs/results/tinyshakespeare.md)."""
    ratio = max(tokens, 1) / max(params, 1)
    p = 0.2 - 0.15 * math.log10(ratio)
    return min(0.5, max(0.0, round(p * 20) / 20))


def build_model(cfg: TrainConfig, vocab_size: int, train_tokens: int = 0) -> LanguageModel:
    """A fresh model; bad architecture options or sizes are a one-line UserError. Dropout
    left unset is chosen by ``auto_dropout`` from ``train_tokens`` and the parameter count."""
    mcfg = replace(cfg.model, vocab_size=vocab_size)
    try:
        if mcfg.dropout is None:
            with torch.device("meta"):                       # counts, allocates nothing
                params = sum(p.numel() for p in LanguageModel.from_config(mcfg).parameters())
            mcfg = replace(mcfg, dropout=auto_dropout(train_tokens, params))
        return LanguageModel.from_config(mcfg)
    except (TypeError, ValueError) as e:
        raise UserError(f"cannot build the {cfg.model.arch} model: "
                        f"{str(e).splitlines()[0][:160]}") from None
    except RuntimeError as e:                     # e.g. not enough memory for the sizes
        raise UserError(f"cannot build the {cfg.model.arch} model "
                        f"({str(e).splitlines()[0][:120]}); choose smaller sizes") from None


class Trainer:
    """One training run in a run directory: ``Trainer(cfg, out).run()``.

    ``resume``: continue the run in ``out``; ``given`` names the settings the user gave
    explicitly, which a resumed run applies or refuses (rnnlab.resume; default: the
    budgets set in ``cfg``). Holds the run
    directory's writer lock from construction to the end of ``run()`` (or ``close()``).
    """

    def __init__(self, cfg: TrainConfig, out: str | Path, resume: bool = False,
                 quiet: bool = False, given: set[str] | None = None,
                 dist: Distributed | None = None) -> None:
        self.run_dir, self.quiet, self.resumed = RunDir(out), quiet, resume
        self.dist = dist or Distributed()                   # torchrun: rnnlab.distributed
        self.took_over = (self.run_dir.claim(fresh=not resume) if self.dist.is_main
                          else False)                       # rank 0 alone writes
        self.changes: list[str] = []
        try:
            self._setup(cfg, resume, given)
        except BaseException:
            if self.dist.is_main:
                self.run_dir.abandon()
            raise

    def _setup(self, cfg: TrainConfig, resume: bool, given: set[str] | None) -> None:
        checkpoint = None
        if resume:
            saved = self.run_dir.config()
            old = TrainConfig.from_json(saved["train"], saved["model"],
                                        f"{self.run_dir.path}/config.json")
            if given is None:                      # a library call: its budgets count
                given = {b for b in ("max_steps", "max_time") if getattr(cfg, b) is not None}
            self.cfg, self.changes = merge_resume(old, cfg, given)
            self.corpus = load_corpus(self.cfg, load_vocab(self.run_dir))
            _check_same_data(saved, self.corpus, self.run_dir.path)
            checkpoint = self.run_dir.load_checkpoint()
        else:
            self.cfg = cfg
            self.corpus = load_corpus(cfg)
        torch.manual_seed(self.cfg.seed)
        if checkpoint is None:
            self.model = build_model(self.cfg, len(self.corpus.vocab), len(self.corpus.train))
        else:
            mcfg = replace(self.cfg.model, vocab_size=len(self.corpus.vocab))
            self.model = model_from_weights(mcfg, checkpoint[0], self.run_dir.path)
        self.model = self.model.to(self.dist.device)
        self.dims = state_batch_dims(self.model) if self.dist.active else []
        self.net = self.dist.wrap(self.model)              # DDP averages the gradients
        self.dist.seed(self.cfg.seed)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=self.cfg.lr,
                                     weight_decay=self.cfg.weight_decay)
        self.data = Streams(self.corpus.train, self.cfg.batch,       # (N, B / processes)
                            *self.dist.part(self.cfg.batch))
        self.step, self.pos, self.epoch, self.elapsed = 0, 0, 0, 0.0
        self.horizon, self.estimated = self.cfg.max_steps, False
        self.best, self.best_step = math.inf, None
        self.plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.opt, factor=self.cfg.lr_decay, patience=self.cfg.patience,
            min_lr=self.cfg.floor_lr)
        self.saved_step: int | None = None
        self.state: Any = None
        if checkpoint is None:
            if self.dist.is_main:
                self.run_dir.create(self._config_json(), self.corpus.vocab.to_json())
        else:
            self._restore(*checkpoint[1:])

    def close(self) -> None:
        """Release the run directory (``run()`` does this itself when it ends)."""
        if self.dist.is_main:
            self.run_dir.release()

    # -- persistence ----------------------------------------------------------------------
    def _config_json(self) -> dict:
        c = self.corpus
        return {"train": self.cfg.to_json(), "model": self.model.config.to_json(),
                "data": {"train_tokens": len(c.train), "valid_tokens": len(c.valid),
                         "test_tokens": len(c.test), "vocab_size": len(c.vocab),
                         "fingerprint": _fingerprint(c)}}

    def _check_finite(self, what: str) -> None:
        """Refuse to save or go on with a model that holds NaN or infinite values."""
        if all(bool(torch.isfinite(p).all()) for p in self.model.parameters()):
            return
        raise self._diverged(what)

    def _diverged(self, what: str) -> UserError:
        last = (f"the last finite checkpoint is step {self.saved_step}"
                if self.saved_step is not None else "no checkpoint was saved")
        return UserError(f"{self.run_dir.path}: training diverged at step {self.step} "
                         f"({what}); nothing more was saved and {last}; start again with a "
                         f"lower --lr or --clip")

    def save(self) -> None:
        self._check_finite("non-finite weights")
        state = self.dist.gather_state(self.state, self.dims)      # every rank takes part
        rngs = self.dist.gather_rng()
        if not self.dist.is_main:
            return
        tensors, structure = flatten_state(state)
        opt = self.opt.state_dict()
        for i, st in opt["state"].items():
            for k, v in st.items():
                tensors[f"opt.{i}.{k}"] = v if isinstance(v, Tensor) else torch.tensor(v)
        tensors.update(rngs)
        info = {"pos": self.pos, "epoch": self.epoch, "elapsed": self.elapsed,
                "horizon": self.horizon, "estimated": self.estimated,
                "best": self.best if self.best < math.inf else None,
                "best_step": self.best_step, "plateau": self._plateau_state(),
                "state": structure, "param_groups": opt["param_groups"]}
        self.run_dir.save_checkpoint(self.step, self.model.state_dict(), tensors, info)
        self.saved_step = self.step

    def _restore(self, tensors: dict[str, Tensor], info: dict) -> None:
        try:
            groups = info["param_groups"]
            for g in groups:
                g["betas"] = tuple(g["betas"])
                g["weight_decay"] = self.cfg.weight_decay      # applied if changed
            state: dict[int, dict] = {}
            for name, v in tensors.items():
                if name.startswith("opt."):
                    _, i, k = name.split(".", 2)
                    state.setdefault(int(i), {})[k] = v
            self.opt.load_state_dict({"state": state, "param_groups": groups})
            self.dist.restore_rng(tensors, self.cfg.seed, _count(info, "step"))
            self.state = self.dist.split_state(unflatten_state(info["state"], tensors),
                                               self.dims)
            self._check_state(self.state)
            self.step, self.pos, self.epoch = (_count(info, "step"), _count(info, "pos"),
                                               _count(info, "epoch"))
            self.elapsed = float(info["elapsed"])
            self.horizon, self.estimated = info["horizon"], bool(info.get("estimated", False))
            self.best = float(info["best"]) if info["best"] is not None else math.inf
            self.best_step = info.get("best_step")
            self._restore_plateau(info.get("plateau"))
        except (KeyError, TypeError, ValueError, IndexError, AttributeError,
                RuntimeError) as e:
            raise UserError(f"{self.run_dir.last()}: trainer state is damaged "
                            f"({e.__class__.__name__}: {str(e)[:80]})") from None
        if self.cfg.max_steps and not self.estimated:                # a new step budget
            self.horizon = self.cfg.max_steps
        self.saved_step = self.step
        if self.dist.is_main:
            self.run_dir.truncate_log(self.step)

    def _check_state(self, state: Any) -> None:
        """A saved recurrent state must have the form and sizes the model's own has."""
        if state is None:
            return
        was = self.model.training
        self.model.eval()                            # no dropout: the RNG is left as saved
        with torch.no_grad():
            x = torch.zeros(1, self.data.shape[1], dtype=torch.long, device=self.dist.device)
            own = flatten_state(self.model(x)[1])
        self.model.train(was)
        got = flatten_state(state)
        if own[1] != got[1] or any(a.shape != b.shape or a.dtype != b.dtype
                                   for a, b in zip(own[0].values(), got[0].values())):
            raise ValueError("the carried state does not fit the model")

    def _plateau_state(self) -> dict:
        p = self.plateau
        return {"best": p.best if math.isfinite(p.best) else None,
                "bad": p.num_bad_epochs, "cooldown": p.cooldown_counter,
                "validations": p.last_epoch, "lr": self.cfg.lr}

    def _restore_plateau(self, saved: dict | None) -> None:
        """The schedule's counters; its settings (factor, patience, floor) are the config's,
        so a resumed run may change them. A new ``lr`` restarts the schedule at that rate."""
        if saved is None:
            return
        p = self.plateau
        p.best = math.inf if saved["best"] is None else float(saved["best"])
        p.num_bad_epochs, p.cooldown_counter = _count(saved, "bad"), _count(saved, "cooldown")
        p.last_epoch = _count(saved, "validations")
        if self.cfg.schedule == "plateau" and float(saved["lr"]) != self.cfg.lr:
            for g in self.opt.param_groups:
                g["lr"] = self.cfg.lr
            p.num_bad_epochs = 0

    def log(self, record: dict) -> None:
        if self.dist.is_main:
            self.run_dir.log(record)

    # -- training -------------------------------------------------------------------------
    def train_step(self) -> float:
        T = self.cfg.bptt
        if self.pos + 1 >= self.data.shape[0]:
            self.pos, self.state, self.epoch = 0, None, self.epoch + 1
        x = self.data[self.pos: self.pos + T]
        y = self.data[self.pos + 1: self.pos + 1 + T]
        x, y = x[: len(y)].to(self.dist.device), y.to(self.dist.device)
        lr = lr_at(self.step, self.cfg, self.horizon)
        if lr is not None:
            for g in self.opt.param_groups:
                g["lr"] = lr
        logits, state = self.net(x, self.state)
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())
        if not math.isfinite(loss.item()):
            raise self._diverged(f"loss {loss.item()} at step {self.step + 1}")
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
        nats = evaluate(self.model, self.corpus.valid, self.cfg.eval_batch, dist=self.dist)
        if not math.isfinite(nats):
            raise self._diverged(f"validation loss {nats}")
        rec = {"step": self.step, **metrics(nats, "valid", self.cfg.level)}
        if nats < self.best:
            self._check_finite("non-finite weights")
            self.best, self.best_step = nats, self.step
            if self.dist.is_main:
                self.run_dir.save_best(self.model.state_dict(), rec)
        if self.cfg.schedule == "plateau" and self.step >= self.cfg.warmup:
            self.plateau.step(nats)        # the same nats on every rank: the same decision
        self.log(rec)
        return rec

    def finished(self) -> bool:
        """True when a resumed run has already spent its budget."""
        return self._done()

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
            self.horizon = self.dist.broadcast_int(min(self.cfg.max_steps or guess, guess))
            self.estimated = True

    def run(self) -> dict:
        """Train until the budget is spent or SIGINT/SIGTERM; returns final metrics. The
        elapsed time counts training and validation, across resumes."""
        try:
            return self._run()
        finally:
            self.close()

    def _run(self) -> dict:
        c = self.cfg
        if c.max_steps is None and c.max_time is None:
            raise UserError("give a budget: --max-steps N and/or --max-time SECONDS")
        if self.resumed and self._done():
            raise UserError(f"{self.run_dir.path}: the run already reached its budget (step "
                            f"{self.step}, {self.elapsed:.0f} s; --max-steps {c.max_steps}, "
                            f"--max-time {c.max_time}); give a larger budget to train on")
        if self.changes and self.dist.is_main:
            self.run_dir.write_config(self._config_json())
        stop = _StopFlag()
        bar = Progress(c.max_steps or c.max_time, desc=c.model.arch,
                       enabled=not self.quiet and self.dist.is_main)
        bar.n = self.step if c.max_steps else self.elapsed
        self.model.train()
        t0, s0, last = time.time(), self.step, time.time()
        interrupted = False
        with stop:
            while not self._done():
                loss = self.train_step()
                now = time.time()
                self.elapsed += now - last              # includes the last validation
                last = now
                loss, stopping, self.elapsed = self.dist.agree(loss, stop.requested,
                                                               self.elapsed)
                self.dist.step = self.step
                self._estimate_horizon(t0, s0)
                self.log({"step": self.step, "loss": loss, "lr": self.opt.param_groups[0]["lr"],
                          "time": round(self.elapsed, 3)})
                if not c.max_steps:
                    bar.n = self.elapsed
                bar.update(1 if c.max_steps else 0, loss=loss)
                if c.eval_every and self.step % c.eval_every == 0 and not self._done():
                    self.validate()
                if stopping:
                    interrupted = True
                    break
                if c.save_every and self.step % c.save_every == 0:
                    self.save()
            bar.close()
            if not interrupted:
                result = self.validate()
            self.elapsed += time.time() - last
            self.save()
        if interrupted:
            return {"step": self.step, "interrupted": True}
        return {**result, "elapsed": self.elapsed, "session": time.time() - t0,
                "epoch": self.epoch, "interrupted": False, "best_nats": self.best,
                "best_step": self.best_step}


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
    if hasattr(c, "fingerprint"):                                # a token store
        return c.fingerprint
    ids = c.train + c.valid + c.test
    return [len(ids), sum(i * (k % 9973 + 1) for k, i in enumerate(ids)) % (2**61 - 1)]


def _check_same_data(saved: dict, corpus: Corpus, where: Path) -> None:
    if saved.get("data", {}).get("fingerprint") != _fingerprint(corpus):
        raise UserError(f"{where}: the training text differs from the one this run started "
                        f"with; resume with the same text or start a new run")


def _count(info: dict, key: str) -> int:
    value = info[key]
    if type(value) is not int or value < 0:
        raise TypeError(f"{key} must be a count, received {value!r}")
    return value
