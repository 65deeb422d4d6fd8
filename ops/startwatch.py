"""Watching a service come up and improve: started beside `make serve`, it measures the time to the first answer
and to each model version that answers after it, and every request's outcome from the first answer on.

Once /readyz says a model serves, it registers a spec, then predicts on it from a few clients at a steady
pace until as many versions as asked for have answered (a fresh `make serve`: the cold-start ranker, then the full
model the preparation job promotes; a second start: one), and a little longer, so that a failure right after the
swap shows. Requests count from the first answer on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ops.load import RequestLoop, Sample, outcome, register_spec, wait_until_ok


@dataclass(frozen=True, slots=True)
class StartReport:
    first_answer_s: float | None  # seconds from the start of the watch to the first answered /predict
    versions: dict[str, float] = field(default_factory=dict)  # model_version -> seconds to its first answer
    outcome: dict[str, Any] = field(default_factory=dict)  # every request sent from the first answer on
    last_old_version_s: float | None = None  # the last answer of an earlier version (beside the newest's first)

    @property
    def passed(self) -> bool:
        return self.first_answer_s is not None and self.outcome.get("failed", 0) == 0


def start_report(samples: list[Sample], started: float) -> StartReport:
    """The timeline of `samples`, in seconds after `started` (a time.time()); an answer counts when it arrived."""
    ordered = sorted(samples, key=lambda s: s.sent)
    answered = [(s.sent + s.latency_ms / 1000 - started, s.version) for s in ordered if s.version is not None]
    if not answered:
        return StartReport(None, outcome=outcome([]))
    versions: dict[str, float] = {}
    for at, version in sorted(answered):
        versions.setdefault(version, round(at, 1))
    newest = max(versions, key=versions.__getitem__)
    older = [at for at, version in answered if version != newest]
    first_sent = next(s.sent for s in ordered if s.version is not None)
    return StartReport(
        first_answer_s=min(versions.values()),
        versions=versions,
        outcome=outcome([s for s in ordered if s.sent >= first_sent]),
        last_old_version_s=round(max(older), 1) if older else None,
    )


def watch_start(url: str, spec: str, versions: int, clients: int = 2, pause_s: float = 0.2,
                timeout_s: float = 3600, after_s: float = 10, log: Callable[[str], object] = print) -> StartReport:
    started = time.time()
    deadline = started + timeout_s
    # Before /readyz answers 200 the port is closed, the proxy knows no route yet (404) or the Ranker waits for
    # its model (503).
    wait_until_ok(f"{url}/readyz", timeout_s)
    spec_id = register_spec(url, spec)
    log(f"[{time.time() - started:6.0f} s] ready; the spec is registered: {spec_id}")
    loop = RequestLoop(f"{url}/predict", lambda client, n: {
        "user_id": f"watch-{client}", "spec_id": spec_id, "k": 3, "prompt": "what next",
    }, clients=clients, pause_s=pause_s)
    seen: list[str] = []
    with loop:
        while len(seen) < versions and time.time() < deadline:
            time.sleep(1)
            for version in start_report(list(loop.samples), started).versions:
                if version not in seen:
                    seen.append(version)
                    log(f"[{time.time() - started:6.0f} s] answered by {version}")
        time.sleep(after_s if len(seen) >= versions else 0)
    return start_report(list(loop.samples), started)
