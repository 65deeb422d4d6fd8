"""`Ranker` deployment: the LightGBM ranker over prepared specs, hot-swapped by `reconfigure`.

`reconfigure` runs when the deployment's `user_config` changes (`serve deploy` with a new `model_uri`, or the
retraining job setting `version` after a promotion): the new model is loaded into a local variable and swapped
in with one assignment. A request reads the model once, so in-flight requests finish on the model they started
with and no request fails during the swap. A replica serving an alias also re-resolves it every
`learning.reload_check_s`, so replicas that missed a reconfigure converge on the champion by themselves.
Transition counts come from Redis (online adaptation) when it is configured.

A second model may run in shadow (`shadow_uri`): it ranks `shadow_share` of the requests after the
answer has been returned, and its ranking is stored beside the prediction so that labels score both.

One `predict` is the whole ranking of a request, since this replica holds the prepared spec and fetches the
prompt's vector itself (from its own cache, else from the Embedder, while a cold spec is being prepared): the
cheap ranking, then (when the router says so) the vLLM `CandidateGenerator` over its shortlist, whose checked
answer re-ranks. The Ingress thus makes one call per prediction, and waits on no other deployment.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from ray import serve
from ray.exceptions import RayTaskError
from ray.serve.handle import DeploymentHandle

from pipeline.adapters.kv import ResilientStore
from pipeline.adapters.registry import RegistryError, load_ranker, resolve
from pipeline.cache import LRU
from pipeline.learning.acceptance import ShadowRanking, shadow_key
from pipeline.learning.online_counts import online_transitions
from pipeline.learning.online_patterns import online_patterns
from pipeline.llm.consult import consult
from pipeline.ranking.context import Event, PreparedSpec
from pipeline.ranking.embedding import operation_text
from pipeline.ranking.model import ModelNotFoundError
from pipeline.ranking.predict import Predictor, PredictOutcome
from pipeline.ranking.stats import InMemoryTransitions, TransitionCounts
from pipeline.settings import Settings
from pipeline.spec.store import SpecInfo
from serve.schemas import LLMUse, ModelState
from serve.telemetry import RankerMetrics

log = logging.getLogger("opensesame.ranker")
T = TypeVar("T")


class RankerConfig(BaseModel):
    """The deployment's `user_config`."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model_uri: str  # models:/NAME@ALIAS, models:/NAME/VERSION, or a model directory
    # The version the alias named when this config was deployed. Setting it (the retraining job does after a
    # promotion) is a user_config change: every replica reloads now rather than at its next alias check.
    version: str | None = None
    # A model that also ranks `shadow_share` of the requests, after the answer is sent (None: no shadow); labels
    # then score both rankings of the same predictions (GET /admin/models).
    shadow_uri: str | None = None
    shadow_share: float = Field(0.1, ge=0, le=1)


@dataclass(slots=True)
class Ranked:
    """The Ranker's answer to one request."""

    outcome: PredictOutcome
    spec: SpecInfo
    llm: LLMUse
    cold: bool  # the spec was prepared for this request
    shadowed: bool  # the shadow model ranks it too, after this answer (see `shadow_ranking`)


class HandleGenerator:
    """The `CandidateGenerator` deployment as a `pipeline.llm.consult.Generator`: when the wait is cancelled
    (time-out), the request to the generator is cancelled too."""

    def __init__(self, handle: DeploymentHandle) -> None:
        self._handle = handle

    async def answer(self, messages: list[dict[str, str]], shortlist: list[str]) -> str:
        response = self._handle.answer.remote(messages, shortlist)
        try:
            return await response
        except asyncio.CancelledError:
            response.cancel()
            raise
        except RayTaskError as exc:  # what failed inside the generator, not Ray's wrapper around it
            raise (exc.cause or exc) from exc


@serve.deployment
class RankerDeployment:
    def __init__(
        self,
        settings: Settings,
        spec_store: DeploymentHandle,
        embedder: DeploymentHandle,
        generator: DeploymentHandle | None = None,
    ) -> None:
        self.config = settings
        self.spec_store = spec_store
        self.embedder = embedder
        self.generator = HandleGenerator(generator) if generator is not None else None  # None: no LLM in the graph
        self.predictor: Predictor | None = None
        self.shadow: Predictor | None = None
        self.wanted: RankerConfig | None = None
        self.store = ResilientStore(settings.cache)
        # Champion and shadow rank with the same online transition and pattern counts.
        self.counts: TransitionCounts = online_transitions(self.store, settings) or InMemoryTransitions()
        self.patterns = online_patterns(self.store, settings)
        self.reload_error: str | None = None  # why the last alias check could not check or load; /readyz says it
        self._watcher: asyncio.Task[None] | None = None
        self._specs: LRU[PreparedSpec] = LRU(self.config.cache.prepared_specs)
        # A client repeats its prompt over a session's calls: a cached vector saves the hop to the Embedder.
        self._prompts: LRU[np.ndarray] = LRU(self.config.cache.vectors)
        self._building: dict[str, asyncio.Task[PreparedSpec]] = {}
        self._background: set[asyncio.Task[None]] = set()  # the gauges' refresh
        # Shadow rankings, made off the response path: running, then kept until their labels come.
        self._shadowing: dict[str, asyncio.Task[ShadowRanking | None]] = {}
        self._shadow_rankings: LRU[ShadowRanking] = LRU(self.config.cache.shadow_rankings)
        self.metrics = RankerMetrics()

    async def reconfigure(self, user_config: dict[str, Any]) -> None:
        self.wanted = RankerConfig.model_validate(user_config)
        try:
            await self._load(self.wanted.model_uri, "champion")
        except (RegistryError, OSError) as exc:
            if self.predictor is not None:
                raise
            # A fresh cluster has no champion until its bootstrap job registers one (and its registry may still be
            # starting): the replica stays up (no crash loop), /readyz says what it waits for, /predict answers
            # 503, and the alias check loads the model when there is one.
            self.reload_error = f"waiting for a model at {self.wanted.model_uri}: {exc}"
            log.warning("%s", self.reload_error)
        if self.wanted.shadow_uri is not None:
            await self._load(self.wanted.shadow_uri, "shadow")
        elif self.shadow is not None:
            self.metrics.model_loaded.set(0, tags={"model_version": self.shadow.model.version, "role": "shadow"})
            self.shadow = None
        if self._watcher is None:
            loop = asyncio.get_running_loop()
            self._watcher = loop.create_task(self._watch_alias())
            self._background.add(loop.create_task(self._refresh_gauges()))

    async def _load(self, uri: str, role: str) -> None:
        started = time.perf_counter()
        try:
            model = await asyncio.to_thread(load_ranker, uri, self.config.registry)
            # The vectors it was trained on, ready before it serves; a ranker of an embedder this service cannot
            # run is refused (the replica keeps serving the model it has).
            try:
                await self.embedder.load.remote(model.meta.embedder)
            except RayTaskError as exc:
                raise (exc.cause or exc) from exc
        except Exception:
            self.metrics.reloads.inc(tags={"outcome": "failed"})
            raise
        current = self.predictor if role == "champion" else self.shadow
        if current is not None:
            self.metrics.model_loaded.set(0, tags={"model_version": current.model.version, "role": role})
        # The swap: one assignment of a new Predictor, so a request that took the old one ranks with the old
        # model on the old model's vectors throughout.
        if role == "champion":
            self.predictor = Predictor(model, self.counts, self.config.ranking, patterns=self.patterns)
            # Whatever /readyz said it waited for or could not load no longer holds; said here, at the swap, it
            # cannot pair the model now serving with a stale message (the alias checks of the round still run).
            self.reload_error = None
        else:
            self.shadow = Predictor(model, self.counts, self.config.ranking, patterns=self.patterns)
        self.metrics.model_loaded.set(1, tags={"model_version": model.version, "role": role})
        self.metrics.reloads.inc(tags={"outcome": "loaded"})
        log.info("%s model %s loaded from %s in %.0f ms", role, model.version, uri,
                 (time.perf_counter() - started) * 1000)

    async def _refresh_gauges(self) -> None:
        """Ray exports a gauge's value only while it is being set: say which versions serve, every few seconds."""
        while True:
            for role, predictor in (("champion", self.predictor), ("shadow", self.shadow)):
                if predictor is not None:
                    self.metrics.model_loaded.set(1, tags={"model_version": predictor.model.version, "role": role})
            await asyncio.sleep(self.config.learning.metrics_refresh_s)

    async def _watch_alias(self) -> None:
        """Every `reload_check_s`: does an alias (champion or shadow) name another version than the one serving?
        Then load it. This is how a replica that missed a reconfigure (or started from an old config) converges."""
        while True:
            await asyncio.sleep(self.config.learning.reload_check_s)
            errors = []
            if self.predictor is None:  # still waiting for the first model
                try:
                    await self._load(self.wanted.model_uri, "champion")
                except Exception as exc:  # no champion yet, or the registry away: wait and check again
                    self.reload_error = f"waiting for a model at {self.wanted.model_uri}: {exc}"
                    log.warning("%s", self.reload_error, exc_info=True)
                    continue
            for role, uri, predictor in (("champion", self.wanted.model_uri, self.predictor),
                                         ("shadow", self.wanted.shadow_uri, self.shadow)):
                if uri is None or "@" not in uri or predictor is None:
                    continue
                serving = predictor.model.version
                try:
                    current = await asyncio.to_thread(resolve, uri, self.config.registry)
                    if current.label != serving:
                        log.info("alias %s now names %s: reloading the %s", uri, current.label, role)
                        await self._load(current.uri, role)
                except Exception as exc:  # the registry being away must not stop the checks, nor the serving
                    errors.append(f"cannot check or load {uri}, serving {serving}: {type(exc).__name__}: {exc}")
                    log.exception("alias check of %s failed; serving %s", uri, serving)
            self.reload_error = "; ".join(errors) or None

    def model_state(self) -> ModelState:
        return ModelState(
            champion=self.predictor.model.version if self.predictor else None,
            shadow=self.shadow.model.version if self.shadow else None,
            shadow_share=self.wanted.shadow_share if self.shadow and self.wanted else 0.0,
            reload_error=self.reload_error,
        )

    async def _prepared(self, spec_id: str, embedder: str) -> PreparedSpec:
        key = f"{embedder}/{spec_id}"
        spec = self._specs.get(key)
        if spec is not None:
            return spec
        # Concurrent first requests for one spec share a single build.
        task = self._building.get(key)
        if task is None:
            task = asyncio.create_task(self._build(spec_id, embedder, key))
            self._building[key] = task
            task.add_done_callback(lambda _: self._building.pop(key, None))
        return await task

    async def _build(self, spec_id: str, embedder: str, key: str) -> PreparedSpec:
        catalogue = await self.spec_store.catalogue.remote(spec_id)
        texts = [operation_text(op) for op in catalogue.operations]
        vectors = await self.embedder.operation_vectors.remote(spec_id, texts, embedder)
        spec = await asyncio.to_thread(PreparedSpec.build, catalogue, vectors)
        self._specs.set(key, spec)
        return spec

    async def _prompt_vec(self, prompt: str, embedder: str) -> np.ndarray | None:
        text = prompt.strip()
        if not text:
            return None
        key = f"{embedder}\n{text}"
        vector = self._prompts.get(key)
        if vector is None:
            vector = await self.embedder.embed_prompt.remote(text, embedder)
            self._prompts.set(key, vector)
        return vector

    async def _inputs(
        self, spec_id: str, prompt: str, embedder: str
    ) -> tuple[tuple[PreparedSpec, float], tuple[np.ndarray | None, float]]:
        """The spec prepared and the prompt embedded with `embedder`, each with the milliseconds it took."""
        return await asyncio.gather(
            _timed(self._prepared(spec_id, embedder)), _timed(self._prompt_vec(prompt, embedder))
        )

    async def predict(
        self,
        prediction_id: str,
        spec_id: str,
        events: list[Event],
        prompt: str,
        k: int,
        latency_budget_ms: float | None = None,
    ) -> Ranked:
        """The k best next calls; the LLM's candidates join when the router asks for them within the budget."""
        predictor = self.predictor
        if predictor is None:
            raise ModelNotFoundError(f"no ranker model loaded yet ({self.reload_error}): retry later, see /readyz")
        embedder = predictor.model.meta.embedder
        cold = self._specs.get(f"{embedder}/{spec_id}") is None
        (spec, prepare_ms), (prompt_vec, embed_ms) = await self._inputs(spec_id, prompt, embedder)
        # With a generator the cheap ranking is also its shortlist: rank as many as it may be offered.
        wide = max(k, self.config.llm.shortlist) if self.generator is not None else k
        outcome = await asyncio.to_thread(predictor.predict, spec, events, prompt, wide, None, prompt_vec)
        llm = LLMUse(used=False, why="no generator deployed")
        if self.generator is not None:
            outcome, llm = await self._with_llm(
                predictor, spec, events, prompt, prompt_vec, k, latency_budget_ms, outcome
            )
        outcome.predictions = outcome.predictions[:k]
        outcome.timing_ms["prepare_spec"] = prepare_ms
        outcome.timing_ms["embed_prompt"] = embed_ms
        shadowed = self.shadow is not None and self._shadows(prediction_id)
        if shadowed:
            task = asyncio.create_task(
                self._rank_in_shadow(prediction_id, spec_id, embedder, spec, events, prompt, prompt_vec, k)
            )
            self._shadowing[prediction_id] = task
            task.add_done_callback(lambda _: self._shadowing.pop(prediction_id, None))
        return Ranked(outcome, SpecInfo.of(spec.catalogue), llm, cold, shadowed)

    async def shadow_ranking(self, prediction_id: str) -> ShadowRanking | None:
        """The shadow's ranking of a prediction this replica answered (waiting for it if it is still being made);
        None when another replica answered it or it was forgotten."""
        task = self._shadowing.get(prediction_id)
        if task is not None:
            return await asyncio.shield(task)
        return self._shadow_rankings.get(prediction_id)

    def _shadows(self, prediction_id: str) -> bool:
        """The same share of requests on every replica, decided by the prediction id (no shared random state)."""
        share = self.wanted.shadow_share if self.wanted else 0.0
        return int(hashlib.blake2b(prediction_id.encode(), digest_size=4).hexdigest(), 16) < share * 2**32

    async def _rank_in_shadow(
        self,
        prediction_id: str,
        spec_id: str,
        embedder: str,
        spec: PreparedSpec,
        events: list[Event],
        prompt: str,
        prompt_vec: np.ndarray | None,
        k: int,
    ) -> ShadowRanking | None:
        """The shadow's cheap ranking (no LLM) of a request already answered, kept (and shared through Redis when
        it is on) for its labels. `spec` and `prompt_vec` come from `embedder`: a shadow trained on another one
        gets its own."""
        shadow = self.shadow
        if shadow is None:
            return None
        try:
            await asyncio.sleep(0)  # yield first: the champion's answer leaves this replica before we score
            if shadow.model.meta.embedder != embedder:
                (spec, _), (prompt_vec, _) = await self._inputs(spec_id, prompt, shadow.model.meta.embedder)
            outcome = await asyncio.to_thread(shadow.predict, spec, events, prompt, k, None, prompt_vec)
            ranking = ShadowRanking(model_version=outcome.model_version, predicted=[p.endpoint for p in outcome.predictions])
            self._shadow_rankings.set(prediction_id, ranking, self.config.cache.prediction_ttl_s)
            await asyncio.to_thread(self.store.set, shadow_key(prediction_id), ranking.model_dump_json().encode(),
                                    self.config.cache.prediction_ttl_s)
            self.metrics.shadow_scored.inc()
            return ranking
        except Exception:  # a shadow's failure is the shadow's: never the service's
            log.exception("shadow ranking of %s failed", prediction_id)
            return None

    async def _with_llm(
        self,
        predictor: Predictor,
        spec: PreparedSpec,
        events: list[Event],
        prompt: str,
        prompt_vec: np.ndarray | None,
        k: int,
        budget_ms: float | None,
        cheap: PredictOutcome,
    ) -> tuple[PredictOutcome, LLMUse]:
        """Ask the generator when the router says so; the checked answer re-ranks, any failure keeps `cheap`."""
        assert self.generator is not None
        top = cheap.predictions[0].score if cheap.predictions else None
        asked = await consult(
            self.generator,
            self.config.llm,
            spec,
            prompt,
            [e.endpoint for e in events],
            [p.endpoint for p in cheap.predictions],
            top,
            budget_ms,
        )
        self.metrics.llm_requests.inc(tags={"outcome": asked.outcome})
        for outcome in ("valid", "patched", "dropped"):
            if count := getattr(asked.stats, outcome):  # Ray's Counter refuses an increment of 0
                self.metrics.llm_operations.inc(count, tags={"outcome": outcome})
        use = LLMUse(
            used=asked.used,
            why=asked.why,
            latency_ms=asked.latency_ms,
            patched=asked.stats.patched,
            dropped=asked.stats.dropped,
        )
        if not asked.used:
            return cheap, use
        extra = {"llm": asked.hits or {}}
        return await asyncio.to_thread(predictor.predict, spec, events, prompt, k, extra, prompt_vec), use


async def _timed(awaitable: Awaitable[T]) -> tuple[T, float]:
    """What `awaitable` gives and the milliseconds it took."""
    started = time.perf_counter()
    result = await awaitable
    return result, round((time.perf_counter() - started) * 1000, 3)
