"""The learning loop in-process: labels (implicit and explicit, never twice), online counts, the durable
Parquet log with a crash between write and ack, and label rows for retraining. Real Redis, real Parquet."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from pipeline.adapters.feedback_log import FeedbackLog
from pipeline.adapters.kv import ResilientStore
from pipeline.adapters.label_log import LabelLogWriter, read_labels
from pipeline.learning.acceptance import Acceptance, AcceptanceTally, rank_bucket
from pipeline.learning.labels import LabelSink, followup, label
from pipeline.learning.online_counts import OnlineTransitions
from pipeline.learning.online_patterns import OnlinePatterns, patterns_key
from pipeline.learning.records import (
    FeedbackRecord,
    PredictionRecord,
    decode_features,
    encode_features,
    encode_prompt,
)
from pipeline.learning.training_rows import label_rows, split_frame
from pipeline.ranking.features import FEATURE_NAMES, SCHEMA_VERSION
from pipeline.ranking.stats import (
    START,
    HabitOffer,
    InMemoryTransitions,
    PatternOffer,
    PatternStats,
    PromptVector,
    best_prior,
)
from pipeline.settings import CacheSettings, FeedbackSettings, RecallSettings
from tests.support import RedisServer

CANDIDATES = ["GET /invoices/{invoice}", "POST /invoices/{invoice}/pay", "GET /customers/{customer}"]


def cache_settings(url: str | None) -> CacheSettings:
    return CacheSettings(redis_url=url, key_prefix=f"t{time.time_ns()}:", retry_after_s=0.2)


def cache(url: str | None) -> ResilientStore:
    return ResilientStore(cache_settings(url))


def prediction(prediction_id: str, spec_id: str = "spec1") -> PredictionRecord:
    X = np.arange(len(CANDIDATES) * len(FEATURE_NAMES), dtype=np.float32).reshape(len(CANDIDATES), -1)
    X[0, 3] = np.nan
    return PredictionRecord(
        prediction_id=prediction_id,
        user_id="u1",
        spec_id=spec_id,
        events=["GET /v1/invoices/in_1"],
        prompt="pay it",
        predicted=CANDIDATES[:2],
        model_version="opensesame-ranker/v1",
        created_at=datetime.now(UTC),
        last_operation="GET /invoices/{invoice}",
        candidates=CANDIDATES,
        feature_schema=SCHEMA_VERSION,
        features=encode_features(X),
    )


def called(record: PredictionRecord, endpoint: str, source: str = "explicit") -> FeedbackRecord:
    labelled = label(record, None, None, None, source=source)  # type: ignore[arg-type]
    return labelled.model_copy(update={"outcome": "called", "endpoint": endpoint, "called": endpoint})


@pytest.mark.parametrize(
    ("previous", "events", "expected"),
    [
        ([], ["GET /a"], "GET /a"),  # a session's first prediction: the first call after it
        (["GET /a"], ["GET /a", "GET /b"], "GET /b"),
        (["GET /a", "GET /b"], ["GET /b", "POST /c", "GET /d"], "POST /c"),  # the window slid past GET /a
        (["GET /a", "GET /b"], ["GET /a", "GET /b", "GET /x", "GET /a", "GET /b", "GET /y"], "GET /x"),
        (["GET /a"], ["GET /a"], None),  # nothing new yet
        (["GET /a"], ["GET /z", "GET /q"], None),  # another session: no anchor
        (["GET /a"], [], None),
    ],
)
def test_followup_reads_the_next_call_off_a_later_history(
    previous: list[str], events: list[str], expected: str | None
) -> None:
    assert followup(previous, events) == expected


def test_features_survive_the_stored_prediction() -> None:
    record = prediction("p1")
    X = PredictionRecord.model_validate_json(record.model_dump_json()).feature_matrix()
    assert X.shape == (len(CANDIDATES), len(FEATURE_NAMES))
    assert np.isnan(X[0, 3]) and X[2, 5] == 2 * len(FEATURE_NAMES) + 5
    assert len(record.features) < X.nbytes  # compressed: predictions live in Redis for a day
    assert decode_features("", 0).shape == (0, 0)


def test_first_label_wins_and_feeds_the_online_counts(tmp_path: Path, redis_server: RedisServer) -> None:
    settings = cache_settings(redis_server.url)
    store = ResilientStore(settings)
    stream = f"labels-{time.time_ns()}"
    counts = OnlineTransitions(store, 0.2, RecallSettings())
    other_replica = OnlineTransitions(ResilientStore(settings), 0.2, RecallSettings())
    sink = LabelSink(store, FeedbackLog(store, FeedbackSettings(stream=stream, spool_path=tmp_path / "s")), counts, 60)
    record = prediction("p-first")
    assert counts.next_counts("spec1", "GET /invoices/{invoice}") == {}
    stored, entry = sink.record(called(record, CANDIDATES[1], source="implicit"))
    assert stored == "stream" and entry
    # The explicit report of the same prediction arrives later (or twice): it is not counted again.
    assert sink.record(called(record, CANDIDATES[1])) == ("duplicate", None)
    assert sink.record(called(record, CANDIDATES[2])) == ("duplicate", None)
    assert redis_server.client().xlen(stream) == 1
    time.sleep(0.25)  # past the refresh: every replica reads the new count
    assert counts.next_counts("spec1", "GET /invoices/{invoice}") == {CANDIDATES[1]: 1}
    assert other_replica.next_counts("spec1", "GET /invoices/{invoice}") == {CANDIDATES[1]: 1}
    # No history: the count goes to the session start.
    sink.record(called(prediction("p-start").model_copy(update={"last_operation": None}), CANDIDATES[0]))
    assert counts.next_counts("spec1", START) == {CANDIDATES[0]: 1}


def test_each_label_scores_the_weights_of_the_counts_and_the_spec_takes_the_one_its_labels_favour(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """The model puts the invoice's read first (0.6), the counts of four labels put the payment first (0.75): a
    payment label makes a light weight of the counts likelier than the configured one; once the spec's labels are
    three times as likely under it, every replica mixes with it, for requests without a prompt as the labels were.
    A spec whose labels follow the model keeps the weight."""
    settings = cache_settings(redis_server.url)
    store = ResilientStore(settings)
    counts = OnlineTransitions(store, 0.1, RecallSettings())
    other_replica = OnlineTransitions(ResilientStore(settings), 0.1, RecallSettings())
    sink = LabelSink(store, FeedbackLog(store, FeedbackSettings(spool_path=tmp_path / "s")), counts, 60)
    priors = [1.0, 10.0, 100.0]
    offer = HabitOffer(labels=4, model=[0.6, 0.1, 0.3], habit=[0.25, 0.75, 0.0], priors=priors, prompted=False)
    spec = f"habit-{time.time_ns()}"
    assert best_prior(other_replica.prior_scores(spec), priors, 100.0, False) == 100.0  # no label yet
    record = prediction(f"p-{spec}", spec).model_copy(update={"habit": offer})
    sink.record(called(record, CANDIDATES[1]))
    time.sleep(0.15)  # past the refresh
    # The payment had 0.62 of the mixture with a weight of 1, 0.125 with 100: five times as likely.
    assert best_prior(other_replica.prior_scores(spec), priors, 100.0, False) == 1.0
    # Labels of requests without a prompt (imported traffic) leave the weight of requests with one as it was.
    assert best_prior(other_replica.prior_scores(spec), priors, 100.0, True) == 100.0
    followed = f"model-{time.time_ns()}"
    for n in range(3):
        record = prediction(f"p-{followed}-{n}", followed).model_copy(update={"habit": offer})
        sink.record(called(record, CANDIDATES[0]))
    time.sleep(0.15)
    assert best_prior(counts.prior_scores(followed), priors, 100.0, False) == 100.0


def _unit(*values: float) -> np.ndarray:
    vector = np.array(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


def test_labels_remembered_with_their_prompt_lean_the_counts_toward_alike_requests(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """Two habits after the same operation, told apart by the request: after opening an invoice, "pay" requests
    were followed by the payment and "who" requests by the customer. The plain counts are 2:1; asked a "pay"
    request, the counts lean to the payment, asked a "who" request to the customer; vectors of another embedder
    are not compared; every replica reads the same; the list keeps its newest `per_key` labels."""
    settings = cache_settings(redis_server.url)
    recall = RecallSettings(per_key=3)
    counts = OnlineTransitions(ResilientStore(settings), 0.1, recall)
    other_replica = OnlineTransitions(ResilientStore(settings), 0.1, recall)
    store = ResilientStore(settings)
    sink = LabelSink(store, FeedbackLog(store, FeedbackSettings(stream=f"l-{time.time_ns()}", spool_path=tmp_path / "s")),
                     counts, 60)
    pay, who = _unit(1, 0.1, 0), _unit(0, 0.1, 1)
    for n, (vector, following) in enumerate([(pay, CANDIDATES[1]), (who, CANDIDATES[2]), (who, CANDIDATES[2])]):
        record = prediction(f"p-recall-{n}").model_copy(update=encode_prompt(PromptVector("minilm-a", vector)))
        assert record.prompt_of() is not None and record.prompt_of().space == "minilm-a"
        sink.record(called(record, following))
    time.sleep(0.15)
    previous = "GET /invoices/{invoice}"
    plain = counts.next_counts("spec1", previous)
    assert plain == {CANDIDATES[1]: 1.0, CANDIDATES[2]: 2.0}
    for replica in (counts, other_replica):
        asked_pay = replica.next_counts("spec1", previous, PromptVector("minilm-a", _unit(1, 0.2, 0)))
        asked_who = replica.next_counts("spec1", previous, PromptVector("minilm-a", _unit(0, 0.2, 1)))
        assert asked_pay[CANDIDATES[1]] > 0.9 * sum(asked_pay.values())  # the total stays the evidence: 3 labels
        assert asked_who[CANDIDATES[2]] > 0.9 * sum(asked_who.values())
        assert sum(asked_pay.values()) == pytest.approx(3.0) and sum(asked_who.values()) == pytest.approx(3.0)
    assert counts.next_counts("spec1", previous, PromptVector("minilm-b", _unit(1, 0.2, 0))) == plain
    for n in range(3):  # three newer "who" labels push the "pay" one out of the list; the counts keep it
        sink.record(called(prediction(f"p-more-{n}").model_copy(
            update=encode_prompt(PromptVector("minilm-a", who))), CANDIDATES[2]))
    assert redis_server.client().llen(f"{settings.key_prefix}recall2:minilm-a:spec1:{previous}") == 3
    time.sleep(0.15)
    asked_pay = counts.next_counts("spec1", previous, PromptVector("minilm-a", _unit(1, 0.2, 0)))
    assert asked_pay[CANDIDATES[2]] > asked_pay[CANDIDATES[1]] > 0  # the plain counts' share only


def test_a_spec_borrows_what_followed_the_same_operation_on_other_specs(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """Labels on spec1 move spec2's counts after the same operation at `borrow` times their weight, and only
    spec2's own labels count in full; a spec's own labels are not borrowed back from the shared key; the
    remembered prompts of other specs lean the borrowed share; `borrow` 0 shares nothing, nor does a session's
    start."""
    settings = cache_settings(redis_server.url)
    recall = RecallSettings()
    counts = OnlineTransitions(ResilientStore(settings), 0.1, recall, borrow=0.5)
    alone = OnlineTransitions(ResilientStore(settings), 0.1, recall, borrow=0.0)
    store = ResilientStore(settings)
    sink = LabelSink(store, FeedbackLog(store, FeedbackSettings(spool_path=tmp_path / "s")), counts, 60)
    previous = CANDIDATES[0]
    pay, who = _unit(1, 0, 0), _unit(0, 1, 0)
    for n, (endpoint, vector) in enumerate([(CANDIDATES[1], pay), (CANDIDATES[1], pay), (CANDIDATES[2], who)]):
        sink.record(called(prediction(f"p-one-{n}").model_copy(
            update=encode_prompt(PromptVector("minilm-a", vector))), endpoint))
    sink.record(called(prediction("p-two", spec_id="spec2"), CANDIDATES[2]))
    time.sleep(0.15)
    assert counts.next_counts("spec1", previous) == {CANDIDATES[1]: 2.0, CANDIDATES[2]: 1.5}
    assert counts.next_counts("spec2", previous) == {CANDIDATES[1]: 1.0, CANDIDATES[2]: 1.5}
    assert alone.next_counts("spec2", previous) == {CANDIDATES[2]: 1.0}
    asked_who = counts.next_counts("spec2", previous, PromptVector("minilm-a", _unit(0.1, 1, 0)))
    assert asked_who[CANDIDATES[2]] > 1.45 and asked_who[CANDIDATES[1]] < 0.05
    assert sum(asked_who.values()) == pytest.approx(2.5)
    sink.record(called(prediction("p-start").model_copy(update={"last_operation": None}), CANDIDATES[0]))
    time.sleep(0.15)
    assert counts.next_counts("spec1", START) == {CANDIDATES[0]: 1.0}
    assert counts.next_counts("spec2", START) == {}  # what opens a session is not borrowed


def test_labels_move_the_spec_agnostic_patterns_every_replica_reads(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """With no labels the rates are the trained ones; a label counts its pattern as chosen and adds each offered
    pattern's expected share, on any spec; a pattern chosen more often than expected is lifted, one chosen less
    lowered, in proportion; a call outside the candidate pool teaches nothing; the hashes hold one field per
    pattern, however many labels."""
    settings = cache_settings(redis_server.url)
    trained = PatternStats(transition={"0:1:2:0": (1, 100), "0:2:0:0": (10, 100)})
    patterns = OnlinePatterns(ResilientStore(settings), 0.1, prior=0.2)
    other_replica = OnlinePatterns(ResilientStore(settings), 0.1, prior=0.2)
    untouched = patterns.adapt(trained)
    assert untouched.transition_rate("0:1:2:0") == trained.transition_rate("0:1:2:0")
    assert untouched.first_rate("1:1:0") == trained.first_rate("1:1:0")
    store = ResilientStore(settings)
    sink = LabelSink(store, FeedbackLog(store, FeedbackSettings(spool_path=tmp_path / "s")), None, 60, patterns)
    offer = PatternOffer(table="transition", expected={"0:1:2:0": 0.25, "0:2:0:0": 0.75},
                         keys=["0:1:2:0", "0:2:0:0"])  # the patterns of CANDIDATES[1:], the candidate pool
    pooled = {"patterns": offer, "candidates": CANDIDATES[1:]}
    for n in range(4):
        chosen = CANDIDATES[1] if n < 2 else CANDIDATES[2]  # half and half, where a quarter was expected
        sink.record(called(prediction(f"p-pat-{n}", spec_id=f"spec{n}").model_copy(update=pooled), chosen))
    sink.record(called(prediction("p-outside").model_copy(update=pooled), CANDIDATES[0]))
    time.sleep(0.15)
    adapted = other_replica.adapt(trained)
    # trained rate x (prior + chosen) / (prior + expected)
    lifted = trained.transition_rate("0:1:2:0") * (0.2 + 2) / (0.2 + 1.0)
    lowered = trained.transition_rate("0:2:0:0") * (0.2 + 2) / (0.2 + 3.0)
    assert adapted.transition_rate("0:1:2:0") == pytest.approx(lifted)
    assert adapted.transition_rate("0:2:0:0") == pytest.approx(lowered)
    assert adapted.first_rate("1:1:0") == trained.first_rate("1:1:0")
    client = redis_server.client()
    assert client.hgetall(f"{settings.key_prefix}{patterns_key('transition', 'chosen')}") == {
        b"0:1:2:0": b"2", b"0:2:0:0": b"2"}
    assert client.hlen(f"{settings.key_prefix}{patterns_key('transition', 'expected')}") == 2


def test_in_memory_counts_borrow_as_the_online_ones_do() -> None:
    """The replay of `opensesame eval --online` borrows as the service does; a session's first call is not
    borrowed (what an API is opened with is its own)."""
    borrowing, alone = InMemoryTransitions(borrow=0.5), InMemoryTransitions()
    for counts in (borrowing, alone):
        for spec, following in (("a", "GET /x"), ("a", "GET /x"), ("b", "GET /y")):
            counts.add(spec, "GET /w", following)
            counts.add(spec, START, following)
    assert borrowing.next_counts("b", "GET /w") == {"GET /x": 1.0, "GET /y": 1.0}
    assert borrowing.next_counts("a", "GET /w") == {"GET /x": 2.0, "GET /y": 0.5}
    assert alone.next_counts("b", "GET /w") == {"GET /y": 1.0}
    assert borrowing.next_counts("b", START) == {"GET /y": 1.0}


def test_in_memory_counts_remember_as_the_online_ones_do() -> None:
    """The replay of `opensesame eval --online` uses the in-memory counts: the same recall, and none by default
    (training adds no prompts, so the features it learns from are the plain counts)."""
    remembering, plain = InMemoryTransitions(RecallSettings()), InMemoryTransitions()
    for counts in (remembering, plain):
        counts.add("s", START, "GET /a", prompt=PromptVector("e", _unit(1, 0)))
        counts.add("s", START, "GET /b", prompt=PromptVector("e", _unit(0, 1)))
        counts.add("s", START, "GET /b")
    asked = PromptVector("e", _unit(1, 0.1))
    leaning = remembering.next_counts("s", START, asked)
    assert leaning["GET /a"] > 0.9 * sum(leaning.values()) and sum(leaning.values()) == pytest.approx(3.0)
    assert plain.next_counts("s", START, asked) == {"GET /a": 1.0, "GET /b": 2.0}


def test_claims_hold_within_a_replica_without_redis() -> None:
    store = cache(None)
    assert store.claim("label:x", 60) is True
    assert store.claim("label:x", 60) is False
    assert store.swap("last:a", b"1", 60) is None and store.swap("last:a", b"2", 60) == b"1"


class CrashBeforeAck(RuntimeError):
    pass


def test_writer_crash_between_write_and_ack_loses_and_duplicates_nothing(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    client = redis_server.client()
    stream, log_dir = f"labels-{time.time_ns()}", tmp_path / "log"
    feedback = FeedbackLog(cache(redis_server.url), FeedbackSettings(stream=stream, spool_path=tmp_path / "s"))
    for i in range(5):
        feedback.append(called(prediction(f"p{i}"), CANDIDATES[1]))

    crashing = LabelLogWriter(client, stream, "writers", str(log_dir), batch=3)
    time.sleep(0.05)
    backlog, lag = crashing.backlog()
    assert backlog == 5 and 0.05 <= lag < 5  # never read: the group's lag, aged from the first entry's id

    def crash(_: list[str]) -> None:
        raise CrashBeforeAck("killed after the Parquet file was renamed into place")

    crashing._ack = crash  # type: ignore[method-assign]
    with pytest.raises(CrashBeforeAck):
        crashing.drain_once(block_ms=100)
    files = sorted(log_dir.rglob("*.parquet"))
    assert len(files) == 1 and list(read_labels(str(log_dir))["prediction_id"]) == ["p0", "p1", "p2"]
    assert client.xpending(stream, "writers")["pending"] == 3
    assert crashing.backlog()[0] == 5  # 3 read but unacknowledged + 2 never read

    restarted = LabelLogWriter(client, stream, "writers", str(log_dir), batch=3)
    assert restarted.drain_once(block_ms=100) == 3  # the unacknowledged batch first, rewritten in place
    assert sorted(log_dir.rglob("*.parquet")) == files
    assert restarted.drain_once(block_ms=100) == 2
    assert restarted.drain_once(block_ms=100) == 0
    labels = read_labels(str(log_dir))
    assert list(labels["prediction_id"]) == [f"p{i}" for i in range(5)]
    assert client.xpending(stream, "writers")["pending"] == 0
    assert restarted.backlog() == (0, 0.0)
    assert not list(log_dir.rglob("*.tmp"))
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    assert all(f.parent.name == f"day={day}" and f.parent.parent.name == "v1" for f in log_dir.rglob("*.parquet"))


def test_label_rows_make_one_group_per_usable_label(tmp_path: Path, redis_server: RedisServer) -> None:
    stream, log_dir = f"labels-{time.time_ns()}", tmp_path / "log"
    feedback = FeedbackLog(cache(redis_server.url), FeedbackSettings(stream=stream, spool_path=tmp_path / "s"))
    feedback.append(called(prediction("good"), CANDIDATES[1]))
    feedback.append(called(prediction("good"), CANDIDATES[2]))  # a second label of one prediction: dropped
    feedback.append(called(prediction("outside"), "DELETE /invoices/{invoice}"))
    feedback.append(label(prediction("nothing"), None, None, None))
    feedback.append(called(prediction("old").model_copy(update={"feature_schema": "v0"}), CANDIDATES[0]))
    LabelLogWriter(redis_server.client(), stream, "w", str(log_dir), batch=100).drain_once(100)
    labels = read_labels(str(log_dir))
    assert len(labels) == 4
    rows, skipped = label_rows(labels, weight=3.0)
    assert skipped == {"no_call": 1, "not_in_candidates": 1, "other_schema": 1}
    X, y, weight, sizes = split_frame(rows)
    assert sizes.tolist() == [3] and y.tolist() == [0, 1, 0] and set(weight) == {3.0}
    np.testing.assert_array_equal(X, prediction("good").feature_matrix())


def _spool_from_another_process(spool: Path, writer: int, count: int) -> None:
    down = cache_settings("redis://127.0.0.1:1/0")  # nothing listens there: every label is spooled
    feedback = FeedbackLog(ResilientStore(down), FeedbackSettings(stream="unused", spool_path=spool))
    for n in range(count):
        feedback.append(called(prediction(f"w{writer}-{n:03d}"), CANDIDATES[1]))


def test_several_processes_share_one_spool_and_replay_loses_nothing(tmp_path: Path, redis_server: RedisServer) -> None:
    """Four processes spool at once (Redis down for them); one replica, Redis up, replays every line, whole, once,
    each writer's labels in their order."""
    import multiprocessing

    spool = tmp_path / "spool" / "feedback.jsonl"
    fork = multiprocessing.get_context("fork")  # no Ray or threads of ours in this process to trip over
    writers = [fork.Process(target=_spool_from_another_process, args=(spool, w, 50)) for w in range(4)]
    for process in writers:
        process.start()
    for process in writers:
        process.join(timeout=60)
        assert process.exitcode == 0
    stream = f"labels-{time.time_ns()}"
    feedback = FeedbackLog(cache(redis_server.url), FeedbackSettings(stream=stream, spool_path=spool))
    assert feedback.spooled == 200
    feedback.append(called(prediction("after"), CANDIDATES[1]))  # reaching Redis replays the spool first
    ids = [FeedbackRecord.model_validate_json(f[b"record"]).prediction_id for _, f in redis_server.client().xrange(stream)]
    assert len(ids) == 201 and len(set(ids)) == 201 and ids[-1] == "after" and not spool.exists()
    for w in range(4):
        mine = [i for i in ids if i.startswith(f"w{w}-")]
        assert mine == sorted(mine) and len(mine) == 50


@pytest.mark.parametrize("redis_on", [True, False], ids=["redis", "in-process"])
def test_acceptance_counts_champion_and_shadow_on_the_same_predictions(
    redis_on: bool, redis_server: RedisServer
) -> None:
    ranking = ["A", "B", "C", "D"]
    assert [rank_bucket(e, ranking) for e in ("A", "C", "D", "Z", None)] == ["1", "2-3", "4+", "missed", "none"]
    tally, other_replica = (AcceptanceTally(cache(redis_server.url if redis_on else None)) for _ in range(2))
    if redis_on:  # one prefix: two replicas sharing Redis
        other_replica = AcceptanceTally(tally._store)
    tally.add("v1", "1", ("v2", "2-3"))
    other_replica.add("v1", "missed", ("v2", "1"))
    tally.add("v1", "2-3")  # not shadowed: counts for v1 alone, not in the pair
    champion, shadow = tally.paired("v1", "v2")
    if redis_on:  # both replicas' labels
        assert tally.of("v1") == Acceptance(labels=3, at1=round(1 / 3, 4), at3=round(2 / 3, 4))
        assert champion == Acceptance(labels=2, at1=0.5, at3=0.5)
        assert shadow == Acceptance(labels=2, at1=0.5, at3=1.0)
    else:  # without Redis each replica counts alone
        assert tally.of("v1") == Acceptance(labels=2, at1=0.5, at3=1.0)
        assert champion == Acceptance(labels=1, at1=1.0, at3=1.0)
        assert shadow == Acceptance(labels=1, at1=0.0, at3=1.0)
        assert other_replica.of("v2") == Acceptance(labels=1, at1=1.0, at3=1.0)
