"""Per-client quotas as plain data structures: a token bucket per client (requests) and a set per client (the
distinct specs it registered). `pipeline.adapters.kv` keeps both in Redis, shared by every replica, and falls back
to these in-process copies while Redis is off or down.
"""

from __future__ import annotations

import threading
import time

from pipeline.cache import LRU


class TokenBuckets:
    """`take` one token from a client's bucket: `burst` tokens, refilled at `rate_per_s`."""

    def __init__(self, capacity: int = 100_000) -> None:
        self._buckets: LRU[tuple[float, float]] = LRU(capacity)  # client -> (tokens, at)
        self._lock = threading.Lock()

    def take(self, client: str, rate_per_s: float, burst: int) -> float:
        """0 when the request may go on, else the seconds until the bucket holds a token again."""
        now = time.monotonic()
        with self._lock:
            tokens, at = self._buckets.get(client) or (float(burst), now)
            tokens = min(float(burst), tokens + (now - at) * rate_per_s)
            wait = 0.0 if tokens >= 1 else (1 - tokens) / rate_per_s
            self._buckets.set(client, (tokens - 1 if wait == 0 else tokens, now))
        return wait


class Registrations:
    """The distinct members (spec ids) each client added within a window of `ttl_s`."""

    def __init__(self, capacity: int = 100_000) -> None:
        self._sets: LRU[tuple[frozenset[str], float]] = LRU(capacity)  # client -> (members, expires)
        self._lock = threading.Lock()

    def add(self, client: str, member: str, ttl_s: int) -> tuple[int, float]:
        """How many distinct members the client has now, and the seconds until its window ends."""
        now = time.monotonic()
        with self._lock:
            members, expires = self._sets.get(client) or (frozenset(), now + ttl_s)
            if expires <= now:
                members, expires = frozenset(), now + ttl_s
            members = members | {member}
            self._sets.set(client, (members, expires))
        return len(members), expires - now

    def members(self, client: str) -> frozenset[str]:
        """The members the client added within its current window."""
        with self._lock:
            members, expires = self._sets.get(client) or (frozenset(), 0.0)
        return members if expires > time.monotonic() else frozenset()

    def remove(self, client: str, member: str) -> None:
        with self._lock:
            entry = self._sets.get(client)
            if entry is not None:
                self._sets.set(client, (entry[0] - {member}, entry[1]))
