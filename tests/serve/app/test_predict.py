"""Predictions over HTTP: by URL, id and inline spec, the spec's links, what bad input is told, health, the one error
shape (the LLM generator's place in an answer: test_generator.py)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.serve.app.served import (
    BILLING,
    TIGHT_KEY,
    Served,
)
from tests.support import FIXTURES, TMDB_SPEC, SpecServer

pytestmark = pytest.mark.slow


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
    tmdb = served.post("/specs", {"spec": TMDB_SPEC.read_text()})
    assert tmdb.status_code == 201 and tmdb.json()["operations"] == 54
    # The caller's registrations, listed by title (a console offers them); another key's list holds none of them.
    listed = httpx.get(f"{served.base}/specs").json()
    assert {spec_id, tmdb.json()["spec_id"]} <= {s["spec_id"] for s in listed}
    assert [s["title"].casefold() for s in listed] == sorted(s["title"].casefold() for s in listed)
    others = httpx.get(f"{served.base}/specs", headers={"X-API-Key": TIGHT_KEY})
    assert others.status_code == 200 and spec_id not in {s["spec_id"] for s in others.json()}


def test_a_specs_declared_links_survive_the_shared_cache_and_fill_the_linked_call(served: Served) -> None:
    """The catalogue travels through Redis to the Ranker replicas: its links with it."""
    created = served.post("/specs", {"spec": (FIXTURES / "links_oas30.yaml").read_text()})
    assert created.status_code == 201, created.text
    submitted = {"endpoint": "POST /api/jobs", "params": {"scene": "forest"}, "response": {"receipt": {"code": "T-9"}}}
    response = served.predict(spec_id=created.json()["spec_id"], events=[submitted], k=10)
    assert response.status_code == 200, response.text
    frames = next(p for p in response.json()["predictions"] if p["endpoint"] == "GET /frames/{ticket}")
    assert frames["path"] == "/api/frames/T-9"
    assert frames["reason"].startswith("the spec links it from the response of POST /jobs")


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
        ("/predict", {"user_id": "u", "spec": BILLING, "k": "3"}, 422, "k: Input should be a valid integer"),
        ("/specs", {"spec_url": ""}, 422, "spec_url: String should have at least 1 character"),
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


def test_every_error_has_the_one_error_shape(served: Served) -> None:
    """Bodies FastAPI itself refuses (not JSON, not UTF-8, wrong content type, no such route) answer like ours: an
    exception-style name and a detail that says what to fix."""
    cases = [
        (httpx.post(served.base + "/predict", content=b'{"user_id": ', headers={"content-type": "application/json"}),
         422, "RequestValidationError", "body: not valid JSON at character 12"),
        (httpx.post(served.base + "/feedback", content=b"\xc8\x94\xff", headers={"content-type": "application/json"}),
         400, "BadRequestError", "send JSON encoded as UTF-8"),
        (httpx.post(served.base + "/feedback", content=b"prediction_id=x", headers={"content-type": "text/plain"}),
         422, "RequestValidationError", "not a JSON object; send one with 'Content-Type: application/json'"),
        (httpx.get(served.base + "/no/such/route"), 404, "NotFoundError", "no route GET /no/such/route"),
        (httpx.delete(served.base + "/predict"), 405, "MethodNotAllowedError", "DELETE /predict: method not allowed"),
    ]
    for response, status, error, detail in cases:
        assert response.status_code == status, response.text
        assert response.json()["error"] == error and detail in response.json()["detail"], response.text
        assert set(response.json()) == {"error", "detail"}
