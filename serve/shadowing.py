"""Shadow rankings: which predictions the shadow model also ranks, the rankings being made off the response path,
and those made, kept (here and, when Redis is on, for every replica) until their labels come."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable

from pipeline.adapters.kv import ResilientStore
from pipeline.cache import LRU
from pipeline.learning.acceptance import ShadowRanking, shadow_key
from pipeline.settings import CacheSettings
from serve.telemetry import RankerMetrics

log = logging.getLogger("opensesame.ranker")


class Shadowing:
    def __init__(self, store: ResilientStore, cache: CacheSettings, metrics: RankerMetrics) -> None:
        self._store = store
        self._ttl_s = cache.prediction_ttl_s
        self._metrics = metrics
        self._running: dict[str, asyncio.Task[ShadowRanking | None]] = {}
        self._made: LRU[ShadowRanking] = LRU(cache.shadow_rankings)

    @staticmethod
    def chosen(prediction_id: str, share: float) -> bool:
        """The same share of requests on every replica, decided by the prediction id (no shared random state)."""
        return int(hashlib.blake2b(prediction_id.encode(), digest_size=4).hexdigest(), 16) < share * 2**32

    def start(self, prediction_id: str, ranking: Awaitable[ShadowRanking]) -> None:
        """Make the shadow's ranking of a prediction in the background (the answer is on its way already)."""
        task = asyncio.ensure_future(self._kept(prediction_id, ranking))
        self._running[prediction_id] = task
        task.add_done_callback(lambda _: self._running.pop(prediction_id, None))

    async def _kept(self, prediction_id: str, ranking: Awaitable[ShadowRanking]) -> ShadowRanking | None:
        try:
            await asyncio.sleep(0)  # yield first: the champion's answer leaves this replica before we score
            made = await ranking
            self._made.set(prediction_id, made, self._ttl_s)
            await asyncio.to_thread(self._store.set, shadow_key(prediction_id), made.model_dump_json().encode(),
                                    self._ttl_s)
            self._metrics.shadow_scored.inc()
            return made
        except Exception:  # a shadow's failure is the shadow's: never the service's
            log.exception("shadow ranking of %s failed", prediction_id)
            return None

    async def ranking(self, prediction_id: str) -> ShadowRanking | None:
        """The shadow's ranking of a prediction this replica answered (waiting for it if it is still being made);
        None when another replica answered it or it was forgotten."""
        task = self._running.get(prediction_id)
        if task is not None:
            return await asyncio.shield(task)
        return self._made.get(prediction_id)
