"""The one table that maps domain errors to HTTP statuses (the Serve tests cover it over HTTP too)."""

from __future__ import annotations

import json
import re

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from ray.exceptions import RayActorError
from ray.serve.exceptions import BackPressureError

from pipeline import errors
from pipeline.learning.records import PredictionNotFoundError
from pipeline.ranking.model import ModelSchemaError
from serve import errors as http_errors
from serve.errors import error_response
from serve.schemas import FeedbackRequest


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (errors.SpecTooLargeError(30, 10), 413),
        (errors.SpecSyntaxError("bad indent", 3), 422),
        (errors.RefusedAddressError("private"), 400),
        (PredictionNotFoundError("unknown"), 404),
        (errors.SharedStoreDownError("retry"), 503),
        (ModelSchemaError("retrain"), 503),
        (errors.ImportInputError("empty body"), 400),
        (http_errors.RequestTooLargeError("request body over 10 bytes"), 413),
        (http_errors.UnauthorizedError("unknown API key"), 401),
        (http_errors.ForbiddenError("wrong admin token"), 403),
    ],
)
def test_domain_errors_map_to_statuses(exc: Exception, status: int) -> None:
    response = error_response(exc)
    assert response.status_code == status
    assert json.loads(response.body)["detail"] == str(exc)


def test_a_full_downstream_queue_is_503_with_retry_after() -> None:
    response = error_response(BackPressureError(num_queued_requests=256, max_queued_requests=256))
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"


def test_a_bug_is_a_logged_500_without_internals() -> None:
    response = error_response(KeyError("secret internals"))
    assert response.status_code == 500 and "secret" not in response.body.decode()


EXCEPTION_STYLE = re.compile(r"^[A-Z][A-Za-z]+Error$")


@pytest.mark.parametrize(
    "exc",
    [
        BackPressureError(num_queued_requests=1, max_queued_requests=1),
        RayActorError(),
        errors.RateLimitedError("over quota", 2.0),
        KeyError("bug"),
        *[cls.__new__(cls) for cls, _ in http_errors.STATUS],
    ],
    ids=lambda exc: type(exc).__name__,
)
def test_every_error_is_named_as_an_exception(exc: Exception) -> None:
    assert EXCEPTION_STYLE.match(json.loads(error_response(exc).body)["error"])


@pytest.fixture(scope="module")
def refusing() -> TestClient:
    """FastAPI's own refusals with the error handlers the Ingress installs, in-process."""
    app = FastAPI()
    http_errors.install(app)

    @app.post("/feedback")
    async def feedback(body: FeedbackRequest) -> dict[str, str]:
        return {"prediction_id": body.prediction_id}

    @app.get("/feedback")
    async def feedbacks() -> list[str]:
        return []

    return TestClient(app)


@pytest.mark.parametrize(
    ("method", "path", "content", "content_type", "status", "error", "detail"),
    [
        ("POST", "/feedback", b'{"prediction_id": ', "application/json", 422, "RequestValidationError",
         "body: not valid JSON at character 18 (Expecting value); send a JSON object"),
        ("POST", "/feedback", b"\xc8\x94\xff", "application/json", 400, "BadRequestError",
         "the body cannot be read: send JSON encoded as UTF-8"),
        ("POST", "/feedback", b"prediction_id=x", "text/plain", 422, "RequestValidationError",
         "body: not a JSON object; send one with 'Content-Type: application/json'"),
        ("POST", "/feedback", b'{"called": "GET /x"}', "application/json", 422, "RequestValidationError",
         "prediction_id: Field required"),
        ("GET", "/no/such/route", None, None, 404, "NotFoundError",
         "no route GET /no/such/route; the routes are listed at /docs"),
        ("DELETE", "/feedback", None, None, 405, "MethodNotAllowedError",
         "DELETE /feedback: method not allowed on this route; the routes are listed at /docs"),
    ],
)
def test_fastapis_own_refusals_name_the_error_and_what_to_fix(
    refusing: TestClient, method: str, path: str, content: bytes | None, content_type: str | None, status: int,
    error: str, detail: str,
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = refusing.request(method, path, content=content, headers=headers)
    assert response.status_code == status
    assert response.json() == {"error": error, "detail": detail}


def test_a_method_not_allowed_names_every_method_of_the_path(refusing: TestClient) -> None:
    """A path answered by two routes (`GET` and `POST /specs`): the 405's `Allow` names both, not the first alone."""
    response = refusing.request("OPTIONS", "/feedback")
    assert (response.status_code, response.headers["allow"]) == (405, "GET, POST")


def test_an_mcp_tools_arguments_are_refused_as_a_routes_body() -> None:
    """The MCP tools build the routes' request models themselves: pydantic's refusal reads as the route's 422."""
    from pydantic import ValidationError

    from serve.schemas import PredictRequest

    with pytest.raises(ValidationError) as refused:
        PredictRequest(user_id="", spec_id="x")
    response = http_errors.validation_response(refused.value.errors())
    assert response.status_code == 422
    assert json.loads(response.body) == {"error": "RequestValidationError",
                                         "detail": "user_id: String should have at least 1 character"}
