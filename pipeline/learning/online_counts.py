"""Online adaptation: per-spec transition counts in Redis, updated by every label as it arrives, and the latest
labels of each (spec, previous operation) remembered with their prompt's vector.

The `transitions` source reads them through `TransitionCounts`, so a habit that users show today moves the
ranking within `counts_refresh_s`, long before a retrained model ships; the remembered prompts make it the habit
of requests like the one asked now (`pipeline.ranking.stats.recall_counts`). Each replica caches a spec's counts
for that long: one Redis round trip per (spec, previous operation) per refresh, not per request.
"""

from __future__ import annotations

import numpy as np

from pipeline.cache import LRU, SharedStore
from pipeline.ranking.stats import PromptVector, recall_counts
from pipeline.settings import RecallSettings, Settings


def counts_key(spec_hash: str, previous: str) -> str:
    return f"counts:{spec_hash}:{previous}"


def recall_key(space: str, spec_hash: str, previous: str) -> str:
    return f"recall:{space}:{spec_hash}:{previous}"


def _encode(following: str, vector: np.ndarray) -> bytes:
    return following.encode() + b"\0" + vector.astype(np.float16).tobytes()


def _decode(raw: bytes) -> tuple[str, np.ndarray]:
    following, _, vector = raw.partition(b"\0")
    return following.decode(), np.frombuffer(vector, dtype=np.float16)


class OnlineTransitions:
    """`TransitionCounts` over Redis hashes (`counts:<spec>:<previous>` -> {following: count}) and capped lists
    (`recall:<embedder>:<spec>:<previous>` -> the latest labels with their prompt vectors)."""

    def __init__(
        self, store: SharedStore, refresh_s: float, recall: RecallSettings, capacity: int = 4096,
        recall_capacity: int = 512, ttl_s: int | None = None,
    ) -> None:
        self._store = store
        self._refresh_s = refresh_s
        self._recall = recall
        self._ttl_s = ttl_s
        self._cache: LRU[dict[str, int]] = LRU(capacity)
        self._remembered: LRU[list[tuple[str, np.ndarray]]] = LRU(recall_capacity)

    def next_counts(self, spec_hash: str, previous: str, prompt: PromptVector | None = None) -> dict[str, float]:
        key = counts_key(spec_hash, previous)
        counts = self._cache.get(key)
        if counts is None:
            # Redis down: no per-spec evidence for a moment; the spec-agnostic patterns carry the source.
            counts = self._store.fields(key) or {}
            self._cache.set(key, counts, self._refresh_s)
        remembered: list[tuple[str, np.ndarray]] = []
        if prompt is not None and counts and self._recall.per_key > 0:
            key = recall_key(prompt.space, spec_hash, previous)
            cached = self._remembered.get(key)
            if cached is None:
                cached = [_decode(raw) for raw in self._store.items(key) or []]
                self._remembered.set(key, cached, self._refresh_s)
            remembered = cached
        return recall_counts(counts, remembered, prompt.vector if prompt else None, self._recall)

    def add(
        self, spec_hash: str, previous: str, following: str, weight: int = 1, prompt: PromptVector | None = None
    ) -> None:
        self._store.incr_fields(counts_key(spec_hash, previous), {following: weight}, self._ttl_s)
        if prompt is not None and self._recall.per_key > 0:
            self._store.push_capped(recall_key(prompt.space, spec_hash, previous), _encode(following, prompt.vector),
                                    self._recall.per_key, self._ttl_s)


def online_transitions(store: SharedStore, settings: Settings) -> OnlineTransitions | None:
    """The counts every replica shares, when Redis is configured and online adaptation is on; else None. A spec's
    counts live as long as its catalogue after their last update: Redis keeps no counts of specs nobody uses."""
    if not (store.configured and settings.learning.online_counts):
        return None
    cache = settings.cache
    return OnlineTransitions(store, settings.learning.counts_refresh_s, settings.learning.recall, cache.count_rows,
                             cache.recall_rows, cache.catalogue_ttl_s)
