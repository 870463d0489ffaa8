"""One-shot GPU check of every registered architecture (run on a CUDA machine):

1. correctness: each architecture on the GPU (float32) against the same weights on the
   CPU in float64 (its own reference: outputs, final state, every gradient), and for the
   torch-shaped ones (lstm, gru, rnn) rnnlab's own kernel path against cuDNN's nn.LSTM /
   nn.GRU / nn.RNN with the same weights;
2. speed at the default shape (T=100, B=64, H=512): forward and forward+backward of each
   architecture against cuDNN nn.LSTM of the same size, interleaved rounds, medians, with
   torch.cuda.synchronize() around every call, plus peak CUDA memory of one training step;
3. the incremental Stepper at batch 1 against nn.LSTM called once per token.

Writes gpu_check.json and gpu_check.md into $OUT (or --out). Each part is guarded: an
error in one architecture is recorded and the rest still runs. No Triton or custom CUDA:
the kernels run torch ops on the GPU (one GEMM plus a few elementwise launches per step),
so on a GPU they are launch-bound and cuDNN's fused RNN is expected to be faster.

    OUT=gpu-out python benchmarks/gpu_check.py [--reps 5] [--quick]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path

import torch

import rnnlab
from rnnlab.benchmark.measure import Shape, median, no_torch_fused, step_contenders
from rnnlab.experiments import machine_description
from rnnlab.kernels import STATS

TORCH_TWIN = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}


def sync() -> None:
    torch.cuda.synchronize()


def _grads(module, x, state=None):
    """Outputs, final state tensors and gradients of a fixed random loss."""
    xr = x.detach().clone().requires_grad_()
    module.zero_grad(set_to_none=True)
    out, final = module(xr, state)
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


def check_against_cpu(name: str, shape: Shape) -> dict:
    """GPU float32 vs CPU float64, same weights; lengths given to exercise masking."""
    torch.manual_seed(0)
    cpu = rnnlab.build(name, shape.F, shape.H).double()
    gpu = rnnlab.build(name, shape.F, shape.H).cuda()
    gpu.load_state_dict({k: v.float() for k, v in cpu.state_dict().items()})
    x = torch.randn(shape.T, shape.B, shape.F, dtype=torch.float64)
    before = dict(STATS)
    with no_torch_fused(gpu):
        ours = _grads(gpu, x.float().cuda())
    used = {k: STATS[k] - before.get(k, 0) for k in STATS if STATS[k] != before.get(k, 0)}
    ref = _grads(cpu, x)
    scale = max(float(t.abs().max()) for t in ref if t.numel())
    return {"max_abs_diff": _maxdiff(ours, ref), "scale": scale, "kernels_used": used}


def check_against_cudnn(name: str, shape: Shape) -> dict:
    """rnnlab's kernel path on the GPU vs torch.nn (cuDNN) with the same weights."""
    torch.manual_seed(0)
    ref = TORCH_TWIN[name](shape.F, shape.H).cuda()
    ours = rnnlab.build(name, shape.F, shape.H).cuda()
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(shape.T, shape.B, shape.F).cuda()
    with no_torch_fused(ours):
        a = _grads(ours, x)
    b = _grads(ref, x)
    return {"max_abs_diff": _maxdiff(a, b)}


def timed(fn) -> float:
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t0


def bench(name: str, shape: Shape, reps: int) -> dict:
    torch.manual_seed(0)
    ours = rnnlab.build(name, shape.F, shape.H).cuda()
    ref = torch.nn.LSTM(shape.F, shape.H).cuda()
    x = torch.randn(shape.T, shape.B, shape.F).cuda()
    xr = x.clone().requires_grad_()

    def fwd(m):
        def run():
            with torch.no_grad():
                m(x)
        return run

    def fb(m):
        def run():
            m.zero_grad(set_to_none=True)
            m(xr)[0].sum().backward()
        return run
    fns = {"ours/fwd": fwd(ours), "ours/fb": fb(ours), "cudnn/fwd": fwd(ref),
           "cudnn/fb": fb(ref)}
    if name in TORCH_TWIN:                  # rnnlab's own kernel instead of cuDNN
        kern = rnnlab.build(name, shape.F, shape.H).cuda()
        for m in kern.modules():
            if hasattr(m, "use_fused"):
                m.use_fused = False
        fns.update({"kernel/fwd": fwd(kern), "kernel/fb": fb(kern)})
    for f in fns.values():
        f()
    samples: dict = {k: [] for k in fns}
    names = list(fns)
    for r in range(reps):
        for k in names[r % len(names):] + names[:r % len(names)]:
            samples[k].append(timed(fns[k]))
    med = {k: median(v) for k, v in samples.items()}
    mem = {}
    for label, m in (("ours", ours), ("cudnn", ref)):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fb(m)()
        sync()
        mem[label] = torch.cuda.max_memory_allocated() - base
    res = {"median_s": med, "samples_s": samples, "peak_train_bytes": mem,
           "fwd_vs_cudnn_lstm": med["ours/fwd"] / med["cudnn/fwd"],
           "fb_vs_cudnn_lstm": med["ours/fb"] / med["cudnn/fb"],
           "memory_vs_cudnn_lstm": mem["ours"] / max(1, mem["cudnn"])}
    if "kernel/fb" in med:
        res["kernel_fb_vs_cudnn_lstm"] = med["kernel/fb"] / med["cudnn/fb"]
        res["kernel_fwd_vs_cudnn_lstm"] = med["kernel/fwd"] / med["cudnn/fwd"]
    return res


def bench_step(reps: int, tokens: int = 100) -> dict:
    fns, _ = step_contenders(512, 2, tokens, device="cuda")
    for f in fns.values():
        f()
    samples = {k: [timed(f) / tokens for _ in range(reps)] for k, f in fns.items()}
    per = {k: median(v) for k, v in samples.items()}
    return {"per_token_s": per, "speedup": per["torch.nn.LSTM"] / per["Stepper"]}


def guarded(fn, *args) -> dict:
    try:
        return fn(*args)
    except Exception as e:  # noqa: BLE001 - record and go on with the next part
        return {"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()[-2000:]}


def render(result: dict) -> str:
    lines = ["# GPU check: rnnlab on CUDA against cuDNN", "",
             f"Machine: {result['machine']}. Command: `{result['command']}`, "
             f"{result['seconds']:.0f} s.", "",
             "| arch | GPU fp32 vs CPU fp64: max abs diff (scale) | vs cuDNN twin: max abs diff "
             "| fwd / cuDNN nn.LSTM | fwd+bwd / cuDNN nn.LSTM | rnnlab kernel fwd+bwd / cuDNN "
             "| peak train mem / cuDNN nn.LSTM |", "|---|---|---|---|---|---|---|"]
    for name, r in result["archs"].items():
        c, t, s = r.get("cpu", {}), r.get("cudnn", {}), r.get("speed", {})

        def f(d, k, fmt="{:.2f}"):
            return "error" if "error" in d else ("–" if k not in d else fmt.format(d[k]))
        lines.append(f"| {name} | {f(c, 'max_abs_diff', '{:.2e}')} ({f(c, 'scale', '{:.1f}')}) "
                     f"| {f(t, 'max_abs_diff', '{:.2e}')} | {f(s, 'fwd_vs_cudnn_lstm')} "
                     f"| {f(s, 'fb_vs_cudnn_lstm')} | {f(s, 'kernel_fb_vs_cudnn_lstm')} "
                     f"| {f(s, 'memory_vs_cudnn_lstm')} |")
    st = result.get("step", {})
    if "per_token_s" in st:
        p = st["per_token_s"]
        lines += ["", f"Incremental step (2x512 LSTM, batch 1): nn.LSTM "
                  f"{p['torch.nn.LSTM'] * 1e3:.3f} ms/token, Stepper {p['Stepper'] * 1e3:.3f} "
                  f"ms/token ({st['speedup']:.1f}x)."]
    errors = [f"- {n} {part}: {d['error']}" for n, r in result["archs"].items()
              for part, d in r.items() if isinstance(d, dict) and "error" in d]
    if errors:
        lines += ["", "Errors:", *errors]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=os.environ.get("OUT", "gpu-check"))
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="smaller shape (a smoke test)")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device; nothing to do", file=sys.stderr)
        return 0
    start = time.time()
    speed = Shape("default", 20, 8, 64, 64) if args.quick else Shape("default", 100, 64, 512, 512)
    small = Shape("check", 7, 3, 16, 16)
    result = {"machine": machine_description(), "command": " ".join(sys.argv),
              "shape": speed.__dict__, "archs": {}}
    for name in rnnlab.available():
        r = {"cpu": guarded(check_against_cpu, name, small)}
        if name in TORCH_TWIN:
            r["cudnn"] = guarded(check_against_cudnn, name, small)
        r["speed"] = guarded(bench, name, speed, args.reps)
        result["archs"][name] = r
        print(f"gpu_check: {name} done", file=sys.stderr, flush=True)
    result["step"] = guarded(bench_step, args.reps)
    result["seconds"] = time.time() - start
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    (out / "gpu_check.md").write_text(render(result))
    print(render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
