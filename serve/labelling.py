"""Labels of predictions: told by /feedback, or implicit (the user's next prediction on a spec shows the call that
followed the previous one). Each goes through the `LabelSink`, and is counted by the rank its model gave the call,
and the rank a shadow model gave it where one ranked the same prediction."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import numpy as np

from pipeline.adapters.kv import ResilientStore
from pipeline.cache import LRU
from pipeline.learning.acceptance import AcceptanceTally, ShadowRanking, rank_bucket, shadow_key
from pipeline.learning.labels import LabelSink, followup, label
from pipeline.learning.records import (
    FeedbackRecord,
    PredictionNotFoundError,
    PredictionRecord,
    encode_features,
    last_prediction_key,
    load_prediction,
    save_prediction,
)
from pipeline.settings import Settings
from pipeline.spec.catalogue import Catalogue
from pipeline.spec.matching import CallMatch, CallMatcher
from serve.admission import store_call
from serve.telemetry import PredictMetrics

log = logging.getLogger("opensesame.ingress")

Routes = Callable[[str], Awaitable[Catalogue]]  # a registered spec's routes (its operations), by spec_id
Shadow = Callable[[str], Awaitable[ShadowRanking | None]]  # a shadow model's ranking still held by its replica


class Labelling:
    def __init__(self, store: ResilientStore, sink: LabelSink, settings: Settings, metrics: PredictMetrics,
                 routes: Routes, shadow: Shadow) -> None:
        self._store = store
        self.sink = sink
        self.acceptance = AcceptanceTally(store)
        self._ttl_s = settings.cache.prediction_ttl_s
        self._metrics = metrics
        self._routes = routes
        self._shadow = shadow
        # Each spec's routes, to match reported calls here instead of one more hop to the spec store.
        self._matchers: LRU[CallMatcher] = LRU(settings.cache.prepared_specs)

    async def prediction(self, prediction_id: str) -> PredictionRecord:
        return await store_call(self._store, load_prediction, self._store, prediction_id)

    def save(self, record: PredictionRecord, features: np.ndarray | None) -> None:
        """In a worker thread: compressing the candidates' features (~0.2 ms) stays off the event loop."""
        if features is not None:
            record.features = encode_features(features)
        save_prediction(self._store, record, self._ttl_s)

    async def match(self, spec_id: str, call: str) -> CallMatch:
        """The operation a reported call made. A spec_id names one content, so its routes never go stale here."""
        matcher = self._matchers.get(spec_id)
        if matcher is None:
            matcher = CallMatcher(await self._routes(spec_id))
            self._matchers.set(spec_id, matcher)
        return matcher.match(call)

    async def record(self, record: FeedbackRecord) -> tuple[str, str | None]:
        """Store the first label of a prediction, and count where its model ranked the call (and where the shadow
        model did, when one ranked the same prediction)."""
        shadow = await self._shadow_ranking(record) if record.shadowed else None
        return await asyncio.to_thread(self._record, record, shadow)

    async def implicit(self, current: PredictionRecord) -> None:
        """The user's previous prediction on this spec is labelled by the call its new history shows after it."""
        try:
            key = last_prediction_key(current.user_id, current.spec_id, current.owner)
            previous_id = await store_call(self._store, self._store.swap, key, current.prediction_id.encode(),
                                           self._ttl_s)
            if previous_id is None:
                return
            previous = await self.prediction(previous_id.decode())
            call = followup(previous.events, current.events)
            if call is None:
                return
            match = await self.match(previous.spec_id, call)
            if match.operation is None:
                return
            await self.record(label(previous, call, None, match, source="implicit"))
        except PredictionNotFoundError:
            pass  # expired: nothing to label
        except Exception:  # a lost implicit label must never fail or slow a prediction
            log.exception("implicit label for user %s failed", current.user_id)

    async def _shadow_ranking(self, record: FeedbackRecord) -> ShadowRanking | None:
        raw = await store_call(self._store, self._store.get, shadow_key(record.prediction_id))
        if raw is not None:
            return ShadowRanking.model_validate_json(raw)
        # Not (yet) in the store: the Ranker replica that made it may still be ranking, or Redis is off.
        return await self._shadow(record.prediction_id)

    def _record(self, record: FeedbackRecord, ranking: ShadowRanking | None) -> tuple[str, str | None]:
        stored, entry = self.sink.record(record)
        self._metrics.feedback.inc(tags={"source": record.source, "stored": stored})
        if stored == "duplicate":
            return stored, entry
        bucket = rank_bucket(record.endpoint, record.predicted)
        tags = {"model_version": record.model_version, "role": "champion", "source": record.source}
        self._metrics.labels.inc(tags={**tags, "rank": bucket})
        shadow = None
        if ranking is not None:
            shadow = ranking.model_version, rank_bucket(record.endpoint, ranking.predicted)
            self._metrics.labels.inc(tags={**tags, "model_version": shadow[0], "role": "shadow", "rank": shadow[1]})
        self.acceptance.add(record.model_version, bucket, shadow)
        return stored, entry
