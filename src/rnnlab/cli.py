"""``rnnlab`` command line. Each subcommand is a module in ``rnnlab.commands`` defining

    HELP = "one line"
    def add_arguments(parser): ...
    def run(args) -> int

so adding a command touches no other file. User errors print one line on stderr and exit 2:
bad options (checked as they are parsed), bad files, damaged run directories, a full disk.
Options may come before or after a command's positional arguments.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from . import commands
from .errors import UserError


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (the usage is in --help)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="rnnlab", description="Recurrent networks: train, suggest, sample, experiments.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    parser.commands = {}
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda i: i.name):
        mod = importlib.import_module(f"{commands.__name__}.{info.name}")
        name = getattr(mod, "NAME", info.name.replace("_", "-"))
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
        parser.commands[name] = p
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    command = parser.parse_known_args(argv)[0].command
    sub, rest = parser.commands[command], argv[argv.index(command) + 1:]
    try:
        args = sub.parse_intermixed_args(rest)
    except TypeError:                       # a command with subcommands of its own
        args = sub.parse_args(rest)
    args.command = command
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("rnnlab: interrupted", file=sys.stderr)
        return 130
    except (UserError, ValueError) as e:
        print(f"rnnlab {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except OSError as e:                  # missing files, permissions, a full disk, ...
        where = f"{e.filename}: " if e.filename else ""
        print(f"rnnlab {args.command}: error: {where}{e.strerror or e}", file=sys.stderr)
        return 2


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split("\n"))


if __name__ == "__main__":
    raise SystemExit(main())
