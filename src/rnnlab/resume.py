"""What ``rnnlab train --resume`` does with settings given again.

A resumed run continues the saved one, so a setting that would make it a different run
(the model, the tokens and vocabulary, the batch layout, the seed) is refused with a
one-line error; settings that only steer what comes next (learning rate and schedule,
clipping, weight decay, window length, evaluation and checkpoint intervals, the budgets,
a moved text file) are applied and reported. Budgets given replace the saved ones: with
``--max-time 1200`` alone the run trains until 1200 s in all, with no step limit.
"""
from __future__ import annotations

from dataclasses import fields, replace
from typing import TYPE_CHECKING, Any

from .errors import UserError

if TYPE_CHECKING:
    from .train import TrainConfig

FIXED = ("level", "batch", "seed", "min_count", "max_vocab", "corpus_tokens",
         "corpus_max_gap")
BUDGETS = ("max_steps", "max_time")


def merge_resume(saved: "TrainConfig", given: "TrainConfig",
                 names: set[str]) -> tuple["TrainConfig", list[str]]:
    """The settings to resume with, and a description of each applied change.

    ``names``: the settings the user gave explicitly (fields of TrainConfig, or of its
    model config as ``model.NAME``); the others keep their saved values.
    """
    for name in sorted(names):
        if name.startswith("model."):
            key = name.removeprefix("model.")
            _refuse_change(f"--{_flag(key)}", getattr(saved.model, key),
                           getattr(given.model, key), "model")
        elif name in FIXED:
            _refuse_change(f"--{_flag(name)}", getattr(saved, name), getattr(given, name),
                           "data and seed")
    out = replace(saved)
    changes = []
    if names & set(BUDGETS):
        out.max_steps, out.max_time = given.max_steps, given.max_time
    if given.text and given.text != saved.text:
        out.text = given.text
    for f in fields(saved):
        if f.name in names and f.name not in FIXED + BUDGETS + ("text", "model"):
            setattr(out, f.name, getattr(given, f.name))
    for f in fields(saved):
        if f.name != "model" and getattr(out, f.name) != getattr(saved, f.name):
            changes.append(f"{f.name} {_show(getattr(saved, f.name))} -> "
                           f"{_show(getattr(out, f.name))}")
    return out, changes


def _refuse_change(flag: str, old: Any, new: Any, what: str) -> None:
    if old != new:
        raise UserError(f"{flag} {_show(new)}: this run has {_show(old)}, and a resumed run "
                        f"keeps its {what}; start a new run (another --out) to change it")


def _flag(name: str) -> str:
    return name.replace("_", "-")


def _show(value: Any) -> str:
    return "none" if value is None else str(value)
