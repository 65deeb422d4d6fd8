"""What was predicted, what happened next, and the stream of labels that retraining reads.

Every prediction is stored (`pred:<id>`, with a TTL) with what retraining needs: the problem, the candidate
pool and its feature matrix, the model version. Feedback is validated against it: the called endpoint is
matched against the prediction's spec, an accepted rank must exist. A label is explicit (`/feedback`) or
implicit (the user's next `/predict` shows the call that followed); the first label of a prediction wins, so
the two are never counted twice. A `FeedbackRecord` is appended to a Redis Stream; while Redis is down it goes
to a local spool file and is replayed, in order, before the next append that reaches Redis.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
from filelock import FileLock
from pydantic import BaseModel, Field

from pipeline.cache import SharedStore
from pipeline.errors import OpenSesameError
from pipeline.lookups import lookup
from pipeline.ranking.features import SCHEMA_VERSION
from pipeline.ranking.predict import PredictOutcome
from pipeline.ranking.stats import START, PatternCounts, PatternOffer, PromptVector, TransitionCounts
from pipeline.settings import FeedbackSettings
from pipeline.spec.matching import CallMatch

Outcome = Literal["called", "accepted", "none"]
# explicit: /feedback; implicit: the next /predict showed the call; imported: a session of imported traffic.
LabelSource = Literal["explicit", "implicit", "imported"]


class PredictionNotFoundError(OpenSesameError):
    """Feedback names a prediction that does not exist (or has expired)."""


class FeedbackMismatchError(OpenSesameError):
    """Feedback that contradicts its prediction (a rank that was not returned, a call outside the spec)."""


class PredictionRecord(BaseModel):
    prediction_id: str
    user_id: str
    spec_id: str
    events: list[str]
    prompt: str
    predicted: list[str]  # operation ids, best first
    model_version: str
    created_at: datetime
    last_operation: str | None = None  # the operation the prediction followed (None: no matched history)
    candidates: list[str] = Field(default_factory=list, description="candidate pool, in feature-row order")
    feature_schema: str = ""
    features: str = Field("", description="candidate feature matrix: float32, zlib, base64 (see encode_features)")
    owner: str | None = Field(None, description="the API key's quota id that made it: only that key may label it")
    shadowed: bool = Field(False, description="a shadow model also ranked it (pipeline/learning/acceptance.py)")
    prompt_vector: str = Field("", description="the prompt's unit vector: float16, base64 (see encode_prompt)")
    embedder: str = Field("", description="the embedder that made prompt_vector")
    patterns: PatternOffer | None = Field(None, description="the patterns offered, for the online pattern counts")

    def feature_matrix(self) -> np.ndarray:
        return decode_features(self.features, len(self.candidates))

    @classmethod
    def of(cls, outcome: PredictOutcome, *, prediction_id: str, user_id: str, spec_id: str, events: list[str],
           prompt: str, created_at: datetime, **extra: Any) -> PredictionRecord:
        """The record of a prediction the service answered with `outcome` (features are encoded by the caller,
        where it pays: `encode_features`)."""
        return cls(
            prediction_id=prediction_id, user_id=user_id, spec_id=spec_id, events=events, prompt=prompt,
            predicted=[p.endpoint for p in outcome.predictions], model_version=outcome.model_version,
            created_at=created_at, last_operation=outcome.last_operation, candidates=outcome.candidates,
            feature_schema=SCHEMA_VERSION, patterns=outcome.patterns, **encode_prompt(outcome.prompt), **extra,
        )

    def prompt_of(self) -> PromptVector | None:
        """The prompt as the online counts remember it with its label; None without a prompt."""
        if not self.prompt_vector:
            return None
        return PromptVector(self.embedder, np.frombuffer(base64.b64decode(self.prompt_vector), dtype=np.float16))


def encode_prompt(prompt: PromptVector | None) -> dict[str, str]:
    """The record fields of a prompt vector: float16 halves its size, and a cosine needs no more precision."""
    if prompt is None:
        return {}
    return {"prompt_vector": base64.b64encode(prompt.vector.astype(np.float16).tobytes()).decode(),
            "embedder": prompt.space}


def encode_features(X: np.ndarray) -> str:
    """~50 candidates x ~60 features, mostly small or NaN: compresses to a few KB per stored prediction."""
    return base64.b64encode(zlib.compress(np.ascontiguousarray(X, dtype=np.float32).tobytes(), 6)).decode()


def decode_features(encoded: str, rows: int) -> np.ndarray:
    if not encoded or rows == 0:
        return np.zeros((rows, 0), dtype=np.float32)
    return np.frombuffer(zlib.decompress(base64.b64decode(encoded)), dtype=np.float32).reshape(rows, -1)


class FeedbackRecord(PredictionRecord):
    """One label: after `events` (+ `prompt`) on `spec_id`, the user's next call was `endpoint` (or nothing)."""

    source: LabelSource = "explicit"
    outcome: Outcome
    endpoint: str | None = Field(None, description="operation id of the next call; None for outcome 'none'")
    called: str | None = Field(None, description="the call as the client reported it")
    rank: int | None = Field(None, description="1-based rank of `endpoint` among the predictions, if there")
    received_at: datetime


def prediction_key(prediction_id: str) -> str:
    return f"pred:{prediction_id}"


def label_key(prediction_id: str) -> str:
    return f"label:{prediction_id}"


def last_prediction_key(user_id: str, spec_id: str, owner: str | None = None) -> str:
    """A user's latest prediction on a spec; user ids are the clients' own, so each key has its own users."""
    return f"last:{spec_id}:{owner}:{user_id}" if owner else f"last:{spec_id}:{user_id}"


def followup(previous: list[str], events: list[str]) -> str | None:
    """The call the user made right after a prediction that saw `previous`, read off a later history `events`.

    Clients send a sliding window of recent calls, so the longest tail of `previous` found in `events` anchors
    it; the event after its first occurrence is the follow-up. With no earlier history, the first event is.
    """
    if not events:
        return None
    if not previous:
        return events[0]
    for overlap in range(min(len(previous), len(events) - 1), 0, -1):
        tail = previous[-overlap:]
        for end in range(overlap - 1, len(events) - 1):
            if events[end - overlap + 1 : end + 1] == tail:
                return events[end + 1]
    return None


def label(
    prediction: PredictionRecord,
    called: str | None,
    accepted_rank: int | None,
    match: CallMatch | None,
    source: LabelSource = "explicit",
) -> FeedbackRecord:
    """Turn one feedback report into a label, or say why it contradicts the prediction."""
    endpoint: str | None = None
    outcome: Outcome = "none"
    if accepted_rank is not None:
        if accepted_rank > len(prediction.predicted):
            raise FeedbackMismatchError(
                f"accepted_rank {accepted_rank} is out of range: prediction {prediction.prediction_id} "
                f"returned {len(prediction.predicted)} call(s); use 1..{len(prediction.predicted)}"
            )
        outcome, endpoint = "accepted", prediction.predicted[accepted_rank - 1]
    elif called is not None:
        if match is None or match.operation is None:
            raise FeedbackMismatchError(
                f"{called!r} matches no operation of spec {prediction.spec_id}; send the call as "
                "'METHOD /path' as the client made it (e.g. 'GET /v1/invoices/in_1')"
            )
        outcome, endpoint = "called", match.operation.id
    rank = prediction.predicted.index(endpoint) + 1 if endpoint in prediction.predicted else None
    return FeedbackRecord(
        **prediction.model_dump(),
        source=source,
        outcome=outcome,
        endpoint=endpoint,
        called=called,
        rank=rank,
        received_at=datetime.now(UTC),
    )


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


class LabelSink:
    """Where a label goes: the first label of a prediction is kept (explicit or implicit, whichever came first),
    appended to the log, and added to the online transition and pattern counts."""

    def __init__(
        self, store: SharedStore, log: FeedbackLog, counts: TransitionCounts | None, ttl_s: int,
        patterns: PatternCounts | None = None,
    ) -> None:
        self._store = store
        self.log = log
        self._counts = counts
        self._patterns = patterns
        self._ttl_s = ttl_s

    def record(self, record: FeedbackRecord) -> tuple[Literal["stream", "spool", "duplicate"], str | None]:
        """How it was stored and the stream entry id; 'duplicate' when the prediction already has a label."""
        if not self._store.claim(label_key(record.prediction_id), self._ttl_s):
            return "duplicate", None
        entry = self.log.append(record)
        if self._counts is not None and record.endpoint is not None:
            self._counts.add(record.spec_id, record.last_operation or START, record.endpoint,
                             prompt=record.prompt_of())
        if self._patterns is not None and record.patterns is not None and record.endpoint is not None:
            chosen = record.patterns.chosen(record.candidates, record.endpoint)
            if chosen is not None:
                self._patterns.add(record.patterns, chosen)
        return ("stream" if entry else "spool"), entry


def save_prediction(store: SharedStore, record: PredictionRecord, ttl_s: int) -> None:
    store.set(prediction_key(record.prediction_id), record.model_dump_json().encode(), ttl_s)


def load_prediction(store: SharedStore, prediction_id: str) -> PredictionRecord:
    # A miss while Redis is (or just was) unreachable: the client should come back, not drop its label.
    raw = lookup(store, prediction_key(prediction_id), f"prediction {prediction_id!r} (its label is not recorded)")
    if raw is None:
        raise PredictionNotFoundError(
            f"unknown prediction_id {prediction_id!r}: use the prediction_id a /predict response returned "
            "(predictions are kept for cache.prediction_ttl_s)"
        )
    return PredictionRecord.model_validate(json.loads(raw))
