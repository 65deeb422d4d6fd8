"""Learning-to-rank rows as frames: one row per (query, candidate), the layout retraining reads.

Columns: `qid` (one query = one prediction problem; never split across workers), `spec`, `label` (1 for the
call that followed), `weight` (real labels can count more than synthetic ones), then the features by name.
The synthetic base data and the label log both become this layout, so retraining simply concatenates them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.learning.records import decode_features
from pipeline.ranking.features import FEATURE_NAMES, SCHEMA_VERSION


def rows_frame(X: np.ndarray, y: np.ndarray, qids: np.ndarray, specs: np.ndarray, weight: float = 1.0) -> pd.DataFrame:
    frame = pd.DataFrame(X.astype(np.float32), columns=list(FEATURE_NAMES))
    frame.insert(0, "weight", np.float32(weight))
    frame.insert(0, "label", y.astype(np.float32))
    frame.insert(0, "spec", specs)
    frame.insert(0, "qid", qids)
    return frame


def label_rows(labels: pd.DataFrame, weight: float) -> tuple[pd.DataFrame, dict[str, int]]:
    """Rows of every label that can teach the ranker, plus counts of why the others cannot.

    A usable label names a call that was among the candidates (outcome `called` or `accepted`) and carries
    features of this code's schema; 'none', a call outside the pool, or an old schema cannot make a ranked group.
    """
    frames: list[pd.DataFrame] = []
    skipped = {"no_call": 0, "not_in_candidates": 0, "other_schema": 0}
    for label in labels.itertuples(index=False):
        if label.endpoint is None or label.outcome == "none":
            skipped["no_call"] += 1
            continue
        if label.feature_schema != SCHEMA_VERSION:
            skipped["other_schema"] += 1
            continue
        candidates = list(label.candidates)
        if label.endpoint not in candidates:
            skipped["not_in_candidates"] += 1
            continue
        X = decode_features(label.features, len(candidates))
        y = np.array([c == label.endpoint for c in candidates], dtype=np.float32)
        n = len(candidates)
        frames.append(rows_frame(X, y, np.full(n, label.prediction_id), np.full(n, label.spec_id), weight))
    if not frames:
        return rows_frame(np.zeros((0, len(FEATURE_NAMES))), np.zeros(0), np.zeros(0, str), np.zeros(0, str)), skipped
    return pd.concat(frames, ignore_index=True), skipped


def split_frame(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """X, y, weights and group sizes, rows grouped by qid in order of first appearance (what LightGBM wants)."""
    order = pd.factorize(frame["qid"])[0]
    frame = frame.iloc[np.argsort(order, kind="stable")]
    sizes = frame.groupby("qid", sort=False).size().to_numpy()
    # na_value: Ray Data hands over Arrow-backed (nullable) columns, whose missing values are NA, not NaN.
    X = frame[list(FEATURE_NAMES)].to_numpy(dtype=np.float32, na_value=np.nan)
    return X, frame["label"].to_numpy(np.float32), frame["weight"].to_numpy(np.float32), sizes
