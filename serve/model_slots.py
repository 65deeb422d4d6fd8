"""The models a Ranker replica serves: a slot per role (champion, shadow), each swapped by one assignment, and the
alias checks that keep them on what the registry names.

A request reads a slot's `Predictor` once, so an in-flight request finishes on the model it started with and no
request fails during a swap. A fresh cluster has no champion until its bootstrap job registers one: the slots
then wait (no crash loop), `reload_error` says for what, and the next alias check loads it. Plain classes: the
deployment (serve/ranker.py) wires them to the registry and the Embedder, tests to a local registry."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from pipeline.adapters.registry import RegistryError
from pipeline.ranking.model import RankerModel
from pipeline.ranking.predict import Predictor
from pipeline.timing import ms_since
from serve.schemas import ModelState
from serve.telemetry import RankerMetrics

log = logging.getLogger("opensesame.ranker")
Role = Literal["champion", "shadow"]


class RankerConfig(BaseModel):
    """The Ranker deployment's `user_config`."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model_uri: str  # models:/NAME@ALIAS, models:/NAME/VERSION, or a model directory
    # The version the alias named when this config was deployed. Setting it (the retraining job does after a
    # promotion) is a user_config change: every replica reloads now rather than at its next alias check.
    version: str | None = None
    # A model that also ranks `shadow_share` of the requests, after the answer is sent (None: no shadow); labels
    # then score both rankings of the same predictions (GET /admin/models).
    shadow_uri: str | None = None
    shadow_share: float = Field(0.1, ge=0, le=1)


class ModelSlot:
    """One role's model: the `Predictor` serving it (None until one is loaded) and its gauge."""

    def __init__(self, role: Role, metrics: RankerMetrics) -> None:
        self.role = role
        self.predictor: Predictor | None = None
        self._metrics = metrics

    @property
    def version(self) -> str | None:
        return self.predictor.model.version if self.predictor is not None else None

    def swap(self, predictor: Predictor) -> None:
        """The new model serves from the next request on; the gauge says which version serves in this role."""
        self.clear()
        self.predictor = predictor
        self.report()

    def clear(self) -> None:
        if self.predictor is not None:
            self._metrics.model_loaded.set(0, tags={"model_version": self.predictor.model.version, "role": self.role})
        self.predictor = None

    def report(self) -> None:
        """Ray exports a gauge's value only while it is being set: said again on every refresh."""
        if self.predictor is not None:
            self._metrics.model_loaded.set(1, tags={"model_version": self.predictor.model.version, "role": self.role})


class ModelSlots:
    """Champion and shadow, loaded from the URIs of the deployment's config and kept on what their aliases name.

    `fetch(uri)` loads a model (the registry, then the vectors it was trained on, ready before it serves);
    `resolve(uri)` names the version an alias points at now; `build(model)` makes its `Predictor`."""

    def __init__(
        self,
        fetch: Callable[[str], Awaitable[RankerModel]],
        resolve: Callable[[str], Awaitable[tuple[str, str]]],
        build: Callable[[RankerModel], Predictor],
        metrics: RankerMetrics,
    ) -> None:
        self._fetch, self._resolve, self._build = fetch, resolve, build
        self._metrics = metrics
        self.champion = ModelSlot("champion", metrics)
        self.shadow = ModelSlot("shadow", metrics)
        self.wanted: RankerConfig | None = None
        self.reload_error: str | None = None  # why the last alias check could not check or load; /readyz says it

    async def configure(self, config: RankerConfig) -> None:
        """Load what `config` names. A champion that cannot be loaded fails the reconfigure when one serves
        already (Serve keeps the replica on its old config), else the slots wait for it."""
        self.wanted = config
        try:
            await self.load(config.model_uri, self.champion)
        except (RegistryError, OSError) as exc:
            if self.champion.predictor is not None:
                raise
            self.reload_error = f"waiting for a model at {config.model_uri}: {exc}"
            log.warning("%s", self.reload_error)
        if config.shadow_uri is not None:
            await self.load(config.shadow_uri, self.shadow)
        else:
            self.shadow.clear()

    async def load(self, uri: str, slot: ModelSlot) -> None:
        started = time.perf_counter()
        try:
            model = await self._fetch(uri)
        except Exception:
            self._metrics.reloads.inc(tags={"outcome": "failed"})
            raise
        slot.swap(self._build(model))
        if slot is self.champion:
            # Whatever /readyz said it waited for or could not load no longer holds; said here, at the swap, it
            # cannot pair the model now serving with a stale message (the alias checks of the round still run).
            self.reload_error = None
        self._metrics.reloads.inc(tags={"outcome": "loaded"})
        log.info("%s model %s loaded from %s in %.0f ms", slot.role, model.version, uri, ms_since(started))

    async def check_aliases(self) -> None:
        """Does an alias (champion or shadow) name another version than the one serving? Then load it. This is
        how a replica that missed a reconfigure (or started from an old config) converges."""
        if self.wanted is None:
            return
        if self.champion.predictor is None:  # still waiting for the first model
            try:
                await self.load(self.wanted.model_uri, self.champion)
            except Exception as exc:  # no champion yet, or the registry away: wait and check again
                self.reload_error = f"waiting for a model at {self.wanted.model_uri}: {exc}"
                log.warning("%s", self.reload_error, exc_info=True)
                return
        errors = []
        for slot, uri in ((self.champion, self.wanted.model_uri), (self.shadow, self.wanted.shadow_uri)):
            serving = slot.version
            if uri is None or "@" not in uri or serving is None:
                continue
            try:
                label, version_uri = await self._resolve(uri)
                if label != serving:
                    log.info("alias %s now names %s: reloading the %s", uri, label, slot.role)
                    await self.load(version_uri, slot)
            except Exception as exc:  # the registry being away must not stop the checks, nor the serving
                errors.append(f"cannot check or load {uri}, serving {serving}: {type(exc).__name__}: {exc}")
                log.exception("alias check of %s failed; serving %s", uri, serving)
        self.reload_error = "; ".join(errors) or None

    def report(self) -> None:
        self.champion.report()
        self.shadow.report()

    @property
    def shadow_share(self) -> float:
        return self.wanted.shadow_share if self.shadow.predictor is not None and self.wanted else 0.0

    def state(self) -> ModelState:
        return ModelState(champion=self.champion.version, shadow=self.shadow.version,
                          shadow_share=self.shadow_share, reload_error=self.reload_error)
