"""A byte store that keeps serving when Redis does not: Redis shared by all replicas, an in-process LRU in front.

Every value is written to both. Reads try the LRU first, then Redis. When a Redis call fails (a read or write
that timed out twice, any other command once), Redis is skipped for `retry_after_s` (so a dead server costs a
request two short time-outs at most, not one per call) and then tried again: reconnection is automatic because
redis-py reconnects on the next command. Values that could not be written while Redis was away are written again
once a call reaches it (so a prediction made during an outage can then be labelled through any replica): in a
thread of their own and in small batches, so that the outage's backlog delays no request.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import redis

from pipeline.cache import LRU
from pipeline.quota import Registrations, TokenBuckets
from pipeline.settings import CacheSettings

log = logging.getLogger(__name__)

# Values written back per round trip after an outage: hundreds in one pipeline hold Redis (fsyncing each write
# when it keeps an append-only file) and this process's GIL long enough to stall the requests beside it.
RESYNC_BATCH = 32
# Commands that leave Redis as one call does when sent twice: one whose reply is late past the socket time-out is
# sent once more before Redis counts as down. A late reply (a Redis fsyncing its append-only file, or starved of
# CPU beside a training) is not an outage, and an outage keeps what this replica writes (a spec just registered, a
# prediction) in its memory alone, where the other replicas cannot find it.
_RESENT_ON_TIMEOUT = frozenset({"get", "set", "hgetall", "lrange", "srem"})


class DiskBlobs:
    """Blobs as files: the training command's persistent embedding cache."""

    def __init__(self, directory: Path) -> None:
        self._dir = directory

    def get(self, key: str) -> bytes | None:
        path = self._dir / key
        return path.read_bytes() if path.exists() else None

    def set(self, key: str, value: bytes, ttl_s: int | None = None) -> None:
        self._dir.mkdir(parents=True, exist_ok=True)
        tmp = self._dir / f".{key}.tmp"
        tmp.write_bytes(value)
        tmp.replace(self._dir / key)  # atomic: a concurrent reader never sees half a file


# One client's token bucket, atomically, on Redis' clock (replicas' clocks may differ). Lua numbers would be
# truncated to integers on the way out: the wait is returned as a string.
_TAKE_TOKEN = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 1)
return tostring(wait)
"""


class ResilientStore:
    """Implements `pipeline.cache.SharedStore`, and the per-client quotas of `pipeline.quota` across replicas."""

    def __init__(self, settings: CacheSettings) -> None:
        self._settings = settings
        self._prefix = settings.key_prefix
        self._local: LRU[bytes] = LRU(settings.local_capacity)
        self._redis: redis.Redis | None = None
        if settings.redis_url:
            self._redis = redis.Redis.from_url(
                settings.redis_url,
                socket_timeout=settings.socket_timeout_s,
                socket_connect_timeout=settings.socket_timeout_s,
            )
        self._down_until = 0.0
        self._failed_at = float("-inf")
        self._claim_lock = threading.Lock()
        # Written while Redis was away, oldest first (at most local_capacity): key -> (value, expiry on this clock).
        self._unsynced: OrderedDict[str, tuple[bytes, float | None]] = OrderedDict()
        self._unsynced_lock = threading.Lock()
        self._resyncing = threading.Lock()  # held by the one thread writing them back
        self._buckets = TokenBuckets(settings.clients)
        self._registrations = Registrations(settings.clients)

    @property
    def configured(self) -> bool:
        return self._redis is not None

    def _client(self) -> redis.Redis | None:
        if self._redis is None or time.monotonic() < self._down_until:
            return None
        return self._redis

    def _failed(self, exc: Exception) -> None:
        if time.monotonic() >= self._down_until:  # log once per outage window, not once per request
            log.warning("redis unavailable (%s); serving from the in-process cache", exc)
        self._down_until = time.monotonic() + self._settings.retry_after_s
        self._failed_at = time.monotonic()

    def _call(self, command: str, *args: Any, **kwargs: Any) -> Any:
        """Run one Redis command; None (and Redis skipped for a while) when it fails or Redis is off."""
        client = self._client()
        if client is None:
            return None
        try:
            try:
                result = getattr(client, command)(*args, **kwargs)
            except redis.TimeoutError:
                if command not in _RESENT_ON_TIMEOUT:
                    raise
                result = getattr(client, command)(*args, **kwargs)
        except redis.RedisError as exc:
            self._failed(exc)
            return None
        if self._unsynced and self._resyncing.acquire(blocking=False):
            threading.Thread(target=self._resync, args=(client,), name="redis-resync", daemon=True).start()
        return result

    def _resync(self, client: redis.Redis) -> None:
        """Write what was kept while Redis was away, oldest first, `RESYNC_BATCH` values per round trip; what a
        failure leaves is kept again (newer writes of a key win) for the next call that reaches Redis."""
        try:
            while True:
                with self._unsynced_lock:
                    oldest = list(itertools.islice(self._unsynced, RESYNC_BATCH))
                    batch = {key: self._unsynced.pop(key) for key in oldest}
                if not batch:
                    return
                now = time.monotonic()
                try:
                    with client.pipeline(transaction=False) as pipe:
                        for key, (value, expires) in batch.items():
                            if expires is None or expires > now:
                                ttl = None if expires is None else max(1, int(expires - now))
                                pipe.set(self._prefix + key, value, ex=ttl)
                        pipe.execute()
                except redis.RedisError as exc:
                    self._failed(exc)
                    with self._unsynced_lock:
                        batch.update(self._unsynced)  # newer writes win
                        self._unsynced = OrderedDict(batch)
                    return
        finally:
            self._resyncing.release()

    def get(self, key: str) -> bytes | None:
        value = self._local.get(key)
        if value is not None:
            return value
        value = self._call("get", self._prefix + key)
        if value is not None:
            self._local.set(key, value, self._settings.catalogue_ttl_s)
        return value

    def set(self, key: str, value: bytes, ttl_s: int | None = None) -> None:
        self._local.set(key, value, ttl_s)
        if self._call("set", self._prefix + key, value, ex=ttl_s) is None and self.configured:
            with self._unsynced_lock:
                self._unsynced[key] = (value, time.monotonic() + ttl_s if ttl_s else None)
                self._unsynced.move_to_end(key)
                while len(self._unsynced) > self._settings.local_capacity:
                    self._unsynced.popitem(last=False)

    def claim(self, key: str, ttl_s: int) -> bool:
        """True for the first claim of `key`: across all replicas through Redis (SET NX), within this process
        while Redis is off or down."""
        with self._claim_lock:
            if self._local.get(key) is not None:
                return False
            client = self._client()
            first = True
            if client is not None:
                try:
                    first = bool(client.set(self._prefix + key, b"1", nx=True, ex=ttl_s))
                except redis.RedisError as exc:
                    self._failed(exc)
            self._local.set(key, b"1", ttl_s)
            return first

    def swap(self, key: str, value: bytes, ttl_s: int) -> bytes | None:
        """Set `key` and return what it held, atomically across replicas while Redis is up."""
        with self._claim_lock:
            client = self._client()
            if client is not None:
                try:
                    previous = client.set(self._prefix + key, value, ex=ttl_s, get=True)
                    self._local.set(key, value, ttl_s)
                    return previous
                except redis.RedisError as exc:
                    self._failed(exc)
            previous = self._local.get(key)
            self._local.set(key, value, ttl_s)
            return previous

    def incr_fields(self, key: str, amounts: Mapping[str, float], ttl_s: int | None = None) -> None:
        """Add to counters of a Redis hash (integers, or floats where an amount is one), in one round trip, and keep
        it `ttl_s` from now (None: as it was); lost while Redis is down (online counts and acceptance are caches of
        the log)."""
        client = self._client()
        if client is None:
            return
        try:
            with client.pipeline(transaction=False) as pipe:
                for field, amount in amounts.items():
                    if isinstance(amount, int):
                        pipe.hincrby(self._prefix + key, field, amount)
                    else:
                        pipe.hincrbyfloat(self._prefix + key, field, amount)
                if ttl_s is not None:
                    pipe.expire(self._prefix + key, ttl_s)
                pipe.execute()
        except redis.RedisError as exc:
            self._failed(exc)

    def fields(self, key: str) -> dict[str, int] | None:
        """A hash of counters, or None when Redis is off or down."""
        raw = self._call("hgetall", self._prefix + key)
        return None if raw is None else {k.decode(): int(v) for k, v in raw.items()}

    def float_fields(self, key: str) -> dict[str, float] | None:
        """A hash of float counters (`incr_fields` with float amounts), or None when Redis is off or down."""
        raw = self._call("hgetall", self._prefix + key)
        return None if raw is None else {k.decode(): float(v) for k, v in raw.items()}

    def push_capped(self, key: str, value: bytes, cap: int, ttl_s: int | None = None) -> None:
        """Append to a Redis list kept to its newest `cap` items and `ttl_s` from now, in one round trip; lost while
        Redis is down (remembered labels are a cache of the log, as the counts are)."""
        client = self._client()
        if client is None:
            return
        try:
            with client.pipeline(transaction=False) as pipe:
                pipe.rpush(self._prefix + key, value)
                pipe.ltrim(self._prefix + key, -cap, -1)
                if ttl_s is not None:
                    pipe.expire(self._prefix + key, ttl_s)
                pipe.execute()
        except redis.RedisError as exc:
            self._failed(exc)

    def items(self, key: str) -> list[bytes] | None:
        """A list, oldest first, or None when Redis is off or down."""
        return self._call("lrange", self._prefix + key, 0, -1)

    def xadd(self, stream: str, fields: dict[str, str], maxlen: int) -> str | None:
        """Append to a stream; the entry id, or None when Redis is off or down (the caller spools)."""
        entry = self._call("xadd", stream, fields, maxlen=maxlen, approximate=True)
        return entry.decode() if isinstance(entry, bytes) else entry

    def take_token(self, key: str, rate_per_s: float, burst: int) -> float:
        """0 when the client behind `key` may go on, else the seconds until it may; in-process while Redis is off
        or down (each replica then counts alone)."""
        wait = self._call("eval", _TAKE_TOKEN, 1, self._prefix + key, rate_per_s, burst)
        if wait is None:
            return self._buckets.take(key, rate_per_s, burst)
        return float(wait)

    def add_member(self, key: str, member: str, ttl_s: int) -> tuple[int, float]:
        """Add to a set that lives `ttl_s` from its first member: its size now and the seconds it has left."""
        client = self._client()
        if client is not None:
            try:
                pipe = client.pipeline()
                pipe.sadd(self._prefix + key, member).expire(self._prefix + key, ttl_s, nx=True)
                _, _, size, left = pipe.scard(self._prefix + key).ttl(self._prefix + key).execute()
                return int(size), float(max(left, 0))
            except redis.RedisError as exc:
                self._failed(exc)
        return self._registrations.add(key, member, ttl_s)

    def members(self, key: str) -> frozenset[str]:
        """The members of a set `add_member` keeps (empty once it expired)."""
        found = self._call("smembers", self._prefix + key)
        if found is None:
            return self._registrations.members(key)
        return frozenset(m.decode() if isinstance(m, bytes) else str(m) for m in found)

    def remove_member(self, key: str, member: str) -> None:
        if self._call("srem", self._prefix + key, member) is None:
            self._registrations.remove(key, member)

    def recently_down(self) -> bool:
        """Did Redis fail lately, so that values other replicas wrote meanwhile may still be on their way? Another
        replica writes them at its first call after its own back-off: within two back-offs of our last failure."""
        return time.monotonic() - self._failed_at <= 2 * self._settings.retry_after_s + 1

    def ping(self) -> bool:
        """Reachability right now (ignores the back-off): what /readyz reports."""
        if self._redis is None:
            return True
        try:
            ok = bool(self._redis.ping())
        except redis.RedisError as exc:
            self._failed(exc)
            return False
        self._down_until = 0.0
        return ok
