"""`opensesame` command line. Each sub-command is a thin shell over a library function.

Commands that need training or serving code import it when they run, so `pipeline` itself stays free of
Ray and the spec commands start fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from typing import Any, Callable

from pipeline.matching import CallMatcher
from pipeline.settings import get_settings
from pipeline.specs import inspect_spec, load_catalogue


def _print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2)
    sys.stdout.write("\n")


def cmd_spec_inspect(args: argparse.Namespace) -> int:
    settings = get_settings().fetch
    results = [inspect_spec(source, settings) for source in args.sources]
    if args.json:
        _print_json([asdict(r) for r in results])
    else:
        for r in results:
            if r.error:
                print(f"FAIL  {r.source}: {r.error}")
            else:
                print(f"ok    {r.source}: {r.title!r} OpenAPI {r.openapi}, {r.operations} operations, {r.parse_ms} ms")
        ok = sum(r.error is None for r in results)
        print(f"{ok}/{len(results)} parsed")
    return 0 if all(r.error is None for r in results) else 1


def cmd_spec_match(args: argparse.Namespace) -> int:
    catalogue = load_catalogue(args.spec, get_settings().fetch)
    match = CallMatcher(catalogue).match(args.call)
    result = {
        "operation": match.operation.id if match.operation else None,
        "path_params": match.path_params,
        "query_params": match.query_params,
    }
    if args.json:
        _print_json(result)
    else:
        print(result["operation"] or "unmatched", json.dumps(match.path_params), json.dumps(match.query_params))
    return 0 if match.matched else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="opensesame", description="Predict the next REST API call.")
    commands = parser.add_subparsers(dest="command", required=True)

    spec = commands.add_parser("spec", help="inspect specs and match calls").add_subparsers(dest="spec_cmd", required=True)
    inspect = spec.add_parser("inspect", help="parse specs and summarise them")
    inspect.add_argument("sources", nargs="+", metavar="PATH_OR_URL")
    inspect.add_argument("--json", action="store_true")
    inspect.set_defaults(handler=cmd_spec_inspect)
    match = spec.add_parser("match", help="map a call onto an operation of a spec")
    match.add_argument("spec", metavar="SPEC")
    match.add_argument("call", metavar='"METHOD PATH"')
    match.add_argument("--json", action="store_true")
    match.set_defaults(handler=cmd_spec_match)
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
