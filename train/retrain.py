"""Retraining job: the label log + the synthetic base data -> Ray Train LightGBM -> MLflow -> gate -> reload.

    python -m train.retrain [--job-id ID] [--no-reload] [--json]
    ray job submit -- python -m train.retrain        # on a cluster (RAY_ADDRESS is set for the job)

1. Labels: the Parquet log (read with pyarrow in the driver, which groups them), one label per prediction,
   turned into ranked groups from the candidate features stored with each prediction; added to the synthetic
   base matrix (read with ray.data) with `feedback_weight`.
2. Fit: `LightGBMTrainer`; every worker sees the whole dataset (`datasets_to_split=[]`) and keeps the query
   groups whose id hashes to its rank, so a group is never split. Rounds: the champion's best iteration, so
   nothing is tuned on the holdout the gate then reads.
3. Register the candidate in MLflow (always: a refused model stays inspectable), compare it with `@champion`
   on the frozen holdout (held-out specs of the base data) and on the dev cases, and move the alias only when
   no gate metric trails by more than `gate_tolerance`. The decision is tagged on the version.
4. Reload: on promotion, a `user_config` change to the running Serve app makes every Ranker replica load the
   new champion in place; replicas that miss it converge through their alias check.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.adapters import registry
from pipeline.adapters.label_log import describe, read_labels
from pipeline.errors import NoChampionError, OpenSesameError, RetrainConfigError, TrainingDataError
from pipeline.learning.training_rows import label_rows, split_frame
from pipeline.ranking.features import FEATURE_NAMES, SCHEMA_VERSION
from pipeline.ranking.model import ModelMeta, RankerModel
from pipeline.settings import LearningSettings, Settings, get_settings
from train.base_data import base_path, read_part
from train.fit import calibrate, group_ranks, lgb_dataset, lgb_params, model_version
from train.metrics import summary

GATE_METRICS = ("hit@1", "hit@3", "ndcg@5")
READ_CPUS = 0.5  # per Ray Data read task: a smaller share starts a Python worker per 0.1 CPU on a small node
LIST_CPUS = 1.0  # Ray Data's file listing always asks for a whole CPU
# Ray Data's Parquet listing starts 32 footer-reading actors per read by default, each a Python worker: on a
# small node that startup dominated the job (docs/benchmarks.md). The base matrix is one file.
RAY_DATA_ENV = {"RAY_DATA_PARQUET_FOOTER_NUM_ACTORS": "2"}


def read_parquet(path: str) -> Any:
    import ray.data

    return ray.data.read_parquet(path, ray_remote_args={"num_cpus": READ_CPUS})


def owner(qid: str, world: int) -> int:
    """The worker that trains on query group `qid` (stable across processes, unlike hash())."""
    return zlib.crc32(qid.encode()) % world


def _train_loop(config: dict[str, Any]) -> None:
    """One Ray Train worker: its query groups -> LightGBM (distributed through LightGBM's own network when
    there are several workers) -> one report at the end, with the model as checkpoint from rank 0."""
    import lightgbm as lgb
    import ray.train
    from ray.train.lightgbm import get_network_params, normalize_pandas_for_lightgbm

    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    frame = normalize_pandas_for_lightgbm(ray.train.get_dataset_shard("train").materialize().to_pandas())
    mine = frame[[owner(q, world) == rank for q in frame["qid"]]]
    X, y, weight, sizes = split_frame(mine)
    params = {**config["params"], **(get_network_params() if world > 1 else {})}
    booster = lgb.train(params, lgb_dataset(X, y, sizes, weight), num_boost_round=config["rounds"])
    metrics = {"rows": len(y), "groups": len(sizes)}
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = None
        if rank == 0:
            booster.save_model(str(Path(tmp) / "model.txt"))
            checkpoint = ray.train.Checkpoint.from_directory(tmp)
        ray.train.report(metrics, checkpoint=checkpoint)


def _free_cpus(needed: float, wait_s: float = 15.0) -> float:
    """CPUs free on the cluster, waiting up to `wait_s` for `needed`: the actors of a training run that just
    ended (a previous job in the same cluster) give theirs back asynchronously."""
    import ray

    deadline = time.monotonic() + wait_s
    while True:
        free = ray.available_resources().get("CPU", 0)
        if free >= needed or time.monotonic() >= deadline:
            return free
        time.sleep(0.5)


def fit_distributed(dataset: Any, settings: Settings, rounds: int, run_name: str) -> tuple[Any, dict[str, Any]]:
    import lightgbm as lgb
    import ray
    import ray.train
    from ray.train.lightgbm import LightGBMTrainer

    learning = settings.learning
    reserved = learning.train_workers * learning.worker_cpus
    # On an autoscaling cluster the request itself makes room (the autoscaler adds a node); elsewhere waiting for
    # CPUs that will never come would hang the job, so it refuses with what to change.
    free = math.inf if learning.cluster_autoscales else _free_cpus(reserved + LIST_CPUS)
    if reserved + LIST_CPUS > free:
        # Ray Data reads with tasks of its own: workers holding the CPUs they need would wait for them forever.
        raise RetrainConfigError(
            f"{learning.train_workers} Ray Train worker(s) x {learning.worker_cpus} CPU plus {LIST_CPUS:g} for Ray "
            f"Data's reads do not fit the {free:g} CPUs free on the cluster: lower learning.worker_cpus or "
            "train_workers, or the replicas' num_cpus"
        )
    threads = max(1, int(learning.worker_cpus))
    trainer = LightGBMTrainer(
        _train_loop,
        train_loop_config={
            "params": lgb_params(settings.training.fit, settings.training.seed, threads),
            "rounds": rounds,
        },
        scaling_config=ray.train.ScalingConfig(
            num_workers=learning.train_workers, resources_per_worker={"CPU": learning.worker_cpus}
        ),
        datasets={"train": dataset},
        dataset_config=ray.train.DataConfig(datasets_to_split=[]),  # whole groups: each worker picks its own
        run_config=ray.train.RunConfig(
            name=run_name, storage_path=learning.storage_uri or str(settings.paths.var_dir.resolve() / "ray_results")
        ),
    )
    result = trainer.fit()
    with result.checkpoint.as_directory() as directory:
        booster = lgb.Booster(model_file=str(Path(directory) / "model.txt"))
    return booster, dict(result.metrics or {})


def holdout_metrics(model: RankerModel, X: np.ndarray, y: np.ndarray, sizes: np.ndarray) -> dict[str, float]:
    return summary(group_ranks(model.raw_scores(X), y, sizes))


def dev_metrics(model: RankerModel, settings: Settings, embedder: Any) -> dict[str, float]:
    from pipeline.runtime import build_predictor
    from train.evaluate import evaluate, load_cases

    cases_path = settings.training.dev_cases
    predictor = build_predictor(settings, model=model, embedder=embedder)
    report = evaluate(predictor, load_cases(cases_path), cases_path.parent, settings.fetch)
    return {m: report[m] for m in ("hit@1", "hit@3", "hit@5", "mrr", "ndcg@5")}


def gate(candidate: dict[str, float], champion: dict[str, float], tolerance: float) -> tuple[bool, str]:
    worse = [
        f"{name} {candidate[name]:.4f} < {champion[name]:.4f} - {tolerance}"
        for name in sorted(candidate)
        if name.split(".", 1)[1] in GATE_METRICS and candidate[name] < champion[name] - tolerance
    ]
    if worse:
        return False, "worse than the champion: " + "; ".join(worse)
    compared = sorted({name.split(".", 1)[0] for name in candidate})
    return True, f"not worse than the champion on {' and '.join(compared)} (tolerance {tolerance})"


def _init_ray() -> None:
    import ray

    if ray.is_initialized():
        return
    # Merged into a submitted job's own runtime env (distinct keys), so every task of this job sees it.
    runtime_env = {"env_vars": RAY_DATA_ENV}
    if os.environ.get("RAY_ADDRESS"):  # a submitted job: join its cluster
        ray.init(log_to_driver=False, runtime_env=runtime_env)
        return
    # Standalone: a private cluster (no token needed on loopback; Redis keeps its port 6379).
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(address="local", include_dashboard=False, log_to_driver=False, runtime_env=runtime_env)


def training_dataset(learning: LearningSettings, log: Any) -> tuple[Any, pd.DataFrame, dict[str, int]]:
    """The base matrix plus the label log's groups, as one Ray Dataset; the labels and why some were skipped."""
    import ray.data

    train_base = base_path(learning.base_data, "train")
    if not Path(train_base).exists() and "://" not in train_base:
        raise TrainingDataError(f"no base training data at {train_base}: `opensesame train` writes it")
    labels = read_labels(learning.log_uri)
    rows, skipped = label_rows(labels, learning.feedback_weight)
    log(f"[retrain] {len(labels)} labels -> {rows['qid'].nunique() if len(rows) else 0} groups; skipped {skipped}")
    base = read_parquet(train_base)
    if not len(rows):
        return base, labels, skipped
    # The base file's Arrow schema for the label rows too: a union needs identical schemas.
    table = pa.Table.from_pandas(rows, schema=pq.read_schema(train_base), preserve_index=False)
    return base.union(ray.data.from_arrow(table)), labels, skipped


def compare(
    models: dict[str, RankerModel], holdout: tuple[np.ndarray, np.ndarray, np.ndarray] | None, settings: Settings
) -> dict[str, dict[str, float]]:
    """Each model's metrics on the frozen holdout (X, y, group sizes; None when the models' features come from
    different embedders, so one matrix cannot hold both) and on the dev cases, each with its own embedder."""
    metrics: dict[str, dict[str, float]] = {name: {} for name in models}
    if holdout is not None:
        for name, model in models.items():
            metrics[name].update({f"holdout.{k}": v for k, v in holdout_metrics(model, *holdout).items()})
    if not settings.training.dev_cases.exists():  # never a gate that silently checks less
        raise TrainingDataError(
            f"the gate's dev cases {settings.training.dev_cases} do not exist: set training.dev_cases (the code "
            "ships train/devsets/tmdb_cases.jsonl)"
        )
    from pipeline.adapters.minilm import MiniLMEmbedder, load_named

    embedders: dict[str, MiniLMEmbedder] = {}
    for name, model in models.items():
        wanted = model.meta.embedder
        if wanted not in embedders:
            embedders[wanted] = load_named(wanted, settings.embedder)
        metrics[name].update({f"dev.{k}": v for k, v in dev_metrics(model, settings, embedders[wanted]).items()})
    return metrics


@dataclass(frozen=True, slots=True)
class JobRun:
    """What a model job's MLflow run and version record beyond the gate's decision."""

    name: str
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


def publish(
    model: RankerModel,
    settings: Settings,
    job_id: str,
    metrics: dict[str, dict[str, float]],
    decision: tuple[bool, str],
    run: JobRun,
    reload: bool,
    log: Any,
) -> dict[str, Any]:
    """Registers a job's candidate (always: a refused model stays inspectable), tagged with the job id and the
    gate's decision; on promotion moves the alias and reloads the running service."""
    promoted, reason = decision
    with tempfile.TemporaryDirectory(prefix="opensesame-candidate-") as tmp:
        model.save(Path(tmp))
        version = registry.register(
            Path(tmp),
            settings.registry,
            metrics={
                **{k.replace("@", "_at_"): v for k, v in metrics["candidate"].items()},
                **{f"champion.{k}".replace("@", "_at_"): v for k, v in metrics.get("champion", {}).items()},
                **run.metrics,
            },
            params=run.params,
            run_name=run.name,
            tags={
                "job_id": job_id,
                "promoted": str(promoted).lower(),
                "gate_reason": reason[:4000],
                "gate_metrics": json.dumps(metrics),
                **run.tags,
            },
        )
    promoted_at = None
    if promoted:
        registry.promote(version, settings.registry.alias, settings.registry)
        promoted_at = time.time()
        registry.tag_version(version, {"promoted_at": f"{promoted_at:.3f}"}, settings.registry)
    reloaded = None
    if promoted and reload:
        from pipeline.adapters.serve_api import reload_ranker

        reloaded = reload_ranker(settings.learning.dashboard_url, version.version)
        log(f"[{run.name}] reload: {reloaded}")
    return {"model_version": version.label, "promoted": promoted, "promoted_at": promoted_at, "reason": reason,
            "metrics": metrics, "reload": reloaded}


def retrain(settings: Settings, job_id: str, reload: bool = True, log: Any = print) -> dict[str, Any]:
    started = time.perf_counter()
    learning = settings.learning
    champion = registry.champion(settings.registry)
    if champion is None:
        raise NoChampionError(
            f"no @{settings.registry.alias} of {settings.registry.model_name} in {settings.registry.tracking_uri}: "
            "register the default ranker first (make serve or python -m ops.launch does)"
        )
    champion_model = registry.load_ranker(champion.uri, settings.registry)
    _init_ray()
    dataset, labels, skipped = training_dataset(learning, log)

    best = int(champion_model.meta.info.get("best_iteration") or 0)
    rounds = min(best, settings.training.fit.rounds) if best > 0 else settings.training.fit.rounds
    fit_started = time.perf_counter()
    booster, train_metrics = fit_distributed(dataset, settings, rounds, run_name=f"retrain-{job_id}")
    fit_s = time.perf_counter() - fit_started
    log(f"[retrain] Ray Train fit: {fit_s:.1f} s, {rounds} rounds, {train_metrics}")

    X_hold, y_hold, _, sizes_hold = split_frame(read_part(learning.base_data, "holdout"))
    info = {"job_id": job_id, "parent": champion.label, "rounds": rounds, "best_iteration": rounds,
            "labels": describe(labels), "label_groups_skipped": skipped}
    candidate = _candidate(booster, champion_model, X_hold, y_hold, sizes_hold, info)
    metrics = compare({"candidate": candidate, "champion": champion_model}, (X_hold, y_hold, sizes_hold), settings)
    decision = gate(metrics["candidate"], metrics["champion"], learning.gate_tolerance)
    log(f"[retrain] gate: {'promote' if decision[0] else 'keep the champion'}: {decision[1]}")
    run = JobRun(
        name=f"retrain-{job_id}",
        metrics={"fit_seconds": fit_s, "labels": float(len(labels))},
        params={
            "rounds": rounds,
            "feedback_weight": learning.feedback_weight,
            "train_workers": learning.train_workers,
            "parent": champion.label,
        },
    )
    published = publish(candidate, settings, job_id, metrics, decision, run, reload, log)
    return {
        "job_id": job_id,
        **published,
        "champion_before": champion.label,
        "labels": describe(labels),
        "label_groups_skipped": skipped,
        "rounds": rounds,
        "fit_seconds": round(fit_s, 1),
        "total_seconds": round(time.perf_counter() - started, 1),
    }


def _candidate(booster: lgb.Booster, champion: RankerModel, X_hold: np.ndarray, y_hold: np.ndarray,
               sizes_hold: np.ndarray, info: dict[str, Any]) -> RankerModel:
    """The retrained booster as a model: calibrated on the holdout (whose pools held the next call as often as
    when the champion was trained on it), with the champion's patterns and embedder (the base features were
    computed with them, and so were the labels')."""
    meta = ModelMeta(
        schema_version=SCHEMA_VERSION,
        feature_names=list(FEATURE_NAMES),
        version=model_version(booster),
        calibration=calibrate(booster.predict(X_hold), y_hold, sizes_hold,
                              float(champion.meta.info.get("valid_candidate_recall", 1.0))),
        patterns=champion.patterns,
        embedder=champion.meta.embedder,
        info=info,
    )
    return RankerModel(booster, meta)


def run_job(job: Callable[..., dict[str, Any]], kind: str, description: str, argv: list[str] | None) -> int:
    """The command line of a model job (`python -m train.<kind>`): its id, whether it reloads the service, its
    report as JSON on stdout and its progress on stderr."""
    parser = argparse.ArgumentParser(prog=f"python -m train.{kind}", description=description)
    parser.add_argument("--job-id", default=None, help="id tagged on the MLflow run and version (default: new)")
    parser.add_argument("--no-reload", action="store_true", help="promote without touching a running service")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    job_id = args.job_id or f"{kind}-{uuid.uuid4().hex[:12]}"
    try:
        result = job(
            get_settings(), job_id, reload=not args.no_reload, log=lambda line: print(line, file=sys.stderr, flush=True)
        )
    except OpenSesameError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=None if args.json else 1))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_job(retrain, "retrain", __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    sys.exit(main())
