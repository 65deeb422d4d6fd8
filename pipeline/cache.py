"""In-process caching and the ports the core uses to reach shared state; no I/O of its own.

`LRU` is every in-process cache of the project. `BlobStore` and `SharedStore` are what spec, ranking and
learning code needs from a store; `pipeline.adapters.kv` implements them over Redis and files.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Generic, Protocol, TypeVar

V = TypeVar("V")


class BlobStore(Protocol):
    def get(self, key: str) -> bytes | None: ...

    def set(self, key: str, value: bytes, ttl_s: int | None = None) -> None: ...


class LRU(Generic[V]):
    """Bounded, thread-safe, with optional per-entry expiry: every in-process cache of the project."""

    def __init__(self, capacity: int) -> None:
        self._entries: OrderedDict[str, tuple[V, float]] = OrderedDict()
        self._capacity = capacity
        self._lock = threading.Lock()

    def get(self, key: str) -> V | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            value, expires = entry
            if expires < time.monotonic():
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return value

    def set(self, key: str, value: V, ttl_s: float | None = None) -> None:
        expires = time.monotonic() + ttl_s if ttl_s else float("inf")
        with self._lock:
            self._entries[key] = (value, expires)
            self._entries.move_to_end(key)
            while len(self._entries) > self._capacity:
                self._entries.popitem(last=False)


class SharedStore(BlobStore, Protocol):
    """A blob store shared by every replica (Redis), with the few atomic operations the learning loop needs.
    Each operation degrades to this process alone while the shared store is off or down."""

    @property
    def configured(self) -> bool: ...

    def claim(self, key: str, ttl_s: int) -> bool: ...

    def swap(self, key: str, value: bytes, ttl_s: int) -> bytes | None: ...

    def incr_fields(self, key: str, amounts: Mapping[str, float], ttl_s: int | None = None) -> None: ...

    def fields(self, key: str) -> dict[str, int] | None: ...

    def float_fields(self, key: str) -> dict[str, float] | None: ...

    def push_capped(self, key: str, value: bytes, cap: int, ttl_s: int | None = None) -> None: ...

    def items(self, key: str) -> list[bytes] | None: ...

    def xadd(self, stream: str, fields: dict[str, str], maxlen: int) -> str | None: ...

    def ping(self) -> bool: ...

    def recently_down(self) -> bool: ...
