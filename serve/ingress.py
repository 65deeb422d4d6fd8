"""`Ingress` deployment: the only HTTP entry point (FastAPI, documented at /docs)."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
import uuid
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import numpy as np
from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse
from ray import serve
from ray.serve import metrics
from ray.serve.handle import DeploymentHandle

from pipeline.features import SCHEMA_VERSION
from pipeline.feedback import (
    FeedbackLog,
    LabelSink,
    PredictionNotFoundError,
    PredictionRecord,
    encode_features,
    followup,
    label,
    last_prediction_key,
    load_prediction,
    save_prediction,
)
from pipeline.kv import ResilientStore
from pipeline.llm import Router, build_messages
from pipeline.online_counts import online_transitions
from pipeline.predict import PredictOutcome
from pipeline.settings import load_settings
from pipeline.spec_store import SpecInfo
from serve import errors
from serve.schemas import (
    FeedbackRequest,
    FeedbackResponse,
    LLMUse,
    Prediction,
    PredictRequest,
    PredictResponse,
    Ready,
    RetrainJob,
    SpecSource,
    SpecSummary,
)

app = FastAPI(
    title="OpenSesame",
    version="0.1.0",
    description="Predicts the next REST API call from recent calls, a prompt and an OpenAPI spec.",
)
errors.install(app)


@app.middleware("http")
async def _limit_body(request: Request, call_next: Any) -> Any:
    # Refuse an oversized body before reading it; the spec cap itself is checked again when parsing.
    limit = getattr(request.app.state, "max_body", None)
    length = request.headers.get("content-length")
    if limit and length and length.isdigit() and int(length) > limit:
        return JSONResponse(
            {"error": "too large", "detail": f"request body over {limit} bytes; send spec_url instead of the spec"},
            status_code=413,
        )
    return await call_next(request)


log = logging.getLogger("opensesame.ingress")

# Headroom over the spec size cap for the JSON envelope around an inline spec.
ENVELOPE_BYTES = 1024 * 1024


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 3)


@serve.deployment(max_ongoing_requests=64, max_queued_requests=256)
@serve.ingress(app)
class Ingress:
    def __init__(
        self,
        settings: dict[str, Any],
        spec_store: DeploymentHandle,
        embedder: DeploymentHandle,
        ranker: DeploymentHandle,
        learning: DeploymentHandle,
        generator: DeploymentHandle | None = None,
    ) -> None:
        self.config = load_settings(overrides=settings)
        self.generator = generator  # None: no LLM in the graph
        self.router = Router(self.config.llm)
        self.llm_requests = metrics.Counter(
            "opensesame_llm_requests",
            description="requests by what became of the LLM: used, skipped, failed",
            tag_keys=("outcome",),
        )
        self.spec_store = spec_store
        self.embedder = embedder
        self.ranker = ranker
        self.learning = learning
        self.cache = ResilientStore(self.config.cache)
        self.feedback_log = FeedbackLog(self.cache, self.config.feedback)
        counts = online_transitions(self.cache, self.config.learning)
        self.labels = LabelSink(self.cache, self.feedback_log, counts, self.config.cache.prediction_ttl_s)
        self._background: set[asyncio.Task[None]] = set()  # implicit labelling, off the response path
        app.state.max_body = self.config.fetch.max_bytes + ENVELOPE_BYTES

    async def _spec_id(self, source: SpecSource) -> str:
        if source.spec_id is not None:
            return source.spec_id
        info: SpecInfo = await self.spec_store.register.remote(source.spec_url, source.spec)
        return info.spec_id

    async def _prompt_vec(self, prompt: str) -> Any:
        return await self.embedder.embed_prompt.remote(prompt.strip()) if prompt.strip() else None

    @app.post("/predict", response_model=PredictResponse, summary="The k most likely next calls")
    async def predict(self, body: PredictRequest) -> PredictResponse:
        started = time.perf_counter()
        spec_task = asyncio.create_task(self._timed(self._spec_id(body)))
        embed_task = asyncio.create_task(self._timed(self._prompt_vec(body.prompt)))
        try:
            (spec_id, spec_ms), (prompt_vec, embed_ms) = await asyncio.gather(spec_task, embed_task)
        except BaseException:
            spec_task.cancel()
            embed_task.cancel()
            raise
        mark = time.perf_counter()
        wide = max(body.k, self.config.llm.shortlist) if self.generator is not None else body.k
        outcome, info, _ = await self.ranker.predict.remote(spec_id, body.events, body.prompt, prompt_vec, wide)
        rank_ms = _ms(mark)
        outcome, llm = await self._with_llm(body, spec_id, prompt_vec, outcome)
        outcome.predictions = outcome.predictions[: body.k]
        prediction_id = uuid.uuid4().hex
        record = PredictionRecord(
            prediction_id=prediction_id,
            user_id=body.user_id,
            spec_id=spec_id,
            events=[e.endpoint for e in body.events],
            prompt=body.prompt,
            predicted=[p.endpoint for p in outcome.predictions],
            model_version=outcome.model_version,
            created_at=datetime.now(UTC),
            last_operation=outcome.last_operation,
            candidates=outcome.candidates,
            feature_schema=SCHEMA_VERSION,
        )
        await asyncio.to_thread(self._save_prediction, record, outcome.features)
        task = asyncio.create_task(self._implicit_label(record))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        timing = {
            "spec": round(spec_ms, 3),
            "embed_prompt": round(embed_ms, 3),
            "rank": rank_ms,
            **({"llm": llm.latency_ms} if llm.latency_ms is not None else {}),
            **{f"ranker.{stage}": ms for stage, ms in outcome.timing_ms.items() if stage != "embed_prompt"},
            "total": _ms(started),
        }
        return PredictResponse(
            prediction_id=prediction_id,
            predictions=[Prediction(**asdict(p)) for p in outcome.predictions],
            model_version=outcome.model_version,
            spec=SpecSummary(id=info.spec_id, title=info.title, operations=info.operations),
            unmatched_events=outcome.unmatched_events,
            timing=timing,
            llm=llm,
        )

    async def _with_llm(
        self, body: PredictRequest, spec_id: str, prompt_vec: Any, cheap: PredictOutcome
    ) -> tuple[PredictOutcome, LLMUse]:
        """Ask the generator when the router says so; any failure or time-out keeps the cheap ranking."""
        if self.generator is None:
            return cheap, LLMUse(used=False, why="no generator deployed")
        top = cheap.predictions[0].score if cheap.predictions else None
        decision = self.router.decide(body.latency_budget_ms, top)
        if not decision.use:
            self.llm_requests.inc(tags={"outcome": "skipped"})
            return cheap, LLMUse(used=False, why=decision.why)
        shortlist = [p.endpoint for p in cheap.predictions[: self.config.llm.shortlist]]
        messages = build_messages(body.prompt, [e.endpoint for e in body.events], shortlist)
        started = time.perf_counter()
        response = self.generator.answer.remote(messages, shortlist)
        timeout_s = min(self.config.llm.timeout_ms, body.latency_budget_ms or self.config.llm.timeout_ms) / 1000
        try:
            answer, _ = await asyncio.wait_for(response, timeout=timeout_s)
            latency = _ms(started)
            outcome, _, stats = await self.ranker.predict.remote(
                spec_id, body.events, body.prompt, prompt_vec, body.k, answer
            )
        except Exception as exc:  # time-out, back-pressure, a dead engine: the request goes on without the LLM
            response.cancel()
            why = "timed out" if isinstance(exc, TimeoutError) else f"failed: {type(errors.unwrap(exc)).__name__}"
            log.warning("llm %s after %.0f ms; answering with the cheap ranking", why, _ms(started), exc_info=exc)
            self.llm_requests.inc(tags={"outcome": "failed"})
            return cheap, LLMUse(used=False, why=f"llm {why}", latency_ms=_ms(started))
        self.llm_requests.inc(tags={"outcome": "used"})
        return outcome, LLMUse(
            used=True, why=decision.why, latency_ms=latency, patched=stats.patched, dropped=stats.dropped
        )

    def _save_prediction(self, record: PredictionRecord, features: np.ndarray | None) -> None:
        """In a worker thread: compressing the candidates' features (~0.2 ms) stays off the event loop."""
        if features is not None:
            record.features = encode_features(features)
        save_prediction(self.cache, record, self.config.cache.prediction_ttl_s)

    async def _implicit_label(self, current: PredictionRecord) -> None:
        """The user's previous prediction on this spec is labelled by the call its new history shows after it."""
        try:
            key = last_prediction_key(current.user_id, current.spec_id)
            ttl = self.config.cache.prediction_ttl_s
            previous_id = await asyncio.to_thread(self.cache.swap, key, current.prediction_id.encode(), ttl)
            if previous_id is None:
                return
            previous = await asyncio.to_thread(load_prediction, self.cache, previous_id.decode())
            call = followup(previous.events, current.events)
            if call is None:
                return
            match = await self.spec_store.match.remote(previous.spec_id, call)
            if match.operation is None:
                return
            record = label(previous, call, None, match, source="implicit")
            await asyncio.to_thread(self.labels.record, record)
        except PredictionNotFoundError:
            pass  # expired: nothing to label
        except Exception:  # a lost implicit label must never fail or slow a prediction
            log.exception("implicit label for user %s failed", current.user_id)

    @staticmethod
    async def _timed(awaitable: Any) -> tuple[Any, float]:
        started = time.perf_counter()
        return await awaitable, (time.perf_counter() - started) * 1000

    @app.post("/specs", response_model=SpecInfo, status_code=201, summary="Register a spec by URL or body")
    async def register_spec(self, body: SpecSource) -> SpecInfo:
        if body.spec_id is not None:
            return await self.spec_store.info.remote(body.spec_id)
        return await self.spec_store.register.remote(body.spec_url, body.spec)

    @app.get("/specs/{spec_id}", response_model=SpecInfo, summary="A registered spec")
    async def get_spec(self, spec_id: str) -> SpecInfo:
        return await self.spec_store.info.remote(spec_id)

    @app.post("/feedback", response_model=FeedbackResponse, status_code=202, summary="What the user did next")
    async def feedback(self, body: FeedbackRequest) -> FeedbackResponse:
        prediction = await asyncio.to_thread(load_prediction, self.cache, body.prediction_id)
        match = None
        if body.called is not None:
            match = await self.spec_store.match.remote(prediction.spec_id, body.called)
        record = label(prediction, body.called, body.accepted_rank, match)
        stored, entry = await asyncio.to_thread(self.labels.record, record)
        return FeedbackResponse(
            prediction_id=record.prediction_id,
            outcome=record.outcome,
            endpoint=record.endpoint,
            rank=record.rank,
            stored=stored,
            entry_id=entry,
        )

    def _authorize(self, authorization: str | None) -> None:
        token = self.config.learning.admin_token
        if token is None:
            raise errors.Forbidden(
                "admin endpoints are disabled: set learning.admin_token (OPENSESAME__LEARNING__ADMIN_TOKEN)"
            )
        if authorization is None or not authorization.startswith("Bearer "):
            raise errors.Unauthorized("missing credentials: send 'Authorization: Bearer <learning.admin_token>'")
        if not secrets.compare_digest(authorization.removeprefix("Bearer ").encode(), token.encode()):
            raise errors.Forbidden("wrong admin token")

    @app.post("/admin/retrain", response_model=RetrainJob, status_code=202, summary="Start a retraining job")
    async def retrain(self, authorization: str | None = Header(None)) -> RetrainJob:
        self._authorize(authorization)
        return await self.learning.retrain.remote("admin")

    @app.get("/admin/retrain/{job_id}", response_model=RetrainJob, summary="A retraining job and its gate")
    async def retrain_status(self, job_id: str, authorization: str | None = Header(None)) -> RetrainJob:
        self._authorize(authorization)
        return await self.learning.status.remote(job_id)

    @app.get("/healthz", summary="Alive")
    async def healthz(self) -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", response_model=Ready, summary="Model loaded and spec store reachable")
    async def readyz(self) -> JSONResponse:
        version, redis_up = await asyncio.gather(self.ranker.model_version.remote(), self.spec_store.redis_up.remote())
        redis_state = "off" if not self.cache.configured else ("up" if redis_up else "down")
        ready = Ready(
            ready=version is not None,
            model_version=version,
            redis=redis_state,
            feedback_spooled=self.feedback_log.spooled,
        )
        # Redis down is degraded, not unready: predictions keep working from the in-process caches.
        return JSONResponse(ready.model_dump(), status_code=200 if ready.ready else 503)
