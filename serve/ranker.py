"""`Ranker` deployment: the LightGBM ranker over prepared specs, hot-swapped by `reconfigure`.

`reconfigure` runs when the deployment's `user_config` changes (`serve deploy` with a new `model_uri`, or the
retraining job setting `version` after a promotion): the new model is loaded into a local variable and swapped
in with one assignment. A request reads the model once, so in-flight requests finish on the model they started
with and no request fails during the swap. A replica serving an alias also re-resolves it every
`learning.reload_check_s`, so replicas that missed a reconfigure converge on the champion by themselves.
Transition counts come from Redis (online adaptation) when it is configured.

One `predict` is the whole ranking of a request, since this replica holds the prepared spec: the cheap ranking,
then (when the router says so) the vLLM `CandidateGenerator` over its shortlist, whose checked answer re-ranks.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict
from ray import serve
from ray.exceptions import RayTaskError
from ray.serve import metrics
from ray.serve.handle import DeploymentHandle

from pipeline.adapters.kv import ResilientStore
from pipeline.adapters.minilm import embedder_name
from pipeline.adapters.registry import load_ranker, resolve
from pipeline.cache import LRU
from pipeline.learning.online_counts import online_transitions
from pipeline.llm.consult import consult
from pipeline.ranking.context import Event, PreparedSpec
from pipeline.ranking.embedding import operation_text, require_embedder
from pipeline.ranking.predict import Predictor, PredictOutcome
from pipeline.ranking.stats import InMemoryTransitions, TransitionCounts
from pipeline.settings import Settings
from pipeline.spec.store import SpecInfo
from serve.schemas import LLMUse

log = logging.getLogger("opensesame.ranker")


class RankerConfig(BaseModel):
    """The deployment's `user_config`."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model_uri: str  # models:/NAME@ALIAS, models:/NAME/VERSION, or a model directory
    # The version the alias named when this config was deployed. Setting it (the retraining job does after a
    # promotion) is a user_config change: every replica reloads now rather than at its next alias check.
    version: str | None = None


@dataclass(slots=True)
class Ranked:
    """The Ranker's answer to one request."""

    outcome: PredictOutcome
    spec: SpecInfo
    llm: LLMUse


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
        # The Embedder deployment loads the same settings' embedder: what this replica's vectors come from.
        self.embedder_name = embedder_name(settings.embedder.model_dir)
        self.predictor: Predictor | None = None
        self.wanted: RankerConfig | None = None
        self.reload_error: str | None = None  # why the last alias check could not check or load; /readyz says it
        self._watcher: asyncio.Task[None] | None = None
        # A prepared spec (embeddings, profile, matcher) weighs far more than a cache entry: keep fewer.
        self._specs: LRU[PreparedSpec] = LRU(self.config.cache.local_capacity // 8)
        self._building: dict[str, asyncio.Task[PreparedSpec]] = {}
        # Exported to Prometheus through Ray's metrics (dashboard, /metrics of the node).
        self.llm_requests = metrics.Counter(
            "opensesame_llm_requests",
            description="requests by what became of the LLM: used, skipped, failed",
            tag_keys=("outcome",),
        )
        self.llm_operations = metrics.Counter(
            "opensesame_llm_operations",
            description="operations named by the LLM, by auto-patch outcome",
            tag_keys=("outcome",),
        )

    async def reconfigure(self, user_config: dict[str, Any]) -> None:
        self.wanted = RankerConfig.model_validate(user_config)
        await self._load(self.wanted.model_uri)
        if self._watcher is None and "@" in self.wanted.model_uri:
            self._watcher = asyncio.get_running_loop().create_task(self._watch_alias())

    async def _load(self, uri: str) -> None:
        started = time.perf_counter()
        model = await asyncio.to_thread(load_ranker, uri, self.config.registry)
        # A ranker trained on other vectors than the Embedder deployment's is refused (the replica keeps serving
        # the model it has).
        require_embedder(model.meta.embedder, self.embedder_name)
        if self.predictor is None:
            self.predictor = Predictor(model, self._counts(), self.config.ranking)
        else:
            self.predictor.model = model  # the swap: one assignment
        log.info("ranker model %s loaded from %s in %.0f ms", model.version, uri, (time.perf_counter() - started) * 1000)

    def _counts(self) -> TransitionCounts:
        return online_transitions(ResilientStore(self.config.cache), self.config.learning) or InMemoryTransitions()

    async def _watch_alias(self) -> None:
        """Every `reload_check_s`: does the alias name another version than the one serving? Then load it.
        This is how a replica that missed a reconfigure (or started from an old config) converges."""
        while True:
            await asyncio.sleep(self.config.learning.reload_check_s)
            uri = self.wanted.model_uri
            if "@" not in uri or self.predictor is None:
                continue
            serving = self.predictor.model.version
            try:
                current = await asyncio.to_thread(resolve, uri, self.config.registry)
                if current.label != serving:
                    log.info("alias %s now names %s: reloading", uri, current.label)
                    await self._load(current.uri)
                self.reload_error = None
            except Exception as exc:  # the registry being away must not stop the checks, nor the serving
                self.reload_error = f"cannot check or load {uri}, serving {serving}: {type(exc).__name__}: {exc}"
                log.exception("alias check of %s failed; serving %s", uri, serving)

    def check_health(self) -> None:
        if self.predictor is None:
            raise RuntimeError("no ranker model loaded")

    def model_state(self) -> tuple[str | None, str | None]:
        """(the version serving, why the last alias check failed)."""
        return (self.predictor.model.version if self.predictor else None), self.reload_error

    async def _prepared(self, spec_id: str) -> PreparedSpec:
        spec = self._specs.get(spec_id)
        if spec is not None:
            return spec
        # Concurrent first requests for one spec share a single build.
        task = self._building.get(spec_id)
        if task is None:
            task = asyncio.create_task(self._build(spec_id))
            self._building[spec_id] = task
            task.add_done_callback(lambda _: self._building.pop(spec_id, None))
        return await task

    async def _build(self, spec_id: str) -> PreparedSpec:
        catalogue = await self.spec_store.catalogue.remote(spec_id)
        texts = [operation_text(op) for op in catalogue.operations]
        vectors = await self.embedder.operation_vectors.remote(spec_id, texts)
        spec = await asyncio.to_thread(PreparedSpec.build, catalogue, vectors)
        self._specs.set(spec_id, spec)
        return spec

    async def predict(
        self,
        spec_id: str,
        events: list[Event],
        prompt: str,
        prompt_vec: Any,
        k: int,
        latency_budget_ms: float | None = None,
    ) -> Ranked:
        """The k best next calls; the LLM's candidates join when the router asks for them within the budget."""
        predictor = self.predictor
        if predictor is None:
            raise RuntimeError("no ranker model loaded")
        started = time.perf_counter()
        spec = await self._prepared(spec_id)
        prepare_ms = (time.perf_counter() - started) * 1000
        # With a generator the cheap ranking is also its shortlist: rank as many as it may be offered.
        wide = max(k, self.config.llm.shortlist) if self.generator is not None else k
        outcome = await asyncio.to_thread(predictor.predict, spec, events, prompt, wide, None, prompt_vec)
        llm = LLMUse(used=False, why="no generator deployed")
        if self.generator is not None:
            outcome, llm = await self._with_llm(
                predictor, spec, events, prompt, prompt_vec, k, latency_budget_ms, outcome
            )
        outcome.predictions = outcome.predictions[:k]
        outcome.timing_ms["prepare_spec"] = round(prepare_ms, 3)
        return Ranked(outcome, SpecInfo.of(spec.catalogue), llm)

    async def _with_llm(
        self,
        predictor: Predictor,
        spec: PreparedSpec,
        events: list[Event],
        prompt: str,
        prompt_vec: Any,
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
        self.llm_requests.inc(tags={"outcome": asked.outcome})
        for outcome in ("valid", "patched", "dropped"):
            if count := getattr(asked.stats, outcome):  # Ray's Counter refuses an increment of 0
                self.llm_operations.inc(count, tags={"outcome": outcome})
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
