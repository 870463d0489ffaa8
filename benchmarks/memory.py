"""Peak training memory only (no timing, so it can run on a loaded machine): one
forward+backward of every architecture and of torch.nn.LSTM, each in a fresh subprocess
(``rnnlab.benchmark.memory``), at ``make bench``'s default shape. Prints a Markdown table.

    python benchmarks/memory.py [--arch NAME ...] [--seq 100 --batch 64 --hidden 512]
                                [--repeat 3] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import sys

from rnnlab import available
from rnnlab.benchmark.measure import Shape
from rnnlab.benchmark.memory import peak_training_memory


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="memory", description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", action="append", help="architecture (default: every one)")
    p.add_argument("--seq", type=int, default=100)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--threads", type=int, default=1, help="torch threads in each child")
    p.add_argument("--repeat", type=int, default=3,
                   help="fresh processes per arch; the median is reported (RSS peaks of "
                        "one process vary with the allocator's choices)")
    p.add_argument("--json", help="also write the figures to this file")
    args = p.parse_args(argv)
    shape = Shape("default", args.seq, args.batch, args.hidden, args.hidden)
    names = ["torch.nn.LSTM", *(args.arch or available())]
    rows = {n: _median([peak_training_memory(n, shape, threads=args.threads)
                        for _ in range(args.repeat)]) for n in names}
    ref = rows["torch.nn.LSTM"].get("peak_delta_bytes")
    print(f"T={shape.T} B={shape.B} H={shape.H} F={shape.F}\n")
    print("| arch | peak train MB | × nn.LSTM |\n|---|---|---|")
    for n, r in rows.items():
        b = r.get("peak_delta_bytes")
        if b is None:
            print(f"| {n} | error: {r.get('error')} | – |")
        else:
            print(f"| {n} | {b / 2**20:.0f} | {b / ref:.2f} |" if ref else f"| {n} | {b} | – |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"shape": shape.__dict__, "rows": rows}, f, indent=1)
    return 0


def _median(runs: list[dict]) -> dict:
    ok = sorted((r for r in runs if "peak_delta_bytes" in r), key=lambda r: r["peak_delta_bytes"])
    if not ok:
        return runs[0]
    return {**ok[len(ok) // 2], "all_bytes": [r["peak_delta_bytes"] for r in ok]}


if __name__ == "__main__":
    sys.exit(main())
