"""The durable label log: one writer drains the Redis Stream into day-partitioned Parquet files.

    {log_uri}/v1/day=2026-11-21/part-<first entry id>_<last entry id>.parquet

The writer reads through a consumer group and acknowledges entries only after their file is durably written
(temporary file, fsync, rename, fsync of the directory; object stores publish a whole object on close). After
a crash it first reads what it had read but not acknowledged: the same entries in the same order give the same
file name, so the file is rewritten, not duplicated, and readers deduplicate by prediction id on top.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections import defaultdict
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import redis

from pipeline.learning.records import FeedbackRecord

log = logging.getLogger(__name__)

LOG_VERSION = "v1"  # the directory of this schema; a new schema gets a new directory, old files stay readable
SCHEMA = pa.schema(
    [
        ("entry_id", pa.string()),
        ("prediction_id", pa.string()),
        ("user_id", pa.string()),
        ("spec_id", pa.string()),
        ("model_version", pa.string()),
        ("source", pa.string()),
        ("outcome", pa.string()),
        ("endpoint", pa.string()),
        ("called", pa.string()),
        ("rank", pa.int32()),
        ("events", pa.list_(pa.string())),
        ("prompt", pa.string()),
        ("predicted", pa.list_(pa.string())),
        ("last_operation", pa.string()),
        ("candidates", pa.list_(pa.string())),
        ("feature_schema", pa.string()),
        ("features", pa.string()),
        ("created_at", pa.timestamp("us", tz="UTC")),
        ("received_at", pa.timestamp("us", tz="UTC")),
    ]
)


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """A local path or any URI pyarrow knows (s3://bucket/prefix, gs://...)."""
    if "://" in uri:
        return pafs.FileSystem.from_uri(uri)
    return pafs.LocalFileSystem(), os.path.abspath(uri)


def write_durably(table: pa.Table, fs: pafs.FileSystem, path: str) -> None:
    """The file is complete at `path` or absent: never half-written, and on disk before this returns."""
    directory = path.rsplit("/", 1)[0]
    fs.create_dir(directory, recursive=True)
    if not isinstance(fs, pafs.LocalFileSystem):
        pq.write_table(table, path, filesystem=fs)
        return
    tmp = f"{directory}/.{uuid.uuid4().hex}.tmp"
    with open(tmp, "wb") as handle:
        pq.write_table(table, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)  # the rename itself survives a power loss
    finally:
        os.close(fd)


def to_table(entries: list[tuple[str, FeedbackRecord]]) -> pa.Table:
    rows = [{"entry_id": entry_id, **record.model_dump()} for entry_id, record in entries]
    return pa.Table.from_pylist(rows, schema=SCHEMA)


class LabelLogWriter:
    """The single writer. `drain_once` is one step; a service loops over it (serve/learning.py)."""

    def __init__(
        self, client: redis.Redis, stream: str, group: str, log_uri: str, batch: int, consumer: str = "writer"
    ) -> None:
        self._client = client
        self._stream = stream
        self._group = group
        self._consumer = consumer
        self._batch = batch
        self._fs, self._root = filesystem(log_uri)
        self._root = f"{self._root.rstrip('/')}/{LOG_VERSION}"
        try:
            client.xgroup_create(stream, group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def drain_once(self, block_ms: int) -> int:
        """Write one batch and acknowledge it; the number of labels written (0: nothing new within block_ms)."""
        # "0": entries this consumer read earlier and never acknowledged (a crash between write and ack).
        entries = self._read("0", None) or self._read(">", block_ms)
        if not entries:
            return 0
        by_day: dict[str, list[tuple[str, FeedbackRecord]]] = defaultdict(list)
        for entry_id, fields in entries:
            record = FeedbackRecord.model_validate_json(fields[b"record"])
            by_day[record.received_at.strftime("%Y-%m-%d")].append((entry_id, record))
        for day, day_entries in by_day.items():
            name = f"part-{day_entries[0][0]}_{day_entries[-1][0]}.parquet"
            write_durably(to_table(day_entries), self._fs, f"{self._root}/day={day}/{name}")
        self._ack([entry_id for entry_id, _ in entries])
        return len(entries)

    def backlog(self) -> tuple[int, float]:
        """(labels in the stream not yet written, age in seconds of the oldest of them: 0 when there are none).
        Not yet written = read but unacknowledged (pending) + never read (the group's lag)."""
        group = next(g for g in self._client.xinfo_groups(self._stream) if _text(g["name"]) == self._group)
        pending, lag = int(group["pending"]), int(group.get("lag") or 0)
        oldest = None
        if pending:
            oldest = _text(self._client.xpending(self._stream, self._group)["min"])
        elif lag:
            after = "(" + _text(group["last-delivered-id"])
            first = self._client.xrange(self._stream, min=after, count=1)
            oldest = _text(first[0][0]) if first else None
        # A stream entry id starts with the wall-clock milliseconds of its append.
        age = max(0.0, time.time() - int(oldest.split("-")[0]) / 1000) if oldest else 0.0
        return pending + lag, age

    def _read(self, start: str, block_ms: int | None) -> list[tuple[str, dict[bytes, bytes]]]:
        reply = self._client.xreadgroup(
            self._group, self._consumer, {self._stream: start}, count=self._batch, block=block_ms
        )
        return [(entry_id.decode(), fields) for _, items in reply or [] for entry_id, fields in items if fields]

    def _ack(self, entry_ids: list[str]) -> None:
        self._client.xack(self._stream, self._group, *entry_ids)


def read_labels(log_uri: str) -> pd.DataFrame:
    """Every label in the log, one per prediction (the first that arrived), oldest first. Read in the calling
    process: the retraining job groups them in its driver, and a Ray Data read of this small log cost it 45-112 s
    of starting readers on a loaded 2-CPU node."""
    fs, root = filesystem(log_uri)
    directory = f"{root.rstrip('/')}/{LOG_VERSION}"
    if fs.get_file_info(directory).type == pafs.FileType.NotFound or not any(
        info.path.endswith(".parquet") for info in fs.get_file_info(pafs.FileSelector(directory, recursive=True))
    ):
        return SCHEMA.empty_table().to_pandas()
    frame = pq.read_table(directory, filesystem=fs, schema=SCHEMA, partitioning=None).to_pandas()
    frame = frame.sort_values(["received_at", "entry_id"], kind="stable")
    return frame.drop_duplicates("prediction_id", keep="first").reset_index(drop=True)


def describe(frame: pd.DataFrame) -> dict[str, Any]:
    """Counts for reports: labels by outcome and source."""
    return {
        "labels": len(frame),
        "by_outcome": frame["outcome"].value_counts().to_dict() if len(frame) else {},
        "by_source": frame["source"].value_counts().to_dict() if len(frame) else {},
    }


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
