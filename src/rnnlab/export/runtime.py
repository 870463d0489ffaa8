"""Run an rnnlab export folder with onnxruntime: imports numpy and onnxruntime only.

    m = Exported("model-export")                 # model.onnx, vocab.json, export.json
    state = m.zero_state(batch=1)
    logits, state = m.step([token_id], state)    # (1, V), (1, S)

This file imports nothing else (not torch, not the rest of rnnlab), so it can be copied
next to an export and used alone; ``rnnlab suggest``/``eval`` on an export folder step
through it. Every problem with the folder (missing or damaged file, a model that does not
match its description or vocabulary, an export format this file does not know) raises
``ExportError`` with a one-line message.

int8 exports: onnxruntime fuses each DequantizeLinear + MatMul pair into its 8-bit weight
kernel, which also rounds the step's input vector to int8 (its default accuracy level 4,
what makes it fast). ``exact_int8=True`` keeps float products of the int8 weights instead:
exactly the int8 PyTorch model, and much slower.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

FORMAT = "rnnlab-export"
VERSION = 1
FILES = ("model.onnx", "vocab.json", "export.json")


class ExportError(ValueError):
    """A missing, damaged or inconsistent export folder (one-line message)."""


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ExportError(f"{path}: missing; an export folder holds "
                          f"{', '.join(FILES)} (write one with `rnnlab export`)") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise ExportError(f"{path}: damaged ({type(e).__name__}); export the run again"
                          ) from None
    if not isinstance(data, dict):
        raise ExportError(f"{path}: damaged (not a JSON object); export the run again")
    return data


def is_export(path: str | Path) -> bool:
    """True when ``path`` is a folder holding an export.json (an export, maybe damaged)."""
    return (Path(path) / "export.json").is_file()


class Exported:
    """An export folder loaded for stepping. ``meta`` is export.json, ``tokens`` and
    ``level`` come from vocab.json. onnxruntime runs on ``threads`` threads (one by
    default: a batch-1 step is a memory-bound matrix-vector product)."""

    def __init__(self, folder: str | Path, threads: int = 1, exact_int8: bool = False
                 ) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise ExportError(f"{self.folder}: no such export folder")
        meta = _read_json(self.folder / "export.json")
        if meta.get("format") != FORMAT:
            raise ExportError(f"{self.folder}/export.json: not an rnnlab export (no format "
                              f"{FORMAT!r})")
        if meta.get("version") != VERSION:
            raise ExportError(f"{self.folder}: export format version {meta.get('version')!r}"
                              f" is not supported here (expects {VERSION}); export again")
        try:
            self.state_size = int(meta["state_size"])
            self.vocab_size = int(meta["vocab_size"])
        except (KeyError, TypeError, ValueError) as e:
            raise ExportError(f"{self.folder}/export.json: damaged (bad or missing {e})"
                              ) from None
        vocab = _read_json(self.folder / "vocab.json")
        tokens, level = vocab.get("tokens"), vocab.get("level")
        if not isinstance(tokens, list) or level not in ("char", "word"):
            raise ExportError(f"{self.folder}/vocab.json: damaged (needs 'level' and "
                              f"'tokens')")
        if len(tokens) != self.vocab_size:
            raise ExportError(f"{self.folder}: vocab.json has {len(tokens)} tokens but the "
                              f"model was exported for {self.vocab_size}; the folder mixes "
                              f"two exports")
        self.meta, self.tokens, self.level = meta, tokens, level
        self.session = self._session(threads, exact_int8)

    def _session(self, threads: int, exact_int8: bool) -> ort.InferenceSession:
        path = self.folder / "model.onnx"
        if not path.is_file():
            raise ExportError(f"{path}: missing; export the run again")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        if exact_int8:          # float products of the int8 weights (slow; for checking)
            opts.add_session_config_entry("session.qdq_matmulnbits_accuracy_level", "1")
        try:
            sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own error types
            first = (str(e).splitlines() or [type(e).__name__])[0][:120]
            raise ExportError(f"{path}: damaged, onnxruntime cannot load it ({first})"
                              ) from None
        ins = {i.name: i.shape for i in sess.get_inputs()}
        outs = {o.name: o.shape for o in sess.get_outputs()}
        if set(ins) != {"token", "state"} or set(outs) != {"logits", "next_state"}:
            raise ExportError(f"{path}: not an rnnlab one-step model (inputs {sorted(ins)}, "
                              f"outputs {sorted(outs)})")
        if ins["state"][-1] != self.state_size or outs["logits"][-1] != self.vocab_size:
            raise ExportError(f"{path}: state size {ins['state'][-1]} and vocabulary "
                              f"{outs['logits'][-1]} do not match export.json "
                              f"({self.state_size}, {self.vocab_size}); the folder mixes "
                              f"two exports")
        return sess

    def zero_state(self, batch: int = 1) -> np.ndarray:
        """The initial state of ``batch`` sequences, (batch, S) float32 zeros."""
        return np.zeros((batch, self.state_size), dtype=np.float32)

    def step(self, tokens: Sequence[int] | np.ndarray, state: np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
        """One token per sequence: tokens (B,) -> logits (B, V), next state (B, S)."""
        tokens = np.asarray(tokens, dtype=np.int64).reshape(-1)
        if state is None:
            state = self.zero_state(len(tokens))
        state = np.asarray(state, dtype=np.float32)
        if state.shape != (len(tokens), self.state_size):
            raise ExportError(f"state must have shape ({len(tokens)}, {self.state_size}), "
                              f"received {state.shape}")
        if len(tokens) and (tokens.min() < 0 or tokens.max() >= self.vocab_size):
            raise ExportError(f"token ids must be in [0, {self.vocab_size}), received "
                              f"{int(tokens.min())}..{int(tokens.max())}")
        logits, nxt = self.session.run(["logits", "next_state"],
                                       {"token": tokens, "state": state})
        return logits, nxt


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-probabilities, computed stably."""
    z = logits - logits.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))
