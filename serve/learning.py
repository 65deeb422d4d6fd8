"""`LearningLoop` deployment (one replica): the single writer of the label log, and the retraining trigger.

A background thread drains the Redis Stream into Parquet (pipeline/adapters/label_log.py) and counts the labels it
wrote; after `learning.retrain_after_labels` of them it submits a retraining job, as `POST /admin/retrain`
does. Jobs run on the Ray cluster (serve/jobs.py), one at a time.
"""

from __future__ import annotations

import asyncio
import logging
import threading

import redis
from ray import serve

from pipeline.adapters.label_log import LabelLogWriter
from pipeline.errors import RetrainRunningError
from pipeline.settings import Settings
from serve.jobs import RetrainJobs
from serve.schemas import RetrainJob

log = logging.getLogger("opensesame.learning")


@serve.deployment  # one replica (config): the single writer of the label log
class LearningLoop:
    def __init__(self, settings: Settings) -> None:
        self.config = settings
        self.jobs = RetrainJobs(settings)
        self._since_retrain = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if self.config.cache.redis_url:
            self._thread = threading.Thread(target=self._drain_forever, name="label-log-writer", daemon=True)
            self._thread.start()
        else:
            log.warning("no cache.redis_url: labels stay in the feedback spool; no label log, no automatic retraining")

    def _drain_forever(self) -> None:
        learning, cache = self.config.learning, self.config.cache
        writer: LabelLogWriter | None = None
        while not self._stop.is_set():
            try:
                if writer is None:
                    client = redis.Redis.from_url(cache.redis_url, socket_timeout=learning.writer_block_ms / 1000 + 5)
                    writer = LabelLogWriter(
                        client,
                        self.config.feedback.stream,
                        learning.consumer_group,
                        learning.log_uri,
                        learning.writer_batch,
                    )
                written = writer.drain_once(learning.writer_block_ms)
            except Exception:  # Redis away, storage full: retry; unacknowledged entries wait in the stream
                log.exception("label log writer failed; retrying in %.0f s", cache.retry_after_s)
                writer = None
                self._stop.wait(cache.retry_after_s)
                continue
            if written:
                self._since_retrain += written
                self._maybe_retrain()

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
        log.info("%d new labels: retraining job %s submitted", self._since_retrain, job_id)
        self._since_retrain = 0

    async def retrain(self, trigger: str) -> RetrainJob:
        job_id = await asyncio.to_thread(self.jobs.submit, trigger)
        self._since_retrain = 0
        return await self.status(job_id)

    async def status(self, job_id: str) -> RetrainJob:
        return RetrainJob.model_validate(await asyncio.to_thread(self.jobs.status, job_id))

    def __del__(self) -> None:
        self._stop.set()
