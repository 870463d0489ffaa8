"""Peak training memory of one forward+backward, measured in a fresh process per case.

Why a subprocess and RSS: torch's CPU allocations bypass Python (tracemalloc sees none of
them) and the allocator keeps freed memory, so the honest number is the operating system's
peak resident set of a process that does nothing but build the model and input and run one
training step. On Linux the peak (VmHWM) is reset after setup by writing 5 to
/proc/self/clear_refs, so the peak *increase* over the post-setup resident set is exactly
what the step needed (activations saved for backward, gradients, workspaces). Elsewhere
ru_maxrss is used, which can only over-state the setup part. Usage (internal):

    python -m rnnlab.benchmark.memory '{"arch": "lstm", "T": 100, "B": 64, "H": 512, ...}'
"""
from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

import torch

from .measure import Shape, make_arch, train_fn


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def child(spec: dict) -> dict:
    torch.set_num_threads(spec.get("threads", torch.get_num_threads()))
    shape = Shape(**spec["shape"])
    module = make_arch(spec["arch"], shape, spec.get("options"))
    x = torch.randn(shape.T, shape.B, shape.F)
    step = train_fn(module, x)
    base = _status_kb("VmRSS")
    exact = _reset_peak() and base is not None
    step()
    if exact:
        peak = _status_kb("VmHWM")
    else:
        base = base or 0
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"peak_delta_bytes": max(0, (peak - base)) * 1024, "exact": exact}


def peak_training_memory(arch: str, shape: Shape, options: dict | None = None,
                         threads: int | None = None, timeout: float = 900) -> dict:
    """{'peak_delta_bytes', 'exact'} for one training step of ``arch`` (a registered name
    or 'torch.nn.LSTM'), measured in a child process; {'error': ...} if it failed."""
    spec = {"arch": arch, "shape": shape.__dict__, "options": options or {},
            "threads": threads or torch.get_num_threads()}
    cmd = [sys.executable, "-m", "rnnlab.benchmark.memory", json.dumps(spec)]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": "timeout"}
    if res.returncode != 0:
        return {"error": res.stderr.strip().splitlines()[-1] if res.stderr.strip() else "failed"}
    return json.loads(res.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    print(json.dumps(child(json.loads(sys.argv[1]))))
