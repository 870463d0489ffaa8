"""rnnlab bench speed: time any registered architecture against torch.nn (the harness of
``make bench``, rnnlab.benchmark.speed)."""
from __future__ import annotations

from ..benchmark import speed

HELP = "benchmarks: `rnnlab bench speed --arch NAME --hidden H` against torch.nn"


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="bench", metavar="BENCH", required=True)
    p = sub.add_parser("speed", help="speed and memory against torch.nn (writes "
                       "speed.json and speed.md into --out)")
    speed.add_arguments(p)
    p.set_defaults(out="bench-output")


def run(args) -> int:
    result = speed.run(args)
    print(speed.render(result, brief=True))
    return 0
