"""Who may do how much: every request takes a token of its caller's quota, and a caller registers at most its cap of
distinct specs per `cache.spec_ttl_s`. Both live in the store every replica shares, so replicas agree."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from pipeline.adapters.kv import ResilientStore
from pipeline.errors import RateLimitedError
from pipeline.settings import Settings
from serve.deps import Caller

T = TypeVar("T")


async def store_call(store: ResilientStore, call: Callable[..., T], *args: Any) -> T:
    """A call of the shared store: in a worker thread when it may go to Redis (network I/O must not hold the event
    loop); inline when the store is this process's memory, where it takes microseconds and each thread hop would
    cost a request another wait for the loop under load."""
    if store.configured:
        return await asyncio.to_thread(call, *args)
    return call(*args)


class Admission:
    def __init__(self, store: ResilientStore, settings: Settings) -> None:
        self._store = store
        self._clients = settings.clients
        self._spec_ttl_s = settings.cache.spec_ttl_s

    async def admit(self, caller: Caller, user_id: str | None = None) -> str:
        """One request of the caller's quota (a token bucket shared by every replica); its quota id."""
        quota_id = caller.quota_id(user_id)
        rate = (caller.key and caller.key.rate_per_s) or self._clients.rate_per_s
        burst = (caller.key and caller.key.burst) or self._clients.burst
        wait = await store_call(self._store, self._store.take_token, f"quota:{quota_id}", rate, burst)
        if wait > 0:
            raise RateLimitedError(f"over {rate:g} requests/s (burst {burst}) for {quota_id}: slow down", wait)
        return quota_id

    async def count_spec(self, caller: Caller, quota_id: str, spec_id: str) -> None:
        """A spec the caller registered, within its cap: every registered spec is kept in every replica's cache, so
        one client must not fill them. Over the cap, the spec is not counted and the request refused."""
        cap = (caller.key and caller.key.max_specs) or self._clients.max_specs
        key = f"specs:{quota_id}"
        count, left = await store_call(self._store, self._store.add_member, key, spec_id, self._spec_ttl_s)
        if count > cap:
            await store_call(self._store, self._store.remove_member, key, spec_id)
            raise RateLimitedError(
                f"{quota_id} registered {cap} distinct specs within {self._spec_ttl_s} s: reuse their spec_id", left
            )

    async def registered(self, quota_id: str) -> list[str]:
        """The specs the caller registered within its window, as ids."""
        return sorted(await store_call(self._store, self._store.members, f"specs:{quota_id}"))
