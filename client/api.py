"""The two clients over one description of each call: a route, a request model and an answer model; the sync
and async classes differ only in how they send and wait."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Self

import httpx
from pydantic import BaseModel

from pipeline.ranking.context import Event
from pipeline.spec.store import SpecInfo
from serve.schemas import (
    FeedbackRequest,
    FeedbackResponse,
    ImportJob,
    ModelsReport,
    PredictRequest,
    PredictResponse,
    Ready,
    RetrainJob,
    SpecList,
    SpecSource,
)

__all__ = [
    "ApiError",
    "AsyncOpenSesame",
    "Event",
    "FeedbackRequest",
    "FeedbackResponse",
    "ImportJob",
    "ModelsReport",
    "OpenSesame",
    "PredictRequest",
    "PredictResponse",
    "Ready",
    "RetrainJob",
    "SpecInfo",
]
RETRIED_STATUS = {429, 503}
FIRST_BACKOFF_S = 0.5  # when a retried answer names no Retry-After, or the connection was refused


class ApiError(Exception):
    """An answer other than success: the service's status, `error` and `detail` (what to fix)."""

    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(f"{status} {error}: {detail}")
        self.status, self.error, self.detail = status, error, detail


@dataclass(frozen=True, slots=True)
class Call:
    method: str
    path: str
    answer: type[BaseModel] | None
    body: dict[str, Any] | None = None
    admin: bool = False
    content: bytes | None = None  # a raw body (an upload) instead of `body`
    params: dict[str, str] | None = None


def _sent(fields: dict[str, Any]) -> dict[str, Any]:
    """The fields given: the server's models read a field's presence as a choice (exactly one spec source, one
    outcome), and refuse an explicit null."""
    return {name: value for name, value in fields.items() if value is not None}


def _body(request: BaseModel) -> dict[str, Any]:
    return request.model_dump(mode="json", exclude_none=True)


def _predict(**fields: Any) -> Call:
    return Call("POST", "/predict", PredictResponse, _body(PredictRequest(**_sent(fields))))


def _feedback(prediction_id: str, called: str | None, accepted_rank: int | None, none: bool) -> Call:
    outcome = _sent({"called": called, "accepted_rank": accepted_rank, "none": none or None})
    return Call("POST", "/feedback", FeedbackResponse, _body(FeedbackRequest(prediction_id=prediction_id, **outcome)))


def _register(**source: Any) -> Call:
    return Call("POST", "/specs", SpecInfo, _body(SpecSource(**_sent(source))))


def _import(data: bytes, spec_id: str, host: str | None, prefix: str | None, fmt: str | None) -> Call:
    params = _sent({"spec_id": spec_id, "host": host, "prefix": prefix, "format": fmt})
    return Call("POST", "/admin/import", ImportJob, admin=True, content=data, params=params)


def _error(response: httpx.Response) -> ApiError:
    try:
        body = response.json()
        return ApiError(response.status_code, str(body.get("error")), str(body.get("detail")))
    except ValueError:
        return ApiError(response.status_code, "not json", response.text[:500])


def retry_after_s(response: httpx.Response) -> float | None:
    """The delay (seconds) a retried answer (429, 503) asks for in its `Retry-After`; None when it names none."""
    header = response.headers.get("Retry-After") if response.status_code in RETRIED_STATUS else None
    return float(header) if header is not None and header.replace(".", "", 1).isdigit() else None


def _wait_s(response: httpx.Response | None, attempt: int) -> float:
    delay = retry_after_s(response) if response is not None else None
    return delay if delay is not None else FIRST_BACKOFF_S * 2**attempt


class _Base:
    def __init__(self, base_url: str, api_key: str | None, admin_token: str | None, retries: int) -> None:
        self.base_url = base_url.rstrip("/")
        self.retries = retries
        self._headers = {"X-API-Key": api_key} if api_key else {}
        self._admin = {"Authorization": f"Bearer {admin_token}"} if admin_token else {}

    def _request(self, call: Call) -> dict[str, Any]:
        headers = {**self._headers, **(self._admin if call.admin else {})}
        sent: dict[str, Any] = {"json": call.body} if call.content is None else {"content": call.content}
        return {"method": call.method, "url": self.base_url + call.path, "headers": headers, "params": call.params,
                **sent}

    @staticmethod
    def _answer(call: Call, response: httpx.Response) -> Any:
        if response.status_code >= 400:
            raise _error(response)
        return call.answer.model_validate(response.json()) if call.answer else response.json()


class OpenSesame(_Base):
    """The sync client; a context manager (or call `close()`)."""

    def __init__(self, base_url: str, api_key: str | None = None, admin_token: str | None = None,
                 retries: int = 3, timeout_s: float = 30.0, transport: httpx.BaseTransport | None = None) -> None:
        super().__init__(base_url, api_key, admin_token, retries)
        self._http = httpx.Client(timeout=timeout_s, transport=transport)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, call: Call) -> Any:
        for attempt in range(self.retries + 1):
            response = None
            try:
                response = self._http.request(**self._request(call))
            except httpx.ConnectError:
                if attempt == self.retries:
                    raise
            if response is not None and (response.status_code not in RETRIED_STATUS or attempt == self.retries):
                return self._answer(call, response)
            time.sleep(_wait_s(response, attempt))
        raise AssertionError("unreachable: the last attempt returns or raises")

    def predict(self, *, user_id: str, events: list[Event] | None = None, prompt: str = "", k: int = 5,
                spec_id: str | None = None, spec: dict[str, Any] | str | None = None, spec_url: str | None = None,
                latency_budget_ms: float | None = None) -> PredictResponse:
        return self._send(_predict(user_id=user_id, events=events or [], prompt=prompt, k=k, spec_id=spec_id,
                                   spec=spec, spec_url=spec_url, latency_budget_ms=latency_budget_ms))

    def feedback(self, prediction_id: str, *, called: str | None = None, accepted_rank: int | None = None,
                 none: bool = False) -> FeedbackResponse:
        return self._send(_feedback(prediction_id, called, accepted_rank, none))

    def register_spec(self, *, spec: dict[str, Any] | str | None = None, spec_url: str | None = None) -> SpecInfo:
        return self._send(_register(spec=spec, spec_url=spec_url))

    def spec(self, spec_id: str) -> SpecInfo:
        return self._send(Call("GET", f"/specs/{spec_id}", SpecInfo))

    def specs(self) -> list[SpecInfo]:
        """The specs this key (else this address) registered lately, by title."""
        return self._send(Call("GET", "/specs", SpecList)).root

    def ready(self) -> Ready:
        """The service's readiness; an unready service answers 503, which raises ApiError after the retries."""
        return self._send(Call("GET", "/readyz", Ready))

    def models(self) -> ModelsReport:
        return self._send(Call("GET", "/admin/models", ModelsReport, admin=True))

    def retrain(self) -> RetrainJob:
        return self._send(Call("POST", "/admin/retrain", RetrainJob, admin=True))

    def retrain_job(self, job_id: str) -> RetrainJob:
        return self._send(Call("GET", f"/admin/retrain/{job_id}", RetrainJob, admin=True))

    def import_traffic(self, data: bytes, *, spec_id: str, host: str | None = None, prefix: str | None = None,
                       fmt: str | None = None) -> ImportJob:
        """Learn the API's existing traffic (a HAR, OTLP JSON or log file's bytes) on a registered spec."""
        return self._send(_import(data, spec_id, host, prefix, fmt))

    def import_job(self, job_id: str) -> ImportJob:
        return self._send(Call("GET", f"/admin/import/{job_id}", ImportJob, admin=True))


class AsyncOpenSesame(_Base):
    """The async client; an async context manager (or await `close()`)."""

    def __init__(self, base_url: str, api_key: str | None = None, admin_token: str | None = None,
                 retries: int = 3, timeout_s: float = 30.0, transport: httpx.AsyncBaseTransport | None = None) -> None:
        super().__init__(base_url, api_key, admin_token, retries)
        self._http = httpx.AsyncClient(timeout=timeout_s, transport=transport)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def _send(self, call: Call) -> Any:
        for attempt in range(self.retries + 1):
            response = None
            try:
                response = await self._http.request(**self._request(call))
            except httpx.ConnectError:
                if attempt == self.retries:
                    raise
            if response is not None and (response.status_code not in RETRIED_STATUS or attempt == self.retries):
                return self._answer(call, response)
            await asyncio.sleep(_wait_s(response, attempt))
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def predict(self, *, user_id: str, events: list[Event] | None = None, prompt: str = "", k: int = 5,
                      spec_id: str | None = None, spec: dict[str, Any] | str | None = None,
                      spec_url: str | None = None, latency_budget_ms: float | None = None) -> PredictResponse:
        return await self._send(_predict(user_id=user_id, events=events or [], prompt=prompt, k=k, spec_id=spec_id,
                                         spec=spec, spec_url=spec_url, latency_budget_ms=latency_budget_ms))

    async def feedback(self, prediction_id: str, *, called: str | None = None, accepted_rank: int | None = None,
                       none: bool = False) -> FeedbackResponse:
        return await self._send(_feedback(prediction_id, called, accepted_rank, none))

    async def register_spec(self, *, spec: dict[str, Any] | str | None = None,
                            spec_url: str | None = None) -> SpecInfo:
        return await self._send(_register(spec=spec, spec_url=spec_url))

    async def spec(self, spec_id: str) -> SpecInfo:
        return await self._send(Call("GET", f"/specs/{spec_id}", SpecInfo))

    async def specs(self) -> list[SpecInfo]:
        return (await self._send(Call("GET", "/specs", SpecList))).root

    async def ready(self) -> Ready:
        return await self._send(Call("GET", "/readyz", Ready))

    async def models(self) -> ModelsReport:
        return await self._send(Call("GET", "/admin/models", ModelsReport, admin=True))

    async def retrain(self) -> RetrainJob:
        return await self._send(Call("POST", "/admin/retrain", RetrainJob, admin=True))

    async def retrain_job(self, job_id: str) -> RetrainJob:
        return await self._send(Call("GET", f"/admin/retrain/{job_id}", RetrainJob, admin=True))

    async def import_traffic(self, data: bytes, *, spec_id: str, host: str | None = None, prefix: str | None = None,
                             fmt: str | None = None) -> ImportJob:
        return await self._send(_import(data, spec_id, host, prefix, fmt))

    async def import_job(self, job_id: str) -> ImportJob:
        return await self._send(Call("GET", f"/admin/import/{job_id}", ImportJob, admin=True))
