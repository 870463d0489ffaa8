"""The speed harness: every registered architecture (``rnnlab.available()``) against
torch.nn in one process, interleaved, medians and ratios, forward and forward+backward,
peak training memory, GEMM FLOPs, the Python loop under autograd, and fast incremental
inference at batch 1. Writes ``speed.json`` and ``speed.md`` into the output folder.

    python benchmarks/speed.py --out docs/results            # make bench
    rnnlab bench speed --arch lstm_ln --hidden 256 --reps 3   # any architecture / size
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

from .. import available
from ..experiments import atomic_write_text, machine_description
from ..progress import Progress
from .measure import (
    OWN_REF,
    Shape,
    force_kernels,
    forward_fn,
    gemm_flops,
    interleaved,
    lstm_flops,
    make_arch,
    make_torch,
    median,
    step_contenders,
    train_fn,
)
from .memory import peak_training_memory
from .report import bars, render  # noqa: F401 (render re-exported)

SHAPES = {
    "default": Shape("default", T=100, B=64, H=512, F=512),
    "batch1": Shape("batch1", T=100, B=1, H=512, F=512),
    "long": Shape("long", T=1000, B=16, H=128, F=128),
}
CLOCKWORK = Shape("clockwork", T=256, B=64, H=1024, F=1024)


def bench_arch(name: str, shape: Shape, reps: int, loop_reps: int, memory: bool,
               options: dict | None = None, with_lstm: bool = True) -> dict:
    """Timings (seconds, all samples and medians), ratios, FLOPs and memory of one arch."""
    ours = make_arch(name, shape, options)
    x = torch.randn(shape.T, shape.B, shape.F)
    fns = {"ours/fwd": forward_fn(ours, x), "ours/fb": train_fn(ours, x)}
    if with_lstm:
        ref = make_torch("torch.nn.LSTM", shape)
        fns.update({"lstm/fwd": forward_fn(ref, x), "lstm/fb": train_fn(ref, x)})
    own = OWN_REF.get(name.split(":")[0])
    if own:
        own_module = make_torch(own[0], shape)
        fns.update({"own/fwd": forward_fn(own_module, x), "own/fb": train_fn(own_module, x)})
    if name == "lstm":                     # rnnlab's own LSTM kernel beside torch's fused op
        kernel = make_arch(name, shape, options)
        force_kernels(kernel)
        fns.update({"kernel/fwd": forward_fn(kernel, x), "kernel/fb": train_fn(kernel, x)})
    if loop_reps:
        fns["loop/fb"] = train_fn(ours, x, loop=True)
    samples = interleaved(fns, reps, {"loop/fb": loop_reps})
    med = {k: median(v) for k, v in samples.items()}
    res: dict = {"own_ref": own[0] if own else None, "samples_s": samples, "median_s": med,
                 "flops_fwd": gemm_flops(ours, x), "lstm_flops_fwd": lstm_flops(shape)}
    res["flop_ratio"] = res["flops_fwd"] / res["lstm_flops_fwd"]
    if with_lstm:
        res["fb_vs_lstm"] = med["ours/fb"] / med["lstm/fb"]
        res["fwd_vs_lstm"] = med["ours/fwd"] / med["lstm/fwd"]
        res["fb_vs_lstm_scaled"] = res["fb_vs_lstm"] / res["flop_ratio"]
    if own:
        res["fb_vs_own"] = med["ours/fb"] / med["own/fb"]
        res["fwd_vs_own"] = med["ours/fwd"] / med["own/fwd"]
    if "kernel/fb" in med:
        res["kernel_fb_vs_lstm"] = med["kernel/fb"] / med["lstm/fb"]
        res["kernel_fwd_vs_lstm"] = med["kernel/fwd"] / med["lstm/fwd"]
    if loop_reps:
        res["loop_speedup"] = med["loop/fb"] / med["ours/fb"]
    if memory and with_lstm:
        mine = peak_training_memory(name, shape, options)
        theirs = _torch_lstm_memory(shape)
        res["memory"] = {"ours": mine, "torch.nn.LSTM": theirs}
        if "peak_delta_bytes" in mine and theirs.get("peak_delta_bytes"):
            res["memory_vs_lstm"] = mine["peak_delta_bytes"] / theirs["peak_delta_bytes"]
    return res


_MEMORY_CACHE: dict = {}


def _torch_lstm_memory(shape: Shape) -> dict:
    """torch.nn.LSTM's peak training memory, measured once per shape."""
    if shape not in _MEMORY_CACHE:
        _MEMORY_CACHE[shape] = peak_training_memory("torch.nn.LSTM", shape)
    return _MEMORY_CACHE[shape]


def read_bandwidth(mbytes: int = 256, reps: int = 5) -> float:
    """Memory read bandwidth in bytes/s: median time to sum a tensor far larger than
    the caches."""
    big = torch.ones(mbytes * 2**20 // 4)
    big.sum()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        big.sum()
        times.append(time.perf_counter() - t0)
    return big.numel() * 4 / median(times)


def bench_step(hidden: int = 512, layers: int = 2, tokens: int = 100, reps: int = 5) -> dict:
    """Per-token time of a stacked LSTM core at batch 1: torch.nn.LSTM called once per
    token, rnnlab.LSTM called once per token, and rnnlab's Stepper; against the time to
    read the weights once at the measured bandwidth."""
    fns, ref = step_contenders(hidden, layers, tokens)
    samples = interleaved(fns, reps)
    per = {k: median(v) / tokens for k, v in samples.items()}
    weight_bytes = sum(p.numel() * p.element_size() for p in ref.parameters())
    bw = read_bandwidth()
    return {"hidden": hidden, "layers": layers, "tokens_per_rep": tokens,
            "per_token_s": per, "weight_bytes": weight_bytes, "read_bandwidth_Bps": bw,
            "weight_read_s": weight_bytes / bw,
            "speedup_vs_torch": per["torch.nn.LSTM"] / per["Stepper"],
            "vs_weight_read": per["Stepper"] / (weight_bytes / bw)}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="speed", description=__doc__.split("\n\n")[0])
    add_arguments(p)
    return p.parse_args(argv)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="docs/results", help="folder for speed.json, speed.md")
    p.add_argument("--arch", action="append", help="architecture name (repeatable; "
                   "default: every registered one)")
    p.add_argument("--cases", default="default,batch1,long,clockwork,step",
                   help="comma list of default, batch1, long, clockwork, step")
    p.add_argument("--hidden", type=int, help="H of every case (default: per case)")
    p.add_argument("--input", type=int, help="F (default: H)")
    p.add_argument("--seq", type=int, help="T of every case")
    p.add_argument("--batch", type=int, help="B of every case")
    p.add_argument("--reps", type=int, default=5, help="interleaved rounds (median)")
    p.add_argument("--loop-reps", type=int, default=2,
                   help="rounds of the slow Python loop (0: skip it)")
    p.add_argument("--no-memory", action="store_true", help="skip peak-memory subprocesses")
    p.add_argument("--memory-cases", default="default",
                   help="comma list of cases whose peak memory is measured")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    p.add_argument("--name", default="speed", help="output file stem")
    p.add_argument("--merge", action="store_true", help="replace only the measured rows "
                   "(arch and case) in an existing NAME.json, keep the others")
    p.add_argument("--rerender", action="store_true",
                   help="only rewrite NAME.md (and the bars) from an existing NAME.json")


def _shape(base: Shape, args) -> Shape:
    H = args.hidden or base.H
    return Shape(base.name, args.seq or base.T, args.batch or base.B, H,
                 args.input or (H if args.hidden else base.F))


def _write(out: Path, name: str, result: dict) -> None:
    result["bars"] = bars(result)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / f"{name}.json", json.dumps(result, indent=1) + "\n")
    atomic_write_text(out / f"{name}.md", render(result))


def _merged(old: dict, new: dict) -> dict:
    """old with new's rows (same arch and case name) replaced or added."""
    keys = {(c["arch"], c["shape"]["name"]) for c in new["cases"]}
    cases = [c for c in old["cases"] if (c["arch"], c["shape"]["name"]) not in keys]
    runs = old.get("runs", [{k: old.get(k) for k in ("command", "seconds", "loadavg_before",
                                                     "loadavg_after")}])
    runs.append({k: new.get(k) for k in ("command", "seconds", "loadavg_before",
                                         "loadavg_after")})
    merged = {**old, "cases": cases + new["cases"], "runs": runs}
    merged["seconds"] = sum(r.get("seconds") or 0 for r in runs)
    if "step" in new:
        merged["step"] = new["step"]
    return merged


def run(args: argparse.Namespace) -> dict:
    out = Path(args.out)
    if args.rerender:
        result = json.loads((out / f"{args.name}.json").read_text())
        _write(out, args.name, result)
        return result
    if args.threads:
        torch.set_num_threads(args.threads)
    names = args.arch or list(available())
    unknown = [n for n in names if n not in available()]
    if unknown:
        raise ValueError(f"unknown architecture(s) {unknown}; available: "
                         f"{', '.join(available())}")
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    plan = [(SHAPES[c], n, None) for c in cases if c in SHAPES for n in names]
    if "clockwork" in cases and "clockwork_rnn" in names:
        plan.append((CLOCKWORK, "clockwork_rnn", {"num_modules": 8}))
    mem_cases = set(args.memory_cases.split(",")) if not args.no_memory else set()
    start, load0 = time.time(), os.getloadavg()
    result: dict = {"command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
                    "machine": machine_description(), "torch_threads": torch.get_num_threads(),
                    "loadavg_before": load0, "cases": [],
                    "started_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(start))}
    progress = Progress(len(plan) + ("step" in cases), "speed")
    for base, name, options in plan:
        shape = _shape(base, args)
        progress.desc = f"speed: {shape.name} {name}"
        entry = bench_arch(name, shape, args.reps, args.loop_reps, base.name in mem_cases,
                           options, with_lstm=base is not CLOCKWORK)
        result["cases"].append({"shape": shape.__dict__, "arch": name,
                                "options": options or {}, **entry})
        progress.update(1)
    if "step" in cases:
        progress.desc = "speed: incremental step"
        result["step"] = bench_step(reps=args.reps)
        progress.update(1)
    progress.close()
    result.update(seconds=time.time() - start, loadavg_after=os.getloadavg())
    if args.merge and (out / f"{args.name}.json").exists():
        result = _merged(json.loads((out / f"{args.name}.json").read_text()), result)
    _write(out, args.name, result)
    return result


def main(argv=None) -> int:
    result = run(parse_args(argv))
    print(render(result, brief=True))
    return 0
