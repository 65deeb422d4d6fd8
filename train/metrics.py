"""Ranking metrics for one relevant answer per problem. `rank` is 1-based, None when it was not ranked."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

# What ranking decisions are taken on: a verdict against the best peer, a change before and after, an online
# replay (hit@5 and NDCG@5 follow from them).
VERDICT_METRICS = ("hit@1", "hit@3", "mrr")


def hit_at(ranks: Sequence[int | None], k: int) -> float:
    return sum(1 for r in ranks if r is not None and r <= k) / len(ranks) if ranks else 0.0


def mrr(ranks: Sequence[int | None]) -> float:
    return sum(1.0 / r for r in ranks if r is not None) / len(ranks) if ranks else 0.0


def ndcg_at(ranks: Sequence[int | None], k: int) -> float:
    """With one relevant item the ideal DCG is 1, so NDCG is 1/log2(rank + 1) inside the cut-off."""
    return sum(1.0 / math.log2(r + 1) for r in ranks if r is not None and r <= k) / len(ranks) if ranks else 0.0


def calibration_error(top_scores: Sequence[float], hits: Sequence[bool], bins: int = 10) -> float:
    """Expected calibration error of the top-1 score: over `bins` equal-width bins of [0, 1], how far each bin's
    mean score is from how often its first answer was the next call, weighted by the bin's share of the cases."""
    if not top_scores:
        return 0.0
    scores, right = np.asarray(top_scores, dtype=float), np.asarray(hits, dtype=float)
    which = np.minimum((scores * bins).astype(int), bins - 1)
    error = 0.0
    for b in np.unique(which):
        inside = which == b
        error += inside.mean() * abs(scores[inside].mean() - right[inside].mean())
    return float(error)


def summary(ranks: Sequence[int | None]) -> dict[str, float]:
    return {
        "hit@1": round(hit_at(ranks, 1), 4),
        "hit@3": round(hit_at(ranks, 3), 4),
        "hit@5": round(hit_at(ranks, 5), 4),
        "mrr": round(mrr(ranks), 4),
        "ndcg@5": round(ndcg_at(ranks, 5), 4),
    }
