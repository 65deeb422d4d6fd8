"""The Ranker's own logic in-process: its model slots over a real MLflow registry on sqlite (waiting for a
champion, following an alias, serving on when the registry cannot answer, a shadow added and removed) and the
shadow's rankings over the in-memory store. tests/serve/app/test_models.py checks the same behaviour over HTTP."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from pipeline.adapters import registry
from pipeline.adapters.kv import ResilientStore
from pipeline.adapters.registry import load_ranker, resolve
from pipeline.learning.acceptance import ShadowRanking, shadow_key
from pipeline.ranking.model import RankerModel
from pipeline.ranking.predict import Predictor
from pipeline.ranking.stats import InMemoryTransitions
from pipeline.settings import CacheSettings, RegistrySettings, Settings
from serve.model_slots import ModelSlots, RankerConfig
from serve.schemas import ModelState
from serve.shadowing import Shadowing
from serve.telemetry import RankerMetrics


def _slots(reg: RegistrySettings, settings: Settings) -> ModelSlots:
    """Wired as the deployment wires them, without the Embedder's vectors (the tiny model's are the packaged
    MiniLM's)."""

    async def fetch(uri: str) -> RankerModel:
        return await asyncio.to_thread(load_ranker, uri, reg)

    async def named(uri: str) -> tuple[str, str]:
        version = await asyncio.to_thread(resolve, uri, reg)
        return version.label, version.uri

    counts = InMemoryTransitions()
    return ModelSlots(fetch, named, lambda model: Predictor(model, counts, settings.ranking), RankerMetrics())


@pytest.fixture
def reg(tmp_path: Path) -> RegistrySettings:
    return RegistrySettings(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", artifact_root=(tmp_path / "art").as_uri())


def test_slots_wait_for_a_champion_follow_its_alias_and_serve_on_when_the_registry_cannot_answer(
    reg: RegistrySettings, tiny_settings: Settings, tiny_model: object
) -> None:
    first = registry.register(tiny_settings.paths.model_dir, reg, run_name="slots-1")
    alias = f"fresh{time.time_ns()}"
    uri = f"models:/{reg.model_name}@{alias}"
    slots = _slots(reg, tiny_settings)
    asyncio.run(slots.configure(RankerConfig(model_uri=uri)))  # the alias names nothing yet: no crash, a wait
    waiting = slots.state()
    assert waiting.champion is None and waiting.reload_error.startswith(f"waiting for a model at {uri}: cannot resolve")
    assert f"alias {alias} not found" in waiting.reload_error

    registry.promote(first, alias, reg)
    asyncio.run(slots.check_aliases())
    assert slots.state() == ModelState(champion=first.label, shadow=None, shadow_share=0.0, reload_error=None)

    taken = slots.champion.predictor  # what a request in flight holds
    second = registry.register(tiny_settings.paths.model_dir, reg, run_name="slots-2")
    registry.promote(second, alias, reg)
    asyncio.run(slots.check_aliases())
    assert slots.champion.version == second.label and taken is not None and taken.model.version == first.label

    MlflowClient(reg.tracking_uri).delete_registered_model_alias(reg.model_name, alias)
    asyncio.run(slots.check_aliases())
    assert slots.champion.version == second.label
    assert f"cannot check or load {uri}, serving {second.label}: RegistryError" in slots.state().reload_error
    with pytest.raises(registry.RegistryError):  # a reconfigure to what cannot load fails; the model serves on
        asyncio.run(slots.configure(RankerConfig(model_uri=f"models:/{reg.model_name}@gone")))
    assert slots.champion.version == second.label


def test_a_shadow_is_loaded_beside_the_champion_and_removed_with_its_share(
    reg: RegistrySettings, tiny_settings: Settings, tiny_model: object
) -> None:
    folder = str(tiny_settings.paths.model_dir)
    version = RankerModel.load(tiny_settings.paths.model_dir).version
    slots = _slots(reg, tiny_settings)
    asyncio.run(slots.configure(RankerConfig(model_uri=folder, shadow_uri=folder, shadow_share=0.25)))
    assert slots.state() == ModelState(champion=version, shadow=version, shadow_share=0.25, reload_error=None)
    asyncio.run(slots.configure(RankerConfig(model_uri=folder, shadow_share=0.25)))
    assert slots.state() == ModelState(champion=version, shadow=None, shadow_share=0.0, reload_error=None)


def test_the_shadows_rankings_are_a_stable_share_kept_for_their_labels_and_never_fail_a_request() -> None:
    store = ResilientStore(CacheSettings(redis_url=None, key_prefix=f"shadow{time.time_ns()}:"))
    shadowing = Shadowing(store, CacheSettings(redis_url=None), RankerMetrics())
    ids = [f"{i:032x}" for i in range(2000)]
    assert not any(Shadowing.chosen(i, 0.0) for i in ids) and all(Shadowing.chosen(i, 1.0) for i in ids)
    share = sum(Shadowing.chosen(i, 0.3) for i in ids) / len(ids)
    assert 0.27 <= share <= 0.33 and [Shadowing.chosen(i, 0.3) for i in ids] == [Shadowing.chosen(i, 0.3) for i in ids]

    made = ShadowRanking(model_version="shadow-1", predicted=["GET /a", "POST /b"])

    began: list[str] = []

    async def rank() -> ShadowRanking:
        began.append("p1")
        await asyncio.sleep(0.05)
        return made

    async def broken() -> ShadowRanking:
        raise RuntimeError("the shadow's own failure")

    async def run() -> tuple[ShadowRanking | None, ...]:
        shadowing.start("p1", rank())
        assert not began  # started, not run: the champion's answer leaves the replica before the shadow ranks
        shadowing.start("p2", broken())
        waited = await shadowing.ranking("p1")  # asked while it is being made: waits for it
        return waited, await shadowing.ranking("p1"), await shadowing.ranking("p2"), await shadowing.ranking("p3")

    waited, kept, failed, unknown = asyncio.run(run())
    assert waited == kept == made and failed is None and unknown is None
    assert ShadowRanking.model_validate_json(store.get(shadow_key("p1"))) == made
