"""Traffic an API already has, learned through the path feedback takes: each call of a session is a label.

Requests are filtered (host, path prefix, methods that are never a user's call), matched onto the spec (the route
a server or gateway resolved when the record has one, else the path) and grouped into sessions. Then each call of
a session is predicted from the calls before it, exactly as /predict would answer a client sending that history,
and labelled with the call that came: the `LabelSink` adds it to the online counts and their recall and appends it
to the label log (source `imported`, with the prediction's features, so retraining learns from it). Prediction
ids derive from the session and the step, and the sink keeps the first label of an id: importing a file again,
or resuming one cut short, labels only what was not labelled yet.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import pairwise

from pydantic import BaseModel, Field

from pipeline.learning.labels import LabelSink, label
from pipeline.learning.records import PredictionRecord, encode_features
from pipeline.ranking.context import Event, PreparedSpec
from pipeline.ranking.predict import Predictor
from pipeline.settings import ImportSettings
from pipeline.spec.catalogue import Catalogue
from pipeline.spec.matching import CallMatch, CallMatcher
from pipeline.traffic.formats import Tally
from pipeline.traffic.observed import Observed
from pipeline.traffic.sessions import Session, Sessionizer

# Distinct unmatched paths counted one by one; beyond, they are only counted (a scan of random URLs must not
# grow memory).
_UNMATCHED_PATHS = 10_000
_WORKFLOW_LENGTHS = range(3, 6)
# Distinct call sequences counted before the rarer half is forgotten (memory stays bounded on traffic of any size;
# a sequence frequent enough to be a workflow is seen again and counted from then on).
_SEQUENCES_KEPT = 200_000

Progress = Callable[[int, int, int], None]  # called after each session: (requests read, sessions, labels)


class Transition(BaseModel):
    previous: str
    following: str
    count: int


class Workflow(BaseModel):
    steps: list[str]
    sessions: int = Field(..., description="sessions in which this sequence of calls occurs (its support)")


class ImportReport(BaseModel):
    """What an import read and learned: the numbers `opensesame import` prints and /admin/import answers."""

    spec_id: str
    format: str
    requests: int = Field(0, description="requests read from the file")
    filtered: dict[str, int] = Field(default_factory=dict, description="dropped before matching, by reason")
    unreadable: dict[str, int] = Field(default_factory=dict, description="lines or entries skipped, by reason")
    matched: int = 0
    unmatched: int = 0
    top_unmatched: list[tuple[str, int]] = Field(default_factory=list)
    retries: int = Field(0, description="repeats of a failed request counted once")
    sessions: int = 0
    labels: int = Field(0, description="calls learned")
    already_imported: int = Field(0, description="calls an earlier import of the same traffic had learned")
    transitions: list[Transition] = Field(default_factory=list, description="the most frequent next calls")
    workflows: list[Workflow] = Field(default_factory=list, description="the most frequent call sequences")
    seconds: float = 0.0

    @property
    def matched_share(self) -> float:
        return self.matched / max(1, self.matched + self.unmatched)

    def markdown(self) -> str:
        lines = [
            f"# Traffic import ({self.format}) onto spec {self.spec_id}", "",
            ("| read | filtered | unreadable | matched | unmatched | retries | sessions | calls learned | already known "
            "| seconds |"), "|---|---|---|---|---|---|---|---|---|---|",
            (f"| {self.requests} | {sum(self.filtered.values())} | {sum(self.unreadable.values())} | {self.matched} "
            f"({self.matched_share:.0%}) | {self.unmatched} | {self.retries} | {self.sessions} | {self.labels} "
            f"| {self.already_imported} | {self.seconds} |"),
        ]
        for title, counts in (("Filtered", self.filtered), ("Unreadable", self.unreadable)):
            if counts:
                lines += ["", f"{title}: " + ", ".join(f"{reason} {n}" for reason, n in sorted(counts.items()))]
        if self.top_unmatched:
            lines += ["", "## Most frequent unmatched requests", "", "| request | count |", "|---|---|"]
            lines += [f"| `{call}` | {n} |" for call, n in self.top_unmatched]
        if self.transitions:
            lines += ["", "## Most frequent next calls", "", "| after | next | count |", "|---|---|---|"]
            lines += [f"| `{t.previous}` | `{t.following}` | {t.count} |" for t in self.transitions]
        if self.workflows:
            lines += ["", "## Workflows", "", "| calls | sessions |", "|---|---|"]
            lines += [f"| {' → '.join(f'`{s}`' for s in w.steps)} | {w.sessions} |" for w in self.workflows]
        return "\n".join(lines) + "\n"


class SessionLearner:
    """Each call of a session predicted from the calls before it and labelled with the call that came."""

    def __init__(self, predictor: Predictor, spec: PreparedSpec, sink: LabelSink, history: int) -> None:
        self.spec = spec
        self._predictor = predictor
        self._sink = sink
        self._history = history

    def learn(self, session: Session[CallMatch]) -> tuple[int, int]:
        """(labels learned, labels an earlier import had learned)."""
        learned = known = 0
        history: list[Event] = []
        for step, (request, match) in enumerate(session.calls):
            called = f"{request.method} {request.path}"
            window = history[-self._history:]
            outcome = self._predictor.predict(self.spec, window, "", k=10)
            record = PredictionRecord.of(
                outcome, prediction_id=f"imp-{session.session_id}-{step}", user_id=f"import:{session.key}",
                spec_id=self.spec.content_hash, events=[e.endpoint for e in window], prompt="",
                created_at=datetime.fromtimestamp(request.time, UTC),
            )
            if outcome.features is not None:
                record.features = encode_features(outcome.features)
            stored, _ = self._sink.record(label(record, called, None, match, source="imported"))
            if stored == "duplicate":
                known += 1
            else:
                learned += 1
            history.append(Event(endpoint=called, response=request.response))
        return learned, known


@dataclass
class ImportTally:
    """What an import counted. Parts of one import counted apart (files read on different nodes, callers learned
    on different nodes) add up to the whole's: `add`."""

    requests: int = 0
    filtered: Counter[str] = field(default_factory=Counter)
    unreadable: Counter[str] = field(default_factory=Counter)
    matched: int = 0
    unmatched: int = 0
    unmatched_calls: Counter[str] = field(default_factory=Counter)
    retries: int = 0
    sessions: int = 0
    labels: int = 0
    already_imported: int = 0
    transitions: Counter[tuple[str, str]] = field(default_factory=Counter)
    sequences: Counter[tuple[str, ...]] = field(default_factory=Counter)

    def add(self, other: ImportTally) -> None:
        for name in ("requests", "matched", "unmatched", "retries", "sessions", "labels", "already_imported"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.filtered.update(other.filtered)
        self.unreadable.update(other.unreadable)
        self.transitions.update(other.transitions)
        for call, n in other.unmatched_calls.items():
            self._name_unmatched(call, n)
        self.sequences.update(other.sequences)
        self._bound_sequences()

    def count_unmatched(self, call: str) -> None:
        self.unmatched += 1
        self._name_unmatched(call, 1)

    def _name_unmatched(self, call: str, n: int) -> None:
        if call in self.unmatched_calls or len(self.unmatched_calls) < _UNMATCHED_PATHS:
            self.unmatched_calls[call] += n

    def count_session(self, operations: list[str]) -> None:
        self.sessions += 1
        self.transitions.update(pairwise(operations))
        seen = {tuple(operations[i:i + n]) for n in _WORKFLOW_LENGTHS for i in range(len(operations) - n + 1)}
        self.sequences.update(s for s in seen if len(set(s)) > 1)
        self._bound_sequences()

    def _bound_sequences(self) -> None:
        if len(self.sequences) > _SEQUENCES_KEPT:
            self.sequences = Counter(dict(self.sequences.most_common(_SEQUENCES_KEPT // 2)))

    def report(self, spec_id: str, fmt: str, seconds: float) -> ImportReport:
        return ImportReport(
            spec_id=spec_id, format=fmt, requests=self.requests, filtered=dict(self.filtered),
            unreadable=dict(self.unreadable), matched=self.matched, unmatched=self.unmatched,
            top_unmatched=self.unmatched_calls.most_common(10), retries=self.retries, sessions=self.sessions,
            labels=self.labels, already_imported=self.already_imported,
            transitions=[Transition(previous=a, following=b, count=n) for (a, b), n in self.transitions.most_common(20)],
            workflows=self._workflows(), seconds=round(seconds, 3),
        )

    def _workflows(self, top: int = 10) -> list[Workflow]:
        """The most supported sequences, longest first among equals; a sequence inside a listed longer one with
        the same support says nothing more and is left out."""
        ranked = sorted(((n, s) for s, n in self.sequences.items() if n >= 2), key=lambda x: (-x[0], -len(x[1])))
        chosen: list[Workflow] = []
        for support, steps in ranked:
            if any(w.sessions == support and _inside(steps, tuple(w.steps)) for w in chosen):
                continue
            chosen.append(Workflow(steps=list(steps), sessions=support))
            if len(chosen) == top:
                break
        return chosen


class RequestSieve:
    """Requests filtered (methods that are never a user's call, other hosts, other path prefixes) and matched onto
    the spec, each counted in a tally."""

    def __init__(self, matcher: CallMatcher, settings: ImportSettings, host: str | None = None,
                 prefix: str | None = None) -> None:
        self._matcher = matcher
        self._host = host.lower() if host else None
        self._prefix = "/" + prefix.strip("/") if prefix and prefix.strip("/") else None
        self._skip = {m.upper() for m in settings.skip_methods}

    def matched(self, requests: Iterable[Observed], tally: ImportTally) -> Iterator[tuple[Observed, CallMatch]]:
        for request in requests:
            tally.requests += 1
            reason = self._filter(request)
            if reason is not None:
                tally.filtered[reason] += 1
                continue
            match = self.match(request)
            if match is None:
                tally.count_unmatched(f"{request.method} {request.path}")
                continue
            tally.matched += 1
            yield request, match

    def match(self, request: Observed) -> CallMatch | None:
        """The route the record resolved names the operation when it fits; the concrete path fills its values."""
        by_path = self._matcher.match(f"{request.method} {request.path}")
        if request.route:
            by_route = self._matcher.match(f"{request.method} {request.route}")
            if by_route.operation is not None and by_route.operation != by_path.operation:
                return by_route
        return by_path if by_path.operation is not None else None

    def _filter(self, request: Observed) -> str | None:
        if request.method in self._skip:
            return "method"
        if self._host is not None and request.host and request.host.lower() != self._host:
            return "other_host"
        if self._prefix is not None and not (request.path == self._prefix or request.path.startswith(self._prefix + "/")):
            return "other_prefix"
        return None


def learn_sessions(
    calls: Iterable[tuple[Observed, CallMatch]], settings: ImportSettings, learner: SessionLearner | None,
    tally: ImportTally, on_session: Callable[[], None] | None = None,
) -> None:
    """`calls` (in time order) grouped into sessions, each counted and, unless a dry run (no learner), learned."""
    sessionizer: Sessionizer[CallMatch] = Sessionizer(settings.gap_s, settings.retry_window_s)
    for session in sessionizer.sessions(calls):
        tally.count_session([match.operation.id for _, match in session.calls if match.operation is not None])
        if learner is not None:
            learned, known = learner.learn(session)
            tally.labels += learned
            tally.already_imported += known
        if on_session is not None:
            on_session()
    tally.retries += sessionizer.retries


class TrafficImport:
    """One import of requests, read in time order, onto one spec; `run` reads, matches and sessions them, has
    `learner` learn each session (none: a dry run, which only reports), and returns the report."""

    def __init__(
        self, catalogue: Catalogue, settings: ImportSettings, learner: SessionLearner | None,
        host: str | None = None, prefix: str | None = None,
    ) -> None:
        self._spec_id = catalogue.content_hash
        matcher = learner.spec.matcher if learner is not None else CallMatcher(catalogue)
        self._sieve = RequestSieve(matcher, settings, host, prefix)
        self._learner = learner
        self._settings = settings

    def run(self, requests: Iterable[Observed], fmt: str, tally: Tally, progress: Progress | None = None) -> ImportReport:
        started = time.perf_counter()
        counted = ImportTally()

        def report_progress() -> None:
            if progress is not None:
                progress(counted.requests, counted.sessions, counted.labels)

        learn_sessions(self._sieve.matched(requests, counted), self._settings, self._learner, counted, report_progress)
        counted.unreadable.update(tally)
        return counted.report(self._spec_id, fmt, time.perf_counter() - started)


def _inside(short: tuple[str, ...], long: tuple[str, ...]) -> bool:
    return any(long[i:i + len(short)] == short for i in range(len(long) - len(short) + 1))
