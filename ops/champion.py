"""The registry's champion ranker, made when there is none: what `make serve`, the bootstrap job and the demo need
before they serve. Training and registering pull in LightGBM, pandas, MLflow and torch: `make serve` runs it in a
child process, so that its own process, alive as long as the service, does not hold them."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from pipeline.adapters import registry
from pipeline.adapters.minilm import embedder_name, is_tuned, servable
from pipeline.ranking.embedding import STOCK_EMBEDDER
from pipeline.ranking.features import SCHEMA_VERSION
from pipeline.ranking.model import model_signature
from pipeline.settings import Settings
from train.embedder_tuning import ensure_embedder
from train.run import train

COLD_START = "cold-start"  # the registry's `stage` tag of a cold-start ranker


class Champion(BaseModel):
    label: str
    complete: bool  # trained in full on the configured embedder: nothing left to prepare


def ensure_champion(settings: Settings, log: Any = print, cold_start: bool = False) -> Champion:
    """The registry's champion ranker; registers `paths.model_dir` or trains one when there is none, or when the
    champion was trained on another feature schema than this code computes (an upgrade) or on an embedder it
    cannot serve.

    Without `cold_start` the champion is the full model on the configured embedder (tuned first if need be).
    With it, whatever serves at once: a champion or `paths.model_dir` on any embedder this machine has, else a
    cold-start ranker (`training.cold_start`) on the packaged MiniLM; `complete` says whether the full
    preparation is still to come (`train.prepare`)."""
    if not cold_start:
        ensure_embedder(settings, log)
    full = _full_embedder(settings)
    accepted = set(servable(settings.embedder)) if cold_start else {full}
    current = registry.champion(settings.registry)
    if current is not None:
        tags = registry.version_tags(current, settings.registry)
        # Versions registered before the embedder tag were all trained on the packaged MiniLM.
        found = (tags.get(registry.SCHEMA_TAG, "unknown"), tags.get(registry.EMBEDDER_TAG, STOCK_EMBEDDER))
        if found[0] == SCHEMA_VERSION and found[1] in accepted:
            return Champion(label=current.label, complete=found[1] == full and tags.get("stage") != COLD_START)
        log(f"champion {current.label} has feature schema {found[0]} and embedder {found[1]}; "
            f"this service computes {SCHEMA_VERSION} with {sorted(accepted)}")
    model_dir = settings.paths.model_dir
    signature = model_signature(model_dir)
    if signature is not None and signature[0] == SCHEMA_VERSION and signature[1] in accepted:
        report_path = model_dir / "report.json"
        report = json.loads(report_path.read_text()) if report_path.exists() else {}
        stage = "full" if signature[1] == full else COLD_START
    elif cold_start:
        log(f"no ranker of this schema in the registry or in {model_dir}: training a cold-start ranker on "
            f"{settings.training.cold_start.specs} specs with the packaged MiniLM (a minute or two)")
        model_dir = settings.paths.var_dir / "model-cold-start"  # paths.model_dir only ever holds a full model
        _, report = train(cold_start_settings(settings), model_dir, log=log, evaluate_dev=False)
        stage = COLD_START
    else:
        log(f"no ranker of this schema and embedder in the registry or in {model_dir}: training the default one "
            "(about 8 minutes on 2 cores)")
        _, report = train(settings, model_dir, log=log)
        stage = "full"
    version = registry.register(
        model_dir,
        settings.registry,
        metrics=registry.report_metrics(report),
        alias=settings.registry.alias,
        run_name="default-ranker" if stage == "full" else "cold-start-ranker",
        tags={"stage": stage},
    )
    log(f"registered {version.label} ({stage}) as @{settings.registry.alias}")
    return Champion(label=version.label, complete=stage == "full")


def cold_start_settings(settings: Settings) -> Settings:
    """The full settings with the cold-start ranker's training: a sample of specs, fewer sessions, the packaged
    MiniLM."""
    cold = settings.training.cold_start
    training = settings.training.model_copy(update={"max_specs": cold.specs, "scale": cold.scale})
    embedder = settings.embedder.model_copy(update={"model_dir": None})
    return settings.model_copy(update={"training": training, "embedder": embedder})


def _full_embedder(settings: Settings) -> str | None:
    """The name of the embedder the full model is trained on, once it exists (None: still to be tuned)."""
    tuned = settings.embedder.model_dir
    if tuned is not None and not is_tuned(tuned):
        return None
    return embedder_name(settings.embedder)
