"""Online adaptation of the spec-agnostic patterns: every label counts which pattern (the kind of operation, its
path relation and link to the last call) it chose, and how likely the trained rates made each pattern, in Redis
hashes every spec and replica shares.

The trained patterns come from synthetic sessions; what a deployment's users do (repeat a call for each item,
read a thing before they act on it) is learned here without a retrain, and it carries to specs no label was
given on, where the per-spec counts (`pipeline.learning.online_counts`) know nothing yet. Each hash holds at most
one field per pattern (a few thousand), so nothing grows with traffic.
"""

from __future__ import annotations

from pipeline.cache import LRU, SharedStore
from pipeline.ranking.stats import (
    AdaptedPatterns,
    PatternEvidence,
    PatternOffer,
    PatternRates,
    PatternStats,
    PatternTable,
)
from pipeline.settings import Settings

_TABLES: tuple[PatternTable, ...] = ("first", "transition")


def patterns_key(table: PatternTable, counted: str) -> str:
    return f"patterns:{table}:{counted}"


class OnlinePatterns:
    """`PatternCounts` over Redis hashes (`patterns:<table>:chosen` -> {pattern: labels that chose it} and
    `patterns:<table>:expected` -> {pattern: labels the trained rates expected to}), re-read by each replica every
    `refresh_s`."""

    def __init__(self, store: SharedStore, refresh_s: float, prior: float) -> None:
        self._store = store
        self._refresh_s = refresh_s
        self._prior = prior
        self._cached: LRU[PatternEvidence] = LRU(1)

    def _evidence(self) -> PatternEvidence:
        evidence = self._cached.get("")
        if evidence is None:
            # Redis down: the trained patterns alone for a moment.
            evidence = PatternEvidence(
                {t: self._store.fields(patterns_key(t, "chosen")) or {} for t in _TABLES},
                {t: self._store.float_fields(patterns_key(t, "expected")) or {} for t in _TABLES},
            )
            self._cached.set("", evidence, self._refresh_s)
        return evidence

    def adapt(self, trained: PatternStats) -> PatternRates:
        return AdaptedPatterns(trained, self._evidence(), self._prior)

    def add(self, offer: PatternOffer, chosen: str) -> None:
        self._store.incr_fields(patterns_key(offer.table, "expected"), offer.expected)
        self._store.incr_fields(patterns_key(offer.table, "chosen"), {chosen: 1})


def online_patterns(store: SharedStore, settings: Settings) -> OnlinePatterns | None:
    """The pattern counts every replica shares, when Redis is configured and online adaptation is on; else None
    (without a shared store, labels arrive at the Ingress and patterns are read in Ranker replicas)."""
    if not (store.configured and settings.learning.online_counts):
        return None
    return OnlinePatterns(store, settings.learning.counts_refresh_s, settings.learning.pattern_prior)
