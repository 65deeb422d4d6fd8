"""Overload: the locust mix at many more users than the service can answer in time. It must shed (429, or 503 with
`Retry-After`, from Serve's `max_queued_requests` at the Ingress and the quotas), never fail otherwise, keep the
latency of what it answers, and answer at its normal latency again within seconds of the load stopping.

The users behave as the Python client does: a shed request waits its `Retry-After` (`--shed-ok`).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from ops.bench import LoadLevel, read_requests, read_timeline, run_locust
from ops.load import percentiles, register_spec
from pipeline.timing import ms_since

SHED = (429, 503)


@dataclass
class OverloadReport:
    users: int
    statuses: dict[int, int] = field(default_factory=dict)  # over the whole run (0: no answer at all)
    failed: int = 0  # anything but 2xx, 429 and 503 with Retry-After
    answered: int = 0  # 2xx during the hold
    answered_p99_ms: float | None = None  # of every 2xx during the hold
    route_p99_ms: dict[str, float] = field(default_factory=dict)  # the same, per route
    normal_p99_ms: float = 0.0  # sequential, before the load
    recovery_s: float | None = None  # from the load stopping to the first answer at normal latency
    after_stop_ms: list[float] = field(default_factory=list)
    max_p99_ms: float = 1000.0
    max_recovery_s: float = 5.0

    @property
    def passed(self) -> bool:
        return (self.failed == 0 and self.answered_p99_ms is not None and self.answered_p99_ms <= self.max_p99_ms
                and self.recovery_s is not None and self.recovery_s <= self.max_recovery_s)

    def summary(self) -> dict[str, Any]:
        return {"users": self.users, "statuses": self.statuses, "failed": self.failed,
                "answered_in_hold": self.answered, "answered_p99_ms": self.answered_p99_ms,
                "route_p99_ms": self.route_p99_ms, "normal_p99_ms": self.normal_p99_ms,
                "recovery_s": self.recovery_s, "first_answers_after_stop_ms": self.after_stop_ms,
                "passed": self.passed}


def _predict_body(spec_id: str, n: int) -> dict[str, Any]:
    return {"user_id": f"probe-{n}", "spec_id": spec_id, "prompt": "list the recent ones", "k": 5}


def normal_latency(client: httpx.Client, base_url: str, spec_id: str, n: int = 30) -> float:
    """p99 (ms) of `n` sequential predictions on an idle service: what "normal latency" means here."""
    for i in range(5):  # the spec prepared in every replica first
        client.post(f"{base_url}/predict", json=_predict_body(spec_id, i)).raise_for_status()
    took = []
    for i in range(n):
        started = time.perf_counter()
        client.post(f"{base_url}/predict", json=_predict_body(spec_id, i)).raise_for_status()
        took.append(ms_since(started))
    return percentiles(took, (99,))["p99_ms"]


def recovery(client: httpx.Client, base_url: str, spec_id: str, stopped: float, normal_ms: float,
             timeout_s: float = 30) -> tuple[float | None, list[float]]:
    """Seconds from `stopped` (wall time) until a prediction is answered within `normal_ms`, and the latencies
    of the first answers after the stop."""
    seen: list[float] = []
    n = 0
    while time.time() - stopped < timeout_s:
        started = time.perf_counter()
        response = client.post(f"{base_url}/predict", json=_predict_body(spec_id, 10_000 + n))
        took = ms_since(started)
        n += 1
        if len(seen) < 5:
            seen.append(round(took, 1))
        if response.status_code == 200 and took <= normal_ms:
            return round(time.time() - stopped, 2), seen
    return None, seen


def overload(base_url: str, specs: list[Path], users: int, hold_s: float, out_dir: Path,
             ramp_s: float = 10) -> OverloadReport:
    out_dir.mkdir(parents=True, exist_ok=True)
    timeline = out_dir / "timeline.csv"
    requests = out_dir / "requests.csv"
    timeline.unlink(missing_ok=True)
    requests.unlink(missing_ok=True)
    with httpx.Client(timeout=60) as client:
        spec_id = register_spec(base_url, specs[0].read_text())
        report = OverloadReport(users, normal_p99_ms=normal_latency(client, base_url, spec_id))
        level = LoadLevel(users=users, ramp_s=ramp_s, hold_s=hold_s, slo_p99_ms=report.max_p99_ms,
                          slo_error_rate=0.0, timeline=timeline, timeline_s=1, requests_csv=requests,
                          shed_ok=True)
        run_locust(base_url, level, [str(p) for p in specs], out_dir / "locust")
        rows = read_timeline(timeline)
        stopped = rows[-1].time  # the last, partial window is written when the load stops
        report.recovery_s, report.after_stop_ms = recovery(client, base_url, spec_id, stopped, report.normal_p99_ms)
    statuses: Counter[int] = Counter()
    for row in rows:
        statuses.update(row.statuses)
    report.statuses = dict(sorted(statuses.items()))
    report.failed = sum(row.failed for row in rows)
    hold = [(route, ms) for at, route, status, ms in read_requests(requests)
            if stopped - hold_s <= at <= stopped and 200 <= status < 300]
    report.answered = len(hold)
    if hold:
        report.answered_p99_ms = percentiles([ms for _, ms in hold], (99,))["p99_ms"]
        by_route: dict[str, list[float]] = {}
        for route, ms in hold:
            by_route.setdefault(route, []).append(ms)
        report.route_p99_ms = {route: percentiles(v, (99,))["p99_ms"] for route, v in sorted(by_route.items())}
    return report
