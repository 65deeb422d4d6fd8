"""`LearningLoop` deployment (one replica): the single writer of the label log, and the retraining trigger.

A background thread drains the Redis Stream into Parquet (pipeline/adapters/label_log.py) and counts the labels it
wrote; after `learning.retrain_after_labels` of them it submits a retraining job, as `POST /admin/retrain`
does. Jobs run on the Ray cluster (serve/jobs.py), one at a time. Another thread keeps the metrics: the log's
backlog and lag, and each submitted job's end and gate decision.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import uuid

import redis
from ray import serve

from pipeline.adapters.label_log import LabelLogWriter
from pipeline.errors import JobNotFoundError, RetrainRunningError
from pipeline.settings import Settings
from serve.jobs import ModelJobs
from serve.schemas import ImportJob, RetrainJob
from serve.telemetry import LearningMetrics

log = logging.getLogger("opensesame.learning")


@serve.deployment  # one replica (config): the single writer of the label log
class LearningLoop:
    def __init__(self, settings: Settings) -> None:
        self.config = settings
        self.jobs = ModelJobs(settings)
        self.metrics = LearningMetrics()
        self._since_retrain = 0
        self._stop = threading.Event()
        self._writer: LabelLogWriter | None = None
        self._watched: dict[str, str] = {}  # submitted jobs not yet ended -> their trigger
        self._watched_lock = threading.Lock()
        threading.Thread(target=self._observe_forever, name="learning-metrics", daemon=True).start()
        if self.config.cache.redis_url:
            threading.Thread(target=self._drain_forever, name="label-log-writer", daemon=True).start()
        else:
            log.warning("no cache.redis_url: labels stay in the feedback spool; no label log, no automatic retraining")

    def _drain_forever(self) -> None:
        learning, cache = self.config.learning, self.config.cache
        while not self._stop.is_set():
            try:
                if self._writer is None:
                    client = redis.Redis.from_url(cache.redis_url, socket_timeout=learning.writer_block_ms / 1000 + 5)
                    self._writer = LabelLogWriter(
                        client,
                        self.config.feedback.stream,
                        learning.consumer_group,
                        learning.log_uri,
                        learning.writer_batch,
                    )
                written = self._writer.drain_once(learning.writer_block_ms)
            except Exception:  # Redis away, storage full: retry; unacknowledged entries wait in the stream
                log.exception("label log writer failed; retrying in %.0f s", cache.retry_after_s)
                self._writer = None
                self._stop.wait(cache.retry_after_s)
                continue
            if written:
                self.metrics.written.inc(written)
                self._since_retrain += written
                self._maybe_retrain()

    def _observe_forever(self) -> None:
        while not self._stop.wait(self.config.learning.metrics_refresh_s):
            writer = self._writer
            try:
                if writer is not None:
                    backlog, lag = writer.backlog()
                    self.metrics.backlog.set(backlog)
                    self.metrics.lag.set(lag)
                self._observe_jobs()
            except Exception:  # Redis or the job API away: the next round tries again
                log.warning("refreshing the learning metrics failed", exc_info=True)

    def _observe_jobs(self) -> None:
        """Count each submitted job's end, and its gate's decision when it registered a candidate."""
        with self._watched_lock:
            watched = dict(self._watched)
        for job_id, trigger in watched.items():
            try:
                report = RetrainJob.model_validate(self.jobs.status(job_id))
            except JobNotFoundError:
                report = None
            if report is not None and report.status in ("PENDING", "RUNNING"):
                continue
            status = report.status.lower() if report is not None else "lost"
            self.metrics.jobs.inc(tags={"trigger": trigger, "status": status})
            if report is not None and report.gate is not None:
                self.metrics.gate.inc(tags={"decision": "promoted" if report.gate.promoted else "rejected"})
            with self._watched_lock:
                self._watched.pop(job_id, None)

    def _submitted(self, job_id: str, trigger: str) -> None:
        self.metrics.jobs.inc(tags={"trigger": trigger, "status": "submitted"})
        with self._watched_lock:
            self._watched[job_id] = trigger

    def _maybe_retrain(self) -> None:
        threshold = self.config.learning.retrain_after_labels
        if not threshold or self._since_retrain < threshold:
            return
        try:
            job_id = self.jobs.submit("labels")
        except RetrainRunningError:
            return  # counted labels stay counted: the next batch after that job ends triggers again
        except Exception:
            log.exception("automatic retraining could not be submitted")
            return
        self._submitted(job_id, "labels")
        log.info("%d new labels: retraining job %s submitted", self._since_retrain, job_id)
        self._since_retrain = 0

    async def retrain(self, trigger: str) -> RetrainJob:
        job_id = await asyncio.to_thread(self.jobs.submit, trigger)
        self._submitted(job_id, trigger)
        self._since_retrain = 0
        return await self.status(job_id)

    async def status(self, job_id: str) -> RetrainJob:
        return RetrainJob.model_validate(await asyncio.to_thread(self.jobs.status, job_id))

    async def start_import(self, data: bytes, catalogue: str, options: dict[str, str]) -> ImportJob:
        """Keep the uploaded traffic and the spec's catalogue (JSON) where every node reads them (owner-only: the
        traffic holds its credentials) and start their import job."""

        def submit() -> str:
            upload_dir = self.config.imports.upload_dir
            upload_dir.mkdir(parents=True, exist_ok=True)
            stem = f"import-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
            files = [(upload_dir / f"{stem}.upload", data), (upload_dir / f"{stem}.catalogue.json", catalogue.encode())]
            try:
                for path, content in files:
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                    with os.fdopen(fd, "wb") as handle:
                        handle.write(content)
                return self.jobs.submit_import(files[0][0], files[1][0], options)
            except Exception:
                for path, _ in files:
                    path.unlink(missing_ok=True)
                raise

        job_id = await asyncio.to_thread(submit)
        return await self.import_status(job_id)

    async def import_status(self, job_id: str) -> ImportJob:
        return ImportJob.model_validate(await asyncio.to_thread(self.jobs.import_status, job_id))

    def __del__(self) -> None:
        self._stop.set()
