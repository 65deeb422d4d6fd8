"""`Ingress` deployment: the only HTTP entry point (FastAPI, documented at /docs)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import numpy as np
from fastapi import Query, Request
from fastapi.responses import JSONResponse, Response
from fastapi_offline import FastAPIOffline
from ray import serve
from ray.serve.handle import DeploymentHandle
from starlette.datastructures import Headers
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from pipeline.adapters.kv import ResilientStore
from pipeline.cache import LRU
from pipeline.errors import ImportInputError, RateLimitedError, SpecNotFoundError
from pipeline.learning.acceptance import AcceptanceTally, ShadowRanking, rank_bucket, shadow_key
from pipeline.learning.labels import followup, label
from pipeline.learning.records import (
    FeedbackRecord,
    PredictionNotFoundError,
    PredictionRecord,
    encode_features,
    last_prediction_key,
    load_prediction,
    save_prediction,
)
from pipeline.runtime import label_sink
from pipeline.settings import Settings
from pipeline.spec.matching import CallMatch, CallMatcher
from pipeline.spec.store import SpecInfo
from pipeline.timing import ms_since
from pipeline.traffic.formats import Format
from serve import errors, mcp
from serve.deps import Admin, Caller, CurrentCaller
from serve.ranker import Ranked
from serve.schemas import (
    VERSION,
    FeedbackRequest,
    FeedbackResponse,
    ImportJob,
    ModelsReport,
    ModelState,
    Prediction,
    PredictRequest,
    PredictResponse,
    Ready,
    RetrainJob,
    SpecList,
    SpecSource,
    SpecSummary,
)
from serve.telemetry import PredictMetrics

DOCS_ASSETS = "/docs-assets"  # also the console's favicon

# /docs and /redoc from assets the app serves itself (fastapi-offline's Swagger UI and ReDoc): the default pages
# load them from a CDN and are blank without internet.
app = FastAPIOffline(
    static_url=DOCS_ASSETS,
    title="OpenSesame",
    version=VERSION,
    description="Predicts the next REST API call from recent calls, a prompt and an OpenAPI spec.",
)
errors.install(app)
# The console page: static files calling this API from the browser (no build step).
app.mount("/console", StaticFiles(directory=Path(__file__).parent / "console", html=True), name="console")


class BodyLimit:
    """Refuses an oversized body before reading it; the spec cap itself is checked again when parsing. Plain ASGI:
    Starlette's `BaseHTTPMiddleware` (`@app.middleware`) costs every request a task group and a stream."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = getattr(scope["app"].state, "max_body", None) if scope["type"] == "http" else None
        length = Headers(scope=scope).get("content-length") if limit else None
        if limit and length and length.isdigit() and int(length) > limit:
            response = errors.error_response(
                errors.RequestTooLargeError(f"request body over {limit} bytes; send spec_url instead of the spec"))
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


app.add_middleware(BodyLimit)


log = logging.getLogger("opensesame.ingress")

# Headroom over the spec size cap for the JSON envelope around an inline spec.
ENVELOPE_BYTES = 1024 * 1024


T = TypeVar("T")


@serve.deployment
@serve.ingress(app)
class Ingress:
    def __init__(
        self,
        settings: Settings,
        spec_store: DeploymentHandle,
        ranker: DeploymentHandle,
        learning: DeploymentHandle,
    ) -> None:
        self.config = settings
        self.spec_store = spec_store
        self.ranker = ranker
        self.learning = learning
        self.cache = ResilientStore(settings.cache)
        self.labels = label_sink(self.cache, settings)
        self.acceptance = AcceptanceTally(self.cache)
        # Each spec's routes, to match the calls feedback reports here instead of one more hop to the spec store.
        self._matchers: LRU[CallMatcher] = LRU(settings.cache.prepared_specs)
        self.metrics = PredictMetrics()
        self._background: set[asyncio.Task[None]] = set()  # implicit labelling, off the response path
        self._stop = threading.Event()
        threading.Thread(target=self._refresh_gauges, name="gauges", daemon=True).start()
        app.state.max_body = settings.fetch.max_bytes + ENVELOPE_BYTES
        app.state.admin_token = settings.learning.admin_token
        app.state.clients = settings.clients
        # Agents' tools, answered by the routes below (no OpenAPI entry: MCP describes its own tools).
        tools = mcp.build(self.predict, self.feedback, settings.clients)
        app.add_route(mcp.PATH, tools, methods=["GET", "POST", "DELETE"], include_in_schema=False)

    async def _store_call(self, call: Callable[..., T], *args: Any) -> T:
        """A call of the shared store: in a worker thread when it may go to Redis (network I/O must not hold the
        event loop); inline when the store is this process's memory, where it takes microseconds and each thread
        hop would cost a request another wait for the loop under load."""
        if self.cache.configured:
            return await asyncio.to_thread(call, *args)
        return call(*args)

    async def _admit(self, caller: Caller, user_id: str | None = None) -> str:
        """One request of the caller's quota (a token bucket shared by every replica); its quota id."""
        quota_id = caller.quota_id(user_id)
        clients = self.config.clients
        rate = (caller.key and caller.key.rate_per_s) or clients.rate_per_s
        burst = (caller.key and caller.key.burst) or clients.burst
        wait = await self._store_call(self.cache.take_token, f"quota:{quota_id}", rate, burst)
        if wait > 0:
            raise RateLimitedError(f"over {rate:g} requests/s (burst {burst}) for {quota_id}: slow down", wait)
        return quota_id

    async def _register(self, source: SpecSource, caller: Caller, quota_id: str) -> SpecInfo:
        """Register a spec by URL or body, within the caller's cap of distinct specs per `cache.spec_ttl_s`: every
        registered spec is kept in every replica's cache, so one client must not fill them."""
        info: SpecInfo = await self.spec_store.register.remote(source.spec_url, source.spec)
        cap = (caller.key and caller.key.max_specs) or self.config.clients.max_specs
        key, ttl = f"specs:{quota_id}", self.config.cache.spec_ttl_s
        count, left = await self._store_call(self.cache.add_member, key, info.spec_id, ttl)
        if count > cap:
            await self._store_call(self.cache.remove_member, key, info.spec_id)
            raise RateLimitedError(
                f"{quota_id} registered {cap} distinct specs within {ttl} s: reuse their spec_id", left
            )
        return info

    async def _spec_id(self, source: SpecSource, caller: Caller, quota_id: str) -> str:
        if source.spec_id is not None:
            return source.spec_id
        return (await self._register(source, caller, quota_id)).spec_id

    @app.post("/predict", response_model=PredictResponse, summary="The k most likely next calls",
              operation_id="predict", responses={**errors.documented(400, 401, 404, 413, 422, 429), 200: {"links": {
                  "RecordTheCallMade": {"operationId": "feedback",
                                        "requestBody": {"prediction_id": "$response.body#/prediction_id"}},
                  "ReadTheSpec": {"operationId": "get_spec", "parameters": {"spec_id": "$response.body#/spec/id"}},
              }}})
    async def predict(self, body: PredictRequest, caller: CurrentCaller) -> Response:
        started = time.perf_counter()
        quota_id = await self._admit(caller, body.user_id)
        mark = time.perf_counter()
        spec_id = await self._spec_id(body, caller, quota_id)
        spec_ms = ms_since(mark)
        mark = time.perf_counter()
        prediction_id = uuid.uuid4().hex
        # The one hop of a prediction on a registered spec: the Ranker embeds the prompt and prepares the spec.
        ranked: Ranked = await self.ranker.predict.remote(
            prediction_id, spec_id, body.events, body.prompt, body.k, body.latency_budget_ms
        )
        rank_ms = ms_since(mark)
        outcome, info, llm = ranked.outcome, ranked.spec, ranked.llm
        record = PredictionRecord.of(
            outcome, prediction_id=prediction_id, user_id=body.user_id, spec_id=spec_id,
            events=[e.endpoint for e in body.events], prompt=body.prompt, created_at=datetime.now(UTC),
            owner=quota_id if caller.key is not None else None, shadowed=ranked.shadowed,
        )
        await asyncio.to_thread(self._save_prediction, record, outcome.features)
        task = asyncio.create_task(self._implicit_label(record))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        timing = {
            "spec": spec_ms,
            "embed_prompt": outcome.timing_ms["embed_prompt"],
            "rank": rank_ms,
            **({"llm": llm.latency_ms} if llm.latency_ms is not None else {}),
            **{f"ranker.{stage}": ms for stage, ms in outcome.timing_ms.items() if stage != "embed_prompt"},
            "total": ms_since(started),
        }
        self._observe(ranked, timing)
        response = PredictResponse(
            prediction_id=prediction_id,
            predictions=[Prediction(**asdict(p)) for p in outcome.predictions],
            model_version=outcome.model_version,
            spec=SpecSummary(id=info.spec_id, title=info.title, operations=info.operations),
            unmatched_events=outcome.unmatched_events,
            timing=timing,
            llm=llm,
        )
        # Serialised once: built and validated above, so FastAPI's response_model (kept for /docs) need not
        # validate and encode it a second time.
        return Response(response.model_dump_json(), media_type="application/json")

    def _observe(self, ranked: Ranked, timing: dict[str, float]) -> None:
        self.metrics.timing(timing)
        outcome = ranked.outcome
        self.metrics.predictions.inc(tags={
            "model_version": outcome.model_version,
            "spec_state": "cold" if ranked.cold else "warm",
            "covered": "yes" if outcome.predictions else "no",
        })
        if outcome.unmatched_events:
            self.metrics.unmatched.inc(len(outcome.unmatched_events))

    def _refresh_gauges(self) -> None:
        """In a thread of its own: the spool's size and Redis's state, every `learning.metrics_refresh_s`."""
        while not self._stop.wait(self.config.learning.metrics_refresh_s):
            try:
                self.metrics.spooled.set(self.labels.log.spooled)
                if self.cache.configured:
                    self.metrics.redis_up.set(1 if self.cache.ping() else 0)
            except Exception:  # a gauge must never take the replica down
                log.exception("refreshing the gauges failed")

    async def _label(self, record: FeedbackRecord) -> tuple[str, str | None]:
        """Store the first label of a prediction, and count where its model ranked the call (and where the shadow
        model did, when one ranked the same prediction)."""
        shadow = await self._shadow_ranking(record) if record.shadowed else None
        return await asyncio.to_thread(self._record_label, record, shadow)

    async def _shadow_ranking(self, record: FeedbackRecord) -> ShadowRanking | None:
        raw = await self._store_call(self.cache.get, shadow_key(record.prediction_id))
        if raw is not None:
            return ShadowRanking.model_validate_json(raw)
        # Not (yet) in the store: the Ranker replica that made it may still be ranking, or Redis is off.
        return await self.ranker.shadow_ranking.remote(record.prediction_id)

    def _record_label(self, record: FeedbackRecord, ranking: ShadowRanking | None) -> tuple[str, str | None]:
        stored, entry = self.labels.record(record)
        self.metrics.feedback.inc(tags={"source": record.source, "stored": stored})
        if stored == "duplicate":
            return stored, entry
        bucket = rank_bucket(record.endpoint, record.predicted)
        tags = {"model_version": record.model_version, "role": "champion", "source": record.source}
        self.metrics.labels.inc(tags={**tags, "rank": bucket})
        shadow = None
        if ranking is not None:
            shadow = ranking.model_version, rank_bucket(record.endpoint, ranking.predicted)
            self.metrics.labels.inc(tags={**tags, "model_version": shadow[0], "role": "shadow", "rank": shadow[1]})
        self.acceptance.add(record.model_version, bucket, shadow)
        return stored, entry

    async def _match(self, spec_id: str, call: str) -> CallMatch:
        """The operation a reported call made. A spec_id names one content, so its routes never go stale here."""
        matcher = self._matchers.get(spec_id)
        if matcher is None:
            matcher = CallMatcher(await self.spec_store.routes.remote(spec_id))
            self._matchers.set(spec_id, matcher)
        return matcher.match(call)

    def _save_prediction(self, record: PredictionRecord, features: np.ndarray | None) -> None:
        """In a worker thread: compressing the candidates' features (~0.2 ms) stays off the event loop."""
        if features is not None:
            record.features = encode_features(features)
        save_prediction(self.cache, record, self.config.cache.prediction_ttl_s)

    async def _implicit_label(self, current: PredictionRecord) -> None:
        """The user's previous prediction on this spec is labelled by the call its new history shows after it."""
        try:
            key = last_prediction_key(current.user_id, current.spec_id, current.owner)
            ttl = self.config.cache.prediction_ttl_s
            previous_id = await self._store_call(self.cache.swap, key, current.prediction_id.encode(), ttl)
            if previous_id is None:
                return
            previous = await self._store_call(load_prediction, self.cache, previous_id.decode())
            call = followup(previous.events, current.events)
            if call is None:
                return
            match = await self._match(previous.spec_id, call)
            if match.operation is None:
                return
            record = label(previous, call, None, match, source="implicit")
            await self._label(record)
        except PredictionNotFoundError:
            pass  # expired: nothing to label
        except Exception:  # a lost implicit label must never fail or slow a prediction
            log.exception("implicit label for user %s failed", current.user_id)

    @app.post("/specs", response_model=SpecInfo, status_code=201, summary="Register a spec by URL or body",
              operation_id="register_spec", responses={**errors.documented(400, 401, 404, 413, 422, 429), 201: {
                  "links": {
                      "PredictOnIt": {"operationId": "predict", "requestBody": {"spec_id": "$response.body#/spec_id"}},
                      "ReadIt": {"operationId": "get_spec", "parameters": {"spec_id": "$response.body#/spec_id"}},
                  }}})
    async def register_spec(self, body: SpecSource, caller: CurrentCaller) -> SpecInfo:
        quota_id = await self._admit(caller)
        if body.spec_id is not None:
            return await self.spec_store.info.remote(body.spec_id)
        return await self._register(body, caller, quota_id)

    @app.get("/specs", response_model=SpecList, summary="The specs this caller registered lately",
             operation_id="list_specs", responses=errors.documented(401, 429))
    async def list_specs(self, caller: CurrentCaller) -> SpecList:
        """Those registered within the caller's window of `cache.spec_ttl_s` (its key's, else its address's) and
        still held, by title: what a console offers to choose from."""
        quota_id = await self._admit(caller)
        found: list[SpecInfo] = []
        for spec_id in sorted(await self._store_call(self.cache.members, f"specs:{quota_id}")):
            try:
                found.append(await self.spec_store.info.remote(spec_id))
            except SpecNotFoundError:
                continue  # evicted since: registering it again brings it back
        return SpecList(sorted(found, key=lambda info: info.title.casefold()))

    @app.get("/specs/{spec_id}", response_model=SpecInfo, summary="A registered spec", operation_id="get_spec",
             responses=errors.documented(401, 404, 422, 429))
    async def get_spec(self, spec_id: str, caller: CurrentCaller) -> SpecInfo:
        await self._admit(caller)
        return await self.spec_store.info.remote(spec_id)

    @app.post("/feedback", response_model=FeedbackResponse, status_code=202, summary="What the user did next",
              operation_id="feedback", responses=errors.documented(400, 401, 404, 413, 422, 429))
    async def feedback(self, body: FeedbackRequest, caller: CurrentCaller) -> Response:
        prediction = await self._store_call(load_prediction, self.cache, body.prediction_id)
        quota_id = await self._admit(caller, prediction.user_id)  # without a key: the predicted user's quota
        if prediction.owner is not None and prediction.owner != quota_id:
            # Another key's prediction is, to this caller, one that does not exist.
            raise PredictionNotFoundError(f"unknown prediction_id {body.prediction_id!r} for this API key")
        match = None
        if body.called is not None:
            match = await self._match(prediction.spec_id, body.called)
        record = label(prediction, body.called, body.accepted_rank, match)
        stored, entry = await self._label(record)
        response = FeedbackResponse(
            prediction_id=record.prediction_id,
            outcome=record.outcome,
            endpoint=record.endpoint,
            rank=record.rank,
            stored=stored,
            entry_id=entry,
        )
        return Response(response.model_dump_json(), status_code=202, media_type="application/json")

    @app.post("/admin/retrain", response_model=RetrainJob, status_code=202, summary="Start a retraining job",
              dependencies=[Admin], operation_id="retrain", responses={**errors.documented(401, 403, 409, 422), 202: {
                  "links": {"FollowIt": {"operationId": "retrain_status",
                                         "parameters": {"job_id": "$response.body#/job_id"}}}}})
    async def retrain(self) -> RetrainJob:
        return await self.learning.retrain.remote("admin")

    @app.get("/admin/retrain/{job_id}", response_model=RetrainJob, summary="A retraining job and its gate",
             dependencies=[Admin], operation_id="retrain_status", responses=errors.documented(401, 403, 404, 422))
    async def retrain_status(self, job_id: str) -> RetrainJob:
        return await self.learning.status.remote(job_id)

    @app.post("/admin/import", response_model=ImportJob, status_code=202, operation_id="import_traffic",
              summary="Learn the API's existing traffic (HAR, OTLP JSON, gateway or combined logs) as labels",
              dependencies=[Admin], responses={**errors.documented(400, 401, 403, 404, 413, 422, 503), 202: {
                  "links": {"FollowIt": {"operationId": "import_status",
                                         "parameters": {"job_id": "$response.body#/job_id"}}}}},
              openapi_extra={"requestBody": {"required": True, "description": "the traffic file as it was "
                             "exported (gzipped or not); its format is detected",
                             "content": {"application/octet-stream": {"schema": {"type": "string",
                                                                                 "format": "binary"}}}}})
    async def import_traffic(
        self, request: Request, spec_id: Annotated[str, Query(min_length=1, max_length=64,
                                                              description="a spec registered with POST /specs")],
        host: Annotated[str | None, Query(max_length=253, description="only requests to this host")] = None,
        prefix: Annotated[str | None, Query(max_length=512, description="only requests under this path")] = None,
        fmt: Annotated[Format | None, Query(alias="format", description="skip the format detection")] = None,
    ) -> ImportJob:
        # An unknown spec is a 404 now, not a failed job later; the job gets the catalogue itself.
        catalogue = await self.spec_store.catalogue.remote(spec_id)
        data = await request.body()
        if not data.strip():
            raise ImportInputError("empty body: send the HAR, OTLP JSON or log file itself as the request body")
        options = {name: value for name, value in (("host", host), ("prefix", prefix), ("format", fmt)) if value}
        return await self.learning.start_import.remote(data, catalogue.model_dump_json(), options)

    @app.get("/admin/import/{job_id}", response_model=ImportJob, summary="An import job and its report",
             dependencies=[Admin], operation_id="import_status", responses=errors.documented(401, 403, 404, 422, 503))
    async def import_status(self, job_id: str) -> ImportJob:
        return await self.learning.import_status.remote(job_id)

    @app.get("/admin/models", response_model=ModelsReport, summary="Models serving and their online acceptance",
             dependencies=[Admin], responses=errors.documented(401, 403, 422))
    async def models(self) -> ModelsReport:
        state: ModelState = await self.ranker.model_state.remote()
        versions = [v for v in (state.champion, state.shadow) if v is not None]
        online = await asyncio.gather(*(asyncio.to_thread(self.acceptance.of, v) for v in versions))
        paired = None
        if state.champion is not None and state.shadow is not None:
            champion, shadow = await asyncio.to_thread(self.acceptance.paired, state.champion, state.shadow)
            paired = {"champion": champion, "shadow": shadow}
        return ModelsReport(
            champion=state.champion,
            shadow=state.shadow,
            shadow_share=state.shadow_share,
            online=dict(zip(versions, online, strict=True)),
            paired=paired,
        )

    @app.get("/healthz", summary="Alive")
    async def healthz(self) -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", response_model=Ready, summary="Model loaded and spec store reachable",
             responses={503: {"model": Ready, "description": "not ready: no model loaded (the body says what is)"}})
    async def readyz(self) -> JSONResponse:
        state, redis_up = await asyncio.gather(self.ranker.model_state.remote(), self.spec_store.redis_up.remote())
        redis_state = "off" if not self.cache.configured else ("up" if redis_up else "down")
        ready = Ready(
            ready=state.champion is not None,
            model_version=state.champion,
            model_reload_error=state.reload_error,
            redis=redis_state,
            feedback_spooled=self.labels.log.spooled,
        )
        # Redis down, or a registry the alias cannot be checked in, is degraded, not unready: predictions keep
        # working from the in-process caches and the model loaded.
        return JSONResponse(ready.model_dump(), status_code=200 if ready.ready else 503)

    def __del__(self) -> None:
        self._stop.set()
