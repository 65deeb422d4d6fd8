"""`POST /admin/import`'s job on the Ray cluster: learn an uploaded traffic file, write its report beside it.

    python -m train.import_job --job-id import-... --file <upload_dir>/<job id>.upload \
        --catalogue <upload_dir>/<job id>.catalogue.json

The spec comes as the catalogue the service registered, written beside the upload (the job reads no spec store:
it may run while Redis is away). The report (report.json, report.md, arazzo.yaml) goes to
`<imports.upload_dir>/<job id>/`, where `GET /admin/import/{job_id}` reads it. The upload holds the raw traffic
(tokens, cookies): it is deleted once the import ended, whatever its outcome; a job killed midway leaves it, and
the same file imported again learns only the sessions not yet learned.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.adapters import registry
from pipeline.adapters.minilm import embedder_of
from pipeline.errors import NoChampionError, OpenSesameError
from pipeline.learning.arazzo import report_files
from pipeline.runtime import import_traffic
from pipeline.settings import get_settings
from pipeline.spec.catalogue import Catalogue
from pipeline.traffic.formats import FORMATS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--job-id", required=True)
    parser.add_argument("--file", type=Path, required=True)
    parser.add_argument("--catalogue", type=Path, required=True, help="the registered spec's catalogue (JSON)")
    parser.add_argument("--host")
    parser.add_argument("--prefix")
    parser.add_argument("--format", choices=FORMATS)
    args = parser.parse_args(argv)
    settings = get_settings()
    target = settings.imports.report_dir(args.job_id)
    try:
        # The service's champion predicts each step, as it answers /predict.
        champion = registry.champion(settings.registry)
        if champion is None:
            raise NoChampionError(f"no @{settings.registry.alias} model in the registry to predict with: "
                                  "register one first (opensesame bootstrap)")
        model = registry.load_ranker(champion.uri, settings.registry)
        embedder = embedder_of(model.meta.embedder, settings.embedder)
        catalogue = Catalogue.model_validate_json(args.catalogue.read_text())
        report = import_traffic(args.file, catalogue, settings, host=args.host, prefix=args.prefix, fmt=args.format,
                                model=model, embedder=embedder)
        target.mkdir(parents=True, exist_ok=True)
        # The spec where it came from when it was fetched; else its id here (a URI all the same).
        source = catalogue.source if "://" in catalogue.source else f"spec:{catalogue.content_hash}"
        for name, text in report_files(report, catalogue, source).items():
            (target / name).write_text(text)
        print(report.markdown())
    except OpenSesameError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        args.file.unlink(missing_ok=True)
        args.catalogue.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
