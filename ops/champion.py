"""The registry's champion ranker, made when there is none: what `make serve`, the bootstrap job and the demo need
before they serve. Training and registering pull in LightGBM, pandas, MLflow and torch: `make serve` runs it in a
child process, so that its own process, alive as long as the service, does not hold them."""

from __future__ import annotations

import json
from typing import Any

from pipeline.adapters import registry
from pipeline.adapters.minilm import embedder_name
from pipeline.ranking.embedding import STOCK_EMBEDDER
from pipeline.ranking.features import SCHEMA_VERSION
from pipeline.ranking.model import model_signature
from pipeline.settings import Settings
from train.embedder_tuning import ensure_embedder
from train.run import train


def ensure_champion(settings: Settings, log: Any = print) -> str:
    """The registry's champion ranker; registers `paths.model_dir` or trains a default model when there is none,
    or when the champion was trained on another feature schema than this code computes (an upgrade) or on
    another embedder than the configured one."""
    ensure_embedder(settings, log)
    wanted = (SCHEMA_VERSION, embedder_name(settings.embedder))
    current = registry.champion(settings.registry)
    if current is not None:
        tags = registry.version_tags(current, settings.registry)
        # Versions registered before the embedder tag were all trained on the packaged MiniLM.
        found = (tags.get(registry.SCHEMA_TAG, "unknown"), tags.get(registry.EMBEDDER_TAG, STOCK_EMBEDDER))
        if found == wanted:
            return current.label
        log(f"champion {current.label} has feature schema {found[0]} and embedder {found[1]}; "
            f"this service computes {wanted[0]} with {wanted[1]}")
    model_dir = settings.paths.model_dir
    if model_signature(model_dir) == wanted:
        report_path = model_dir / "report.json"
        report = json.loads(report_path.read_text()) if report_path.exists() else {}
    else:
        log(f"no ranker of this schema and embedder in the registry or in {model_dir}: training the default one "
            "(about 10 minutes)")
        _, report = train(settings, model_dir, log=log)
    version = registry.register(
        model_dir,
        settings.registry,
        metrics=registry.report_metrics(report),
        alias=settings.registry.alias,
        run_name="default-ranker",
    )
    log(f"registered {version.label} as @{settings.registry.alias}")
    return version.label
