"""`SpecStore` deployment: fetch, parse and cache specs (Redis shared, in-process LRU fallback)."""

from __future__ import annotations

import asyncio
from typing import Any

from ray import serve

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
            on_lookup=lambda outcome: self.metrics.lookups.inc(tags={"outcome": outcome}),
        )

    async def register(self, url: str | None, document: str | dict[str, Any] | None) -> SpecInfo:
        # Fetching and parsing block (Stripe parses in ~150 ms): keep the replica's event loop free.
        return SpecInfo.of(await asyncio.to_thread(lambda: self.store.register(url=url, document=document)))

    async def info(self, spec_id: str) -> SpecInfo:
        return SpecInfo.of(await asyncio.to_thread(self.store.catalogue, spec_id))

    async def catalogue(self, spec_id: str) -> Catalogue:
        return await asyncio.to_thread(self.store.catalogue, spec_id)

    async def routes(self, spec_id: str) -> Catalogue:
        return (await asyncio.to_thread(self.store.catalogue, spec_id)).routes()

    async def redis_up(self) -> bool:
        return await asyncio.to_thread(self.cache.ping)
