"""Closed-loop HTTP clients that keep predicting while a model is swapped, and what they saw.

Each client sends its next request as soon as the previous one returns; every response is recorded with its
wall time, status and `model_version`, so a swap can be judged: failures, latency percentiles, and the moment
after which every response names the new version.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np


@dataclass(frozen=True, slots=True)
class Sample:
    sent: float  # time.time() when sent
    latency_ms: float
    status: int | str  # HTTP status, or the transport error's name
    version: str | None


class RequestLoop:
    def __init__(self, url: str, body: Callable[[int, int], dict[str, Any]], clients: int) -> None:
        """`body(client, n)` is the JSON of client `client`'s `n`-th request."""
        self._url = url
        self._body = body
        self._clients = clients
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.samples: list[Sample] = []

    def __enter__(self) -> RequestLoop:
        self._threads = [threading.Thread(target=self._run, args=(c,), daemon=True) for c in range(self._clients)]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _run(self, client_id: int) -> None:
        with httpx.Client(timeout=60) as client:
            n = 0
            while not self._stop.is_set():
                sent, t0 = time.time(), time.perf_counter()
                version = None
                try:
                    response = client.post(self._url, json=self._body(client_id, n))
                    status: int | str = response.status_code
                    if status == 200:
                        version = response.json()["model_version"]
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                with self._lock:
                    self.samples.append(Sample(sent, (time.perf_counter() - t0) * 1000, status, version))
                n += 1

    def seen(self, version: str) -> bool:
        with self._lock:
            return any(s.version == version for s in self.samples)

    def report(self, new_version: str, since: float) -> dict[str, Any]:
        """Failures and latency of everything sent, and when (seconds after `since`) the last response naming
        another version than `new_version` was sent: from then on every response names the new one."""
        with self._lock:
            samples = sorted(self.samples, key=lambda s: s.sent)
        failed = [s for s in samples if s.status != 200]
        latencies = [s.latency_ms for s in samples if s.status == 200]
        stale = [s.sent for s in samples if s.status == 200 and s.version != new_version]
        converged = max(stale) - since if stale else 0.0
        return {
            "requests": len(samples),
            "failed": len(failed),
            "failures": sorted({str(s.status) for s in failed}),
            **{f"p{q}_ms": round(float(np.percentile(latencies, q)), 1) for q in (50, 99) if latencies},
            "last_old_version_s": round(max(converged, 0.0), 2),
            "new_version_responses": sum(s.version == new_version for s in samples),
        }
