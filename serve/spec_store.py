"""`SpecStore` deployment: fetch, parse and cache specs (Redis shared, in-process LRU fallback)."""

from __future__ import annotations

import asyncio
from typing import Any

from ray import serve

from pipeline.catalogue import Catalogue
from pipeline.kv import ResilientStore
from pipeline.matching import CallMatch
from pipeline.settings import load_settings
from pipeline.spec_store import SpecInfo, SpecStore


@serve.deployment(max_ongoing_requests=32, max_queued_requests=256)
class SpecStoreDeployment:
    def __init__(self, settings: dict[str, Any]) -> None:
        config = load_settings(overrides=settings)
        self.cache = ResilientStore(config.cache)
        self.store = SpecStore(self.cache, config.cache, config.fetch)

    async def register(self, url: str | None, document: str | dict[str, Any] | None) -> SpecInfo:
        # Fetching and parsing block (Stripe parses in ~150 ms): keep the replica's event loop free.
        return SpecInfo.of(await asyncio.to_thread(lambda: self.store.register(url=url, document=document)))

    async def info(self, spec_id: str) -> SpecInfo:
        return SpecInfo.of(await asyncio.to_thread(self.store.catalogue, spec_id))

    async def catalogue(self, spec_id: str) -> Catalogue:
        return await asyncio.to_thread(self.store.catalogue, spec_id)

    async def match(self, spec_id: str, endpoint: str) -> CallMatch:
        return await asyncio.to_thread(self.store.match, spec_id, endpoint)

    async def redis_up(self) -> bool:
        return await asyncio.to_thread(self.cache.ping)
