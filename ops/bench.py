"""Latency: replay synthetic sessions of a spec through `Predictor.predict` (in-process), and the load tests of
loadtest/locustfile.py (locust) against a running service."""

from __future__ import annotations

import csv
import random
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.ranking.predict import Predictor
from pipeline.settings import PROJECT_ROOT, FetchSettings
from pipeline.spec.catalogue import Catalogue
from pipeline.spec.load import load_catalogue
from pipeline.timing import ms_since
from train.sessions import SessionGenerator
from train.walk import Problem

LOCUSTFILE = PROJECT_ROOT / "loadtest" / "locustfile.py"


def bench_problems(catalogue: Catalogue, spec_source: str, n: int, seed: int) -> list[Problem]:
    generator = SessionGenerator(catalogue, random.Random(seed))
    problems: list[Problem] = []
    while len(problems) < n:
        session = generator.session()
        if session is not None:
            problems.extend(generator.problems(session, spec_source, f"bench-{len(problems)}"))
    return problems[:n]


def bench_in_process(
    predictor: Predictor, spec_source: str, fetch: FetchSettings, n: int, k: int, seed: int
) -> dict[str, Any]:
    catalogue = load_catalogue(spec_source, fetch)
    started = time.perf_counter()
    spec = predictor.prepare(catalogue)
    prepare_ms = ms_since(started)
    problems = bench_problems(catalogue, spec_source, n, seed)
    cold_prompts: list[float] = []
    warm: list[float] = []
    for problem in problems:
        t0 = time.perf_counter()
        predictor.predict(spec, problem.events, problem.prompt, k=k)
        cold_prompts.append(ms_since(t0))
        t0 = time.perf_counter()  # the same request again: the prompt embedding is now cached
        predictor.predict(spec, problem.events, problem.prompt, k=k)
        warm.append(ms_since(t0))
    return {
        "spec": catalogue.title,
        "operations": len(catalogue.operations),
        "predictions": len(problems),
        "k": k,
        "prepare_spec_ms": round(prepare_ms, 1),
        "p50_ms": round(float(np.percentile(cold_prompts, 50)), 2),
        "p95_ms": round(float(np.percentile(cold_prompts, 95)), 2),
        "p50_ms_cached_prompt": round(float(np.percentile(warm, 50)), 2),
        "p95_ms_cached_prompt": round(float(np.percentile(warm, 95)), 2),
    }


@dataclass(frozen=True, slots=True)
class LoadLevel:
    """One locust run of loadtest/locustfile.py against a running service."""

    users: int
    ramp_s: float = 10
    hold_s: float = 60
    user_classes: tuple[str, ...] = ()  # () : every scenario, by its weight
    slo_p99_ms: float = 400
    slo_error_rate: float = 0.01
    user_pool: int = 2000  # distinct user_ids of the warm sessions
    timeline: Path | None = None  # a row every timeline_s seconds (see the locustfile)
    timeline_s: float = 60
    requests_csv: Path | None = None  # with timeline: every request (time, route, status, ms)
    shed_ok: bool = False  # 429/503 with Retry-After are not failures; users wait as told


@dataclass(frozen=True, slots=True)
class TimelineRow:
    """One window of a locust run's timeline: requests by outcome, latency of the answered ones (ms)."""

    time: float
    requests: int
    answered: int
    shed: int
    failed: int
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    users: int
    statuses: dict[int, int]  # HTTP status (0: no answer) -> requests

    @property
    def unanswered(self) -> int:
        """Shed and failed: what a run without `shed_ok` counts as failures."""
        return self.shed + self.failed


def read_timeline(path: Path) -> list[TimelineRow]:
    with path.open() as handle:
        return [
            TimelineRow(float(r["time"]), int(r["requests"]), int(r["answered"]), int(r["shed"]), int(r["failed"]),
                        *(float(r[c]) if r[c] else None for c in ("p50_ms", "p99_ms", "max_ms")), int(r["users"]),
                        {int(k): int(v) for k, v in (pair.split(":") for pair in r["statuses"].split())})
            for r in csv.DictReader(handle)
        ]


def read_requests(path: Path) -> list[tuple[float, str, int, float]]:
    """A locust run's `--requests-csv`: (end time, route, HTTP status, ms) per request."""
    with path.open() as handle:
        return [(float(r["time"]), r["route"], int(r["status"]), float(r["ms"])) for r in csv.DictReader(handle)]


def run_locust(base_url: str, level: LoadLevel, specs: list[str], csv_prefix: Path) -> dict[str, Any]:
    """Run locust headless (its own process: gevent patches the interpreter) and read its CSV: one row per
    route, the aggregate, and whether the SLOs held (locust's exit code)."""
    csv_prefix.parent.mkdir(parents=True, exist_ok=True)
    command = [
        str(Path(sys.executable).with_name("locust")), "-f", str(LOCUSTFILE), "--headless", "--only-summary",
        "--host", base_url, "-u", str(level.users), "--ramp-s", str(level.ramp_s), "--hold-s", str(level.hold_s),
        "--csv", str(csv_prefix), "--slo-p99-ms", str(level.slo_p99_ms), "--slo-error-rate", str(level.slo_error_rate),
        "--specs", ",".join(specs), "--user-pool", str(level.user_pool), "--loglevel", "WARNING",
        *(["--timeline", str(level.timeline), "--timeline-s", str(level.timeline_s)] if level.timeline else []),
        *(["--requests-csv", str(level.requests_csv)] if level.requests_csv else []),
        *(["--shed-ok"] if level.shed_ok else []), *level.user_classes,
    ]
    finished = subprocess.run(command, capture_output=True, text=True, check=False)
    verdict = next((line for line in finished.stdout.splitlines() if line.startswith("SLO ")), finished.stderr[-500:])
    stats = Path(f"{csv_prefix}_stats.csv")
    if not stats.exists():
        raise RuntimeError(f"locust exited with {finished.returncode} and wrote no statistics: {verdict}")
    with stats.open() as handle:
        rows = [
            {
                "route": row["Name"],
                "requests": int(row["Request Count"]),
                "failures": int(row["Failure Count"]),
                "rps": round(float(row["Requests/s"]), 1),
                "p50_ms": _ms(row["50%"]),
                "p95_ms": _ms(row["95%"]),
                "p99_ms": _ms(row["99%"]),
                "max_ms": _ms(row["Max Response Time"]),
            }
            for row in csv.DictReader(handle)
        ]
    return {"users": level.users, "hold_s": level.hold_s, "slo_met": finished.returncode == 0, "verdict": verdict,
            "routes": rows}


def bench_http(base_url: str, spec_source: str, levels: list[int], hold_s: float, out_dir: Path) -> list[dict[str, Any]]:
    """Sequential warm sessions (1 user, the HTTP cost of one prediction), then every scenario at each level. A
    level beyond what the Ingress admits is shed (503 with Retry-After): those requests are rows of their own
    (`... (shed)`), and their users wait as told, as clients should; they are not failures."""
    runs = [LoadLevel(users=1, ramp_s=1, hold_s=hold_s, user_classes=("WarmSession",))]
    runs += [LoadLevel(users=users, hold_s=hold_s, shed_ok=True) for users in levels if users > 1]
    return [run_locust(base_url, level, [spec_source], out_dir / f"u{level.users}") for level in runs]


def _ms(cell: str) -> float | None:
    """locust writes N/A for a route that had no request in the hold."""
    return None if cell == "N/A" else round(float(cell), 1)
