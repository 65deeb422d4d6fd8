"""`Ranker` deployment: the LightGBM ranker over prepared specs, a shim over the models it serves
(serve/model_slots.py: a slot per role, swapped by `reconfigure` and by the alias checks) and the shadow's
rankings (serve/shadowing.py).

`reconfigure` runs when the deployment's `user_config` changes (`serve deploy` with a new `model_uri`, or the
retraining job setting `version` after a promotion). A replica serving an alias also re-resolves it every
`learning.reload_check_s`, so replicas that missed a reconfigure converge on the champion by themselves.
Transition counts come from Redis (online adaptation) when it is configured.

One `predict` is the whole ranking of a request, since this replica holds the prepared spec and fetches the
prompt's vector itself (from its own cache, else from the Embedder, while a cold spec is being prepared): the
cheap ranking, then (when the router says so) the vLLM `CandidateGenerator` over its shortlist, whose checked
answer re-ranks. The Ingress thus makes one call per prediction, and waits on no other deployment.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from ray import serve
from ray.exceptions import RayTaskError
from ray.serve.handle import DeploymentHandle

from pipeline.adapters.kv import ResilientStore
from pipeline.adapters.registry import load_ranker, resolve
from pipeline.cache import LRU
from pipeline.learning.acceptance import ShadowRanking
from pipeline.learning.online_counts import online_transitions
from pipeline.learning.online_patterns import online_patterns
from pipeline.llm.consult import consult
from pipeline.ranking.context import Event, PreparedSpec
from pipeline.ranking.embedding import operation_text
from pipeline.ranking.model import ModelNotFoundError, RankerModel
from pipeline.ranking.predict import Predictor, PredictOutcome
from pipeline.ranking.stats import InMemoryTransitions, TransitionCounts
from pipeline.settings import Settings
from pipeline.spec.store import SpecInfo
from pipeline.timing import ms_since
from serve.model_slots import ModelSlots, RankerConfig
from serve.schemas import LLMUse, ModelState
from serve.shadowing import Shadowing
from serve.telemetry import RankerMetrics

T = TypeVar("T")


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
        self.store = ResilientStore(settings.cache)
        self.metrics = RankerMetrics()
        # Champion and shadow rank with the same online transition and pattern counts.
        counts: TransitionCounts = online_transitions(self.store, settings) or InMemoryTransitions()
        patterns = online_patterns(self.store, settings)
        self.models = ModelSlots(
            self._fetch, self._resolve, lambda model: Predictor(model, counts, settings.ranking, patterns=patterns),
            self.metrics,
        )
        self.shadowing = Shadowing(self.store, settings.cache, self.metrics)
        self._specs: LRU[PreparedSpec] = LRU(self.config.cache.prepared_specs)
        # A client repeats its prompt over a session's calls: a cached vector saves the hop to the Embedder.
        self._prompts: LRU[np.ndarray] = LRU(self.config.cache.vectors)
        self._building: dict[str, asyncio.Task[PreparedSpec]] = {}
        self._background: set[asyncio.Task[None]] = set()  # the alias checks and the gauges' refresh

    async def reconfigure(self, user_config: dict[str, Any]) -> None:
        await self.models.configure(RankerConfig.model_validate(user_config))
        if not self._background:
            loop = asyncio.get_running_loop()
            self._background |= {loop.create_task(self._check_aliases()), loop.create_task(self._refresh_gauges())}

    async def _fetch(self, uri: str) -> RankerModel:
        """A model and the vectors it was trained on, ready before it serves; a ranker of an embedder this service
        cannot run is refused (the replica keeps serving the model it has)."""
        model = await asyncio.to_thread(load_ranker, uri, self.config.registry)
        try:
            await self.embedder.load.remote(model.meta.embedder)
        except RayTaskError as exc:
            raise (exc.cause or exc) from exc
        return model

    async def _resolve(self, uri: str) -> tuple[str, str]:
        version = await asyncio.to_thread(resolve, uri, self.config.registry)
        return version.label, version.uri

    async def _check_aliases(self) -> None:
        while True:
            await asyncio.sleep(self.config.learning.reload_check_s)
            await self.models.check_aliases()

    async def _refresh_gauges(self) -> None:
        while True:
            self.models.report()
            await asyncio.sleep(self.config.learning.metrics_refresh_s)

    def model_state(self) -> ModelState:
        return self.models.state()

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
        predictor = self.models.champion.predictor
        if predictor is None:
            raise ModelNotFoundError(
                f"no ranker model loaded yet ({self.models.reload_error}): retry later, see /readyz")
        embedder = predictor.model.meta.embedder
        cold = self._specs.get(f"{embedder}/{spec_id}") is None
        (spec, prepare_ms), (prompt_vec, embed_ms) = await self._inputs(spec_id, prompt, embedder)
        # With a generator the cheap ranking is also its shortlist: rank as many as it may be offered.
        wide = max(k, self.config.llm.shortlist) if self.generator is not None else k
        outcome = await asyncio.to_thread(predictor.predict, spec, events, prompt, wide, prompt_vec=prompt_vec)
        llm = LLMUse(used=False, why="no generator deployed")
        if self.generator is not None:
            outcome, llm = await self._with_llm(
                predictor, spec, events, prompt, prompt_vec, k, latency_budget_ms, outcome
            )
        outcome.predictions = outcome.predictions[:k]
        outcome.timing_ms["prepare_spec"] = prepare_ms
        outcome.timing_ms["embed_prompt"] = embed_ms
        shadow = self.models.shadow.predictor
        shadowed = shadow is not None and self.shadowing.chosen(prediction_id, self.models.shadow_share)
        if shadowed:
            self.shadowing.start(
                prediction_id, self._rank_in_shadow(shadow, spec_id, embedder, spec, events, prompt, prompt_vec, k)
            )
        return Ranked(outcome, SpecInfo.of(spec.catalogue), llm, cold, shadowed)

    async def shadow_ranking(self, prediction_id: str) -> ShadowRanking | None:
        return await self.shadowing.ranking(prediction_id)

    async def _rank_in_shadow(
        self,
        shadow: Predictor,
        spec_id: str,
        embedder: str,
        spec: PreparedSpec,
        events: list[Event],
        prompt: str,
        prompt_vec: np.ndarray | None,
        k: int,
    ) -> ShadowRanking:
        """The shadow's cheap ranking (no LLM) of a request already answered. `spec` and `prompt_vec` come from
        `embedder`: a shadow trained on another one gets its own."""
        if shadow.model.meta.embedder != embedder:
            (spec, _), (prompt_vec, _) = await self._inputs(spec_id, prompt, shadow.model.meta.embedder)
        outcome = await asyncio.to_thread(shadow.predict, spec, events, prompt, k, prompt_vec=prompt_vec)
        return ShadowRanking(model_version=outcome.model_version, predicted=[p.endpoint for p in outcome.predictions])

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
        return await asyncio.to_thread(predictor.predict, spec, events, prompt, k, extra, prompt_vec=prompt_vec), use


async def _timed(awaitable: Awaitable[T]) -> tuple[T, float]:
    """What `awaitable` gives and the milliseconds it took."""
    started = time.perf_counter()
    result = await awaitable
    return result, ms_since(started)
