"""Online quality from labels: where the called operation stood in a model's ranking, per model version.

Every label is counted for the version that answered (role "champion"); when a shadow model also ranked that
prediction (see `ShadowRanking`), the same label is counted for the shadow's ranking too, and for the pair, so
that champion and shadow are compared on exactly the same predictions.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Literal

from pydantic import BaseModel, Field

from pipeline.cache import SharedStore

RankBucket = Literal["1", "2-3", "4+", "missed", "none"]


def rank_bucket(endpoint: str | None, ranking: list[str]) -> RankBucket:
    """'none': nothing was called; 'missed': the called operation is not in the ranking."""
    if endpoint is None:
        return "none"
    if endpoint not in ranking:
        return "missed"
    rank = ranking.index(endpoint) + 1
    return "1" if rank == 1 else "2-3" if rank <= 3 else "4+"


class ShadowRanking(BaseModel):
    """What a shadow model answered for one prediction (stored beside it, with its TTL)."""

    model_version: str
    predicted: list[str]


def shadow_key(prediction_id: str) -> str:
    return f"shadow:{prediction_id}"


class Acceptance(BaseModel):
    labels: int = Field(..., description="labels counted (every outcome, 'none' included)")
    at1: float = Field(..., description="share of labels whose operation the model ranked first")
    at3: float = Field(..., description="share of labels whose operation the model ranked in its top 3")


def _acceptance(counts: dict[str, int], prefix: str) -> Acceptance:
    n = counts.get(f"{prefix}n", 0)
    top1, top3 = counts.get(f"{prefix}1", 0), counts.get(f"{prefix}1", 0) + counts.get(f"{prefix}2-3", 0)
    return Acceptance(labels=n, at1=round(top1 / n, 4) if n else 0.0, at3=round(top3 / n, 4) if n else 0.0)


class AcceptanceTally:
    """Acceptance counts kept in the shared store (Redis hashes, summed over every replica); while Redis is off
    the counts of this process alone. Labels of outcome 'none' count as misses."""

    def __init__(self, store: SharedStore) -> None:
        self._store = store
        self._local: dict[str, Counter[str]] = {}
        self._lock = threading.Lock()

    def add(self, version: str, bucket: RankBucket, shadow: tuple[str, RankBucket] | None = None) -> None:
        self._incr(f"acceptance:{version}", {"n": 1, bucket: 1})
        if shadow is not None:
            shadow_version, shadow_bucket = shadow
            self._incr(f"acceptance:{shadow_version}", {"n": 1, shadow_bucket: 1})
            self._incr(f"paired:{version}:{shadow_version}",
                       {"champion.n": 1, f"champion.{bucket}": 1, "shadow.n": 1, f"shadow.{shadow_bucket}": 1})

    def _incr(self, key: str, fields: dict[str, int]) -> None:
        if self._store.configured:
            self._store.incr_fields(key, fields)
            return
        with self._lock:
            self._local.setdefault(key, Counter()).update(fields)

    def _counts(self, key: str) -> dict[str, int]:
        if self._store.configured:
            return self._store.fields(key) or {}
        with self._lock:
            return dict(self._local.get(key, {}))

    def of(self, version: str) -> Acceptance:
        return _acceptance(self._counts(f"acceptance:{version}"), "")

    def paired(self, champion: str, shadow: str) -> tuple[Acceptance, Acceptance]:
        """Champion and shadow acceptance on the predictions both ranked."""
        counts = self._counts(f"paired:{champion}:{shadow}")
        return _acceptance(counts, "champion."), _acceptance(counts, "shadow.")
