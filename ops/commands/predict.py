"""`opensesame predict` and `bench`: one prediction in-process, and how fast predictions are (in-process, and a
running service under locust)."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import Any

from ops.commands.common import SERVICE_URL, Commands, add_model, load_predictor, print_json
from pipeline.settings import get_settings
from pipeline.spec.load import load_catalogue


def register(commands: Commands) -> None:
    predict = commands.add_parser("predict", help="predict the next calls in-process")
    predict.add_argument("--spec", required=True, help="spec path, URL or inline JSON/YAML")
    predict.add_argument("--event", action="append", default=[], metavar='"METHOD PATH"', help="oldest first; repeat")
    predict.add_argument("--prompt", default="")
    predict.add_argument("-k", type=int, default=5, choices=range(1, 51), metavar="K")
    add_model(predict)
    predict.add_argument("--json", action="store_true")
    predict.set_defaults(handler=predict_calls)

    bench = commands.add_parser("bench", help="in-process prediction latency on a spec")
    bench.add_argument("--spec", required=True)
    bench.add_argument("-n", type=int, default=300, help="predictions to time")
    bench.add_argument("-k", type=int, default=5)
    bench.add_argument("--seed", type=int, default=1)
    add_model(bench)
    bench.add_argument("--url", help="also load a running service with loadtest/locustfile.py, e.g. "
                       f"{SERVICE_URL}: one user, then each --users level; exit code 1 if an SLO is missed")
    bench.add_argument("--users", type=int, action="append", help="locust users of a level; repeat (default 16)")
    bench.add_argument("--hold-s", type=float, default=60, help="seconds each level holds its users")
    bench.add_argument("--json", action="store_true")
    bench.set_defaults(handler=bench_predictions)


def predict_calls(args: argparse.Namespace) -> int:
    from pipeline.ranking.context import Event

    predictor = load_predictor(args)
    spec = predictor.prepare(load_catalogue(args.spec, get_settings().fetch))
    outcome = predictor.predict(spec, [Event(endpoint=e) for e in args.event], args.prompt or "", k=args.k)
    if args.json:
        internal = ("features", "prompt", "patterns")  # what labels need, not what a caller asked
        print_json({key: value for key, value in asdict(outcome).items() if key not in internal})
        return 0
    for n, call in enumerate(outcome.predictions, start=1):
        print(f"{n}. {call.method} {call.path}  score={call.score:.3f}  ({call.reason})")
    if outcome.unmatched_events:
        print(f"unmatched events (not in the spec): {outcome.unmatched_events}")
    print(f"model {outcome.model_version}, {outcome.timing_ms['total']} ms")
    return 0


def bench_predictions(args: argparse.Namespace) -> int:
    from ops.bench import bench_http, bench_in_process

    settings = get_settings()
    report: dict[str, Any] = {"in_process": bench_in_process(load_predictor(args), args.spec, settings.fetch, args.n,
                                                             args.k, args.seed)}
    if args.url:
        # locust's scenarios on the same spec: one user (the HTTP cost of a prediction), then each level.
        runs = bench_http(args.url.rstrip("/"), args.spec, args.users or [16], args.hold_s,
                          settings.paths.var_dir / "loadtest")
        sequential = next(r for r in runs[0]["routes"] if r["route"] == "/predict warm")
        report["http"] = runs
        report["http_p50_over_in_process_p50"] = round(sequential["p50_ms"] / report["in_process"]["p50_ms"], 2)
    if args.json:
        print_json(report)
    else:
        print(json.dumps(report["in_process"], indent=1))
        for run in report.get("http", []):
            print(f"\n{run['users']} user(s), {run['hold_s']:.0f} s hold: {run['verdict']}")
            print("| route | requests | failures | req/s | p50 ms | p95 ms | p99 ms | max ms |\n|---|---|---|---|---|---|---|---|")
            for row in run["routes"]:
                print("| " + " | ".join(str(v) for v in row.values()) + " |")
    return 0 if all(run["slo_met"] for run in report.get("http", [])) else 1
