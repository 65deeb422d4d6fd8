"""`SpecStore` deployment: fetch, parse and cache specs (Redis shared, in-process LRU fallback)."""

from __future__ import annotations

import asyncio
from typing import Any

from ray import serve

from pipeline.adapters.heap import release_heap
from pipeline.adapters.kv import ResilientStore
from pipeline.settings import Settings
from pipeline.spec.catalogue import Catalogue
from pipeline.spec.store import SpecInfo, SpecStore
from serve.telemetry import SpecMetrics


@serve.deployment
class SpecStoreDeployment:
    def __init__(self, settings: Settings) -> None:
        self.cache = ResilientStore(settings.cache)
        self.metrics = SpecMetrics()
        self.store = SpecStore(
            self.cache,
            settings.cache,
            settings.fetch,
            capacity=settings.cache.prepared_specs,
            on_lookup=lambda outcome: self.metrics.lookups.inc(tags={"outcome": outcome}),
        )

    async def register(self, url: str | None, document: str | dict[str, Any] | None) -> SpecInfo:
        # Fetching and parsing block (Stripe parses in ~150 ms): keep the replica's event loop free. A parse
        # allocates the whole document at once: its freed pages go back to the system (else they stay with the
        # replica: 129 MB at start, 209 MB after a load test's cold specs; 151 MB with the trim).
        def register() -> Catalogue:
            catalogue = self.store.register(url=url, document=document)
            release_heap()
            return catalogue

        return SpecInfo.of(await asyncio.to_thread(register))

    async def info(self, spec_id: str) -> SpecInfo:
        return SpecInfo.of(await asyncio.to_thread(self.store.catalogue, spec_id))

    async def catalogue(self, spec_id: str) -> Catalogue:
        return await asyncio.to_thread(self.store.catalogue, spec_id)

    async def routes(self, spec_id: str) -> Catalogue:
        return (await asyncio.to_thread(self.store.catalogue, spec_id)).routes()

    async def redis_up(self) -> bool:
        return await asyncio.to_thread(self.cache.ping)
