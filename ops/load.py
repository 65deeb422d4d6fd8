"""Closed-loop HTTP clients: the one load generator of the benchmarks, the learning demo and the swap tests.

Each client sends its next request as soon as the previous one returns, until the loop is stopped or, with
`total`, until that many requests have been sent by all clients together. Every response is recorded with its
wall time, latency, status and `model_version`, so a run can be summarised (throughput, errors, percentiles)
and a model swap judged (failures, and the moment after which every response names the new version).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Self

import httpx
import numpy as np

from client import OpenSesame
from pipeline.timing import ms_since


@dataclass(frozen=True, slots=True)
class Sample:
    sent: float  # time.time() when sent
    latency_ms: float
    status: int | str  # HTTP status, or the transport error's name
    version: str | None


def _ok(status: int | str) -> bool:
    return isinstance(status, int) and 200 <= status < 300


def percentiles(latencies: list[float], quantiles: tuple[int, ...] = (50, 95, 99)) -> dict[str, float]:
    return {f"p{q}_ms": round(float(np.percentile(latencies, q)), 2) for q in quantiles} if latencies else {}


def wait_until_ok(url: str, timeout_s: float) -> None:
    """Until a GET of `url` answers 200 (a closed port or another status: not yet); TimeoutError after
    `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer 200 within {timeout_s:.0f} s")
        time.sleep(0.5)


def register_spec(base_url: str, spec: str) -> str:
    """The spec_id of `spec` (the document's text) registered at the service, through the client: a refusal
    raises `client.ApiError` with the service's status and what to fix."""
    with OpenSesame(base_url, timeout_s=120) as api:
        return api.register_spec(spec=spec).spec_id


def outcome(samples: list[Sample]) -> dict[str, Any]:
    """Requests, failures (anything but 2xx, by status) and p50/p99 (ms) of the successful ones."""
    failed = [s for s in samples if not _ok(s.status)]
    latencies = [s.latency_ms for s in samples if _ok(s.status)]
    return {
        "requests": len(samples),
        "failed": len(failed),
        "failures": sorted({str(s.status) for s in failed}),
        **{key: round(value, 1) for key, value in percentiles(latencies, (50, 99)).items()},
    }


class RequestLoop:
    def __init__(
        self, url: str, body: Callable[[int, int], dict[str, Any]], clients: int, total: int | None = None,
        pause_s: float = 0.0,
    ) -> None:
        """`body(client, n)` is the JSON of the loop's `n`-th request (counted over all clients), sent by `client`;
        each client waits `pause_s` after an answer before its next request."""
        self._url = url
        self._body = body
        self._clients = clients
        self._total = total
        self._pause_s = pause_s
        self._sequence = itertools.count()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._started = self._ended = 0.0
        self.samples: list[Sample] = []

    def __enter__(self) -> Self:
        self._started = time.perf_counter()
        self._threads = [threading.Thread(target=self._run, args=(c,), daemon=True) for c in range(self._clients)]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self.wait()

    def wait(self) -> None:
        """Until every client has stopped (by itself once `total` requests are sent)."""
        for thread in self._threads:
            thread.join()
        self._ended = self._ended or time.perf_counter()

    def _run(self, client_id: int) -> None:
        with httpx.Client(timeout=60) as client:
            while not self._stop.is_set():
                n = next(self._sequence)
                if self._total is not None and n >= self._total:
                    return
                sent, t0 = time.time(), time.perf_counter()
                version = None
                try:
                    response = client.post(self._url, json=self._body(client_id, n))
                    status: int | str = response.status_code
                    if _ok(status):
                        version = response.json().get("model_version")
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                with self._lock:
                    self.samples.append(Sample(sent, ms_since(t0), status, version))
                self._stop.wait(self._pause_s)

    def seen(self, version: str) -> bool:
        with self._lock:
            return any(s.version == version for s in self.samples)

    def summary(self) -> dict[str, Any]:
        """Throughput, errors by status and latency percentiles of the successful requests."""
        with self._lock:
            samples = list(self.samples)
        wall = (self._ended or time.perf_counter()) - self._started
        errors = Counter(str(s.status) for s in samples if not _ok(s.status))
        return {
            "requests": len(samples),
            "errors": dict(errors),
            "requests_per_s": round(len(samples) / wall, 1) if wall > 0 else 0.0,
            **percentiles([s.latency_ms for s in samples if _ok(s.status)]),
        }

    def report(self, new_version: str, since: float) -> dict[str, Any]:
        """Failures and latency of everything sent, and when (seconds after `since`) the last response naming
        another version than `new_version` was sent: from then on every response names the new one."""
        with self._lock:
            samples = sorted(self.samples, key=lambda s: s.sent)
        stale = [s.sent for s in samples if _ok(s.status) and s.version != new_version]
        converged = max(stale) - since if stale else 0.0
        return {
            **outcome(samples),
            "last_old_version_s": round(max(converged, 0.0), 2),
            "new_version_responses": sum(s.version == new_version for s in samples),
        }
