"""rnnlab export RUN --out DIR [--int8]: a run as a one-step ONNX model for onnxruntime."""
from __future__ import annotations

from pathlib import Path

HELP = "export a trained run as a one-step ONNX model (optionally with int8 weights)"


def add_arguments(parser) -> None:
    parser.add_argument("run", type=Path, help="run directory written by `rnnlab train`")
    parser.add_argument("--out", type=Path, required=True,
                        help="folder for model.onnx, vocab.json and export.json")
    parser.add_argument("--int8", action="store_true",
                        help="store the big matrices as int8 with one scale per row")


def run(args) -> int:
    from ..export.exporter import export_model
    from ..infer import Predictor

    pred = Predictor.load(args.run)
    meta = export_model(pred.model, pred.vocab.to_json(), args.out, int8=args.int8,
                        source=str(args.run))
    check = meta["check"]
    print(f"{args.out}: {meta['architecture']} ({meta['level']} level), state of "
          f"{meta['state_size']} floats, {meta['weight_bytes'] / 1e6:.2f} MB of weights"
          f"{' (int8)' if args.int8 else ''}; onnxruntime vs {check['against']}: "
          f"{check['relative_logit_error']:.1e} of the logits' scale")
    return 0
