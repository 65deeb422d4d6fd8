"""Model jobs on the Ray cluster, one at a time: retraining (`python -m train.retrain`) and the full preparation
that replaces a cold-start ranker (`python -m train.prepare`); submit one and report on it.

The job runs with the same settings as the service that submits it (every field that differs from its default
becomes an OPENSESAME__* environment variable of the job). Its outcome is read back from two places: Ray's job
status and the MLflow version the job tagged with its id (the gate's decision and metrics).
"""

from __future__ import annotations

import json
import shlex
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from ray.job_submission import JobStatus, JobSubmissionClient

from pipeline.adapters import registry
from pipeline.errors import JobNotFoundError, JobsUnavailableError, RetrainRunningError
from pipeline.settings import Settings

JobKind = Literal["retrain", "prepare"]
ENTRYPOINTS: dict[str, str] = {"retrain": "-m train.retrain", "prepare": "-m train.prepare"}
ACTIVE = {JobStatus.PENDING, JobStatus.RUNNING}


class ModelJobs:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._env = settings.to_env()
        self._client: JobSubmissionClient | None = None

    @property
    def client(self) -> JobSubmissionClient:
        if self._client is None:  # connects on first use: the dashboard may come up after this replica
            self._client = JobSubmissionClient(self._settings.learning.dashboard_url)
        return self._client

    @contextmanager
    def _job_api(self) -> Iterator[None]:
        """Calls to the job API: an unreachable dashboard is the service's problem (503), said as such."""
        try:
            yield
        except OSError as exc:  # the SDK's ConnectionError and requests' errors are both OSErrors
            self._client = None  # connect afresh next time
            raise JobsUnavailableError(
                f"the Ray job API at {self._settings.learning.dashboard_url} cannot be reached ({type(exc).__name__}): "
                "retraining jobs can be neither started nor read now; check learning.dashboard_url"
            ) from exc

    def running(self) -> str | None:
        """The id of a model job still pending or running on the cluster (whoever submitted it)."""
        with self._job_api():
            jobs = self.client.list_jobs()
        for job in jobs:
            if job.status in ACTIVE and any(e in job.entrypoint for e in ENTRYPOINTS.values()) and job.submission_id:
                return job.submission_id
        return None

    def submit(self, trigger: str, kind: JobKind = "retrain") -> str:
        active = self.running()
        if active is not None:
            raise RetrainRunningError(
                f"model job {active} is still running: one job at a time; follow it at GET /admin/retrain/{active}"
            )
        job_id = f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        self._submit(job_id, f"{ENTRYPOINTS[kind]} --job-id {job_id}", trigger)
        return job_id

    def _submit(self, job_id: str, arguments: str, trigger: str) -> None:
        """`python <arguments>` as job `job_id` with the service's settings, on the driver resources configured."""
        learning = self._settings.learning
        with self._job_api():
            self.client.submit_job(
                entrypoint=f"{sys.executable} {arguments}",
                submission_id=job_id,
                runtime_env={"env_vars": self._env},
                metadata={"trigger": trigger},
                entrypoint_num_cpus=learning.driver_cpus or None,
                entrypoint_memory=learning.driver_memory_bytes or None,
            )

    def _info(self, job_id: str, missing: str) -> Any:
        """Ray's record of job `job_id` (`missing` says what to do when there is none)."""
        try:
            with self._job_api():
                return self.client.get_job_info(job_id)
        except RuntimeError as exc:  # the SDK's way of saying 404
            raise JobNotFoundError(f"no {missing}") from exc

    def submit_import(self, upload: Path, catalogue: Path, options: dict[str, str]) -> str:
        """An import of `upload` onto the spec whose catalogue is in `catalogue` (train/import_job.py); imports
        run beside model jobs and each other (each learns through the claims every label takes)."""
        job_id = upload.stem
        self._submit_import(job_id, ["--upload", str(upload), "--catalogue", str(catalogue)], options)
        return job_id

    def submit_file_import(self, files: list[str], spec: str, options: dict[str, str]) -> str:
        """An import of traffic files or URIs the cluster's nodes can read, over Ray Data (`opensesame import
        --address`); the job prints its report as JSON."""
        job_id = f"import-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        self._submit_import(job_id, ["--json", "--spec", spec, *files], options)
        return job_id

    def _submit_import(self, job_id: str, arguments: list[str], options: dict[str, str]) -> None:
        flags = [part for name, value in options.items() for part in (f"--{name}", value)]
        self._submit(job_id, shlex.join(["-m", "train.import_job", "--job-id", job_id, *flags, *arguments]), "import")

    def import_status(self, job_id: str) -> dict[str, Any]:
        """The import job's Ray status and, once it wrote it, its report."""
        info = self._info(job_id, f"import job {job_id!r}; POST /admin/import starts one")
        written = self._settings.imports.report_dir(job_id) / "report.json"
        return {
            "job_id": job_id,
            "status": _status(info),
            "message": info.message,
            "report": json.loads(written.read_text()) if written.exists() else None,
        }

    def status(self, job_id: str) -> dict[str, Any]:
        info = self._info(job_id, f"model job {job_id!r}; POST /admin/retrain starts one")
        report: dict[str, Any] = {
            "job_id": job_id,
            "status": _status(info),
            "trigger": (info.metadata or {}).get("trigger"),
            "message": info.message,
            "started_at": info.start_time / 1000 if info.start_time else None,
            "ended_at": info.end_time / 1000 if info.end_time else None,
        }
        tagged = registry.versions_tagged("job_id", job_id, self._settings.registry)
        if tagged:
            version, tags = tagged[0]
            metrics = json.loads(tags.get("gate_metrics", "{}"))
            report["model_version"] = version.label
            report["gate"] = {
                "promoted": tags.get("promoted") == "true",
                "promoted_at": float(tags["promoted_at"]) if "promoted_at" in tags else None,
                "reason": tags.get("gate_reason", ""),
                "candidate": metrics.get("candidate", {}),
                "champion": metrics.get("champion", {}),
            }
        return report


def _status(info: Any) -> str:
    return str(info.status.value if hasattr(info.status, "value") else info.status)
