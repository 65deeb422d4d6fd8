"""`opensesame import` and `import-bench`: learn an API's existing traffic, and how fast that reads."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ops.commands.common import Commands, add_model, ensure_model, model_dir, print_json, progress, settings_of
from pipeline.settings import Settings, get_settings

if TYPE_CHECKING:
    from pipeline.learning.imports import ImportReport, Progress


def register(commands: Commands) -> None:
    importer = commands.add_parser("import", help="learn an API's existing traffic (HAR, OpenTelemetry OTLP JSON, "
                                   "Kong / Envoy / API Gateway JSON logs, nginx combined logs): each session's calls "
                                   "become labels, as feedback would")
    importer.add_argument("files", nargs="+", metavar="file", help="traffic files, gzipped or not, their format "
                          "detected; read one after another (rotated logs oldest first), or with --address paths "
                          "every node sees or URIs (s3://, gs://, file://) read side by side")
    importer.add_argument("--spec", required=True, help="the API's OpenAPI spec: a file, an http(s) URL or the "
                          "spec_id of a spec the service registered")
    importer.add_argument("--host", help="only requests to this host (records without a host are kept)")
    importer.add_argument("--prefix", help="only requests under this path prefix, e.g. /api")
    importer.add_argument("--format", choices=["har", "otlp", "jsonl", "combined"], help="skip the detection")
    add_model(importer, "the ranker that predicts each step")
    importer.add_argument("--dry-run", action="store_true",
                          help="read, match and report only: nothing is learned or stored (no Redis needed)")
    importer.add_argument("--report-dir", type=Path, help="write report.json, report.md and arazzo.yaml there")
    importer.add_argument("--json", action="store_true")
    importer.add_argument("--address", help="run the import as a Ray job over Ray Data on the cluster whose "
                          "dashboard is here (http://HOST:8265), reading the files on every node; the job uses the "
                          "registry's champion unless --model names a directory the cluster sees")
    importer.set_defaults(handler=import_file)

    bench = commands.add_parser("import-bench", help="how fast `import` reads traffic and its peak memory: "
                                "synthetic sessions over a spec as a JSON Lines log and a HAR export")
    bench.add_argument("--spec", required=True)
    bench.add_argument("--requests", type=int, default=1_000_000)
    bench.add_argument("--format", action="append", choices=["jsonl", "har"], default=None)
    bench.add_argument("--out", type=Path, help="where the traffic files go (default: paths.var_dir/import-bench)")
    bench.set_defaults(handler=measure_import)


def import_file(args: argparse.Namespace) -> int:
    from pipeline.adapters.kv import ResilientStore
    from pipeline.runtime import import_traffic, spec_catalogue
    from pipeline.traffic.locations import expand

    settings = settings_of(args)
    expand([f for f in args.files if "://" not in f])  # a local file missing is said before anything runs
    catalogue = spec_catalogue(args.spec, ResilientStore(settings.cache), settings)  # once: the import, the report
    if args.address is not None:
        if args.dry_run:
            print("error: --dry-run reads locally: leave out --address", file=sys.stderr)
            return 2
        report: ImportReport | None = _import_on_cluster(args, settings)
        if report is None:
            return 2
    else:
        directory = model_dir(args)
        if not args.dry_run:
            ensure_model(directory, settings)
        report = import_traffic(args.files, catalogue, settings, host=args.host, prefix=args.prefix, fmt=args.format,
                                progress=_progress_bar(args.files[0]), model_dir=directory, learn=not args.dry_run)
    if args.report_dir is not None:
        from pipeline.learning.arazzo import report_files

        source = args.spec if "://" in args.spec or not Path(args.spec).exists() else str(Path(args.spec).resolve())
        args.report_dir.mkdir(parents=True, exist_ok=True)
        for name, text in report_files(report, catalogue, source).items():
            (args.report_dir / name).write_text(text)
        progress(f"report written to {args.report_dir}")
    if args.json:
        print_json(report.model_dump(mode="json"))
    else:
        print(report.markdown())
    return 0


_ENDED = ("SUCCEEDED", "FAILED", "STOPPED")


def _import_on_cluster(args: argparse.Namespace, settings: Settings) -> ImportReport | None:
    """The import as a Ray job on the cluster at `args.address`, waited for; its report, or None (said why)."""
    import time

    from pipeline.learning.imports import ImportReport
    from serve.jobs import ModelJobs

    on_cluster = settings.model_copy(update={"learning": settings.learning.model_copy(
        update={"dashboard_url": args.address})})
    jobs = ModelJobs(on_cluster)
    spec = str(Path(args.spec).resolve()) if Path(args.spec).exists() else args.spec
    files = [f if "://" in f else str(Path(f).resolve()) for f in args.files]
    options = {name: value for name, value in (("host", args.host), ("prefix", args.prefix), ("format", args.format),
                                               ("model", args.model and str(Path(args.model).resolve())))
               if value}
    job_id = jobs.submit_file_import(files, spec, options)
    progress(f"import job {job_id} submitted to {args.address}")
    while (status := str(jobs.client.get_job_status(job_id))) not in _ENDED:
        time.sleep(1)
    log = jobs.client.get_job_logs(job_id)
    # The job prints its report as JSON last: an object whose braces start a line.
    if status != "SUCCEEDED" or not (log.startswith("{\n") or "\n{\n" in log):
        print(f"error: import job {job_id} {status.lower()}: {log[-2000:]}", file=sys.stderr)
        return None
    return ImportReport.model_validate_json(log[log.rfind("\n{\n") + 1:])


def _progress_bar(name: str) -> Progress | None:
    """A progress bar on a terminal (requests read; sessions and calls learned beside it); nothing otherwise."""
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    bar = tqdm(unit=" requests", desc=Path(name).name, file=sys.stderr)

    def update(requests: int, sessions: int, labels: int) -> None:
        bar.update(requests - bar.n)
        bar.set_postfix(sessions=sessions, learned=labels, refresh=False)

    return update


def measure_import(args: argparse.Namespace) -> int:
    from ops.import_bench import bench_import, write_traffic

    out: Path = args.out or get_settings().paths.var_dir / "import-bench"
    out.mkdir(parents=True, exist_ok=True)
    report = {}
    for fmt in args.format or ["jsonl", "har"]:
        path = out / f"traffic-{args.requests}.{fmt}"
        if not path.exists():
            progress(f"writing {args.requests} requests as {fmt} to {path}")
            write_traffic(args.spec, args.requests, fmt, path)
        report[fmt] = bench_import(args.spec, path)
    print_json(report)
    return 0
