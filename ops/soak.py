"""A soak: the locust mix for a long while against a running service, with the memory of every process sampled
as it goes, so that what only grows (per-spec state in replicas, prediction records, online counts, the spool,
the label log, Ray's own processes) shows.

Locust writes a timeline row every window (`--timeline`); each time a row appears this samples the PSS of every
process of the local Ray cluster (every process in the session of a `gcs_server` or `raylet`, grouped by its
name: `ServeReplica:opensesame:Ranker`, `raylet`, ...) and of Redis, Redis's own memory and keys, and the sizes of
the spool and the label log, and writes the joined row to a CSV. The verdict: no failed request, and the memory
of every process of the service (the Ray cluster's) grew less than `max_growth` from the end of the warm-up to the
end. Redis is reported beside it, not in the verdict: what it holds expires by TTL (a day of prediction records, a
month of distinct specs), so under a steady stream of new specs it grows for as long as its TTLs, by design; the
report gives its growth per minute and its keys by kind, to size it by.
"""

from __future__ import annotations

import csv
import os
import re
import statistics
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import redis

from ops.bench import LoadLevel, TimelineRow, read_timeline, run_locust

CLUSTER_ROOTS = ("gcs_server", "raylet")
OTHER = ("redis-server",)


@dataclass(frozen=True, slots=True)
class Sample:
    """One window: the load (from locust's timeline) and the memory at its end."""

    minute: float
    load: TimelineRow
    pss_mb: dict[str, float]  # process name -> PSS of all its processes
    redis_mb: float | None
    redis_keys: int | None
    spool_kb: float
    label_log_kb: float


@dataclass
class SoakReport:
    samples: list[Sample] = field(default_factory=list)
    specs: dict[str, int] = field(default_factory=dict)  # how the distinct specs reached the service
    growth: dict[str, float] = field(default_factory=dict)  # process -> growth over the window after warm-up
    redis_mb_per_min: float | None = None  # used_memory's growth after warm-up
    redis_keys: dict[str, int] = field(default_factory=dict)  # at the end, by kind (the key's first part)
    failed: int = 0
    requests: int = 0
    max_growth: float = 0.10

    @property
    def flat(self) -> bool:
        return all(g < self.max_growth for name, g in self.growth.items() if name not in OTHER)

    @property
    def passed(self) -> bool:
        return self.failed == 0 and self.flat


def process_memory() -> dict[str, float]:
    """PSS (MB) of every process of the local Ray cluster and of Redis, summed by process name."""
    processes = list(psutil.process_iter(["name", "cmdline"]))
    sessions = {_sid(p) for p in processes if p.info["name"] in CLUSTER_ROOTS} - {None}
    totals: dict[str, float] = defaultdict(float)
    for process in processes:
        if _sid(process) not in sessions and process.info["name"] not in OTHER:
            continue
        try:
            pss = process.memory_full_info().pss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        totals[_name(process)] += pss / 2**20
    return {name: round(mb, 1) for name, mb in sorted(totals.items())}


def _sid(process: psutil.Process) -> int | None:
    try:
        return os.getsid(process.pid)
    except OSError:
        return None


def _name(process: psutil.Process) -> str:
    """Ray names its workers by what they run (`ray::ServeReplica:opensesame:Ranker`, with `.method` appended
    while a method runs); other processes by name."""
    command = process.info["cmdline"] or []
    if command and command[0].startswith("ray::"):
        return command[0].split()[0].removeprefix("ray::").split(".")[0]
    return process.info["name"] or str(process.pid)


def _size_kb(path: Path) -> float:
    if path.is_file():
        return path.stat().st_size / 1024
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1024 if path.is_dir() else 0.0


def register_specs(base_url: str, candidates: list[Path], wanted: int, log: Callable[[str], None]) -> list[Path]:
    """Register spec files until `wanted` are accepted (a file the service refuses as a spec is skipped): the warm
    sessions' specs, registered before the soak so that refusals are not counted as its failures."""
    accepted: list[Path] = []
    with httpx.Client(timeout=120) as client:
        for path in candidates:
            response = client.post(f"{base_url}/specs", json={"spec": path.read_text()})
            if response.status_code == 429:
                raise RuntimeError(f"the service caps the specs one client registers: {response.json()['detail']}; "
                                   "serve with OPENSESAME__CLIENTS__MAX_SPECS=100000 for the soak")
            if response.status_code == 201:
                accepted.append(path)
                if len(accepted) % 20 == 0:
                    log(f"[soak] {len(accepted)}/{wanted} specs registered")
            if len(accepted) == wanted:
                return accepted
    raise RuntimeError(f"only {len(accepted)} of the {len(candidates)} spec files were accepted; {wanted} wanted")


class _Sampler(threading.Thread):
    """Follows the timeline file; at each new row, samples memory and appends the joined row to the CSV."""

    def __init__(self, timeline: Path, out_csv: Path, redis_url: str | None, spool: Path, label_log: Path,
                 log: Callable[[str], None]) -> None:
        super().__init__(daemon=True)
        self.timeline, self.out_csv, self.spool, self.label_log, self.log = timeline, out_csv, spool, label_log, log
        self.redis = redis.Redis.from_url(redis_url) if redis_url else None
        self.samples: list[Sample] = []
        self.stop = threading.Event()
        self.started = time.time()

    def run(self) -> None:
        seen = 0
        while not self.stop.wait(0.5):
            seen = self._catch_up(seen)
        self._catch_up(seen)

    def _catch_up(self, seen: int) -> int:
        rows = read_timeline(self.timeline) if self.timeline.exists() else []
        for row in rows[seen:]:
            sample = self._sample(row)
            self.samples.append(sample)
            self._write(sample)
            self.log(f"[soak] minute {sample.minute:5.1f}: {row.requests} requests, {row.failed} failed, p99 "
                     f"{row.p99_ms} ms, replicas+ray {sum(sample.pss_mb.values()):.0f} MB, redis {sample.redis_mb} MB")
        return len(rows)

    def _sample(self, row: TimelineRow) -> Sample:
        used = keys = None
        if self.redis is not None:
            try:
                used, keys = round(self.redis.info("memory")["used_memory"] / 2**20, 1), int(self.redis.dbsize())
            except redis.RedisError:
                pass
        return Sample(round((row.time - self.started) / 60, 2), row, process_memory(), used, keys,
                      round(_size_kb(self.spool), 1), round(_size_kb(self.label_log), 1))

    def _write(self, sample: Sample) -> None:
        head = not self.out_csv.exists()
        with self.out_csv.open("a", newline="") as handle:
            writer = csv.writer(handle)
            if head:
                writer.writerow(["minute", "process", "pss_mb", "requests", "failed", "p50_ms", "p99_ms", "redis_mb",
                                 "redis_keys", "spool_kb", "label_log_kb"])
            load = sample.load
            for name, mb in sample.pss_mb.items():
                writer.writerow([sample.minute, name, mb, load.requests, load.unanswered, load.p50_ms,
                                 load.p99_ms, sample.redis_mb, sample.redis_keys, sample.spool_kb, sample.label_log_kb])


def growth(samples: list[Sample], warmup_min: float) -> dict[str, float]:
    """Per process: (PSS at the end - PSS at the end of the warm-up) / PSS at the end of the warm-up, each end the
    median (the higher of two) of up to three samples (one sample is noise: a GC, a batch in flight)."""
    window = [s for s in samples if s.minute >= warmup_min] or samples[-1:]
    names = set.intersection(*(set(s.pss_mb) for s in window)) if window else set()
    out: dict[str, float] = {}
    for name in sorted(names):
        values = [s.pss_mb[name] for s in window]
        first, last = statistics.median_high(values[:3]), statistics.median_high(values[-3:])
        out[name] = round((last - first) / first, 4) if first else 0.0
    return out


def soak(base_url: str, specs: list[Path], minutes: float, users: int, out_dir: Path, *, user_pool: int = 2000,
         window_s: float = 60, warmup_min: float | None = None, redis_url: str | None, spool: Path,
         label_log: Path, log: Callable[[str], None] = print) -> SoakReport:
    """Run the locust mix `minutes` long at `users` over `specs` (registered first), sampling every `window_s`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    timeline, out_csv = out_dir / "timeline.csv", out_dir / "soak.csv"
    for stale in (timeline, out_csv):
        stale.unlink(missing_ok=True)
    sampler = _Sampler(timeline, out_csv, redis_url, spool, label_log, log)
    sampler.start()
    level = LoadLevel(users=users, ramp_s=min(15.0, window_s), hold_s=minutes * 60, slo_p99_ms=1e9,
                      slo_error_rate=0.0, user_pool=user_pool, timeline=timeline, timeline_s=window_s)
    try:
        run = run_locust(base_url, level, [str(p) for p in specs], out_dir / "locust")
    finally:
        sampler.stop.set()
        sampler.join()
    routes = {r["route"]: r for r in run["routes"]}
    report = SoakReport(sampler.samples)
    report.requests = sum(s.load.requests for s in report.samples)
    report.failed = sum(s.load.unanswered for s in report.samples)
    report.specs = {
        "registered": len(specs),
        "inline": routes.get("/specs inline", {}).get("requests", 0),
        "by_url": routes.get("/predict cold spec_url", {}).get("requests", 0),
    }
    warmup = warmup_min if warmup_min is not None else max(0.0, minutes - 20)
    report.growth = growth(report.samples, warmup)
    used = [(s.minute, s.redis_mb) for s in report.samples if s.minute >= warmup and s.redis_mb is not None]
    if len(used) >= 2 and used[-1][0] > used[0][0]:
        report.redis_mb_per_min = round((used[-1][1] - used[0][1]) / (used[-1][0] - used[0][0]), 2)
    if redis_url:
        report.redis_keys = keys_by_kind(redis.Redis.from_url(redis_url))
    return report


def keys_by_kind(client: redis.Redis) -> dict[str, int]:
    """Keys by their first word after OpenSesame's prefix (`opensesame:cat:...` -> `cat`, `opensesame:emb-...`
    -> `emb`)."""
    kinds: Counter[str] = Counter()
    for key in client.scan_iter(count=1000):
        name = key.decode(errors="replace")
        kinds[re.split(r"[:\-]", name.split(":", 1)[-1])[0]] += 1
    return dict(kinds.most_common())


def plot(report: SoakReport, path: Path, top: int = 8) -> None:
    """PSS of the largest processes, Redis and the on-disk logs, and latency with failures, against minutes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [s.minute for s in report.samples]
    last = report.samples[-1].pss_mb
    largest = sorted(last, key=last.get, reverse=True)[:top]
    figure, (memory, stores, latency) = plt.subplots(3, 1, figsize=(10, 11), sharex=True)
    for name in largest:
        memory.plot(minutes, [s.pss_mb.get(name) for s in report.samples], label=name)
    memory.set_ylabel("PSS (MB)")
    memory.set_title("Memory of the largest processes")
    memory.legend(fontsize=7, loc="upper left")
    stores.plot(minutes, [s.redis_mb for s in report.samples], label="Redis used_memory (MB)")
    stores.plot(minutes, [s.label_log_kb / 1024 for s in report.samples], label="label log (MB)")
    stores.plot(minutes, [s.spool_kb / 1024 for s in report.samples], label="spool (MB)")
    stores.set_ylabel("MB")
    stores.legend(fontsize=7, loc="upper left")
    latency.plot(minutes, [s.load.p50_ms for s in report.samples], label="p50 (ms)")
    latency.plot(minutes, [s.load.p99_ms for s in report.samples], label="p99 (ms)")
    failed = latency.twinx()
    failed.bar(minutes, [s.load.unanswered for s in report.samples], width=0.3, color="red", alpha=0.5)
    failed.set_ylabel("failed requests", color="red")
    latency.set_ylabel("ms")
    latency.set_xlabel("minutes")
    latency.legend(fontsize=7, loc="upper left")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def summary(report: SoakReport) -> dict[str, Any]:
    return {
        "minutes": report.samples[-1].minute if report.samples else 0,
        "requests": report.requests,
        "failed": report.failed,
        "specs": report.specs,
        "growth_after_warmup": report.growth,
        "memory_flat": report.flat,
        "redis_mb_per_min_after_warmup": report.redis_mb_per_min,
        "redis_keys": report.redis_keys,
        "passed": report.passed,
    }
