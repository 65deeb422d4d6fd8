"""An import as a job on the Ray cluster: `POST /admin/import`'s upload, or `opensesame import --address`'s files.

    python -m train.import_job --job-id import-... --upload <upload_dir>/<job id>.upload \
        --catalogue <upload_dir>/<job id>.catalogue.json
    python -m train.import_job --job-id import-... --spec SPEC FILE_OR_URI [FILE_OR_URI ...]

An upload comes with the catalogue the service registered, written beside it (the job then reads no spec store:
it may run while Redis is away); it is read in order by this driver, and deleted once the import ended, whatever
its outcome (it holds the raw traffic: tokens, cookies). A job killed midway leaves it, and the same file imported
again learns only the sessions not yet learned. Files or URIs (`s3://`, `gs://`, `file://`, or paths every node
sees) are read and learned over Ray Data on every node (train/import_dataset.py).

The report (report.json, report.md, arazzo.yaml) goes to `<imports.upload_dir>/<job id>/`, where
`GET /admin/import/{job_id}` reads it, and to the job's log (JSON with `--json`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from pipeline.errors import OpenSesameError
from pipeline.learning.arazzo import report_files
from pipeline.learning.imports import ImportReport
from pipeline.settings import Settings, get_settings
from pipeline.spec.catalogue import Catalogue
from pipeline.traffic.formats import FORMATS


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--job-id", required=True)
    parser.add_argument("files", nargs="*", help="traffic files or URIs, read over Ray Data")
    parser.add_argument("--upload", type=Path, help="a file POST /admin/import received, read here and deleted")
    spec = parser.add_mutually_exclusive_group(required=True)
    spec.add_argument("--catalogue", type=Path, help="the registered spec's catalogue (JSON), deleted after")
    spec.add_argument("--spec", help="a spec file, an http(s) URL or the spec_id of a registered spec")
    parser.add_argument("--host")
    parser.add_argument("--prefix")
    parser.add_argument("--format", choices=FORMATS)
    parser.add_argument("--model", type=Path, help="the ranker's directory (default: the registry's champion)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser


def _import(args: argparse.Namespace, settings: Settings) -> tuple[ImportReport, Catalogue, str]:
    from pipeline.adapters.kv import ResilientStore
    from pipeline.runtime import import_secret, import_traffic, spec_catalogue
    from train.import_dataset import import_model, import_over_ray

    if args.catalogue is not None:
        catalogue = Catalogue.model_validate_json(args.catalogue.read_text())
    else:
        catalogue = spec_catalogue(args.spec, ResilientStore(settings.cache), settings)
    # The spec where it came from when it was fetched; else its id here (a URI all the same).
    source = catalogue.source if "://" in catalogue.source else f"spec:{catalogue.content_hash}"
    options = {"host": args.host, "prefix": args.prefix, "fmt": args.format}
    if args.upload is not None:
        from pipeline.adapters.minilm import embedder_of

        # The service's champion predicts each step, as it answers /predict.
        model = import_model(settings, args.model)
        embedder = embedder_of(model.meta.embedder, settings.embedder)
        return import_traffic(args.upload, catalogue, settings, model=model, embedder=embedder, **options), \
            catalogue, source
    import ray

    ray.init(log_to_driver=False)  # the cluster this job was submitted to
    # The job's log is its report: Ray Data's progress lines would bury it.
    ray.data.DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    report = import_over_ray(args.files, catalogue, settings, import_secret(settings), model_dir=args.model, **options)
    return report, catalogue, source


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if (args.upload is None) == (not args.files):
        parser.error("give either --upload or the files to import")
    settings = get_settings()
    target = settings.imports.report_dir(args.job_id)
    try:
        report, catalogue, source = _import(args, settings)
        # Written beside, then renamed: GET /admin/import/{id}, polling, never reads half a report.
        staged = target.with_name(f"{target.name}.partial")
        staged.mkdir(parents=True, exist_ok=True)
        for name, text in report_files(report, catalogue, source).items():
            (staged / name).write_text(text)
        staged.rename(target)
        print(report.model_dump_json(indent=2) if args.json else report.markdown())
    except OpenSesameError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if args.upload is not None:
            args.upload.unlink(missing_ok=True)
        if args.catalogue is not None:
            args.catalogue.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
