"""Exported one-step models (``make bench`` writes docs/results/export.{json,md}): time per
token at batch 1 on one thread for every architecture, PyTorch predictor vs onnxruntime in
float32 and int8, bytes of weights read per step against the measured read bandwidth, and
the validation loss int8 costs.

    python benchmarks/export_step.py --out docs/results [--arch NAME ...] [--train-seconds 60]

The harness lives in ``rnnlab.export.bench``.
"""
import sys

from rnnlab.export.bench import main

if __name__ == "__main__":
    sys.exit(main())
