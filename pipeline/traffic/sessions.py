"""Requests grouped into sessions: by who made them (`Observed.key`), split where they pause longer than a gap.

Input is read once, in time order (logs are; HAR is sorted on reading), so a session is complete once the
clock has passed its last request by the gap: it is handed on then and forgotten, and memory holds only the
sessions still open, never the file. A request repeated right after it failed (no status, 408, 429 or 5xx)
within the retry window is a retry: the session keeps the last attempt once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from pipeline.traffic.observed import KeyKind, Observed

T = TypeVar("T")  # what travels with each request (the import: its match onto the spec)
_RETRIED_STATUSES = frozenset({408, 429})
# Open sessions are checked for their end once per this many requests: often enough to keep few open, rarely
# enough that the check costs nothing per request.
_SWEEP_EVERY = 1024


def _failed(status: int | None) -> bool:
    return status is None or status >= 500 or status in _RETRIED_STATUSES


@dataclass(slots=True)
class Session(Generic[T]):
    key: str
    kind: KeyKind
    calls: list[tuple[Observed, T]] = field(default_factory=list)

    @property
    def session_id(self) -> str:
        """Stable for the same requests of the same person: what makes a second import of a file change nothing."""
        return hashlib.sha256(f"{self.key}:{self.calls[0][0].time:.6f}".encode()).hexdigest()[:24]


class Sessionizer(Generic[T]):
    def __init__(self, gap_s: float, retry_window_s: float) -> None:
        self._gap_s = gap_s
        self._retry_window_s = retry_window_s
        self._open: dict[str, Session[T]] = {}
        self._clock = float("-inf")
        self._since_sweep = 0
        self.retries = 0

    def sessions(self, calls: Iterable[tuple[Observed, T]]) -> Iterator[Session[T]]:
        """Every session of `calls`, each as soon as it is complete; the ones still open at the end last."""
        for request, extra in calls:
            yield from self._add(request, extra)
        yield from sorted(self._open.values(), key=lambda s: s.calls[0][0].time)
        self._open.clear()

    def _add(self, request: Observed, extra: T) -> Iterator[Session[T]]:
        self._clock = max(self._clock, request.time)
        session = self._open.get(request.key)
        if session is not None and request.time - session.calls[-1][0].time > self._gap_s:
            yield self._open.pop(request.key)
            session = None
        if session is None:
            session = self._open[request.key] = Session(request.key, request.key_kind)
        last = session.calls[-1][0] if session.calls else None
        if (last is not None and (last.method, last.path) == (request.method, request.path)
                and _failed(last.status) and request.time - last.time <= self._retry_window_s):
            session.calls[-1] = (request, extra)
            self.retries += 1
        else:
            session.calls.append((request, extra))
        self._since_sweep += 1
        if self._since_sweep >= _SWEEP_EVERY:
            self._since_sweep = 0
            yield from self._sweep()

    def _sweep(self) -> Iterator[Session[T]]:
        ended = [key for key, s in self._open.items() if self._clock - s.calls[-1][0].time > self._gap_s]
        for key in ended:
            yield self._open.pop(key)
