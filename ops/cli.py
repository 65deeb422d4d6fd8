"""`opensesame` command line. Each sub-command is a thin shell over a library function, registered by its module
of `ops/commands/` beside its handler.

It sits above every layer (it trains, evaluates, serves and demonstrates); commands import what they need when
they run, so the spec commands start fast (no torch, LightGBM or Ray), and the parser reads no settings (so
`--help` works with a broken config file).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from ops.commands import demo, evaluation, models, predict, service, spec, traffic


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="opensesame", description="Predict the next REST API call.")
    commands = parser.add_subparsers(dest="command", required=True)
    for group in (spec, models, predict, evaluation, traffic, service, demo):
        group.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    from pipeline.errors import OpenSesameError

    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except OpenSesameError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
