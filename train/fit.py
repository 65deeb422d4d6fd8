"""Fitting the LightGBM lambdarank ranker and calibrating its scores."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import lightgbm as lgb
import numpy as np

from pipeline.ranking.embedding import STOCK_EMBEDDER
from pipeline.ranking.features import CATEGORICAL, FEATURE_NAMES, SCHEMA_VERSION
from pipeline.ranking.model import Calibration, ModelMeta, RankerModel
from pipeline.ranking.stats import PatternStats
from pipeline.settings import FitSettings
from train.dataset import Dataset
from train.metrics import summary


def lgb_params(config: FitSettings, seed: int, threads: int) -> dict[str, Any]:
    return {
        "objective": "lambdarank",
        "metric": "ndcg",
        "eval_at": [1, 3, 5],
        "num_leaves": config.num_leaves,
        "learning_rate": config.learning_rate,
        "min_data_in_leaf": config.min_data_in_leaf,
        "feature_fraction": config.feature_fraction,
        "bagging_fraction": config.bagging_fraction,
        "bagging_freq": 1,
        "lambda_l2": config.lambda_l2,
        "lambdarank_truncation_level": config.lambdarank_truncation_level,
        "seed": seed,
        # The same data gives the same model on any machine: tests assert exact top-1s of a model they train.
        "deterministic": True,
        "force_col_wise": True,
        "num_threads": threads,
        "verbosity": -1,
    }


def lgb_dataset(
    X: np.ndarray,
    y: np.ndarray,
    group_sizes: np.ndarray,
    weight: np.ndarray | None = None,
    reference: lgb.Dataset | None = None,
) -> lgb.Dataset:
    return lgb.Dataset(
        X, label=y, group=group_sizes, weight=weight, feature_name=list(FEATURE_NAMES),
        categorical_feature=list(CATEGORICAL), reference=reference, free_raw_data=False,
    )


def group_ranks(scores: np.ndarray, y: np.ndarray, group_sizes: np.ndarray) -> list[int]:
    """Rank of the positive within each group under `scores` (every group has one)."""
    ranks = []
    start = 0
    for size in group_sizes:
        s, labels = scores[start : start + size], y[start : start + size]
        positive = s[labels > 0].max()
        ranks.append(int((s > positive).sum()) + 1)
        start += size
    return ranks


def calibrate(raw: np.ndarray, labels: np.ndarray, group_sizes: np.ndarray, recall: float) -> Calibration:
    """The softmax temperature and outside logit that make held-out requests' scores likeliest (maximum
    likelihood): each request's next call is its positive candidate, and for every request whose pool held it
    (`recall` of them) (1 - recall) / recall more requests were answered by none of the candidates."""
    from scipy.optimize import minimize

    starts = np.concatenate([[0], np.cumsum(group_sizes)[:-1]]).astype(int)
    group = np.repeat(np.arange(len(group_sizes)), group_sizes)
    positive = np.full(len(group_sizes), np.nan)
    positive[group[labels > 0]] = raw[labels > 0]
    known = ~np.isnan(positive)
    if not known.any():
        return Calibration()
    missed = (1 - recall) / max(recall, 1e-6)

    def loss(params: np.ndarray) -> float:
        temperature, outside = params
        z = temperature * raw
        top = np.maximum(np.maximum.reduceat(z, starts), outside)
        norm = np.log(np.add.reduceat(np.exp(z - top[group]), starts) + np.exp(outside - top)) + top
        return float(-(np.sum(temperature * positive[known] - norm[known]) + missed * np.sum(outside - norm[known]))
                     / known.sum())

    fitted = minimize(loss, x0=np.array([1.0, 0.0]), method="L-BFGS-B", bounds=[(1e-3, 100.0), (-50.0, 50.0)])
    return Calibration(temperature=float(fitted.x[0]), outside=float(fitted.x[1]))


def model_version(booster: lgb.Booster) -> str:
    return "local-" + hashlib.sha256(booster.model_to_string().encode()).hexdigest()[:12]


def _ablated(X: np.ndarray, names: list[str]) -> np.ndarray:
    """`X` with the columns `names` missing; the model then never splits on them, whatever serving computes."""
    unknown = sorted(set(names) - set(FEATURE_NAMES))
    if unknown:
        raise ValueError(f"training.fit.ablate names no feature: {unknown}; see pipeline/ranking/features.py")
    if not names:
        return X
    out = X.copy()
    out[:, [FEATURE_NAMES.index(n) for n in names]] = np.nan
    return out


def fit_ranker(
    train: Dataset,
    valid: Dataset,
    patterns: PatternStats,
    config: FitSettings,
    seed: int,
    info: dict[str, Any] | None = None,
    embedder: str = STOCK_EMBEDDER,
) -> tuple[RankerModel, dict[str, Any]]:
    started = time.perf_counter()
    train_X, valid_X = _ablated(train.X, config.ablate), _ablated(valid.X, config.ablate)
    train_set = lgb_dataset(train_X, train.y, train.group_sizes)
    valid_set = lgb_dataset(valid_X, valid.y, valid.group_sizes, reference=train_set)
    booster = lgb.train(
        lgb_params(config, seed, threads=2), train_set, num_boost_round=config.rounds, valid_sets=[valid_set], valid_names=["valid"],
        callbacks=[lgb.early_stopping(config.early_stopping, verbose=False)],
    )
    fit_seconds = time.perf_counter() - started
    raw_valid = booster.predict(valid_X, num_iteration=booster.best_iteration)
    calibration = calibrate(raw_valid, valid.y, valid.group_sizes, valid.recall)
    valid_metrics = summary(group_ranks(raw_valid, valid.y, valid.group_sizes))
    report = {
        "fit_seconds": round(fit_seconds, 1),
        "best_iteration": booster.best_iteration,
        "train_groups": len(train.group_sizes),
        "valid_groups": len(valid.group_sizes),
        "train_rows": len(train.y),
        "valid_candidate_recall": round(valid.recall, 4),
        "valid": valid_metrics,
    }
    meta = ModelMeta(
        schema_version=SCHEMA_VERSION,
        feature_names=list(FEATURE_NAMES),
        version=model_version(booster),
        calibration=calibration,
        patterns=patterns,
        embedder=embedder,
        info={**(info or {}), **report},
    )
    return RankerModel(booster, meta), report
