"""Labels: the call that followed a prediction, read off a later history or reported, checked against the
prediction, and where a label goes.

A label is explicit (`/feedback`), implicit (the user's next `/predict` shows the call that followed) or imported
(a session of imported traffic); the first label of a prediction wins, so none is counted twice.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal, Protocol

from pipeline.cache import SharedStore
from pipeline.learning.records import (
    FeedbackMismatchError,
    FeedbackRecord,
    LabelSource,
    Outcome,
    PredictionRecord,
    label_key,
)
from pipeline.ranking.stats import START, PatternCounts, TransitionCounts, habit_scores
from pipeline.spec.matching import CallMatch


class LabelLog(Protocol):
    """The stream retraining reads (`pipeline.adapters.feedback_log.FeedbackLog`)."""

    @property
    def spooled(self) -> int: ...

    def append(self, record: FeedbackRecord) -> str | None: ...


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


class LabelSink:
    """Where a label goes: the first label of a prediction is kept (explicit or implicit, whichever came first),
    appended to the log, and added to the online transition and pattern counts; it scores each weight of the
    counts against the model by what its mixture gave the call (`habit_scores`)."""

    def __init__(
        self, store: SharedStore, log: LabelLog, counts: TransitionCounts | None, ttl_s: int,
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
            if record.habit is not None and record.endpoint in record.candidates:
                chosen = record.candidates.index(record.endpoint)
                self._counts.add_prior_scores(record.spec_id, habit_scores(record.habit, chosen))
            self._counts.add(record.spec_id, record.last_operation or START, record.endpoint,
                             prompt=record.prompt_of())
        if self._patterns is not None and record.patterns is not None and record.endpoint is not None:
            chosen = record.patterns.chosen(record.candidates, record.endpoint)
            if chosen is not None:
                self._patterns.add(record.patterns, chosen)
        return ("stream" if entry else "spool"), entry
