"""Speed harness (``make bench``): every registered rnnlab architecture against torch.nn,
interleaved medians, ratios, FLOPs, peak memory; writes speed.json and speed.md.

    python benchmarks/speed.py --out docs/results [--arch NAME ...] [--reps 5] ...

The harness itself lives in ``rnnlab.benchmark.speed`` so ``rnnlab bench speed`` runs the
same code; see that module and docs/results/speed.md for what is measured and how.
"""
import sys

from rnnlab.benchmark.speed import main

if __name__ == "__main__":
    sys.exit(main())
