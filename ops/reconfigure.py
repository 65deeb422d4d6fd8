"""Config changes under load: `serve deploy` of changed configs while clients predict, as a model swap is
measured. Each step changes the running config (replicas up, replicas down, a settings change that restarts
every replica, and back) and waits until the app is RUNNING again; the load goes on throughout and every
request sent during a step is counted against it.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ops.load import RequestLoop, outcome
from pipeline.adapters.serve_api import application, deploy, deployment, running_config, wait_running
from pipeline.settings import RankingSettings

Change = Callable[[dict[str, Any]], None]  # changes a config in place


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    change: Change


def replicas(name: str, n: int) -> Step:
    return Step(f"{name} replicas -> {n}", lambda config: deployment(config, name).update(num_replicas=n))


def setting(section: str, key: str, value: Any) -> Step:
    """A change of the app's settings (its `args`): Serve restarts every replica of the app, one at a time."""

    def change(config: dict[str, Any]) -> None:
        application(config).setdefault("args", {}).setdefault("settings", {}).setdefault(section, {})[key] = value

    return Step(f"settings {section}.{key} = {value!r} (every replica restarts)", change)


def default_steps(config: dict[str, Any]) -> list[Step]:
    """Ranker up to two replicas and back, then a settings change and its revert (both restart every replica)."""
    ranking = application(config).get("args", {}).get("settings", {}).get("ranking", {})
    history = ranking.get("max_history", RankingSettings().max_history)
    ranker = deployment(config, "Ranker").get("num_replicas", 1)
    return [replicas("Ranker", ranker + 1), replicas("Ranker", ranker),
            setting("ranking", "max_history", history - 1), setting("ranking", "max_history", history)]


@dataclass(frozen=True, slots=True)
class StepReport:
    step: str
    seconds: float
    requests: int
    failed: int
    failures: list[str]
    p50_ms: float | None = None  # None: nothing answered
    p99_ms: float | None = None


def reconfigure_under_load(dashboard_url: str, loop: RequestLoop, steps: list[Step] | None = None,
                           settle_s: float = 5, log: Callable[[str], None] = print) -> list[StepReport]:
    """Each step deployed while `loop` runs; it is over `settle_s` after the app is RUNNING again (replicas that
    stopped drain meanwhile). The config is the cluster's own, as `serve deploy` would be given it."""
    config = running_config(dashboard_url)
    steps = steps if steps is not None else default_steps(config)
    spans: list[tuple[str, float, float]] = []
    with loop:
        time.sleep(settle_s)  # the load before the first change is the reference
        spans.append(("before any change", time.time() - settle_s, time.time()))
        for step in steps:
            config = copy.deepcopy(config)
            step.change(config)
            started = time.time()
            deploy(dashboard_url, config)
            wait_running(dashboard_url, since=started)
            time.sleep(settle_s)
            spans.append((step.name, started, time.time()))
            log(f"[reconfigure] {step.name}: RUNNING after {spans[-1][2] - started - settle_s:.1f} s")
    return [StepReport(name, round(ended - started, 1), **outcome([s for s in loop.samples if started <= s.sent < ended]))
            for name, started, ended in spans]
