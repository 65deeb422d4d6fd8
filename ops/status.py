"""What is serving and what is coming: the model a running service answers with, the registry's champion (and
whether it is a cold-start one), and the model jobs on its cluster with their latest progress line.
`opensesame status` prints it; `make serve` follows the preparation job it submitted with `follow_job`."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
from pydantic import BaseModel
from ray.job_submission import JobStatus, JobSubmissionClient

from pipeline.adapters import registry
from pipeline.settings import Settings
from serve.jobs import ENTRYPOINTS, ModelJobs

PROGRESS = ("[prepare]", "[embedder]", "[train]", "[retrain]")  # the lines a job's log says its progress with
FOLLOW_EVERY_S = 15.0
TERMINAL = {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}


class JobState(BaseModel):
    job_id: str
    kind: str
    status: str
    progress: str | None  # the job's latest progress line


class Status(BaseModel):
    serving: str | None  # the model version answering requests (None: the service is not up, or has none yet)
    service: str  # "up", "unready: <why>" or "down: <why>"
    champion: str | None
    champion_stage: str | None  # "cold-start", "full", or None for versions registered before stages
    jobs: list[JobState]


def progress(logs: str) -> str | None:
    lines = [line.strip() for line in logs.splitlines() if line.strip().startswith(PROGRESS)]
    return lines[-1] if lines else None


def status(settings: Settings, url: str) -> Status:
    try:
        answer = httpx.get(f"{url}/readyz", timeout=5)
        ready = answer.json()
        serving = ready.get("model_version")
        service = "up" if answer.status_code == 200 else f"unready: {ready.get('detail') or ready}"
    except (httpx.HTTPError, ValueError) as exc:
        serving, service = None, f"down: {type(exc).__name__} at {url}"
    champion = registry.champion(settings.registry)
    stage = registry.version_tags(champion, settings.registry).get("stage") if champion else None
    return Status(serving=serving, service=service, champion=champion.label if champion else None,
                  champion_stage=stage, jobs=model_jobs(settings))


def model_jobs(settings: Settings) -> list[JobState]:
    """Every model job the cluster knows, newest first (none when its job API cannot be reached)."""
    try:
        client = JobSubmissionClient(settings.learning.dashboard_url)
        jobs = client.list_jobs()
    except (OSError, RuntimeError):
        return []
    found = []
    for job in sorted(jobs, key=lambda j: j.start_time or 0, reverse=True):
        kind = next((k for k, e in ENTRYPOINTS.items() if e in job.entrypoint), None)
        if kind is None or not job.submission_id:
            continue
        found.append(JobState(job_id=job.submission_id, kind=kind, status=str(job.status.value),
                              progress=progress(client.get_job_logs(job.submission_id))))
    return found


def follow_job(settings: Settings, job_id: str, started: float, out: Callable[[str], Any]) -> None:
    """Prints the job's progress lines as they change (with the time since `started`), then its outcome."""
    client = JobSubmissionClient(settings.learning.dashboard_url)
    said = None
    while True:
        info = client.get_job_info(job_id)
        line = progress(client.get_job_logs(job_id))
        if line is not None and line != said:
            out(f"[{time.monotonic() - started:5.0f} s] {line}")
            said = line
        if info.status in TERMINAL:
            break
        time.sleep(FOLLOW_EVERY_S)
    report = ModelJobs(settings).status(job_id)
    gate = report.get("gate") or {}
    if info.status == JobStatus.SUCCEEDED and gate.get("promoted"):
        out(f"[{time.monotonic() - started:5.0f} s] the full model {report['model_version']} is serving: "
            f"{gate.get('reason', '')}")
    else:
        out(f"[{time.monotonic() - started:5.0f} s] job {job_id} {info.status.value}: {info.message or ''} "
            f"{gate.get('reason', '')}; still serving the cold-start ranker (`ray job logs {job_id}`)")
