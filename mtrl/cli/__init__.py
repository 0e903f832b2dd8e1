"""The ``mtrl`` command line: ``mtrl train | eval | distill | expert | bench | sweep | report |
affinity | group``.

Each command is a module of this package with ``add_parser(subparsers)`` and ``run(args)``;
argparse lives only here, the work in the domain modules (imported when a command runs). User
errors (bad config, unknown task, missing checkpoint or optional package) are printed as one
line and exit with code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from mtrl.errors import MtrlError

NAMES = ("train", "eval", "bench", "affinity", "group", "sweep", "report", "expert", "distill")
COMMANDS = {name: importlib.import_module(f"mtrl.cli.{name}") for name in NAMES}
"""Command name -> its module (``add_parser(subparsers)``, ``run(args) -> exit code``)."""


def build_parser() -> argparse.ArgumentParser:
    from mtrl import __version__

    parser = argparse.ArgumentParser(
        prog="mtrl", description="Multi-task reinforcement learning on Meta-World.")
    parser.add_argument("--version", action="version", version=f"mtrl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for command in COMMANDS.values():
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``mtrl`` console script and of ``python -m mtrl``."""
    parser = build_parser()
    # Overrides may come before or after options: collect stray ``key=value`` tokens.
    args, extra = parser.parse_known_args(argv)
    stray = [tok for tok in extra if tok.startswith("-") or "=" not in tok]
    if stray or (extra and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(stray or extra)}")
    if extra:
        args.overrides = list(args.overrides) + extra
    from mtrl.envs import EnvError

    try:
        return COMMANDS[args.command].run(args)
    except (MtrlError, EnvError) as exc:
        print(f"mtrl: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mtrl: interrupted (checkpoint saved where a run was training)", file=sys.stderr)
        return 130
