"""The shared cache, the spec store and the feedback log, in-process against a real Redis and a real HTTP server."""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline.adapters.feedback_log import FeedbackLog
from pipeline.adapters.kv import RESYNC_BATCH, ResilientStore
from pipeline.errors import NotASpecError, SharedStoreDownError, SpecNotFoundError
from pipeline.learning.labels import label
from pipeline.learning.records import (
    FeedbackMismatchError,
    FeedbackRecord,
    PredictionNotFoundError,
    PredictionRecord,
    load_prediction,
    prediction_key,
    save_prediction,
)
from pipeline.settings import CacheSettings, FeedbackSettings, FetchSettings
from pipeline.spec.matching import CallMatcher
from pipeline.spec.store import SpecStore
from tests.support import FIXTURES, RedisServer, SpecServer, poll

BILLING = (FIXTURES / "billing_oas30.yaml").read_bytes()


def cache_settings(url: str | None, **extra: object) -> CacheSettings:
    return CacheSettings(redis_url=url, key_prefix=f"t{time.time_ns()}:", retry_after_s=0.2, **extra)


@pytest.fixture
def served_billing(spec_server: SpecServer) -> str:
    spec_server.routes["/store/billing.yaml"] = (200, {"ETag": '"v1"'}, BILLING)
    return spec_server.url("/store/billing.yaml")


def test_url_is_revalidated_with_etag_after_ttl(
    served_billing: str, spec_server: SpecServer, local_fetch: FetchSettings, redis_server: RedisServer
) -> None:
    store = SpecStore(
        ResilientStore(cache_settings(redis_server.url, spec_ttl_s=1)), cache_settings(None, spec_ttl_s=1), local_fetch
    )
    first = store.register(url=served_billing)
    before = len(spec_server.requests)
    assert store.register(url=served_billing).content_hash == first.content_hash
    assert len(spec_server.requests) == before  # fresh: no request at all
    time.sleep(1.1)
    assert store.register(url=served_billing).content_hash == first.content_hash
    path, headers = spec_server.requests[-1]
    assert path == "/store/billing.yaml" and headers.get("If-None-Match") == '"v1"'
    # Registered (fetched), then found fresh, then revalidated by a 304 and found again.
    assert store.lookups == {"miss": 1, "hit": 2, "revalidated": 1}


def test_stale_copy_served_when_origin_fails(
    served_billing: str, spec_server: SpecServer, local_fetch: FetchSettings
) -> None:
    settings = cache_settings(None, spec_ttl_s=1)
    store = SpecStore(ResilientStore(settings), settings, local_fetch)
    first = store.register(url=served_billing)
    spec_server.routes["/store/billing.yaml"] = (500, {}, b"down")
    time.sleep(1.1)
    assert store.register(url=served_billing).content_hash == first.content_hash
    assert store.lookups["stale"] == 1


def test_catalogue_shared_between_replicas_through_redis(local_fetch: FetchSettings, redis_server: RedisServer) -> None:
    settings = cache_settings(redis_server.url)
    registered = SpecStore(ResilientStore(settings), settings, local_fetch).register(document=BILLING.decode())
    other_replica = SpecStore(ResilientStore(settings), settings, local_fetch)
    shared = other_replica.catalogue(registered.content_hash)
    assert shared.title == registered.title
    assert CallMatcher(shared.routes()).match("GET /v1/invoices/in_1").operation.id == "GET /invoices/{invoice}"
    heard: list[str] = []
    third_replica = SpecStore(ResilientStore(settings), settings, local_fetch, on_lookup=heard.append)
    third_replica.catalogue(registered.content_hash)
    third_replica.catalogue(registered.content_hash)
    assert heard == ["shared", "hit"]  # the metric hears each lookup: from Redis, then parsed in this process


def test_a_registered_spec_is_never_unknown_because_redis_blinked(local_fetch: FetchSettings,
                                                                 redis_server: RedisServer) -> None:
    """A replica that does not hold a registered spec asks Redis even in its back-off after a failed call (a
    time-out under load), and says "retry" (503), not "unknown spec_id" (404), while Redis cannot answer."""
    settings = cache_settings(redis_server.url)
    spec_id = SpecStore(ResilientStore(settings), settings, local_fetch).register(document=BILLING.decode()).content_hash
    blinked = ResilientStore(settings)
    blinked._failed(TimeoutError("a time-out under load"))  # now skipping Redis for retry_after_s
    assert blinked.get(f"cat:{spec_id}") is None  # what a cache read sees meanwhile
    assert SpecStore(blinked, settings, local_fetch).catalogue(spec_id).content_hash == spec_id
    unreachable = cache_settings("redis://127.0.0.1:1/0")  # nothing listens there
    with pytest.raises(SharedStoreDownError, match="retry after the Retry-After delay"):
        SpecStore(ResilientStore(unreachable), unreachable, local_fetch).catalogue(spec_id)


def test_inline_text_is_never_read_as_a_server_path(local_fetch: FetchSettings) -> None:
    settings = cache_settings(None)
    store = SpecStore(ResilientStore(settings), settings, local_fetch)
    with pytest.raises(NotASpecError):
        store.register(document=str(FIXTURES / "billing_oas30.yaml"))
    with pytest.raises(SpecNotFoundError, match="POST /specs"):
        store.catalogue("0" * 32)


def test_store_keeps_serving_without_redis_and_reconnects(redis_server: RedisServer) -> None:
    if not redis_server.owned:
        pytest.skip("the machine's Redis cannot be stopped by a test")
    store = ResilientStore(cache_settings(redis_server.url, local_capacity=8))
    store.set("a", b"1")
    redis_server.stop()
    try:
        started = time.perf_counter()
        store.set("b", b"2")
        assert store.get("a") == b"1" and store.get("b") == b"2"  # the in-process copy answers
        assert not store.ping()
        assert time.perf_counter() - started < 2  # short time-outs, then Redis is skipped
    finally:
        redis_server.start()
    # Reconnected without a restart of the store; on a busy machine the restarted server's first replies can take
    # longer than the store's short socket time-out, so the ping is asked again.
    poll(store.ping, timeout_s=10)
    store.set("c", b"3")
    assert redis_server.client().get(store._prefix + "c") == b"3"


def test_an_outage_backlog_larger_than_a_batch_is_all_written_back(redis_server: RedisServer) -> None:
    """More values than one write-back batch, kept while Redis was away: once a call reaches Redis again, every
    one of them is written back with what is left of its time to live, batch after batch."""
    if not redis_server.owned:
        pytest.skip("the machine's Redis cannot be stopped by a test")
    store = ResilientStore(cache_settings(redis_server.url))
    kept = [f"k{i}" for i in range(RESYNC_BATCH * 3 + 5)]
    redis_server.stop()
    try:
        for key in kept:
            store.set(key, key.encode(), ttl_s=60)
    finally:
        redis_server.start()
    time.sleep(0.3)  # past the back-off
    assert store.get("not-kept") is None  # reaches Redis: the write-back starts in its own thread
    keys = [store._prefix + key for key in kept]
    poll(lambda: redis_server.client().mget(keys) == [key.encode() for key in kept], timeout_s=10)
    assert all(0 < redis_server.client().ttl(key) <= 60 for key in keys)


def test_a_hung_redis_costs_short_time_outs_not_seconds(redis_server: RedisServer) -> None:
    """16 requests at once while Redis hangs (SIGSTOP: connections open, no answers, as in a network partition):
    each waits two socket time-outs at most (a read that timed out is sent once more), then Redis is skipped.
    redis-py's own retries (10, with back-off) would hold each of them for seconds."""
    if not redis_server.owned:
        pytest.skip("the machine's Redis cannot be stopped by a test")
    store = ResilientStore(cache_settings(redis_server.url, local_capacity=8))
    store.set("warm", b"1")  # a live connection in the pool, as in a running service
    assert redis_server.process is not None
    redis_server.process.send_signal(signal.SIGSTOP)
    try:

        def read(n: int) -> float:
            started = time.perf_counter()
            assert store.get(f"absent-{n}") is None  # not in the in-process copy: Redis is asked
            return time.perf_counter() - started

        with ThreadPoolExecutor(max_workers=16) as pool:
            waits = list(pool.map(read, range(16)))
        print(f"16 reads while Redis hangs: slowest {max(waits) * 1000:.0f} ms")
        assert max(waits) < 1.0
    finally:
        redis_server.process.send_signal(signal.SIGCONT)


def test_a_reply_late_once_is_not_an_outage(local_fetch: FetchSettings, redis_server: RedisServer) -> None:
    """A write answered past the socket time-out (Redis paused 450 ms: fsyncing its append-only file, or starved
    of CPU beside a training) is sent once more, not kept in this replica's memory alone: the spec it registers
    is known to the other replicas at once, as in the faults stand's set-up beside a training."""
    settings = cache_settings(redis_server.url, socket_timeout_s=0.3)
    store = ResilientStore(settings)
    store.set("warm", b"1")  # a live connection in the pool, as in a running service
    redis_server.client().execute_command("CLIENT", "PAUSE", 450)
    spec_id = SpecStore(store, settings, local_fetch).register(document=BILLING.decode()).content_hash
    assert SpecStore(ResilientStore(settings), settings, local_fetch).catalogue(spec_id).content_hash == spec_id
    assert not store.recently_down()


def record(prediction_id: str = "p1") -> PredictionRecord:
    return PredictionRecord(
        prediction_id=prediction_id,
        user_id="u",
        spec_id="s",
        events=["GET /v1/invoices/in_1"],
        prompt="pay it",
        predicted=["POST /invoices/{invoice}/pay", "GET /invoices/{invoice}"],
        model_version="m/v1",
        created_at=datetime.now(UTC),
    )


def test_labels_validate_against_the_prediction(local_fetch: FetchSettings) -> None:
    settings = cache_settings(None)
    store = SpecStore(ResilientStore(settings), settings, local_fetch)
    spec = store.register(document=BILLING.decode())
    rec = record().model_copy(update={"spec_id": spec.content_hash})
    matcher = CallMatcher(store.catalogue(spec.content_hash).routes())  # what the Ingress keeps per spec
    called = label(rec, "POST /v1/invoices/in_1/pay", None, matcher.match("POST /v1/invoices/in_1/pay"))
    assert (called.outcome, called.endpoint, called.rank) == ("called", "POST /invoices/{invoice}/pay", 1)
    accepted = label(rec, None, 2, None)
    assert (accepted.outcome, accepted.endpoint, accepted.rank) == ("accepted", "GET /invoices/{invoice}", 2)
    assert label(rec, None, None, None).outcome == "none"
    with pytest.raises(FeedbackMismatchError, match="use 1..2"):
        label(rec, None, 3, None)
    with pytest.raises(FeedbackMismatchError, match="matches no operation"):
        label(rec, "GET /nowhere", None, matcher.match("GET /nowhere"))


def test_feedback_spooled_while_redis_down_then_replayed_in_order(tmp_path: Path, redis_server: RedisServer) -> None:
    if not redis_server.owned:
        pytest.skip("the machine's Redis cannot be stopped by a test")
    stream = f"feedback-{time.time_ns()}"
    cache = ResilientStore(cache_settings(redis_server.url))
    log = FeedbackLog(cache, FeedbackSettings(stream=stream, spool_path=tmp_path / "spool.jsonl"))
    labelled = [label(record(f"p{i}"), None, 1, None) for i in range(3)]
    assert log.append(labelled[0]) is not None
    redis_server.stop()
    try:
        assert log.append(labelled[1]) is None
        assert log.spooled == 1
    finally:
        redis_server.start()
    time.sleep(0.3)
    assert log.append(labelled[2]) is not None
    assert log.spooled == 0
    entries = redis_server.client().xrange(stream)
    # The throwaway server keeps nothing on disk, so p0 went with the restart; the spool replayed p1 before p2.
    assert [FeedbackRecord.model_validate_json(f[b"record"]).prediction_id for _, f in entries] == ["p1", "p2"]


def test_labels_spooled_at_once_share_an_fsync_and_each_is_on_disk_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Group commit: 16 labels spooled together while one fsync is slow (0.2 s) need far fewer than 16 fsyncs,
    and every label is in the spool exactly once when its append returns; the spool's count follows."""
    log = FeedbackLog(ResilientStore(cache_settings(None)), FeedbackSettings(spool_path=tmp_path / "spool.jsonl"))
    real_fsync, fsyncs = os.fsync, []

    def slow_fsync(fd: int) -> None:  # the real fsync, counted, the first one slow as on a busy disk
        fsyncs.append(fd)
        if len(fsyncs) == 1:
            time.sleep(0.2)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", slow_fsync)
    start = threading.Barrier(16)

    def label_one(i: int) -> bool:
        start.wait()
        assert log.append(label(record(f"p{i}"), None, 1, None)) is None  # spooled: no Redis here
        return f'"prediction_id":"p{i}"' in (tmp_path / "spool.jsonl").read_text()  # on disk on return

    with ThreadPoolExecutor(16) as pool:
        assert all(pool.map(label_one, range(16)))
    lines = (tmp_path / "spool.jsonl").read_text().splitlines()
    assert sorted(FeedbackRecord.model_validate_json(line).prediction_id for line in lines) == sorted(
        f"p{i}" for i in range(16)
    )
    assert len(fsyncs) < 16, fsyncs
    print(f"16 labels, {len(fsyncs)} fsyncs")
    assert log.spooled == 16
    log.append(label(record("p16"), None, 1, None))
    assert log.spooled == 17  # counts what was appended since


def test_a_failed_spool_write_fails_every_label_of_its_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """While the first label's fsync is slow (0.5 s) three more wait; their shared fsync fails, as on a full disk:
    each of the three raises (none would be answered 202), the first one returned, and the next label spools."""
    log = FeedbackLog(ResilientStore(cache_settings(None)), FeedbackSettings(spool_path=tmp_path / "spool.jsonl"))
    real_fsync, fsyncs = os.fsync, []

    def fsync_failing_second(fd: int) -> None:  # the real fsync, the first slow, the second failing
        fsyncs.append(fd)
        if len(fsyncs) == 1:
            time.sleep(0.5)
        elif len(fsyncs) == 2:
            raise OSError(28, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync_failing_second)
    first = threading.Thread(target=log.append, args=(label(record("first"), None, 1, None),))
    first.start()
    while not fsyncs:  # the first write is under way
        time.sleep(0.01)

    def label_one(i: int) -> str:
        try:
            log.append(label(record(f"p{i}"), None, 1, None))
            return "spooled"
        except OSError as exc:
            return exc.strerror

    with ThreadPoolExecutor(3) as pool:
        outcomes = list(pool.map(label_one, range(3)))
    first.join()
    assert outcomes == ["No space left on device"] * 3 and len(fsyncs) == 2
    assert log.append(label(record("after"), None, 1, None)) is None and len(fsyncs) == 3


def test_a_prediction_stored_while_redis_is_down_reaches_redis_when_it_is_back(redis_server: RedisServer) -> None:
    if not redis_server.owned:
        pytest.skip("the machine's Redis cannot be stopped by a test")
    settings = cache_settings(redis_server.url)
    made_here, elsewhere = ResilientStore(settings), ResilientStore(settings)  # two replicas
    redis_server.stop()
    try:
        save_prediction(made_here, record("during-outage"), ttl_s=60)
        assert elsewhere.get("anything") is None  # the other replica meets the outage too
    finally:
        redis_server.start()
    time.sleep(0.3)  # past the back-off
    # Nothing has reached Redis yet; so soon after an outage the other replica says "retry", not "unknown".
    with pytest.raises(SharedStoreDownError, match="not in the shared store yet"):
        load_prediction(elsewhere, "during-outage")
    save_prediction(made_here, record("after"), ttl_s=60)  # the first call that reaches Redis starts the write-back
    poll(lambda: redis_server.client().exists(settings.key_prefix + prediction_key("during-outage")), timeout_s=5)
    assert load_prediction(elsewhere, "during-outage").prediction_id == "during-outage"
    assert 0 < redis_server.client().ttl(settings.key_prefix + prediction_key("during-outage")) <= 60


def test_prediction_records_round_trip_and_unknown_ids_are_clear() -> None:
    cache = ResilientStore(cache_settings(None))
    save_prediction(cache, record("abc"), ttl_s=60)
    assert load_prediction(cache, "abc").predicted[0] == "POST /invoices/{invoice}/pay"
    with pytest.raises(PredictionNotFoundError, match="prediction_id a /predict response returned"):
        load_prediction(cache, "nope")


def test_with_redis_unreachable_a_prediction_this_replica_lacks_is_retry_later_not_unknown() -> None:
    cache = ResilientStore(cache_settings("redis://127.0.0.1:1/0"))  # nothing listens there
    save_prediction(cache, record("mine"), ttl_s=60)
    assert load_prediction(cache, "mine").prediction_id == "mine"  # made by this replica: held in-process
    with pytest.raises(SharedStoreDownError, match="retry after the Retry-After delay"):
        load_prediction(cache, "made-by-another-replica")
