"""Domain errors -> HTTP statuses, in one place. Every error body says what to fix: {"error", "detail"}."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from ray.exceptions import RayActorError, RayTaskError
from ray.serve.exceptions import BackPressureError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Route

from pipeline import errors
from pipeline.adapters.registry import RegistryError
from pipeline.learning.records import FeedbackMismatchError, PredictionNotFoundError
from pipeline.ranking.embedding import EmbedderMismatchError
from pipeline.ranking.model import ModelNotFoundError, ModelSchemaError
from serve.schemas import ErrorBody

log = logging.getLogger("opensesame.http")


class UnauthorizedError(Exception):
    """No credentials, or an API key this service did not issue."""


class ForbiddenError(Exception):
    """An admin call with wrong credentials, or admin calls disabled."""


class RequestTooLargeError(Exception):
    """A request body over the ingress's size limit."""


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
    (UnauthorizedError, 401),
    (ForbiddenError, 403),
    (RequestTooLargeError, 413),
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
            {"error": "OverloadedError", "detail": "the service is at capacity; retry after the Retry-After delay"},
            status_code=503,
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )
    if isinstance(exc, RayActorError):  # a replica died under the request; Serve is replacing it
        return JSONResponse(
            {"error": "ReplicaLostError", "detail": "a replica serving this request was lost (its process or node died) "
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
    return JSONResponse({"error": "InternalError", "detail": "unexpected server error; it has been logged"}, status_code=500)


def _field(loc: tuple[object, ...]) -> str:
    return ".".join(str(part) for part in loc if part != "body") or "body"


def _problem(error: dict[str, Any]) -> str:
    """One validation error as the client can act on it. FastAPI reports a body that is not JSON at all as
    `('body', <character offset>)` with "JSON decode error"; say so, and where."""
    if error.get("type") == "json_invalid":
        offset = error["loc"][-1] if error.get("loc") else "?"
        reason = (error.get("ctx") or {}).get("error", "")
        because = f" ({reason})" if reason else ""
        return f"body: not valid JSON at character {offset}{because}; send a JSON object"
    if tuple(error.get("loc", ())) == ("body",) and error.get("type") in ("model_attributes_type", "dict_type"):
        return "body: not a JSON object; send one with 'Content-Type: application/json'"
    return f"{_field(tuple(error['loc']))}: {error['msg']}"


def validation_response(problems: Sequence[Any]) -> JSONResponse:
    """The 422 of a request that does not validate, each problem as the client can act on it: FastAPI's own
    validation of a route's body and pydantic's of an MCP tool's arguments answer alike."""
    detail = "; ".join(_problem(e) for e in problems)
    return JSONResponse({"error": "RequestValidationError", "detail": detail}, status_code=422)


def http_error_name(status: int) -> str:
    """The exception-style name of one of FastAPI's own refusals: 404 -> NotFoundError."""
    return "".join(word.capitalize() for word in HTTPStatus(status).phrase.replace("-", " ").split()) + "Error"


def _allowed(request: Request) -> list[str]:
    """Every method some route of the requested path answers (`GET /specs` and `POST /specs` are two routes)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        if isinstance(route, Route) and route.matches(request.scope)[0] != Match.NONE:
            methods |= route.methods or set()
    return sorted(methods)


def install(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # FastAPI's own refusals (unknown route, method not allowed, a body it cannot read) in the same shape; its
        # bare "Not Found" and "Method Not Allowed" say what was asked for.
        detail = str(exc.detail)
        if exc.status_code == 400 and detail == "There was an error parsing the body":
            detail = "the body cannot be read: send JSON encoded as UTF-8"
        elif detail == HTTPStatus(exc.status_code).phrase and exc.status_code in (404, 405):
            asked = f"{request.method} {request.url.path}"
            detail = f"no route {asked}" if exc.status_code == 404 else f"{asked}: method not allowed on this route"
            detail += "; the routes are listed at /docs"
        body = {"error": http_error_name(exc.status_code), "detail": detail}
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # Starlette names the first route of the path alone; a path may have several
            headers["Allow"] = ", ".join(_allowed(request))
        return JSONResponse(body, status_code=exc.status_code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_response(exc.errors())

    @app.exception_handler(Exception)
    async def _domain(_: Request, exc: Exception) -> JSONResponse:
        return error_response(exc)
