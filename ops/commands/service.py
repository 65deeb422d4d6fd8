"""Commands over a running service: `status`, `watch`, `soak`, `overload`, `reconfigure`, `monitor`, `keys`."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

from ops.commands.common import TMDB_SPEC, Commands, add_service_url, print_json, progress
from pipeline.settings import get_settings


def register(commands: Commands) -> None:
    status = commands.add_parser("status", help="what is serving and what is coming: the model a running service "
                                 "answers with, the champion, model jobs and their progress")
    add_service_url(status)
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=show_status)

    watch = commands.add_parser("watch", help="started with `make serve`: seconds to the first answer and to each "
                                "model version after it (the cold-start ranker, the full model), failed requests; "
                                "exit 1 on a failure or a timeout")
    add_service_url(watch)
    watch.add_argument("--spec", type=Path, default=TMDB_SPEC, help="the spec the clients register and predict on")
    watch.add_argument("--versions", type=int, default=2, help="stop once this many versions have answered (a "
                       "fresh start: 2, the cold-start ranker and the full model; a second start: 1)")
    watch.add_argument("--clients", type=int, default=2)
    watch.add_argument("--pause-s", type=float, default=0.2, help="each client's pause between requests")
    watch.add_argument("--timeout-min", type=float, default=60)
    watch.set_defaults(handler=watch_start)

    soak = commands.add_parser("soak", help="the locust mix for a long while, memory of every process sampled; "
                               "CSV, plot, exit 1 on a failed request or memory that grows after warm-up")
    add_service_url(soak)
    soak.add_argument("--minutes", type=float, default=30)
    soak.add_argument("--users", type=int, default=16)
    soak.add_argument("--specs-dir", type=Path, default=Path("../shared/data/apisguru"),
                      help="spec files for the warm sessions (registered first; refused ones skipped)")
    soak.add_argument("--specs", type=int, default=200, help="how many of them")
    soak.add_argument("--user-pool", type=int, default=2000, help="distinct user_ids")
    soak.add_argument("--window-s", type=float, default=60, help="seconds between samples")
    soak.add_argument("--redis-url", help="the service's Redis (default: cache.redis_url)")
    soak.add_argument("--out", type=Path, default=Path("var/soak"))
    soak.set_defaults(handler=soak_service)

    overload = commands.add_parser("overload", help="the locust mix far beyond capacity: only 2xx, 429 and 503 "
                                   "with Retry-After; p99 of the answered; recovery after the load stops")
    add_service_url(overload)
    overload.add_argument("--users", type=int, default=256)
    overload.add_argument("--hold-s", type=float, default=60)
    overload.add_argument("--spec", type=Path, action="append",
                          help="spec files of the warm sessions; repeat (default: the TMDB dev spec)")
    overload.add_argument("--out", type=Path, default=Path("var/overload"))
    overload.set_defaults(handler=overload_service)

    reconfigure = commands.add_parser("reconfigure", help="serve deploy of changed configs under load (replicas up "
                                      "and down, a settings change that restarts replicas): failed requests per step")
    add_service_url(reconfigure)
    reconfigure.add_argument("--dashboard", help="the Ray dashboard (default: learning.dashboard_url)")
    reconfigure.add_argument("--users", type=int, default=16)
    reconfigure.add_argument("--spec", type=Path, default=TMDB_SPEC, help="the spec the clients predict on")
    reconfigure.set_defaults(handler=reconfigure_service)

    monitor = commands.add_parser("monitor", help="Prometheus on this machine, scraping `make serve`'s cluster, "
                                  "with OpenSesame's alert rules (needs Debian's prometheus package)")
    monitor.add_argument("--port", type=int, default=9090)
    monitor.set_defaults(handler=monitor_service)

    keys = commands.add_parser("keys", help="API keys").add_subparsers(dest="keys_cmd", required=True)
    new_key = keys.add_parser("new", help="make a key; prints it once with the entry for clients.api_keys")
    new_key.add_argument("--name", required=True, help="whose key (shown in logs; never the key itself)")
    new_key.set_defaults(handler=make_key)


def show_status(args: argparse.Namespace) -> int:
    """What a running service answers with, the registry's champion, and the model jobs with their progress."""
    from ops.status import status

    report = status(get_settings(), args.url)
    if args.json:
        print(report.model_dump_json(indent=1))
        return 0
    stage = f" ({report.champion_stage})" if report.champion_stage else ""
    print(f"service   {report.service}, serving {report.serving or 'no model'}")
    print(f"champion  {report.champion or 'none registered'}{stage}")
    for job in report.jobs:
        print(f"job       {job.job_id} ({job.kind}) {job.status}: {job.progress or 'no progress line yet'}")
    if not report.jobs:
        print("jobs      none (or the Ray job API is not reachable)")
    return 0


def watch_start(args: argparse.Namespace) -> int:
    """Beside `make serve`: the time to the first answer and to each model version after it, and the failures."""
    from client import ApiError
    from ops.startwatch import watch_start as watch

    try:
        report = watch(args.url.rstrip("/"), args.spec.read_text(), args.versions, args.clients, args.pause_s,
                       args.timeout_min * 60, log=progress)
    except (TimeoutError, ApiError) as exc:
        progress(f"watch: {exc}")
        return 1
    print_json(asdict(report))
    return 0 if report.passed and len(report.versions) >= args.versions else 1


def soak_service(args: argparse.Namespace) -> int:
    from ops.soak import plot, register_specs, soak, summary

    settings = get_settings()
    files = sorted(p for p in args.specs_dir.iterdir() if p.suffix in (".json", ".yaml", ".yml"))
    specs = register_specs(args.url, files, args.specs, log=progress)
    report = soak(args.url, specs, args.minutes, args.users, args.out, user_pool=args.user_pool,
                  window_s=args.window_s, redis_url=args.redis_url or settings.cache.redis_url,
                  spool=settings.feedback.spool_path, label_log=Path(settings.learning.log_uri),
                  log=progress)
    if report.samples:
        plot(report, args.out / "soak.png")
    print_json({**summary(report), "csv": str(args.out / "soak.csv"), "plot": str(args.out / "soak.png")})
    return 0 if report.passed else 1


def overload_service(args: argparse.Namespace) -> int:
    from ops.overload import overload

    report = overload(args.url, args.spec or [TMDB_SPEC], args.users, args.hold_s, args.out)
    print_json(report.summary())
    return 0 if report.passed else 1


def reconfigure_service(args: argparse.Namespace) -> int:
    from ops.load import RequestLoop, register_spec
    from ops.reconfigure import reconfigure_under_load

    body = {"spec_id": register_spec(args.url, args.spec.read_text()), "prompt": "list the recent ones", "k": 5}
    loop = RequestLoop(f"{args.url}/predict", lambda client, n: {**body, "user_id": f"reconfigure-{client}-{n % 50}"},
                       clients=args.users)
    steps = reconfigure_under_load(args.dashboard or get_settings().learning.dashboard_url, loop, log=progress)
    print_json([asdict(step) for step in steps])
    return 0 if all(step.failed == 0 for step in steps) else 1


def monitor_service(args: argparse.Namespace) -> int:
    from ops.prometheus import run_prometheus

    var = get_settings().paths.var_dir
    return run_prometheus(var / "ray", var / "prometheus", args.port)


def make_key(args: argparse.Namespace) -> int:
    """A new API key: the key for the client (shown once), the entry for `clients.api_keys` (its digest only)."""
    import hashlib
    import secrets

    key = "os_" + secrets.token_urlsafe(32)
    entry = {"sha256": hashlib.sha256(key.encode()).hexdigest(), "name": args.name}
    print_json({"key": key, "api_keys_entry": entry})
    return 0
