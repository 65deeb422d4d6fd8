"""The label stream retraining reads: a Redis Stream, with a local spool file while Redis is unreachable,
replayed in order before the next append that reaches Redis."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from filelock import FileLock

from pipeline.cache import SharedStore
from pipeline.learning.records import FeedbackRecord
from pipeline.settings import FeedbackSettings


@dataclass
class _SpoolBatch:
    """Labels written to the spool together; `done` once their write ended, `error` if it failed."""

    lines: list[str] = field(default_factory=list)
    done: bool = False
    error: BaseException | None = None


class FeedbackLog:
    """Appends labels to the Redis Stream, spooling to a local file while Redis is unreachable.

    The spool may be shared by several replicas or processes (one file on a node or a volume): every read and
    write of it holds a file lock, so lines never interleave and whoever reaches Redis first replays them all,
    oldest first. Policy: a spooled label is fsynced before `append` returns (a 202 means it is on disk); labels
    spooled at the same time share one write and one fsync (group commit: under load an fsync takes milliseconds,
    and one per label queued every label behind the others'); a partial replay rewrites the rest atomically
    (temporary file, fsync, rename).
    """

    def __init__(self, store: SharedStore, settings: FeedbackSettings) -> None:
        self._store = store
        self._settings = settings
        self._spool: Path = settings.spool_path
        self._spool.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()  # Redis appends and replays within this process
        # The spool's own lock: this process's threads queue on a threading lock, other processes on the file
        # lock, which polls (5 ms here; filelock's default 50 ms would be the latency of a contended label).
        self._spool_lock = threading.Lock()
        self._file_lock = FileLock(str(self._spool) + ".lock", poll_interval=0.005)
        # Group commit: one writer at a time; the labels that arrive meanwhile wait for the next write together.
        self._commit = threading.Condition()
        self._next = _SpoolBatch()  # the lines waiting for the next write
        self._writing = False
        self._counted = (0, 0, 0)  # (inode, bytes, lines) of the spool counted: a file only grows until replayed

    @property
    def spooled(self) -> int:
        """Lines in the spool, counting only what was appended since the last call (the spool may be large)."""
        with self._locked_spool():
            if not self._spool.exists():
                return 0
            stat = self._spool.stat()
            # A replay removes the spool or replaces it with a new file (another inode, or a smaller one where the
            # file system reused the number): count that one afresh.
            same = self._counted[0] == stat.st_ino and self._counted[1] <= stat.st_size
            inode, counted_bytes, lines = self._counted if same else (stat.st_ino, 0, 0)
            if stat.st_size > counted_bytes:
                with self._spool.open("rb") as handle:
                    handle.seek(counted_bytes)
                    lines += handle.read(stat.st_size - counted_bytes).count(b"\n")
            self._counted = (inode, stat.st_size, lines)
            return lines

    def append(self, record: FeedbackRecord) -> str | None:
        """The stream entry id, or None when the record was spooled for later."""
        line = record.model_dump_json()
        if self._store.configured:
            with self._lock:
                if self._replay_spool():
                    entry = self._store.xadd(self._settings.stream, {"record": line}, self._settings.stream_maxlen)
                    if entry is not None:
                        return entry
        self._spool_durably(line)
        return None

    def _spool_durably(self, line: str) -> None:
        """Return once `line` is on disk. The first caller to find no write under way writes the waiting batch
        with one fsync; the others wait for it. A failed write fails every label of its batch (none is answered
        202), as a single failed write did."""
        with self._commit:
            mine = self._next
            mine.lines.append(line)
            while not mine.done:
                if self._writing:
                    self._commit.wait()
                    continue
                batch, self._next = self._next, _SpoolBatch()
                self._writing = True
                self._commit.release()
                try:
                    with self._locked_spool(), self._spool.open("a") as handle:
                        handle.write("".join(waiting + "\n" for waiting in batch.lines))
                        handle.flush()
                        os.fsync(handle.fileno())
                except BaseException as exc:  # the writer's own label fails with it, and so do the others'
                    batch.error = exc
                    raise
                finally:
                    self._commit.acquire()
                    batch.done, self._writing = True, False
                    self._commit.notify_all()
            if mine.error is not None:
                raise mine.error

    @contextmanager
    def _locked_spool(self) -> Iterator[None]:
        with self._spool_lock, self._file_lock:
            yield

    def _replay_spool(self) -> bool:
        """Move spooled records into the stream, oldest first; False if Redis failed on the way."""
        if not self._spool.exists():  # the common case, without taking the file lock
            return True
        with self._locked_spool():
            if not self._spool.exists():
                return True
            lines = self._spool.read_text().splitlines()
            for done, line in enumerate(lines):
                if self._store.xadd(self._settings.stream, {"record": line}, self._settings.stream_maxlen) is None:
                    _replace_durably(self._spool, "".join(rest + "\n" for rest in lines[done:]))
                    return False
            self._spool.unlink()
            return True


def _replace_durably(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)
