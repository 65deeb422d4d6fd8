"""`Ingress` deployment: the only HTTP entry point (FastAPI, documented at /docs)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

from fastapi import Query, Request
from fastapi.responses import JSONResponse, Response
from fastapi_offline import FastAPIOffline
from ray import serve
from ray.serve.handle import DeploymentHandle
from starlette.datastructures import Headers
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from pipeline.adapters.kv import ResilientStore
from pipeline.errors import ImportInputError, SpecNotFoundError
from pipeline.learning.labels import label
from pipeline.learning.records import (
    PredictionNotFoundError,
    PredictionRecord,
)
from pipeline.runtime import label_sink
from pipeline.settings import Settings
from pipeline.spec.store import SpecInfo
from pipeline.timing import ms_since
from pipeline.traffic.formats import Format
from serve import errors, mcp
from serve.admission import Admission
from serve.deps import Admin, Caller, CurrentCaller
from serve.labelling import Labelling
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
        self.metrics = PredictMetrics()
        self.admission = Admission(self.cache, settings)
        self.labelling = Labelling(self.cache, label_sink(self.cache, settings), settings, self.metrics,
                                   lambda spec_id: self.spec_store.routes.remote(spec_id),
                                   lambda prediction_id: self.ranker.shadow_ranking.remote(prediction_id))
        self._background: set[asyncio.Task[None]] = set()  # implicit labelling, off the response path
        self._stop = threading.Event()
        threading.Thread(target=self._refresh_gauges, name="gauges", daemon=True).start()
        app.state.max_body = settings.fetch.max_bytes + ENVELOPE_BYTES
        app.state.admin_token = settings.learning.admin_token
        app.state.clients = settings.clients
        # Agents' tools, answered by the routes below (no OpenAPI entry: MCP describes its own tools).
        tools = mcp.build(self.predict, self.feedback, settings.clients)
        app.add_route(mcp.PATH, tools, methods=["GET", "POST", "DELETE"], include_in_schema=False)

    async def _register(self, source: SpecSource, caller: Caller, quota_id: str) -> SpecInfo:
        """Register a spec by URL or body, within the caller's cap of distinct specs."""
        info: SpecInfo = await self.spec_store.register.remote(source.spec_url, source.spec)
        await self.admission.count_spec(caller, quota_id, info.spec_id)
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
        quota_id = await self.admission.admit(caller, body.user_id)
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
        await asyncio.to_thread(self.labelling.save, record, outcome.features)
        task = asyncio.create_task(self.labelling.implicit(record))
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
                self.metrics.spooled.set(self.labelling.sink.log.spooled)
                if self.cache.configured:
                    self.metrics.redis_up.set(1 if self.cache.ping() else 0)
            except Exception:  # a gauge must never take the replica down
                log.exception("refreshing the gauges failed")

    @app.post("/specs", response_model=SpecInfo, status_code=201, summary="Register a spec by URL or body",
              operation_id="register_spec", responses={**errors.documented(400, 401, 404, 413, 422, 429), 201: {
                  "links": {
                      "PredictOnIt": {"operationId": "predict", "requestBody": {"spec_id": "$response.body#/spec_id"}},
                      "ReadIt": {"operationId": "get_spec", "parameters": {"spec_id": "$response.body#/spec_id"}},
                  }}})
    async def register_spec(self, body: SpecSource, caller: CurrentCaller) -> SpecInfo:
        quota_id = await self.admission.admit(caller)
        if body.spec_id is not None:
            return await self.spec_store.info.remote(body.spec_id)
        return await self._register(body, caller, quota_id)

    @app.get("/specs", response_model=SpecList, summary="The specs this caller registered lately",
             operation_id="list_specs", responses=errors.documented(401, 429))
    async def list_specs(self, caller: CurrentCaller) -> SpecList:
        """Those registered within the caller's window of `cache.spec_ttl_s` (its key's, else its address's) and
        still held, by title: what a console offers to choose from."""
        quota_id = await self.admission.admit(caller)
        found: list[SpecInfo] = []
        for spec_id in await self.admission.registered(quota_id):
            try:
                found.append(await self.spec_store.info.remote(spec_id))
            except SpecNotFoundError:
                continue  # evicted since: registering it again brings it back
        return SpecList(sorted(found, key=lambda info: info.title.casefold()))

    @app.get("/specs/{spec_id}", response_model=SpecInfo, summary="A registered spec", operation_id="get_spec",
             responses=errors.documented(401, 404, 422, 429))
    async def get_spec(self, spec_id: str, caller: CurrentCaller) -> SpecInfo:
        await self.admission.admit(caller)
        return await self.spec_store.info.remote(spec_id)

    @app.post("/feedback", response_model=FeedbackResponse, status_code=202, summary="What the user did next",
              operation_id="feedback", responses=errors.documented(400, 401, 404, 413, 422, 429))
    async def feedback(self, body: FeedbackRequest, caller: CurrentCaller) -> Response:
        prediction = await self.labelling.prediction(body.prediction_id)
        quota_id = await self.admission.admit(caller, prediction.user_id)  # without a key: the predicted user's quota
        if prediction.owner is not None and prediction.owner != quota_id:
            # Another key's prediction is, to this caller, one that does not exist.
            raise PredictionNotFoundError(f"unknown prediction_id {body.prediction_id!r} for this API key")
        match = None
        if body.called is not None:
            match = await self.labelling.match(prediction.spec_id, body.called)
        record = label(prediction, body.called, body.accepted_rank, match)
        stored, entry = await self.labelling.record(record)
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
        online = await asyncio.gather(*(asyncio.to_thread(self.labelling.acceptance.of, v) for v in versions))
        paired = None
        if state.champion is not None and state.shadow is not None:
            champion, shadow = await asyncio.to_thread(self.labelling.acceptance.paired, state.champion, state.shadow)
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
            feedback_spooled=self.labelling.sink.log.spooled,
        )
        # Redis down, or a registry the alias cannot be checked in, is degraded, not unready: predictions keep
        # working from the in-process caches and the model loaded.
        return JSONResponse(ready.model_dump(), status_code=200 if ready.ready else 503)

    def __del__(self) -> None:
        self._stop.set()
