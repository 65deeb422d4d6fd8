"""`opensesame import` and `import-bench`: learn an API's existing traffic, and how fast that reads."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ops.commands.common import Commands, add_model, ensure_model, model_dir, print_json, progress, settings_of
from pipeline.settings import get_settings

if TYPE_CHECKING:
    from pipeline.learning.imports import Progress


def register(commands: Commands) -> None:
    importer = commands.add_parser("import", help="learn an API's existing traffic (HAR, OpenTelemetry OTLP JSON, "
                                   "Kong / Envoy / API Gateway JSON logs, nginx combined logs): each session's calls "
                                   "become labels, as feedback would")
    importer.add_argument("file", help="the traffic file (gzipped or not); its format is detected")
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

    settings, directory, path = settings_of(args), model_dir(args), Path(args.file)
    if not path.is_file():
        print(f"error: {path} is not a file: give the HAR, OTLP JSON or log file to import", file=sys.stderr)
        return 2
    if not args.dry_run:
        ensure_model(directory, settings)
    catalogue = spec_catalogue(args.spec, ResilientStore(settings.cache), settings)  # once: the import, the report
    report = import_traffic(path, catalogue, settings, host=args.host, prefix=args.prefix, fmt=args.format,
                            progress=_progress_bar(path), model_dir=directory, learn=not args.dry_run)
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


def _progress_bar(path: Path) -> Progress | None:
    """A progress bar on a terminal (requests read; sessions and calls learned beside it); nothing otherwise."""
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    bar = tqdm(unit=" requests", desc=path.name, file=sys.stderr)

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
