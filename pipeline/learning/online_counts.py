"""Online adaptation: per-spec transition counts in Redis, updated by every label as it arrives.

The `transitions` source reads them through `TransitionCounts`, so a habit that users show today moves the
ranking within `counts_refresh_s`, long before a retrained model ships. Each replica caches a spec's counts
for that long: one Redis round trip per (spec, previous operation) per refresh, not per request.
"""

from __future__ import annotations

from pipeline.cache import LRU, SharedStore
from pipeline.settings import Settings


def counts_key(spec_hash: str, previous: str) -> str:
    return f"counts:{spec_hash}:{previous}"


class OnlineTransitions:
    """`TransitionCounts` over Redis hashes (`counts:<spec>:<previous>` -> {following: count})."""

    def __init__(self, store: SharedStore, refresh_s: float, capacity: int = 4096, ttl_s: int | None = None) -> None:
        self._store = store
        self._refresh_s = refresh_s
        self._ttl_s = ttl_s
        self._cache: LRU[dict[str, int]] = LRU(capacity)

    def next_counts(self, spec_hash: str, previous: str) -> dict[str, int]:
        key = counts_key(spec_hash, previous)
        counts = self._cache.get(key)
        if counts is None:
            # Redis down: no per-spec evidence for a moment; the spec-agnostic patterns carry the source.
            counts = self._store.fields(key) or {}
            self._cache.set(key, counts, self._refresh_s)
        return counts

    def add(self, spec_hash: str, previous: str, following: str, weight: int = 1) -> None:
        self._store.incr_fields(counts_key(spec_hash, previous), {following: weight}, self._ttl_s)


def online_transitions(store: SharedStore, settings: Settings) -> OnlineTransitions | None:
    """The counts every replica shares, when Redis is configured and online adaptation is on; else None. A spec's
    counts live as long as its catalogue after their last update: Redis keeps no counts of specs nobody uses."""
    if not (store.configured and settings.learning.online_counts):
        return None
    return OnlineTransitions(store, settings.learning.counts_refresh_s, settings.cache.count_rows,
                             settings.cache.catalogue_ttl_s)
