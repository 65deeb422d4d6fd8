"""Labels over HTTP: explicit and implicit feedback into the stream, the label log and the online counts; a Redis
outage spooled and replayed; a traffic import as a job."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from pipeline.adapters import registry
from pipeline.adapters.label_log import read_labels
from pipeline.learning.online_counts import counts_key, recall_key
from pipeline.learning.online_patterns import patterns_key
from pipeline.learning.records import FeedbackRecord
from pipeline.ranking.features import FEATURE_NAMES
from pipeline.ranking.stats import START
from tests.serve.app.served import (
    ADMIN,
    ADMIN_TOKEN,
    BILLING,
    STREAM,
    Served,
)
from tests.support import FIXTURES, poll

pytestmark = pytest.mark.slow


def test_feedback_lands_in_the_stream(served: Served) -> None:
    predicted = served.predict(
        spec_url=served.spec_url, events=[{"endpoint": "GET /v1/invoices/in_7"}], prompt="pay this invoice", k=3
    ).json()
    called = served.post(
        "/feedback", {"prediction_id": predicted["prediction_id"], "called": "POST /v1/invoices/in_7/pay"}
    )
    assert called.status_code == 202, called.text
    assert called.json()["stored"] == "stream"
    assert called.json()["endpoint"] == "POST /invoices/{invoice}/pay" and called.json()["rank"] == 1
    entries = served.redis.client().xrange(STREAM)
    records = [FeedbackRecord.model_validate_json(fields[b"record"]) for _, fields in entries]
    mine = [r for r in records if r.prediction_id == predicted["prediction_id"]]
    assert len(mine) == 1 and mine[0].events == ["GET /v1/invoices/in_7"] and mine[0].prompt == "pay this invoice"
    # The label is remembered with its prompt's vector, under the embedder of the model that ranked it.
    prompt = mine[0].prompt_of()
    assert prompt is not None and prompt.vector.shape == (384,) and abs(float(np.linalg.norm(prompt.vector)) - 1) < 0.01
    prefix = served.key_prefix
    remembered = served.redis.client().lrange(
        f"{prefix}{recall_key(prompt.space, predicted['spec']['id'], 'GET /invoices/{invoice}')}", 0, -1)
    assert any(raw.startswith(f"{predicted['spec']['id']}\0POST /invoices/{{invoice}}/pay\0".encode())
               for raw in remembered)
    # ... and counted for the spec-agnostic patterns every spec shares.
    chosen = served.redis.client().hgetall(f"{prefix}{patterns_key('transition', 'chosen')}")
    assert sum(int(n) for n in chosen.values()) >= 1
    # A second report of the same prediction is acknowledged but not counted: the first label wins.
    accepted = served.post("/feedback", {"prediction_id": predicted["prediction_id"], "accepted_rank": 2})
    assert accepted.status_code == 202 and accepted.json()["endpoint"] == predicted["predictions"][1]["endpoint"]
    assert accepted.json()["stored"] == "duplicate" and accepted.json()["entry_id"] is None


def test_next_predict_labels_the_previous_one_and_the_log_and_counts_follow(served: Served) -> None:
    user = f"implicit-{time.time_ns()}"
    opened = {"endpoint": "GET /v1/invoices/in_9"}
    first = served.predict(user_id=user, spec_url=served.spec_url, events=[opened]).json()
    second = served.predict(user_id=user, spec_url=served.spec_url, events=[opened, {"endpoint": "POST /v1/invoices/in_9/pay"}])
    assert second.status_code == 200

    def implicit() -> list[FeedbackRecord]:
        records = [FeedbackRecord.model_validate_json(f[b"record"]) for _, f in served.redis.client().xrange(STREAM)]
        return [r for r in records if r.prediction_id == first["prediction_id"]]

    (label,) = poll(implicit)
    assert (label.source, label.outcome, label.endpoint) == ("implicit", "called", "POST /invoices/{invoice}/pay")
    assert label.last_operation == "GET /invoices/{invoice}" and label.model_version == first["model_version"]
    assert label.feature_matrix().shape == (len(label.candidates), len(FEATURE_NAMES)) and len(label.candidates) >= 5
    explicit = served.post("/feedback", {"prediction_id": first["prediction_id"], "called": "POST /v1/invoices/in_9/pay"})
    assert explicit.status_code == 202 and explicit.json()["stored"] == "duplicate"
    # The single writer drains the stream into the day-partitioned Parquet log, once per prediction.
    logged = poll(lambda: (f := read_labels(str(served.labels)))[f.prediction_id == first["prediction_id"]].to_dict("records"))
    assert len(logged) == 1 and logged[0]["source"] == "implicit"
    # Online adaptation: the transition is counted for the spec, where every Ranker replica reads it.
    prefix = served.key_prefix
    counts = served.redis.client().hgetall(f"{prefix}counts:{first['spec']['id']}:GET /invoices/{{invoice}}")
    assert int(counts[b"POST /invoices/{invoice}/pay"]) >= 1


def test_redis_stopped_mid_test_predictions_still_succeed(served: Served) -> None:
    if not served.redis.owned:
        pytest.skip("the machine's Redis cannot be stopped by a test")
    spec_id = served.post("/specs", {"spec": BILLING}).json()["spec_id"]
    user = f"outage-{time.time_ns()}"  # a fresh user: no earlier prediction of "u1" gets an implicit label here
    served.redis.stop()
    try:
        for body in ({"spec_id": spec_id}, {"spec": BILLING}, {"spec_url": served.spec_url}):
            response = served.predict(**body, user_id=user, events=[{"endpoint": "GET /v1/invoices/in_1"}], prompt="pay it")
            assert response.status_code == 200, response.text
        ready = httpx.get(served.base + "/readyz").json()
        assert ready["redis"] == "down" and ready["ready"] is True
        spooled = served.post("/feedback", {"prediction_id": response.json()["prediction_id"], "accepted_rank": 1})
        assert spooled.status_code == 202 and spooled.json()["stored"] == "spool"
    finally:
        served.redis.start()
        # The restarted Redis is empty; a replica that has not reached it since answers a miss with 503 "retry" for a
        # moment. The next test starts when a miss is a miss again.
        poll(lambda: served.predict(spec_id="f" * 32).status_code == 404, timeout_s=30)
    after = served.predict(spec=BILLING, user_id=user, prompt="pay it")
    replayed = served.post("/feedback", {"prediction_id": after.json()["prediction_id"], "accepted_rank": 1})
    assert replayed.status_code == 202 and replayed.json()["stored"] == "stream"
    ids = [
        FeedbackRecord.model_validate_json(f[b"record"]).prediction_id for _, f in served.redis.client().xrange(STREAM)
    ]
    assert ids == [response.json()["prediction_id"], after.json()["prediction_id"]]  # spooled one first, nothing lost
    # Online counts resume with Redis: the label after the outage is counted (a session's first call follows START).
    prefix = served.key_prefix
    counts = served.redis.client().hgetall(f"{prefix}{counts_key(spec_id, START)}")
    assert int(counts[after.json()["predictions"][0]["endpoint"].encode()]) >= 1, counts


def test_admin_import_learns_a_har_export_in_a_job(served: Served) -> None:
    """POST /admin/import: the upload is checked at once (admin, spec, body), learned by a Ray job, reported back,
    and deleted; the labels reach the stream as every other label does. The job predicts with the champion."""
    registry.promote(served.versions[0], served.registry.alias, served.registry)  # what Served.restored leaves

    har = (FIXTURES / "traffic" / "billing.har").read_bytes()
    spec_id = served.post("/specs", {"spec": BILLING}).json()["spec_id"]
    url = f"{served.base}/admin/import"
    refused = [
        httpx.post(url, params={"spec_id": spec_id}, content=har, timeout=60),
        httpx.post(url, params={"spec_id": "f" * 32}, content=har, headers=ADMIN, timeout=60),
        httpx.post(url, params={"spec_id": spec_id}, content=b"  ", headers=ADMIN, timeout=60),
        httpx.post(url, params={"spec_id": spec_id, "format": "pcap"}, content=har, headers=ADMIN, timeout=60),
    ]
    assert [r.status_code for r in refused] == [401, 404, 400, 422], [r.text for r in refused]
    assert "send the HAR, OTLP JSON or log file" in refused[2].json()["detail"]
    from client import ImportJob, OpenSesame

    before = served.redis.client().xlen(STREAM)
    with OpenSesame(served.base, admin_token=ADMIN_TOKEN) as api:  # the Python client's way
        job_id = api.import_traffic(har, spec_id=spec_id, host="api.billing.example").job_id

        def finished() -> ImportJob | None:
            job = api.import_job(job_id)
            return job if job.status in ("SUCCEEDED", "FAILED", "STOPPED") else None

        job = poll(finished, timeout_s=300)
    assert job.status == "SUCCEEDED" and job.report is not None, job
    report = job.report
    assert (report.format, report.requests, report.sessions, report.labels) == ("har", 13, 3, 9)
    assert report.workflows[0].steps[-1] == "POST /invoices/{invoice}/pay"
    uploads = Path(served.settings["imports"]["upload_dir"])
    assert not list(uploads.glob("*.upload")) and not list(uploads.glob("*.json"))  # the traffic, with its tokens, is gone
    # The report's folder was written beside and renamed into place: the status never reads half a report.
    assert (uploads / job_id / "arazzo.yaml").exists() and not list(uploads.glob("*.partial"))
    assert served.redis.client().xlen(STREAM) == before + 9
    assert httpx.get(f"{url}/import-nothing", headers=ADMIN, timeout=60).status_code == 404
