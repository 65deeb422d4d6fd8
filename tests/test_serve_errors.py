"""The one table that maps domain errors to HTTP statuses (the Serve tests cover it over HTTP too)."""

from __future__ import annotations

import json

import pytest
from ray.serve.exceptions import BackPressureError

from pipeline import errors
from pipeline.learning.records import PredictionNotFoundError
from pipeline.ranking.model import ModelSchemaError
from serve.errors import error_response


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
