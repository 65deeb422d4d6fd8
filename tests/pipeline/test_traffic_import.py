"""Importing the traffic an API already has: every format read as its tools write it, sessions, matching, the
labels learned through the feedback path (counts, the stream, the label log), a second import that changes
nothing, no secret stored anywhere, and the CLI with its report and Arazzo document."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from ops.cli import main
from pipeline.adapters.kv import ResilientStore
from pipeline.adapters.label_log import LabelLogWriter, read_labels
from pipeline.errors import ImportInputError
from pipeline.learning.arazzo import arazzo_document
from pipeline.learning.imports import ImportReport
from pipeline.learning.online_counts import OnlineTransitions
from pipeline.ranking.stats import START
from pipeline.runtime import import_traffic
from pipeline.settings import (
    CacheSettings,
    FeedbackSettings,
    ImportSettings,
    LearningSettings,
    RecallSettings,
    Settings,
)
from pipeline.spec.load import load_catalogue
from pipeline.traffic.formats import Tally, detect, read_traffic
from pipeline.traffic.locations import expand
from pipeline.traffic.observed import Identity, Observed, epoch
from pipeline.traffic.sessions import Sessionizer
from tests.support import FIXTURES, PACKAGED, FakeS3, RedisServer

TRAFFIC = FIXTURES / "traffic"
BILLING = FIXTURES / "billing_oas30.yaml"
# Every secret the HAR carries: tokens in headers, a cookie, a password in a body, a key in a query string.
SECRETS = ("sk_live_ALICE_SECRET", "sk_live_BOB_SECRET", "COOKIE-SECRET-42", "hunter2-PASSWORD", "QUERY-SECRET",
           "Bearer")


def _read(name: str) -> tuple[list[Observed], Tally]:
    tally = Tally()
    return list(read_traffic(TRAFFIC / name, Identity(b"test"), tally)), tally


def _calls(requests: list[Observed]) -> list[str]:
    return [f"{r.method} {r.path}" for r in requests]


def test_each_format_is_detected_and_read_as_its_tools_write_it() -> None:
    assert {name: detect(TRAFFIC / name) for name in
            ("billing.har", "otlp.jsonl", "kong.jsonl", "apigw.jsonl", "envoy.jsonl", "access.log")} == {
        "billing.har": "har", "otlp.jsonl": "otlp", "kong.jsonl": "jsonl", "apigw.jsonl": "jsonl",
        "envoy.jsonl": "jsonl", "access.log": "combined"}

    har, tally = _read("billing.har")
    assert not tally
    # Sorted by startedDateTime although the export lists them out of order; queries dropped.
    assert [r.time for r in har] == sorted(r.time for r in har)
    assert _calls(har)[:4] == ["GET /v1/invoices", "OPTIONS /v1/invoices/in_1", "GET /v1/invoices/in_1",
                               "GET /v1/invoices/in_1"]
    assert [r.status for r in har[:4]] == [200, 204, 503, 200]
    assert har[0].host == "api.billing.example" and har[4].host == "cdn.billing.example"
    assert har[0].response == {"data": [{"id": "in_1"}, {"id": "in_2"}]}
    assert har[3].response == {"id": "in_1", "customer": "cus_9"}  # base64 content decoded
    assert {r.key_kind for r in har} == {"credential"} and len({r.key for r in har}) == 2  # alice's token, bob's

    otlp, tally = _read("otlp.jsonl")
    # The client span of the second request is the same request; the database span is no HTTP request.
    assert tally == {"duplicate_span": 1}
    assert _calls(otlp) == ["GET /v1/invoices", "GET /v1/invoices/in_1", "POST /v1/invoices/in_1/pay"]
    assert [r.route for r in otlp] == ["/v1/invoices", "/v1/invoices/{invoice}", "/v1/invoices/{invoice}/pay"]
    assert {r.key_kind for r in otlp} == {"session"} and otlp[0].time == pytest.approx(1763632800.0)

    kong, _ = _read("kong.jsonl")
    assert _calls(kong) == ["GET /v1/invoices", "GET /v1/invoices/in_4"]
    assert {r.key_kind for r in kong} == {"user"} and kong[1].time == pytest.approx(1763632803.0)

    gateway, _ = _read("apigw.jsonl")
    assert _calls(gateway) == ["GET /v1/invoices/in_5", "POST /v1/invoices/in_5/void"]
    assert [r.route for r in gateway] == ["/invoices/{invoice}", "/invoices/{invoice}/void"]
    assert gateway[0].key == gateway[1].key and gateway[0].key_kind == "user"  # nested and dotted fields alike
    assert gateway[1].time - gateway[0].time == pytest.approx(8.877)

    envoy, _ = _read("envoy.jsonl")
    assert _calls(envoy) == ["GET /v1/invoices", "GET /v1/invoices/search"] and envoy[0].key_kind == "client"

    combined, tally = _read("access.log")
    assert tally == {"garbage": 1, "not_utf8": 1}
    assert _calls(combined) == ["GET /v1/invoices", "GET /v1/invoices/in_9", "DELETE /v1/invoices/in_3",
                                "POST /v1/invoices/in_9/pay"]
    assert combined[2].key_kind == "user" and combined[0].key == combined[3].key != combined[2].key


def test_times_in_every_unit_logs_write() -> None:
    moment = 1763632800.0
    for value in (moment, int(moment * 1e3), int(moment * 1e6), int(moment * 1e9), str(int(moment * 1e3)),
                  "2025-11-20T10:00:00Z", "2025-11-20T10:00:00+00:00", "20/Nov/2025:10:00:00 +0000"):
        assert epoch(value) == pytest.approx(moment), value
    assert epoch("yesterday") is None and epoch(None) is None and epoch(True) is None


def test_unreadable_input_is_counted_and_never_stops_the_rest(tmp_path: Path) -> None:
    log = tmp_path / "mixed.jsonl"
    good = {"time": "2025-11-20T10:00:00Z", "method": "GET", "path": "/v1/invoices", "status": 200, "user": "u"}
    log.write_bytes(b"".join([
        json.dumps(good).encode() + b"\n",
        b"{not json\n",
        b"\xff\xfe\x00 not utf-8\n",
        b"[1, 2]\n",
        json.dumps({"time": "2025-11-20T10:00:01Z", "path": "/v1/invoices"}).encode() + b"\n",  # no method
        json.dumps({"method": "GET", "path": "/v1/invoices"}).encode() + b"\n",  # no time
        json.dumps({**good, "time": "2025-11-20T10:00:02Z", "path": "/v1/invoices/in_1"}).encode() + b"\n",
    ]))
    tally = Tally()
    requests = list(read_traffic(log, Identity(b"k"), tally))
    assert _calls(requests) == ["GET /v1/invoices", "GET /v1/invoices/in_1"]
    assert tally == {"garbage": 2, "not_utf8": 1, "no_method_or_path": 1, "no_time": 1}

    cut = tmp_path / "cut.har"
    text = (TRAFFIC / "billing.har").read_text()
    cut.write_text(text[: text.index('"startedDateTime": "2026-11-20T10:00:20.000Z"')])  # mid-export
    tally = Tally()
    requests = list(read_traffic(cut, Identity(b"k"), tally))
    assert tally == {"truncated": 1} and 0 < len(requests) < 13


def test_rotated_logs_oldest_first_are_one_stream_and_gzip_is_told_by_its_bytes(tmp_path: Path) -> None:
    """A session cut by a log's rotation is read whole (a dry run: read, matched and counted, nothing stored); the
    second part gzipped under a name that does not say so, given as a file:// URI."""
    import gzip

    har = json.loads((TRAFFIC / "billing.har").read_text())
    entries = sorted(har["log"]["entries"], key=lambda e: e["startedDateTime"])
    older, newer = tmp_path / "older.har", tmp_path / "newer.log"
    older.write_text(json.dumps({"log": {**har["log"], "entries": entries[:6]}}))
    newer.write_bytes(gzip.compress(json.dumps({"log": {**har["log"], "entries": entries[6:]}}).encode()))
    settings = Settings(imports=ImportSettings(secret="s"))
    whole = import_traffic(TRAFFIC / "billing.har", BILLING, settings, host="api.billing.example", learn=False)
    rotated = import_traffic([older, newer.as_uri()], BILLING, settings, host="api.billing.example", learn=False)
    assert whole.sessions == 3 and whole.workflows[0].sessions == 3
    assert rotated.model_dump(exclude={"seconds"}) == whole.model_dump(exclude={"seconds"})


def test_a_pattern_or_a_prefix_names_the_files_of_an_object_store_and_of_a_folder(
    tmp_path: Path, fake_s3: FakeS3,
) -> None:
    """Logs as they lie in a bucket (a day per object, one gzipped, an older month in a subfolder, another API's
    beside them): a pattern reads the days it matches in order, a prefix every file under it, and the import is
    the one the whole HAR makes. A pattern that matches nothing is refused with what to give instead."""
    import gzip

    har = json.loads((TRAFFIC / "billing.har").read_text())
    entries = sorted(har["log"]["entries"], key=lambda e: e["startedDateTime"])
    day = f"api-{time.time_ns()}"
    fake_s3.put(f"{day}/2026-11-20.har", json.dumps({"log": {**har["log"], "entries": entries[:6]}}).encode())
    fake_s3.put(f"{day}/2026-11-21.har",
                gzip.compress(json.dumps({"log": {**har["log"], "entries": entries[6:]}}).encode()))
    fake_s3.put(f"{day}/2026-10/2026-10-01.log", (TRAFFIC / "access.log").read_bytes())
    fake_s3.put(f"other-{day}/2026-11-20.har", b"not this API's")
    assert [u.partition("?")[0] for u in expand([fake_s3.uri(f"{day}/2026-11-*.har")])] == [
        f"s3://key:secret@{FakeS3.BUCKET}/{day}/2026-11-20.har", f"s3://key:secret@{FakeS3.BUCKET}/{day}/2026-11-21.har"]
    assert [u.partition("?")[0].rpartition(day)[2] for u in expand([fake_s3.uri(f"{day}/")])] == [
        "/2026-10/2026-10-01.log", "/2026-11-20.har", "/2026-11-21.har"]
    settings = Settings(imports=ImportSettings(secret="s"))
    whole = import_traffic(TRAFFIC / "billing.har", BILLING, settings, host="api.billing.example", learn=False)
    days = import_traffic(fake_s3.uri(f"{day}/2026-11-*.har"), BILLING, settings, host="api.billing.example",
                          learn=False)
    assert days.model_dump(exclude={"seconds"}) == whole.model_dump(exclude={"seconds"})
    with pytest.raises(ImportInputError, match=r"2026-12-\*\.har: no file there: give files, a folder, or a pattern"):
        expand([fake_s3.uri(f"{day}/2026-12-*.har")])

    (tmp_path / "old").mkdir()
    for name in ("b.har", "a.har", "old/c.har", "notes.txt"):
        (tmp_path / name).write_text("{}")
    assert expand([str(tmp_path / "*.har")]) == [str(tmp_path / "a.har"), str(tmp_path / "b.har")]
    assert expand([tmp_path.as_uri() + "/*/*.har"]) == [(tmp_path / "old" / "c.har").as_uri()]
    assert len(expand([tmp_path])) == 4 and expand([tmp_path / "a.har"]) == [tmp_path / "a.har"]


def _observed(key: str, at: float, path: str = "/a", status: int | None = 200) -> Observed:
    return Observed(at, "GET", path, "h", status, None, key, "user")


def test_sessions_split_after_a_gap_and_count_a_retry_once() -> None:
    sessionizer: Sessionizer[int] = Sessionizer(gap_s=1800, retry_window_s=10)
    requests = [_observed("a", 0, "/x", 503), _observed("a", 2, "/x"), _observed("b", 3), _observed("a", 60, "/x"),
                _observed("a", 4000, "/y")]
    sessions = list(sessionizer.sessions((r, i) for i, r in enumerate(requests)))
    by_key = [(s.key, [extra for _, extra in s.calls]) for s in sessions]
    # The failed /x and its retry 2 s later are one call (the retry kept); /x a minute later is a call again.
    assert sorted(by_key) == [("a", [1, 3]), ("a", [4]), ("b", [2])]
    assert sessionizer.retries == 1


def test_sessions_leave_as_they_end_so_memory_holds_only_open_ones() -> None:
    pulled = 0

    def stream() -> Iterator[tuple[Observed, None]]:
        nonlocal pulled
        for i in range(5000):  # one user after another, each for a minute, never back
            pulled += 1
            yield _observed(f"user-{i // 10}", i * 6.0), None

    sessionizer: Sessionizer[None] = Sessionizer(gap_s=60, retry_window_s=0)
    first_pulls = []
    for count, _ in enumerate(sessionizer.sessions(stream())):
        first_pulls.append(pulled)
        if count == 0:
            assert pulled < 2000  # the first session left long before the input ended
    assert len(first_pulls) == 500


@pytest.fixture(scope="module")
def imported(tiny_settings, tiny_model, minilm, redis_server: RedisServer, tmp_path_factory) -> Iterator[dict]:
    """The HAR imported twice into a real Redis, its stream drained into the label log."""
    var = tmp_path_factory.mktemp("import")
    stream = f"imported-{time.time_ns()}"
    settings = tiny_settings.model_copy(update={
        "cache": CacheSettings(redis_url=redis_server.url, key_prefix=f"imp{time.time_ns()}:"),
        "feedback": FeedbackSettings(stream=stream, spool_path=var / "spool.jsonl"),
        "learning": LearningSettings(base_data=tiny_settings.learning.base_data, log_uri=str(var / "labels"),
                                     recall=RecallSettings(per_key=0)),
        "imports": ImportSettings(secret="a deployment's secret"),
    })
    first = import_traffic(TRAFFIC / "billing.har", BILLING, settings, host="api.billing.example",
                           model=tiny_model[0], embedder=minilm)
    second = import_traffic(TRAFFIC / "billing.har", BILLING, settings, host="api.billing.example",
                            model=tiny_model[0], embedder=minilm)
    writer = LabelLogWriter(redis_server.client(), stream, "parquet", settings.learning.log_uri, 500)
    while writer.drain_once(50):
        pass
    yield {"settings": settings, "first": first, "second": second, "stream": stream,
           "labels": read_labels(settings.learning.log_uri)}


def test_an_import_learns_each_session_through_the_feedback_path(imported, redis_server: RedisServer) -> None:
    report: ImportReport = imported["first"]
    assert (report.format, report.requests, report.matched, report.unmatched, report.retries) == ("har", 13, 10, 1, 1)
    assert report.filtered == {"method": 1, "other_host": 1}
    assert report.top_unmatched == [("GET /v1/not/in/the/spec", 1)]
    # alice's morning, bob's, alice's afternoon (2 h later): three sessions of list -> retrieve -> pay.
    assert (report.sessions, report.labels, report.already_imported) == (3, 9, 0)
    assert report.transitions[0].model_dump() == {"previous": "GET /invoices", "following": "GET /invoices/{invoice}",
                                                  "count": 3}
    assert [w.model_dump() for w in report.workflows] == [
        {"steps": ["GET /invoices", "GET /invoices/{invoice}", "POST /invoices/{invoice}/pay"], "sessions": 3}]

    settings: Settings = imported["settings"]
    counts = OnlineTransitions(ResilientStore(settings.cache), 0.1, RecallSettings(per_key=0))
    spec_id = report.spec_id
    assert counts.next_counts(spec_id, "GET /invoices/{invoice}") == {"POST /invoices/{invoice}/pay": 3}
    assert counts.next_counts(spec_id, START) == {"GET /invoices": 3}

    labels = imported["labels"]
    assert len(labels) == 9 and set(labels["source"]) == {"imported"} and set(labels["outcome"]) == {"called"}
    # Each label carries the prediction's candidates and features: retraining can learn from it.
    assert all(row.endpoint in list(row.candidates) and row.features for row in labels.itertuples())
    assert sorted(labels["called"])[:1] == ["GET /v1/invoices"]


def test_importing_the_same_traffic_again_changes_nothing(imported, redis_server: RedisServer) -> None:
    second: ImportReport = imported["second"]
    assert (second.sessions, second.labels, second.already_imported) == (3, 0, 9)
    assert redis_server.client().xlen(imported["stream"]) == 9
    settings: Settings = imported["settings"]
    counts = OnlineTransitions(ResilientStore(settings.cache), 0.1, RecallSettings(per_key=0))
    assert counts.next_counts(second.spec_id, "GET /invoices/{invoice}") == {"POST /invoices/{invoice}/pay": 3}


def test_an_import_cut_short_resumes_where_it_stopped(
    tiny_settings, tiny_model, minilm, redis_server: RedisServer, tmp_path: Path
) -> None:
    """An import that stopped mid-way had learned the traffic up to a moment (it reads in time order); the whole
    file imported again learns the rest, every call once."""
    stream = f"resumed-{time.time_ns()}"
    settings = tiny_settings.model_copy(update={
        "cache": CacheSettings(redis_url=redis_server.url, key_prefix=f"res{time.time_ns()}:"),
        "feedback": FeedbackSettings(stream=stream, spool_path=tmp_path / "spool.jsonl"),
        "imports": ImportSettings(secret="another secret", upload_dir=tmp_path / "imports"),
    })
    har = json.loads((TRAFFIC / "billing.har").read_text())
    har["log"]["entries"] = [e for e in har["log"]["entries"] if e["startedDateTime"] < "2026-11-20T10:05:05"]
    cut = tmp_path / "until-10-05-05.har"
    cut.write_text(json.dumps(har))
    first = import_traffic(cut, BILLING, settings, host="api.billing.example", model=tiny_model[0], embedder=minilm)
    whole = import_traffic(TRAFFIC / "billing.har", BILLING, settings, host="api.billing.example",
                           model=tiny_model[0], embedder=minilm)
    assert first.labels == 5  # alice's morning (3 calls) and the first two of bob's
    assert (whole.labels, whole.already_imported) == (9 - first.labels, first.labels)
    assert redis_server.client().xlen(stream) == 9


def test_no_secret_of_the_traffic_is_stored_or_reported(
    imported, redis_server: RedisServer, capsys, caplog
) -> None:
    settings: Settings = imported["settings"]
    client = redis_server.client()
    stored = []
    for key in client.scan_iter(match=settings.cache.key_prefix + "*"):
        kind = client.type(key)
        if kind == b"string":
            stored.append(client.get(key))
        elif kind == b"hash":
            stored.extend(k + v for k, v in client.hgetall(key).items())
        elif kind == b"list":
            stored.extend(client.lrange(key, 0, -1))
        stored.append(key)
    stored.extend(value for _, entry in client.xrange(imported["stream"]) for value in entry.values())
    text = b"\n".join(stored).decode("utf-8", errors="replace")
    text += imported["labels"].to_json(date_format="iso") + imported["first"].model_dump_json() + imported["first"].markdown()
    text += capsys.readouterr().out + caplog.text
    assert "in_1" in text  # the calls themselves are kept, as a /predict event keeps them
    for secret in SECRETS:
        assert secret not in text
    # Who made the calls is kept only as a keyed hash.
    users = set(imported["labels"]["user_id"])
    assert len(users) == 2 and all(u.startswith("import:") and len(u) == len("import:") + 32 for u in users)


def test_the_arazzo_document_names_real_operations_of_the_spec(imported) -> None:
    catalogue = load_catalogue(BILLING, imported["settings"].fetch)
    document = arazzo_document(imported["first"], catalogue, "billing_oas30.yaml", "Billing workflows")
    assert document["arazzo"] == "1.0.1" and document["info"]["version"]
    assert document["sourceDescriptions"] == [{"name": "api", "url": "billing_oas30.yaml", "type": "openapi"}]
    spec = yaml.safe_load(BILLING.read_text())
    items = [*spec["paths"].values(), *spec["components"]["pathItems"].values()]  # PayInvoice's is a $ref there
    ids = {op["operationId"] for item in items for op in item.values() if isinstance(op, dict) and "operationId" in op}
    (workflow,) = document["workflows"]
    assert [s["operationId"] for s in workflow["steps"]] == ["ListInvoices", "RetrieveInvoice", "PayInvoice"]
    assert all(s["operationId"] in ids for s in workflow["steps"])
    assert len({s["stepId"] for s in workflow["steps"]}) == 3


@pytest.mark.usefixtures("packaged_cli")
def test_the_cli_imports_reports_and_refuses_without_the_service_store(
    capsys, monkeypatch, tmp_path, tiny_settings, tiny_model, redis_server: RedisServer,
) -> None:
    from pipeline.settings import get_settings

    model = str(tiny_settings.paths.model_dir)
    monkeypatch.setenv("OPENSESAME__IMPORTS__UPLOAD_DIR", str(tmp_path / "imports"))
    monkeypatch.setenv("OPENSESAME__FEEDBACK__SPOOL_PATH", str(tmp_path / "spool.jsonl"))
    monkeypatch.setenv("OPENSESAME__FEEDBACK__STREAM", f"cli-{time.time_ns()}")
    monkeypatch.setenv("OPENSESAME__CACHE__REDIS_URL", "null")
    get_settings.cache_clear()
    code = main(["import", str(TRAFFIC / "access.log"), "--spec", str(BILLING), "--model", model, *PACKAGED])
    assert code == 2 and "cache.redis_url" in capsys.readouterr().err

    monkeypatch.setenv("OPENSESAME__CACHE__REDIS_URL", redis_server.url)
    monkeypatch.setenv("OPENSESAME__CACHE__KEY_PREFIX", f"cli{time.time_ns()}:")
    get_settings.cache_clear()
    try:
        code = main(["import", str(TRAFFIC / "access.log"), "--spec", str(BILLING), "--model", model, *PACKAGED,
                     "--report-dir", str(tmp_path / "report"), "--json"])
    finally:
        get_settings.cache_clear()
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["format"] == "combined" and out["unreadable"] == {"garbage": 1, "not_utf8": 1}
    assert (out["requests"], out["matched"], out["sessions"], out["labels"]) == (4, 4, 2, 4)
    assert json.loads((tmp_path / "report" / "report.json").read_text()) == out
    assert "| 4 | 0 | 2 | 4 (100%) |" in (tmp_path / "report" / "report.md").read_text()
    assert (tmp_path / "imports" / "secret").stat().st_mode & 0o777 == 0o600
    # One session of three calls: no sequence seen twice, so no workflow and no Arazzo document.
    assert out["workflows"] == [] and not (tmp_path / "report" / "arazzo.yaml").exists()


def test_an_import_needs_the_services_store(tiny_settings) -> None:
    with pytest.raises(ImportInputError, match="cache.redis_url"):
        import_traffic(TRAFFIC / "kong.jsonl", BILLING, tiny_settings)
