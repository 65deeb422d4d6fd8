"""What a deployed service learns from a day of traffic, without a retrain: a set replayed in its order through
the path feedback takes in the service.

Each case is predicted, then its true call is reported as feedback: the prediction becomes a
`PredictionRecord`, the call a label (`pipeline.learning.records.label`), and the `LabelSink` stores it and adds
it to the transition and pattern counts the next prediction reads, as the Ingress does. The same cases ranked by
the same model with no feedback are the offline numbers; both are reported on the first and second half of the
set.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.adapters.feedback_log import FeedbackLog
from pipeline.adapters.kv import ResilientStore
from pipeline.learning.labels import LabelSink, label
from pipeline.learning.records import PredictionRecord
from pipeline.ranking.context import PreparedSpec
from pipeline.ranking.predict import Predictor, PredictOutcome
from pipeline.ranking.stats import InMemoryPatterns, InMemoryTransitions
from pipeline.settings import CacheSettings, FeedbackSettings, FetchSettings, LearningSettings
from pipeline.spec.load import load_catalogue
from train.evaluate import Case, spec_location
from train.metrics import VERDICT_METRICS, summary
from train.peers import Cosine
from train.session_peers import OnlinePeers, case_history, case_sessions

MODES = ("online", "offline", "markov", "sknn")


def with_counts(predictor: Predictor, counts: InMemoryTransitions, patterns: InMemoryPatterns | None) -> Predictor:
    """The same model and embedder, reading these online counts (and pattern counts, when given)."""
    return Predictor(predictor.model, counts, predictor.settings, predictor.embedder, predictor.op_embeddings,
                     patterns)


def spec_loader(predictor: Predictor, cases_dir: Path, fetch: FetchSettings) -> Callable[[Case], PreparedSpec]:
    """A case's prepared spec, each spec prepared once."""
    specs: dict[str, PreparedSpec] = {}

    def prepared(case: Case) -> PreparedSpec:
        location = spec_location(case, cases_dir)
        if location not in specs:
            specs[location] = predictor.prepare(load_catalogue(location, fetch))
        return specs[location]

    return prepared


def replay_sink(spool_dir: Path, counts: InMemoryTransitions, patterns: InMemoryPatterns) -> LabelSink:
    """Labels kept as the embedded service keeps them: claimed in-process, spooled under `spool_dir`."""
    store = ResilientStore(CacheSettings())
    return LabelSink(store, FeedbackLog(store, FeedbackSettings(spool_path=spool_dir / "feedback.jsonl")), counts,
                     CacheSettings().prediction_ttl_s, patterns)


def expected_rank(outcome: PredictOutcome, case: Case) -> int | None:
    endpoints = [p.endpoint for p in outcome.predictions]
    return endpoints.index(case.expected) + 1 if case.expected in endpoints else None


def learn_case(sink: LabelSink, spec: PreparedSpec, case: Case, outcome: PredictOutcome) -> None:
    """The case's true call reported for the prediction the service answered with `outcome`, as /feedback does."""
    record = PredictionRecord.of(
        outcome, prediction_id=uuid.uuid4().hex, user_id="replay", spec_id=spec.content_hash,
        events=[e.endpoint for e in case.events], prompt=case.prompt, created_at=datetime.now(UTC),
    )
    sink.record(label(record, case.expected, None, spec.matcher.match(case.expected)))


def replay_online(
    predictor: Predictor, cases: list[Case], cases_dir: Path, fetch: FetchSettings, learning: LearningSettings,
    fallback: Cosine,
) -> dict[str, Any]:
    """hit@1, hit@3 and MRR on each half of `cases`, online (after the feedback of every earlier case, remembered
    with its prompt and shared with the other specs as `learning` says), offline (the same model, no feedback),
    and the session-based peers learning from the same labels (`markov`, `sknn`, falling back to `fallback`)."""
    counts, patterns = InMemoryTransitions(learning.recall, learning.borrow), InMemoryPatterns(learning.pattern_prior)
    online = with_counts(predictor, counts, patterns)
    offline = with_counts(predictor, InMemoryTransitions(), None)
    ranks: dict[str, list[int | None]] = {mode: [] for mode in MODES}
    peers = OnlinePeers(fallback)
    prepared = spec_loader(predictor, cases_dir, fetch)
    ends = {s.cases[-1] for s in case_sessions(cases, lambda case: case_history(prepared(case), case))}
    with tempfile.TemporaryDirectory(prefix="opensesame-online-") as spool:
        sink = replay_sink(Path(spool), counts, patterns)
        for number, case in enumerate(cases):
            spec = prepared(case)
            history = case_history(spec, case)
            for name, rank in peers.ranks(spec, history, case.prompt, case.expected).items():
                ranks[name].append(rank)
            peers.learn_call(spec, history, case.expected)
            if number in ends:
                peers.learn_session(spec, [*history, case.expected])
            outcomes = {mode: model.predict(spec, case.events, case.prompt, k=10)
                        for mode, model in (("online", online), ("offline", offline))}
            for mode, outcome in outcomes.items():
                ranks[mode].append(expected_rank(outcome, case))
            learn_case(sink, spec, case, outcomes["online"])  # the prediction the service answered
    half = len(cases) // 2
    report: dict[str, Any] = {"cases": len(cases)}
    for part, sl in (("first_half", slice(0, half)), ("second_half", slice(half, None))):
        report[part] = {mode: pick(summary(r[sl])) for mode, r in ranks.items()}
    return report


def pick(metrics: dict[str, float]) -> dict[str, float]:
    """The verdict's metrics of a summary."""
    return {m: metrics[m] for m in VERDICT_METRICS}


def online_macro(rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Unweighted mean over sets of every half, mode and metric."""
    out: dict[str, Any] = {"cases": sum(r["cases"] for r in rows.values())}
    for part in ("first_half", "second_half"):
        out[part] = {mode: {m: round(sum(r[part][mode][m] for r in rows.values()) / len(rows), 4) for m in VERDICT_METRICS}
                     for mode in MODES}
    return out


def format_online(rows: dict[str, dict[str, Any]]) -> str:
    """One line per set: the first half online and offline, the second half in every mode, hit@1 / hit@3 / MRR."""
    columns = [("first_half", "online"), ("first_half", "offline")] + [("second_half", mode) for mode in MODES]
    header = f"{'set':<16}{'cases':>6}  " + "  ".join(
        f"{('1st ' if part == 'first_half' else '2nd ') + mode:>22}" for part, mode in columns) + "  gain@1"
    lines = [header]
    cell = "{hit@1:.3f}/{hit@3:.3f}/{mrr:.3f}"
    for name, row in rows.items():
        second = row["second_half"]
        gain = second["online"]["hit@1"] - second["offline"]["hit@1"]
        lines.append(f"{name:<16}{row['cases']:>6}  " + "  ".join(
            f"{cell.format(**row[part][mode]):>22}" for part, mode in columns) + f"  {gain:+.3f}")
    return "\n".join(lines)
