"""Expected run time of the Grid LSTM paper's scale (presets ``full``/``gpu`` of the parity and
addition experiments), from a short timed run of real training steps.

    python benchmarks/paper_scale.py [--device cuda] [--steps 3] [--threads 1] [--out DIR]

For each (experiment, model) it builds the preset's model at the largest size (parity
k = 250, addition D = 15), times ``--steps`` training steps after one warm-up step (Adam,
fresh batch each step, the same step the experiment's loop takes) and multiplies the
median step time by the preset's step budget (max_samples / batch). That is the worst
case of one run: a run that solves its task stops earlier. Writes paper_scale.json and
prints a table.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from rnnlab.experiments import addition, machine_description, make_config, parity


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_steps(model, batch_fn, loss_fn, steps: int, device: str) -> list[float]:
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    times = []
    for i in range(steps + 1):
        b = batch_fn(gen)
        _sync(device)
        t = time.perf_counter()
        loss = loss_fn(model, b)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        _sync(device)
        if i:                                            # the first step warms up
            times.append(time.perf_counter() - t)
    return times


def cases(device: str):
    pc = make_config("parity", "full", device=device)
    k = max(pc.bits)
    for name in pc.models:
        yield ("parity", name, f"k={k}, width {pc.hidden}, depth {pc.depth[0]}",
               parity.make_model(name, k, pc).to(device),
               lambda g, k=k: parity.vectors(pc.batch, k, g, device),
               lambda m, b: F.cross_entropy(m(b[0]), b[1]), pc.max_samples // pc.batch)
    ac = make_config("addition", "full", device=device)
    D = max(ac.digits)
    for name in ac.models:
        model = addition.build_model(name, ac).to(device)
        yield ("addition", name, f"D={D}, {ac.layers} layers, width {model.head.in_features}",
               model,
               lambda g: tuple(t.to(device) for t in addition.problems(ac.batch, D, g)),
               lambda m, b: F.cross_entropy(m(b[0]).reshape(-1, 10), b[1].reshape(-1)),
               ac.max_samples // ac.batch)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--only", default="", help="experiment:model pairs, comma-separated")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: as is)")
    p.add_argument("--out", default="")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    rows = []
    for exp, name, size, model, batch_fn, loss_fn, budget in cases(a.device):
        if a.only and f"{exp}:{name}" not in a.only.split(","):
            continue
        times = time_steps(model, batch_fn, loss_fn, a.steps, a.device)
        step = statistics.median(times)
        rows.append({"experiment": exp, "model": name, "size": size,
                     "params": sum(p.numel() for p in model.parameters()),
                     "step_seconds": step, "budget_steps": budget,
                     "hours_per_run": step * budget / 3600})
        print(f"{exp:9s} {name:5s} {size:34s} {step * 1000:10.1f} ms/step "
              f"x {budget} steps = {step * budget / 3600:8.2f} h", flush=True)
    if a.out:
        out = Path(a.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "paper_scale.json").write_text(json.dumps(
            {"device": a.device, "steps_timed": a.steps, "rows": rows,
             "machine": machine_description()}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
