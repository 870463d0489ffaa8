"""One-shot GPU check of every registered architecture (run on a CUDA machine):

1. Triton gate kernels (``rnnlab.kernels.triton_gates``), first and in a subprocess (a
   compile failure or a crashed kernel is recorded and the rest still runs, with Triton
   switched off if the subprocess died): per LSTM variant (plain, peephole, CIFG,
   CIFG+peephole, projection) and GRU, the Triton path (GPU fp32) against the CPU float64
   path and against the torch-ops path on the GPU (outputs, final state, every gradient,
   with lengths), then forward and forward+backward time of the Triton path, the torch-ops
   path and cuDNN nn.LSTM (and nn.GRU for gru) at the default shape;
2. correctness: each architecture on the GPU (float32, the default path, so Triton where it
   applies) against the same weights on the CPU in float64, and for the torch-shaped ones
   (lstm, gru, rnn) rnnlab's own kernel path against cuDNN's nn.LSTM / nn.GRU / nn.RNN;
3. speed at the default shape (T=100, B=64, H=512): forward and forward+backward of each
   architecture against cuDNN nn.LSTM of the same size, interleaved rounds, medians, with
   torch.cuda.synchronize() after every call, plus peak CUDA memory of one training step;
4. the incremental Stepper at batch 1 against nn.LSTM called once per token.

Writes gpu_check.json and gpu_check.md into $OUT (or --out). Each part is guarded: an
error in one architecture is recorded and the rest still runs. ``--dry-run`` runs all of
it on the CPU with tiny shapes (Triton under its interpreter when triton is installed),
to check the script before spending device time.

    OUT=gpu-out python benchmarks/gpu_check.py [--reps 5] [--quick] [--dry-run]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

import torch

import rnnlab
from rnnlab.benchmark.measure import (
    Shape,
    force_kernels,
    interleaved,
    median,
    no_torch_fused,
    step_contenders,
)
from rnnlab.experiments import machine_description
from rnnlab.kernels import STATS

TORCH_TWIN = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}
TRITON_CASES = {"lstm": ("lstm", {}), "lstm_peephole": ("lstm_peephole", {}),
                "lstm_cifg": ("lstm_cifg", {}),
                "lstm_cifg_peephole": ("lstm_cifg", {"peephole": True}),
                "lstm_proj": ("lstm", {"proj_size": 4}), "gru": ("gru", {})}  # proj: H / 4
RUN = {"device": "cuda"}                  # --dry-run: "cpu"


def sync() -> None:
    if RUN["device"] == "cuda":
        torch.cuda.synchronize()


def _grads(module, x, state=None, lengths=None):
    """Outputs, final state tensors and gradients of a fixed random loss."""
    xr = x.detach().clone().requires_grad_()
    module.zero_grad(set_to_none=True)
    out, final = module(xr, state) if lengths is None else module(xr, state, lengths=lengths)
    g = torch.Generator().manual_seed(1)
    w = torch.randn(out.shape, generator=g, dtype=torch.float64).to(out)
    loss = (out * w).sum()
    flat = [t for t in _flatten(final)]
    for k, t in enumerate(flat):
        loss = loss + (t * (k + 1.5)).sum()
    loss.backward()
    return [out, *flat, xr.grad] + [p.grad if p.grad is not None else torch.zeros_like(p)
                                    for p in module.parameters()]


def _flatten(state):
    if isinstance(state, torch.Tensor):
        return [state]
    return [t for s in state for t in _flatten(s)]


def _maxdiff(a: list, b: list) -> float:
    return max(float((u.double().cpu() - v.double().cpu()).abs().max()) if u.numel() else 0.0
               for u, v in zip(a, b))


def _pair(name: str, shape: Shape, **opts):
    """The same random weights as a CPU float64 module and a float32 one on the device."""
    torch.manual_seed(0)
    cpu = rnnlab.build(name, shape.F, shape.H, **opts).double()
    dev = rnnlab.build(name, shape.F, shape.H, **opts).to(RUN["device"])
    dev.load_state_dict({k: v.float() for k, v in cpu.state_dict().items()})
    return cpu, dev, torch.randn(shape.T, shape.B, shape.F, dtype=torch.float64)


def check_against_cpu(name: str, shape: Shape) -> dict:
    """GPU float32 vs CPU float64, same weights."""
    cpu, gpu, x = _pair(name, shape)
    before = dict(STATS)
    with no_torch_fused(gpu):
        ours = _grads(gpu, x.float().to(RUN["device"]))
    used = {k: STATS[k] - before.get(k, 0) for k in STATS if STATS[k] != before.get(k, 0)}
    ref = _grads(cpu, x)
    scale = max(float(t.detach().abs().max()) for t in ref if t.numel())
    return {"max_abs_diff": _maxdiff(ours, ref), "scale": scale, "kernels_used": used}


def check_against_cudnn(name: str, shape: Shape) -> dict:
    """rnnlab's kernel path on the GPU vs torch.nn (cuDNN) with the same weights."""
    torch.manual_seed(0)
    ref = TORCH_TWIN[name](shape.F, shape.H).to(RUN["device"])
    ours = rnnlab.build(name, shape.F, shape.H).to(RUN["device"])
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(shape.T, shape.B, shape.F).to(RUN["device"])
    with no_torch_fused(ours):
        a = _grads(ours, x)
    b = _grads(ref, x)
    return {"max_abs_diff": _maxdiff(a, b)}


@contextlib.contextmanager
def _triton(on: bool):
    """Triton gate kernels on/off inside the CUDA kernels (their internal flag)."""
    from rnnlab.kernels import triton_gates as tg
    old = tg.ENABLED[0]
    tg.ENABLED[0] = on
    try:
        yield
    finally:
        tg.ENABLED[0] = old


def _path(triton):
    """None: the default path; True/False: Triton gates on/off (kernels.triton_gates)."""
    if triton is None:
        return contextlib.nullcontext()
    return _triton(triton)


def _fwd(m, x, triton=None):
    def run():
        with torch.no_grad(), _path(triton):
            m(x)
        sync()
    return run


def _fb(m, x, triton=None):
    def run():
        m.zero_grad(set_to_none=True)
        with _path(triton):
            m(x)[0].sum().backward()
        sync()
    return run


def _timed(fns: dict, reps: int) -> tuple[dict, dict]:
    """Medians and samples (seconds) of interleaved rounds, synchronised after each call."""
    sync()
    samples = interleaved(fns, reps)
    return {k: median(v) for k, v in samples.items()}, samples


def _peak_memory(fn) -> int:
    if RUN["device"] != "cuda":
        return 0
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    return torch.cuda.max_memory_allocated() - base


def bench(name: str, shape: Shape, reps: int) -> dict:
    torch.manual_seed(0)
    ours = rnnlab.build(name, shape.F, shape.H).to(RUN["device"])
    ref = torch.nn.LSTM(shape.F, shape.H).to(RUN["device"])
    x = torch.randn(shape.T, shape.B, shape.F).to(RUN["device"])
    xr = x.clone().requires_grad_()
    fns = {"ours/fwd": _fwd(ours, x), "ours/fb": _fb(ours, xr), "cudnn/fwd": _fwd(ref, x),
           "cudnn/fb": _fb(ref, xr)}
    if name in TORCH_TWIN:                  # rnnlab's own kernel instead of cuDNN
        kern = rnnlab.build(name, shape.F, shape.H).to(RUN["device"])
        force_kernels(kern)
        fns.update({"kernel/fwd": _fwd(kern, x), "kernel/fb": _fb(kern, xr)})
    med, samples = _timed(fns, reps)
    mem = {"ours": _peak_memory(fns["ours/fb"]), "cudnn": _peak_memory(fns["cudnn/fb"])}
    res = {"median_s": med, "samples_s": samples, "peak_train_bytes": mem,
           "fwd_vs_cudnn_lstm": med["ours/fwd"] / med["cudnn/fwd"],
           "fb_vs_cudnn_lstm": med["ours/fb"] / med["cudnn/fb"],
           "memory_vs_cudnn_lstm": mem["ours"] / max(1, mem["cudnn"])}
    if "kernel/fb" in med:
        res["kernel_fb_vs_cudnn_lstm"] = med["kernel/fb"] / med["cudnn/fb"]
        res["kernel_fwd_vs_cudnn_lstm"] = med["kernel/fwd"] / med["cudnn/fwd"]
    return res


def bench_step(reps: int, hidden: int = 512, tokens: int = 100) -> dict:
    fns, _ = step_contenders(hidden, 2, tokens, device=RUN["device"])
    for f in fns.values():
        f()
    samples = {k: [_seconds(f) / tokens for _ in range(reps)] for k, f in fns.items()}
    per = {k: median(v) for k, v in samples.items()}
    return {"per_token_s": per, "speedup": per["torch.nn.LSTM"] / per["Stepper"]}


def _seconds(fn) -> float:
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t0


def _case(case: str, shape: Shape) -> tuple[str, dict]:
    """Registry name and options of a Triton case (proj_size given as a fraction of H)."""
    reg, opts = TRITON_CASES[case]
    return reg, {k: shape.H // v if k == "proj_size" else v for k, v in opts.items()}


def triton_check(case: str, shape: Shape) -> dict:
    """The Triton path vs CPU float64 and vs the torch-ops path on the device, with lengths."""
    from rnnlab.kernels import triton_gates as tg

    reg, opts = _case(case, shape)
    cpu, dev, x = _pair(reg, shape, **opts)
    lengths = torch.tensor([shape.T] + [max(1, shape.T - 2 - k) for k in range(shape.B - 1)])
    xd, before, errors = x.float().to(RUN["device"]), STATS["triton"], len(tg.LAST_ERROR)
    with no_torch_fused(dev):
        tri = _grads(dev, xd, lengths=lengths)
        used = STATS["triton"] - before
        with _triton(False):
            ops = _grads(dev, xd, lengths=lengths)
    ref = _grads(cpu, x, lengths=lengths)
    return {"triton_vs_cpu64": _maxdiff(tri, ref), "torch_ops_vs_cpu64": _maxdiff(ops, ref),
            "triton_vs_torch_ops": _maxdiff(tri, ops),
            "scale": max(float(t.detach().abs().max()) for t in ref if t.numel()),
            "triton_loops_run": used, "triton_errors": tg.LAST_ERROR[errors:]}


def triton_speed(case: str, shape: Shape, reps: int) -> dict:
    """Forward and forward+backward: Triton gates, torch ops, cuDNN nn.LSTM (and nn.GRU)."""
    reg, opts = _case(case, shape)
    torch.manual_seed(0)
    ours = rnnlab.build(reg, shape.F, shape.H, **opts).to(RUN["device"])
    refs = {"cudnn_lstm": torch.nn.LSTM(shape.F, shape.H)}
    if reg == "gru":
        refs["cudnn_gru"] = torch.nn.GRU(shape.F, shape.H)
    x = torch.randn(shape.T, shape.B, shape.F).to(RUN["device"])
    xr = x.clone().requires_grad_()
    fns = {}
    for label, flag in (("triton", True), ("torch_ops", False)):
        fns.update({f"{label}/fwd": _fwd(ours, x, flag), f"{label}/fb": _fb(ours, xr, flag)})
    for label, m in refs.items():
        m.to(RUN["device"])
        fns.update({f"{label}/fwd": _fwd(m, x), f"{label}/fb": _fb(m, xr)})
    with no_torch_fused(ours):
        med, samples = _timed(fns, reps)
    res = {"median_s": med, "samples_s": samples}
    for part in ("fwd", "fb"):
        res[f"{part}_torch_ops_over_triton"] = med[f"torch_ops/{part}"] / med[f"triton/{part}"]
        res[f"{part}_triton_over_cudnn_lstm"] = med[f"triton/{part}"] / med[f"cudnn_lstm/{part}"]
    return res


def triton_part(small: Shape, speed: Shape, reps: int) -> dict:
    from rnnlab.kernels import triton_gates as tg

    res: dict = {"triton": getattr(tg.triton, "__version__", None), "cases": {}}
    if RUN["device"] == "cpu" and tg.triton is not None:     # dry run: interpreted kernels
        from rnnlab.kernels import gru, lstm
        lstm._fused = lambda spec, A, p: tg.lstm_gates(spec, A, p.peep, any_device=True)
        gru._fused = lambda A: tg.gru_gates(A, any_device=True)
    for case in TRITON_CASES:
        res["cases"][case] = {"check": guarded(triton_check, case, small),
                              "speed": guarded(triton_speed, case, speed, reps)}
        print(f"gpu_check: triton {case} done", file=sys.stderr, flush=True)
    res["errors"] = list(tg.LAST_ERROR)
    return res


def run_triton_subprocess(args, out: Path) -> dict:
    """Part 1 in a child process, so that a crashing kernel cannot take the rest down."""
    cmd = [sys.executable, __file__, "--part", "triton", "--out", str(out), "--reps",
           str(args.reps)] + (["--quick"] if args.quick else []) + (
           ["--dry-run"] if args.dry_run else [])
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.triton_timeout)
        rc, tail = proc.returncode, proc.stderr[-3000:]
    except subprocess.TimeoutExpired as e:
        rc, tail = "timeout", str(e.stderr or "")[-3000:]
    path = out / "triton_part.json"
    res = json.loads(path.read_text()) if path.exists() and rc == 0 else {}
    if rc != 0:
        from rnnlab.kernels import triton_gates as tg
        tg.ENABLED[0] = False                 # the rest runs on torch ops
        res["error"] = f"triton subprocess: exit {rc}; Triton switched off for the rest"
    res["stderr_tail"] = tail
    print(f"gpu_check: triton part {res.get('error', 'done')}", file=sys.stderr, flush=True)
    return res


def guarded(fn, *args) -> dict:
    try:
        return fn(*args)
    except Exception as e:  # noqa: BLE001 - record and go on with the next part
        return {"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()[-2000:]}


def _fmt(d: dict, k: str, fmt: str = "{:.2f}") -> str:
    return "error" if "error" in d else ("–" if k not in d else fmt.format(d[k]))


def render_triton(tri: dict) -> list:
    lines = ["", f"## Triton gate kernels (triton {tri.get('triton')})", ""]
    if "error" in tri:
        lines += [f"Error: {tri['error']}", ""]
    elif tri.get("triton") is None:
        lines += ["triton is not importable here: the 'Triton' runs took the torch ops.", ""]
    lines += ["| case | Triton vs CPU fp64 | torch ops vs CPU fp64 | Triton vs torch ops "
              "| Triton loops run | fwd ms: Triton / torch ops / cuDNN LSTM "
              "| fwd+bwd ms: Triton / torch ops / cuDNN LSTM |", "|---|---|---|---|---|---|---|"]
    for case, r in tri.get("cases", {}).items():
        c, s = r["check"], r["speed"]
        ms = s.get("median_s", {})
        t = {p: " / ".join(f"{ms[f'{k}/{p}'] * 1e3:.2f}" if f"{k}/{p}" in ms else "–"
                           for k in ("triton", "torch_ops", "cudnn_lstm")) for p in ("fwd", "fb")}
        lines.append(f"| {case} | {_fmt(c, 'triton_vs_cpu64', '{:.2e}')} "
                     f"| {_fmt(c, 'torch_ops_vs_cpu64', '{:.2e}')} "
                     f"| {_fmt(c, 'triton_vs_torch_ops', '{:.2e}')} "
                     f"| {_fmt(c, 'triton_loops_run', '{}')} | {t['fwd']} | {t['fb']} |")
    errs = [f"- {e}" for e in tri.get("errors", [])] + [
        f"- {case} {part}: {d['error']}" for case, r in tri.get("cases", {}).items()
        for part, d in r.items() if "error" in d]
    return lines + (["", "Triton errors:", *errs] if errs else [])


def render(result: dict) -> str:
    lines = ["# GPU check: rnnlab on CUDA against cuDNN", "",
             f"Machine: {result['machine']}. Command: `{result['command']}`, "
             f"{result['seconds']:.0f} s.", "",
             "| arch | GPU fp32 vs CPU fp64: max abs diff (scale) | vs cuDNN twin: max abs diff "
             "| fwd / cuDNN nn.LSTM | fwd+bwd / cuDNN nn.LSTM | rnnlab kernel fwd+bwd / cuDNN "
             "| peak train mem / cuDNN nn.LSTM |", "|---|---|---|---|---|---|---|"]
    for name, r in result["archs"].items():
        c, t, s = r.get("cpu", {}), r.get("cudnn", {}), r.get("speed", {})
        lines.append(f"| {name} | {_fmt(c, 'max_abs_diff', '{:.2e}')} "
                     f"({_fmt(c, 'scale', '{:.1f}')}) | {_fmt(t, 'max_abs_diff', '{:.2e}')} "
                     f"| {_fmt(s, 'fwd_vs_cudnn_lstm')} | {_fmt(s, 'fb_vs_cudnn_lstm')} "
                     f"| {_fmt(s, 'kernel_fb_vs_cudnn_lstm')} "
                     f"| {_fmt(s, 'memory_vs_cudnn_lstm')} |")
    st = result.get("step", {})
    if "per_token_s" in st:
        p = st["per_token_s"]
        lines += ["", f"Incremental step (2-layer LSTM, batch 1): nn.LSTM "
                  f"{p['torch.nn.LSTM'] * 1e3:.3f} ms/token, Stepper {p['Stepper'] * 1e3:.3f} "
                  f"ms/token ({st['speedup']:.1f}x)."]
    errors = [f"- {n} {part}: {d['error']}" for n, r in result["archs"].items()
              for part, d in r.items() if isinstance(d, dict) and "error" in d]
    if errors:
        lines += ["", "Errors:", *errors]
    return "\n".join(lines + render_triton(result.get("triton", {}))) + "\n"


def _shapes(args) -> tuple[Shape, Shape]:
    if args.dry_run:
        return Shape("check", 5, 3, 6, 4), Shape("default", 6, 3, 8, 8)
    speed = (Shape("default", 20, 8, 64, 64) if args.quick
             else Shape("default", 100, 64, 512, 512))
    return Shape("check", 7, 3, 16, 16), speed


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=os.environ.get("OUT", "gpu-check"))
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="smaller shape (a smoke test)")
    p.add_argument("--dry-run", action="store_true",
                   help="everything on the CPU with tiny shapes (checks the script)")
    p.add_argument("--part", choices=["all", "triton"], default="all", help=argparse.SUPPRESS)
    p.add_argument("--triton-timeout", type=int, default=240)
    args = p.parse_args(argv)
    if args.dry_run:
        RUN["device"] = "cpu"
        os.environ.setdefault("TRITON_INTERPRET", "1")
    elif not torch.cuda.is_available():
        print("gpu_check: no CUDA device; nothing to do (--dry-run checks the script on CPU)",
              file=sys.stderr)
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    small, speed = _shapes(args)
    if args.part == "triton":
        res = triton_part(small, speed, args.reps)
        (out / "triton_part.json").write_text(json.dumps(res, indent=1, default=str) + "\n")
        return 0
    start = time.time()
    result = {"machine": machine_description(), "command": " ".join(sys.argv),
              "shape": speed.__dict__, "device": RUN["device"], "archs": {}}
    result["triton"] = run_triton_subprocess(args, out)
    for name in rnnlab.available():
        r = {"cpu": guarded(check_against_cpu, name, small)}
        if name in TORCH_TWIN:
            r["cudnn"] = guarded(check_against_cudnn, name, small)
        r["speed"] = guarded(bench, name, speed, args.reps)
        result["archs"][name] = r
        print(f"gpu_check: {name} done", file=sys.stderr, flush=True)
    result["step"] = guarded(bench_step, args.reps, speed.H, 100 if speed.H > 8 else 5)
    result["seconds"] = time.time() - start
    (out / "gpu_check.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    (out / "gpu_check.md").write_text(render(result))
    print(render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
