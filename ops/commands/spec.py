"""`opensesame spec`: parse specs and match calls, with no model loaded (these commands start fast)."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from ops.commands.common import Commands, print_json
from pipeline.settings import get_settings
from pipeline.spec.load import inspect_spec, load_catalogue
from pipeline.spec.matching import CallMatcher


def register(commands: Commands) -> None:
    spec = commands.add_parser("spec", help="inspect specs and match calls").add_subparsers(dest="spec_cmd",
                                                                                          required=True)
    inspect = spec.add_parser("inspect", help="parse specs and summarise them")
    inspect.add_argument("sources", nargs="+", metavar="PATH_OR_URL")
    inspect.add_argument("--json", action="store_true")
    inspect.set_defaults(handler=inspect_specs)
    match = spec.add_parser("match", help="map a call onto an operation of a spec")
    match.add_argument("spec", metavar="SPEC")
    match.add_argument("call", metavar='"METHOD PATH"')
    match.add_argument("--json", action="store_true")
    match.set_defaults(handler=match_call)


def inspect_specs(args: argparse.Namespace) -> int:
    settings = get_settings().fetch
    results = [inspect_spec(source, settings) for source in args.sources]
    if args.json:
        print_json([asdict(r) for r in results])
    else:
        for r in results:
            if r.error:
                print(f"FAIL  {r.source}: {r.error}")
            else:
                print(f"ok    {r.source}: {r.title!r} OpenAPI {r.openapi}, {r.operations} operations, {r.parse_ms} ms")
        ok = sum(r.error is None for r in results)
        print(f"{ok}/{len(results)} parsed")
    return 0 if all(r.error is None for r in results) else 1


def match_call(args: argparse.Namespace) -> int:
    catalogue = load_catalogue(args.spec, get_settings().fetch)
    match = CallMatcher(catalogue).match(args.call)
    result = {
        "operation": match.operation.id if match.operation else None,
        "path_params": match.path_params,
        "query_params": match.query_params,
    }
    if args.json:
        print_json(result)
    else:
        print(result["operation"] or "unmatched", json.dumps(match.path_params), json.dumps(match.query_params))
    return 0 if match.matched else 1
