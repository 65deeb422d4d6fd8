"""The Serve application over HTTP: a private local Ray cluster, the real graph deployed from
configs/serve.local.yaml (as `serve deploy` does), a real Redis, MLflow on sqlite and a ranker trained in the run."""

from __future__ import annotations

import copy
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import FIXTURES, REAL, RedisServer, SpecServer, _free_port
from pipeline import registry
from pipeline.feedback import FeedbackRecord
from pipeline.llm_model import prepare
from pipeline.settings import PROJECT_ROOT, FetchSettings, RegistrySettings
from pipeline.specs import load_catalogue
from serve.launch import ClusterPorts, RayCluster, deploy, load_config, wait_running

pytestmark = pytest.mark.slow

BILLING = (FIXTURES / "billing_oas30.yaml").read_text()
STREAM = "test:feedback"


@dataclass
class Served:
    base: str
    cluster: RayCluster
    config: dict[str, Any]
    versions: list[registry.RegisteredVersion]
    redis: RedisServer
    spec_url: str
    spool: Path

    def post(self, path: str, body: dict[str, Any], **kw: Any) -> httpx.Response:
        return httpx.post(self.base + path, json=body, timeout=60, **kw)

    def predict(self, **body: Any) -> httpx.Response:
        return self.post("/predict", {"user_id": "u1", **body})


def configured(config: dict[str, Any], port: int, settings: dict[str, Any], model_uri: str) -> dict[str, Any]:
    config = copy.deepcopy(config)
    config["http_options"]["port"] = port
    app = config["applications"][0]
    app["args"]["settings"] = settings
    ranker = next(d for d in app["deployments"] if d["name"] == "Ranker")
    ranker["user_config"] = {"model_uri": model_uri}
    return config


@pytest.fixture(scope="module")
def served(tiny_model, tiny_settings, redis_server: RedisServer, spec_server: SpecServer) -> Iterator[Served]:
    llm_model = prepare(PROJECT_ROOT / "var" / "models" / "smollm2-135m-instruct")
    work = Path(tempfile.mkdtemp(prefix="os-serve-", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    reg = RegistrySettings(tracking_uri=f"sqlite:///{work / 'mlflow.db'}", artifact_root=(work / "art").as_uri())
    versions = [registry.register(tiny_settings.paths.model_dir, reg, run_name=f"test-{i}") for i in (1, 2)]
    spool = work / "spool.jsonl"
    settings = {
        "cache": {"redis_url": redis_server.url, "key_prefix": f"test{time.time_ns()}:", "retry_after_s": 0.5},
        "fetch": {"allow_addresses": ["127.0.0.1/32"], "connect_timeout_s": 2, "read_timeout_s": 2},
        "registry": reg.model_dump(),
        "feedback": {"stream": STREAM, "spool_path": str(spool)},
        # The real prepared model in the graph; the router asks it whenever a request grants >= 100 ms, and
        # requests that state no budget (every other test) get 50 ms, so they never wait for it.
        "llm": {
            "model": str(llm_model),
            "kv_cache_bytes": 128 * 1024 * 1024,
            "min_budget_ms": 100,
            "default_budget_ms": 50,
            "confidence_threshold": 1.0,
            "timeout_ms": 30000,
        },
    }
    port = _free_port()
    config = configured(load_config(PROJECT_ROOT / "configs" / "serve.local.yaml"), port, settings, versions[0].uri)
    ports = ClusterPorts(
        gcs=_free_port(),
        dashboard=_free_port(),
        client_server=_free_port(),
        agent_listen=_free_port(),
        agent_grpc=_free_port(),
        runtime_env_agent=_free_port(),
        metrics=_free_port(),
        min_worker=21000,
        max_worker=21999,
    )
    cluster = RayCluster(ports, work / "ray")
    cluster.start()
    try:
        submitted = time.time()
        deploy(cluster.dashboard_url, config)
        wait_running(cluster.dashboard_url, since=submitted)
        spec_server.routes["/serve/billing.yaml"] = (200, {"ETag": '"b1"'}, BILLING.encode())
        redis_server.client().delete(STREAM)
        yield Served(
            f"http://127.0.0.1:{port}",
            cluster,
            config,
            versions,
            redis_server,
            spec_server.url("/serve/billing.yaml"),
            spool,
        )
    finally:
        cluster.stop()


def test_predict_by_url_carries_params_and_names_the_model(served: Served) -> None:
    response = served.predict(
        spec_url=served.spec_url, events=[{"endpoint": "GET /v1/invoices/in_123"}], prompt="pay this invoice", k=3
    )
    assert response.status_code == 200, response.text
    body = response.json()
    top = body["predictions"][0]
    assert top["endpoint"] == "POST /invoices/{invoice}/pay"
    assert top["path"] == "/v1/invoices/in_123/pay" and top["params"] == {"invoice": "in_123"}
    assert len(body["predictions"]) == 3
    assert [p["score"] for p in body["predictions"]] == sorted((p["score"] for p in body["predictions"]), reverse=True)
    assert body["model_version"] == served.versions[0].label
    assert body["spec"]["title"] and body["spec"]["operations"] > 5
    assert {"spec", "embed_prompt", "rank", "total"} <= body["timing"].keys()


def test_register_then_predict_by_spec_id_and_inline(served: Served) -> None:
    created = served.post("/specs", {"spec": BILLING})
    assert created.status_code == 201, created.text
    spec_id = created.json()["spec_id"]
    fetched = httpx.get(f"{served.base}/specs/{spec_id}")
    assert fetched.status_code == 200 and fetched.json()["operations"] == created.json()["operations"]
    by_id = served.predict(spec_id=spec_id, events=[{"endpoint": "GET /v1/invoices"}], k=5)
    inline = served.predict(spec=BILLING, events=[{"endpoint": "GET /v1/invoices"}], k=5)
    assert by_id.status_code == inline.status_code == 200
    assert by_id.json()["spec"]["id"] == inline.json()["spec"]["id"] == spec_id
    assert [p["endpoint"] for p in by_id.json()["predictions"]] == [p["endpoint"] for p in inline.json()["predictions"]]
    tmdb = served.post("/specs", {"spec": (REAL / "tmdb_oas.json").read_text()})
    assert tmdb.status_code == 201 and tmdb.json()["operations"] == 54


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
    accepted = served.post("/feedback", {"prediction_id": predicted["prediction_id"], "accepted_rank": 2})
    assert accepted.status_code == 202 and accepted.json()["endpoint"] == predicted["predictions"][1]["endpoint"]


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/feedback", {"prediction_id": "0" * 32, "none": True}, 404, "prediction_id a /predict response returned"),
        (
            "/predict",
            {"user_id": "u", "spec": BILLING, "spec_url": "http://x"},
            422,
            "exactly one of spec_url, spec or spec_id",
        ),
        ("/predict", {"user_id": "u"}, 422, "exactly one of spec_url, spec or spec_id"),
        ("/predict", {"user_id": "u", "spec": BILLING, "k": 0}, 422, "k: Input should be greater than or equal to 1"),
        ("/predict", {"user_id": "u", "spec": BILLING, "k": 51}, 422, "k: Input should be less than or equal to 50"),
        (
            "/predict",
            {"user_id": "u", "spec": BILLING, "events": [{"endpoint": "GET /v1/invoices"}] * 201},
            422,
            "events: List should have at most 200 items",
        ),
        (
            "/predict",
            {"user_id": "u", "spec": BILLING, "prompt": "x" * 4001},
            422,
            "prompt: String should have at most 4000 characters",
        ),
        ("/predict", {"user_id": "u", "spec": BILLING, "colour": "red"}, 422, "colour: Extra inputs are not permitted"),
        ("/predict", {"user_id": "u", "spec_url": "file:///etc/passwd"}, 400, "only http(s) spec URLs"),
        ("/predict", {"user_id": "u", "spec_url": "http://10.1.2.3/spec.json"}, 400, "non-public address"),
        ("/predict", {"user_id": "u", "spec_id": "f" * 32}, 404, "register the spec with POST /specs"),
        ("/predict", {"user_id": "u", "spec": "openapi: [3.0\n  paths"}, 422, "invalid YAML/JSON"),
        ("/predict", {"user_id": "u", "spec": {"hello": "world"}}, 422, "OpenAPI"),
        ("/specs", {"spec": "/etc/passwd"}, 422, "expected an OpenAPI/Swagger object"),
        (
            "/feedback",
            {"prediction_id": "x", "called": "GET /a", "none": True},
            422,
            "exactly one of called, accepted_rank",
        ),
    ],
)
def test_bad_input_gets_a_clear_4xx(served: Served, path: str, body: dict[str, Any], status: int, message: str) -> None:
    response = served.post(path, body)
    assert response.status_code == status, response.text
    assert message in response.json()["detail"]


def test_unreachable_url_oversized_body_and_mismatched_feedback(served: Served, spec_server: SpecServer) -> None:
    missing = served.predict(spec_url=spec_server.url("/no/such/spec.json"))
    assert missing.status_code == 400 and "answered HTTP 404" in missing.json()["detail"]
    huge = served.post("/specs", {"spec": "x" * (26 * 1024 * 1024 + 2)})
    assert huge.status_code == 413 and "spec_url" in huge.json()["detail"]
    predicted = served.predict(spec_url=served.spec_url, k=2).json()
    out_of_range = served.post("/feedback", {"prediction_id": predicted["prediction_id"], "accepted_rank": 3})
    assert out_of_range.status_code == 422 and "use 1..2" in out_of_range.json()["detail"]
    elsewhere = served.post("/feedback", {"prediction_id": predicted["prediction_id"], "called": "GET /nowhere/at/all"})
    assert elsewhere.status_code == 422 and "matches no operation" in elsewhere.json()["detail"]


def test_health_readiness_and_docs(served: Served) -> None:
    assert httpx.get(served.base + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(served.base + "/readyz")
    assert ready.status_code == 200
    assert ready.json()["ready"] is True and ready.json()["redis"] == "up"
    assert ready.json()["model_version"] in {v.label for v in served.versions}
    assert httpx.get(served.base + "/docs").status_code == 200
    paths = httpx.get(served.base + "/openapi.json").json()["paths"]
    assert {"/predict", "/feedback", "/specs", "/specs/{spec_id}", "/healthz", "/readyz"} <= paths.keys()


def test_redis_stopped_mid_test_predictions_still_succeed(served: Served) -> None:
    if not served.redis.owned:
        pytest.skip("the machine's Redis cannot be stopped by a test")
    spec_id = served.post("/specs", {"spec": BILLING}).json()["spec_id"]
    served.redis.stop()
    try:
        for body in ({"spec_id": spec_id}, {"spec": BILLING}, {"spec_url": served.spec_url}):
            response = served.predict(**body, events=[{"endpoint": "GET /v1/invoices/in_1"}], prompt="pay it")
            assert response.status_code == 200, response.text
        ready = httpx.get(served.base + "/readyz").json()
        assert ready["redis"] == "down" and ready["ready"] is True
        spooled = served.post("/feedback", {"prediction_id": response.json()["prediction_id"], "accepted_rank": 1})
        assert spooled.status_code == 202 and spooled.json()["stored"] == "spool"
    finally:
        served.redis.start()
    time.sleep(1.0)  # past the back-off: the next call reconnects
    after = served.predict(spec=BILLING, prompt="pay it")
    replayed = served.post("/feedback", {"prediction_id": after.json()["prediction_id"], "none": True})
    assert replayed.status_code == 202 and replayed.json()["stored"] == "stream"
    ids = [
        FeedbackRecord.model_validate_json(f[b"record"]).prediction_id for _, f in served.redis.client().xrange(STREAM)
    ]
    assert ids == [response.json()["prediction_id"], after.json()["prediction_id"]]  # spooled one first, nothing lost


def test_ranker_reconfigure_under_load_swaps_versions_without_errors(served: Served) -> None:
    old, new = (v.label for v in served.versions)
    statuses: list[int] = []
    versions: list[str] = []
    stop = threading.Event()

    def loop() -> None:
        with httpx.Client(timeout=60) as client:
            while not stop.is_set():
                r = client.post(
                    served.base + "/predict",
                    json={"user_id": "u", "spec_url": served.spec_url, "events": [{"endpoint": "GET /v1/invoices"}]},
                )
                statuses.append(r.status_code)
                if r.status_code == 200:
                    versions.append(r.json()["model_version"])

    threads = [threading.Thread(target=loop) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(2)
        config = configured(
            served.config,
            served.config["http_options"]["port"],
            served.config["applications"][0]["args"]["settings"],
            served.versions[1].uri,
        )
        submitted = time.time()
        deploy(served.cluster.dashboard_url, config)
        wait_running(served.cluster.dashboard_url, since=submitted)
        deadline = time.monotonic() + 60
        while (not versions or versions[-1] != new) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert statuses and set(statuses) == {200}, f"{len(statuses)} requests, statuses {set(statuses)}"
    assert versions[0] == old and versions[-1] == new
    first_new = versions.index(new)
    assert set(versions[first_new:]) == {new}, "after the swap no request is answered by the old model"


def test_llm_candidates_are_real_operations_and_a_timeout_never_fails_predict(served: Served) -> None:
    real = {op.id for op in load_catalogue(FIXTURES / "billing_oas30.yaml", FetchSettings()).operations}
    body = {"spec_url": served.spec_url, "events": [{"endpoint": "GET /v1/invoices/in_5"}], "prompt": "pay it", "k": 5}
    used = served.predict(**body, latency_budget_ms=30000)
    assert used.status_code == 200, used.text
    assert used.json()["llm"]["used"] is True and used.json()["llm"]["dropped"] == 0
    assert used.json()["timing"]["llm"] > 0
    assert any("llm" in p["sources"] for p in used.json()["predictions"])
    assert {p["endpoint"] for p in used.json()["predictions"]} <= real
    timed_out = served.predict(**body, latency_budget_ms=150)  # the router asks, but 150 ms cannot be met
    assert timed_out.status_code == 200, timed_out.text
    assert timed_out.json()["llm"]["used"] is False and timed_out.json()["llm"]["why"] == "llm timed out"
    assert timed_out.json()["predictions"][0]["endpoint"] == "POST /invoices/{invoice}/pay"
    assert "llm" not in {source for p in timed_out.json()["predictions"] for source in p["sources"]}
