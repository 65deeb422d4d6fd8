"""The full preparation, as a job on the serving cluster: tune the embedder, train the full ranker on it, then
replace a cold-start champion through the gate and the hot reload retraining uses.

    python -m train.prepare [--job-id ID] [--no-reload] [--json]
    (submitted by `make serve` when it started on a cold-start ranker; `opensesame status` follows it)

The candidate and the champion are compared on the dev cases, each with its own embedder (a holdout matrix holds
the features of one embedder only). The candidate's base data (what retraining adds labels to) is written aside
and takes the place of the champion's only when the candidate is promoted, as its model takes `paths.model_dir`.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from typing import Any

from pipeline.adapters import registry
from pipeline.settings import Settings
from train.embedder_tuning import ensure_embedder
from train.retrain import JobRun, compare, gate, publish, run_job
from train.run import train


def prepare(settings: Settings, job_id: str, reload: bool = True, log: Any = print) -> dict[str, Any]:
    started = time.perf_counter()
    log("[prepare] stage 1/3: the fine-tuned embedder")
    ensure_embedder(settings, log)
    model_dir = settings.paths.model_dir
    staged_model = model_dir.with_name(model_dir.name + ".next")
    base = settings.learning.base_data
    # Object storage has no rename: there the base data is written in place (a refused candidate's included).
    staged_base = base if "://" in base else base.rstrip("/") + ".next"
    staging = settings.model_copy(
        update={"learning": settings.learning.model_copy(update={"base_data": staged_base})}
    )
    log("[prepare] stage 2/3: the full ranker")
    # The gate evaluates it next; the dev suite is `opensesame eval --suite`'s, not the service's, to wait for.
    candidate, report = train(staging, staged_model, log=log, evaluate_dev=False)
    log("[prepare] stage 3/3: the gate")
    champion = registry.champion(settings.registry)
    if champion is None:
        metrics = compare({"candidate": candidate}, None, settings)
        decision = (True, "no champion to compare with")
    else:
        champion_model = registry.load_ranker(champion.uri, settings.registry)
        metrics = compare({"candidate": candidate, "champion": champion_model}, None, settings)
        decision = gate(metrics["candidate"], metrics["champion"], settings.learning.gate_tolerance)
    log(f"[prepare] gate: {'promote' if decision[0] else 'keep the champion'}: {decision[1]}")
    if decision[0]:  # the promoted model's files become the defaults before anything can read the alias
        _replace(staged_model, model_dir)
        if staged_base != base:
            _replace(Path(staged_base), Path(base))
    run = JobRun(name=f"prepare-{job_id}", metrics=registry.report_metrics(report), tags={"stage": "full"},
                 params={"parent": champion.label if champion else "none"})
    published = publish(candidate, settings, job_id, metrics, decision, run, reload, log)
    return {"job_id": job_id, **published, "champion_before": champion.label if champion else None,
            "total_seconds": round(time.perf_counter() - started, 1)}


def _replace(staged: Path, target: Path) -> None:
    shutil.rmtree(target, ignore_errors=True)
    staged.rename(target)


def main(argv: list[str] | None = None) -> int:
    return run_job(prepare, "prepare", __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    sys.exit(main())
