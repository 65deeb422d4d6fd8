"""The Ingress's own logic in-process, over the in-memory store an embedded service uses: admission (the caller's
quota, its cap of registered specs) and labelling (a prediction saved, labelled implicitly by the user's next one,
never twice, counted for its model). tests/serve/app/ checks the same behaviour over HTTP."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline.adapters.kv import ResilientStore
from pipeline.errors import RateLimitedError
from pipeline.learning.acceptance import Acceptance, ShadowRanking
from pipeline.learning.labels import label
from pipeline.learning.records import PredictionRecord
from pipeline.runtime import label_sink
from pipeline.settings import CacheSettings, ClientSettings, FeedbackSettings, Settings
from pipeline.spec.catalogue import Catalogue
from pipeline.spec.load import load_catalogue
from serve.admission import Admission
from serve.deps import Caller
from serve.labelling import Labelling
from serve.telemetry import PredictMetrics
from tests.support import FIXTURES


def _settings(tmp_path: Path) -> Settings:
    return Settings(
        cache=CacheSettings(redis_url=None, key_prefix=f"parts{time.time_ns()}:"),
        clients=ClientSettings(rate_per_s=1.0, burst=2, max_specs=2),
        feedback=FeedbackSettings(spool_path=tmp_path / "spool.jsonl"),
    )


def test_a_caller_over_its_quota_or_its_spec_cap_is_refused_with_when_to_retry(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    admission = Admission(ResilientStore(settings.cache), settings)
    caller = Caller(key=None, address="10.0.0.7")

    async def run() -> None:
        assert await admission.admit(caller) == await admission.admit(caller)  # the burst of 2
        with pytest.raises(RateLimitedError, match="over 1 requests/s") as refused:
            await admission.admit(caller)
        assert 0 < refused.value.retry_after_s <= 1.0
        quota_id = caller.quota_id(None)
        await admission.count_spec(caller, quota_id, "spec-b")
        await admission.count_spec(caller, quota_id, "spec-a")
        await admission.count_spec(caller, quota_id, "spec-a")  # the same spec again counts once
        with pytest.raises(RateLimitedError, match="registered 2 distinct specs"):
            await admission.count_spec(caller, quota_id, "spec-c")
        assert await admission.registered(quota_id) == ["spec-a", "spec-b"]  # the refused one is not kept

    asyncio.run(run())


def test_the_next_prediction_labels_the_previous_one_once_and_counts_it_for_its_model(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    store = ResilientStore(settings.cache)
    catalogue: Catalogue = load_catalogue(FIXTURES / "billing_oas30.yaml", settings.fetch)
    asked: list[str] = []

    async def routes(spec_id: str) -> Catalogue:
        asked.append(spec_id)
        return catalogue.routes()

    async def no_shadow(prediction_id: str) -> ShadowRanking | None:
        return None

    labelling = Labelling(store, label_sink(store, settings), settings, PredictMetrics(), routes, no_shadow)
    first = PredictionRecord(
        prediction_id="p1", user_id="u1", spec_id=catalogue.content_hash, events=["GET /v1/invoices"], prompt="",
        predicted=["GET /invoices/{invoice}", "POST /invoices"], model_version="v1", created_at=datetime.now(UTC),
        last_operation="GET /invoices",
    )
    second = first.model_copy(update={"prediction_id": "p2", "events": ["GET /v1/invoices", "GET /v1/invoices/in_7"],
                                      "last_operation": "GET /invoices/{invoice}"})

    async def run() -> tuple[str, str | None]:
        for record in (first, second):
            labelling.save(record, None)
            await labelling.implicit(record)  # the first finds no earlier one; the second labels the first
        again = label(await labelling.prediction("p1"), "GET /v1/invoices/in_7", None,
                      await labelling.match(catalogue.content_hash, "GET /v1/invoices/in_7"))
        return await labelling.record(again)

    assert asyncio.run(run()) == ("duplicate", None)  # /feedback after the implicit label: not counted again
    assert labelling.acceptance.of("v1") == Acceptance(labels=1, at1=1.0, at3=1.0)
    assert asked == [catalogue.content_hash]  # the routes are asked once, then matched here
