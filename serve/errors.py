"""Domain errors -> HTTP statuses, in one place. Every error body says what to fix: {"error", "detail"}."""

from __future__ import annotations

import logging
import math
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from ray.exceptions import RayActorError, RayTaskError
from ray.serve.exceptions import BackPressureError
from starlette.exceptions import HTTPException as StarletteHTTPException

from pipeline import errors
from pipeline.adapters.registry import RegistryError
from pipeline.learning.records import FeedbackMismatchError, PredictionNotFoundError
from pipeline.ranking.embedding import EmbedderMismatchError
from pipeline.ranking.model import ModelNotFoundError, ModelSchemaError
from serve.schemas import ErrorBody

log = logging.getLogger("opensesame.http")


class Unauthorized(Exception):
    """An admin call without credentials."""


class Forbidden(Exception):
    """An admin call with wrong credentials, or admin calls disabled."""

RETRY_AFTER_S = 1

# Most specific first: the first matching class decides.
STATUS: list[tuple[type[Exception], int]] = [
    (errors.SpecTooLargeError, 413),
    (errors.SpecNotFoundError, 404),
    (PredictionNotFoundError, 404),
    (errors.UnsupportedSchemeError, 400),
    (errors.RefusedAddressError, 400),
    (errors.UnreachableError, 400),  # the client's URL: it can fix it or send the spec inline
    (errors.SpecError, 422),  # syntax, not a spec, no paths
    (FeedbackMismatchError, 422),
    (Unauthorized, 401),
    (Forbidden, 403),
    (errors.ImportInputError, 400),
    (errors.JobNotFoundError, 404),
    (errors.RetrainRunningError, 409),
    (errors.JobsUnavailableError, 503),
    (errors.SharedStoreDownError, 503),
    # Server side, not the client's fault: the model cannot be served right now.
    (ModelNotFoundError, 503),
    (ModelSchemaError, 503),
    (EmbedderMismatchError, 503),
    (RegistryError, 503),
]


# What each status means in this API, for the OpenAPI document: every route lists the ones it can answer.
MEANINGS = {
    400: "the body cannot be read (not UTF-8), or the spec URL cannot be used: not http(s), not a public address, "
    "or unreachable (send the spec inline)",
    401: "no credentials, or an unknown API key: send `Authorization: Bearer <token>` (or `X-API-Key`)",
    403: "wrong credentials, or the route is disabled (no token configured)",
    404: "unknown spec_id, prediction_id or job id",
    409: "a retraining job is already running",
    429: "over the caller's quota (requests per second, or specs registered per window): retry after `Retry-After`",
    413: "the body or the spec is over the size limit",
    422: "the body is not valid (not JSON, a field out of range, not exactly one of the alternatives) or names "
    "something the spec or the prediction contradicts (not an OpenAPI document, a call outside the spec)",
    503: "overloaded, or a dependency (model, job API, shared store) is not available: retry after "
    "`Retry-After` seconds",
}


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` of a route: each status it can answer, with the one error body of the API. 503 is always
    there: the Ingress replica answers it for any route when its queue is full."""
    return {status: {"model": ErrorBody, "description": MEANINGS[status]} for status in sorted({*statuses, 503})}


def unwrap(exc: BaseException) -> BaseException:
    """An exception raised inside another deployment arrives wrapped in a RayTaskError."""
    while isinstance(exc, RayTaskError) and exc.cause is not None:
        exc = exc.cause
    return exc


def error_response(exc: BaseException) -> JSONResponse:
    exc = unwrap(exc)
    if isinstance(exc, BackPressureError):
        return JSONResponse(
            {"error": "overloaded", "detail": "the service is at capacity; retry after the Retry-After delay"},
            status_code=503,
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )
    if isinstance(exc, RayActorError):  # a replica died under the request; Serve is replacing it
        return JSONResponse(
            {"error": "replica lost", "detail": "a replica serving this request was lost (its process or node died) "
             "and is being replaced; retry after the Retry-After delay"},
            status_code=503,
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )
    if isinstance(exc, errors.RateLimitedError):
        retry = str(max(1, math.ceil(exc.retry_after_s)))
        return JSONResponse({"error": "RateLimitedError", "detail": str(exc)}, status_code=429,
                            headers={"Retry-After": retry})
    for cls, status in STATUS:
        if isinstance(exc, cls):
            headers = {"Retry-After": str(RETRY_AFTER_S * 5)} if status == 503 else None
            if status == 401:
                headers = {"WWW-Authenticate": "Bearer"}
            return JSONResponse({"error": type(exc).__name__, "detail": str(exc)}, status_code=status, headers=headers)
    log.exception("unexpected error", exc_info=exc)
    return JSONResponse({"error": "internal", "detail": "unexpected server error; it has been logged"}, status_code=500)


def _field(loc: tuple[object, ...]) -> str:
    return ".".join(str(part) for part in loc if part != "body") or "body"


def install(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        # FastAPI's own refusals (unknown route, method not allowed, a body it cannot read) in the same shape.
        body = {"error": HTTPStatus(exc.status_code).phrase.lower(), "detail": str(exc.detail)}
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [f"{_field(tuple(e['loc']))}: {e['msg']}" for e in exc.errors()]
        return JSONResponse({"error": "invalid request", "detail": "; ".join(problems)}, status_code=422)

    @app.exception_handler(Exception)
    async def _domain(_: Request, exc: Exception) -> JSONResponse:
        return error_response(exc)
