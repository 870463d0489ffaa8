"""rnnlab experiment NAME: run one of the papers' experiments."""
from pathlib import Path

from ..errors import UserError
from ..experiments import available, run_experiment

HELP = "run an experiment (see `rnnlab list`) and write JSON, Markdown and PNG results"


def add_arguments(parser) -> None:
    parser.add_argument("name", help="experiment name: " + ", ".join(available()))
    parser.add_argument("--preset", default="fast", help="fast (seconds to minutes) or full")
    parser.add_argument("--out", default="results", type=Path, help="results directory")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config field (repeatable)")


def run(args) -> int:
    overrides = {}
    for item in args.set:
        if "=" not in item:
            raise UserError(f"--set takes KEY=VALUE, received {item!r}")
        key, value = item.split("=", 1)
        overrides[key.strip().replace("-", "_")] = value
    run_experiment(args.name, args.preset, args.out, **overrides)
    print(f"results written to {args.out}")
    return 0
