"""Online adaptation: per-spec transition counts in Redis, updated by every label as it arrives, and the latest
labels of each (spec, previous operation) remembered with their prompt's vector, and how well each weight of the
counts against the model has predicted the spec's labels (`habit:<spec>`).

The `transitions` source reads them through `TransitionCounts`, so a habit that users show today moves the
ranking within `counts_refresh_s`, long before a retrained model ships; the remembered prompts make it the habit
of requests like the one asked now (`pipeline.ranking.stats.recall_counts`). Every label is also counted under
`SHARED`, for all specs that have its previous operation: a spec borrows what followed that operation elsewhere
(`learning.borrow`), so an API registered anew or in another version does not start from nothing. The shared
keys hold at most the operation pairs the per-spec keys hold, so they at most double the counts' memory. Each
replica caches counts for `counts_refresh_s`: a few Redis round trips per (spec, previous operation) per refresh,
not per request.
"""

from __future__ import annotations

import numpy as np

from pipeline.cache import LRU, SharedStore
from pipeline.ranking.stats import SHARED, Evidence, PromptVector, counted_under, pooled_counts
from pipeline.settings import RecallSettings, Settings


def counts_key(spec_hash: str, previous: str) -> str:
    return f"counts:{spec_hash}:{previous}"


def recall_key(space: str, spec_hash: str, previous: str) -> str:
    # "recall2": entries carry the spec they were given on; lists of the earlier encoding expire unread.
    return f"recall2:{space}:{spec_hash}:{previous}"


def prior_scores_key(spec_hash: str) -> str:
    return f"habit:{spec_hash}"


def _encode(spec_hash: str, following: str, vector: np.ndarray) -> bytes:
    return f"{spec_hash}\0{following}\0".encode() + vector.astype(np.float16).tobytes()


def _decode(raw: bytes) -> tuple[str, str, np.ndarray]:
    spec_hash, _, rest = raw.partition(b"\0")
    following, _, vector = rest.partition(b"\0")
    return spec_hash.decode(), following.decode(), np.frombuffer(vector, dtype=np.float16)


class OnlineTransitions:
    """`TransitionCounts` over Redis hashes (`counts:<spec>:<previous>` -> {following: count}) and capped lists
    (`recall2:<embedder>:<spec>:<previous>` -> the latest labels with their prompt vectors), each kept once for
    its spec and once under `SHARED` for every spec that has the previous operation."""

    def __init__(
        self, store: SharedStore, refresh_s: float, recall: RecallSettings, borrow: float = 0.0,
        capacity: int = 4096, recall_capacity: int = 512, ttl_s: int | None = None,
    ) -> None:
        self._store = store
        self._refresh_s = refresh_s
        self._recall = recall
        self._borrow = borrow
        self._ttl_s = ttl_s
        self._cache: LRU[dict[str, int]] = LRU(capacity)
        self._remembered: LRU[list[tuple[str, str, np.ndarray]]] = LRU(recall_capacity)
        self._scores: LRU[dict[str, float]] = LRU(recall_capacity)

    def _evidence(self, spec_hash: str, previous: str, space: str | None) -> Evidence:
        key = counts_key(spec_hash, previous)
        counts = self._cache.get(key)
        if counts is None:
            # Redis down: no per-spec evidence for a moment; the spec-agnostic patterns carry the source.
            counts = self._store.fields(key) or {}
            self._cache.set(key, counts, self._refresh_s)
        remembered: list[tuple[str, str, np.ndarray]] = []
        if space is not None and counts and self._recall.per_key > 0:
            key = recall_key(space, spec_hash, previous)
            cached = self._remembered.get(key)
            if cached is None:
                cached = [_decode(raw) for raw in self._store.items(key) or []]
                self._remembered.set(key, cached, self._refresh_s)
            remembered = cached
        return Evidence(counts, remembered)

    def next_counts(self, spec_hash: str, previous: str, prompt: PromptVector | None = None) -> dict[str, float]:
        space = prompt.space if prompt else None
        own = self._evidence(spec_hash, previous, space)
        shares = SHARED in counted_under(spec_hash, previous, self._borrow)
        shared = self._evidence(SHARED, previous, space) if shares else Evidence({}, [])
        return pooled_counts(spec_hash, own, shared, prompt.vector if prompt else None, self._recall, self._borrow)

    def add(
        self, spec_hash: str, previous: str, following: str, weight: int = 1, prompt: PromptVector | None = None
    ) -> None:
        for key in counted_under(spec_hash, previous, self._borrow):
            self._store.incr_fields(counts_key(key, previous), {following: weight}, self._ttl_s)
            if prompt is not None and self._recall.per_key > 0:
                self._store.push_capped(recall_key(prompt.space, key, previous),
                                        _encode(spec_hash, following, prompt.vector), self._recall.per_key,
                                        self._ttl_s)

    def prior_scores(self, spec_hash: str) -> dict[str, float]:
        key = prior_scores_key(spec_hash)
        scores = self._scores.get(key)
        if scores is None:
            scores = self._store.float_fields(key) or {}  # Redis down: the configured weight for a moment
            self._scores.set(key, scores, self._refresh_s)
        return scores

    def add_prior_scores(self, spec_hash: str, scores: dict[str, float]) -> None:
        self._store.incr_fields(prior_scores_key(spec_hash), scores, self._ttl_s)


def online_transitions(store: SharedStore, settings: Settings) -> OnlineTransitions | None:
    """The counts every replica shares, when Redis is configured and online adaptation is on; else None. A spec's
    counts live as long as its catalogue after their last update: Redis keeps no counts of specs nobody uses."""
    if not (store.configured and settings.learning.online_counts):
        return None
    cache = settings.cache
    learning = settings.learning
    return OnlineTransitions(store, learning.counts_refresh_s, learning.recall, learning.borrow, cache.count_rows,
                             cache.recall_rows, cache.catalogue_ttl_s)
