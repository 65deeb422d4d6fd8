"""One consultation of the LLM, without Ray or a model: the router, the budget, the check against the spec."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from pipeline.llm.consult import consult
from pipeline.ranking.context import PreparedSpec
from pipeline.settings import FetchSettings, LLMSettings
from pipeline.spec.load import load_catalogue
from tests.support import FIXTURES

PAY = "POST /invoices/{invoice}/pay"
SHORTLIST = ["GET /invoices/{invoice}", PAY, "GET /invoices"]


class FakeGenerator:
    """Stands in for the vLLM CandidateGenerator deployment (a model cannot answer deterministically in a unit
    test): answers a fixed text after a delay, and records what it was asked and whether it was cancelled."""

    def __init__(self, answer: str, delay_s: float = 0.0, error: Exception | None = None) -> None:
        self.text, self.delay_s, self.error = answer, delay_s, error
        self.asked: list[tuple[list[dict[str, str]], list[str]]] = []
        self.cancelled = False

    async def answer(self, messages: list[dict[str, str]], shortlist: list[str]) -> str:
        self.asked.append((messages, shortlist))
        try:
            await asyncio.sleep(self.delay_s)
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        if self.error is not None:
            raise self.error
        return self.text


@pytest.fixture(scope="module")
def billing() -> PreparedSpec:
    catalogue = load_catalogue(FIXTURES / "billing_oas30.yaml", FetchSettings())
    return PreparedSpec.build(catalogue, np.zeros((len(catalogue.operations), 384), dtype=np.float32))


def _answer(*operations: str) -> str:
    return json.dumps({"calls": [{"operation": op, "reason": "next"} for op in operations]})


def _consult(generator: FakeGenerator, spec: PreparedSpec, settings: LLMSettings, budget_ms: float | None = 5000):
    calls = ["GET /invoices/in_1"]
    return asyncio.run(consult(generator, settings, spec, "pay it", calls, SHORTLIST, 0.1, budget_ms))


def test_used_answer_becomes_the_llm_source_with_patches_counted(billing: PreparedSpec) -> None:
    generator = FakeGenerator(_answer(PAY, "post /v1/invoices/in_1/pay/", "GET /nowhere"))
    asked = _consult(generator, billing, LLMSettings(mode="always", shortlist=2))
    assert asked.used and asked.outcome == "used" and asked.why == "llm.mode is always"
    assert generator.asked[0][1] == SHORTLIST[:2]  # the shortlist is the head of the cheap ranking
    assert (asked.stats.valid, asked.stats.patched, asked.stats.dropped) == (1, 1, 1)
    assert asked.hits == {billing.profile.index[PAY]: 1.0}  # the patched repeat of PAY is not counted twice


def test_router_skips_without_asking(billing: PreparedSpec) -> None:
    generator = FakeGenerator(_answer(PAY))
    asked = _consult(generator, billing, LLMSettings(mode="auto", min_budget_ms=3000), budget_ms=500)
    assert (asked.used, asked.outcome, asked.why) == (False, "skipped", "latency budget 500 ms < 3000 ms")
    assert generator.asked == []


def test_time_out_cancels_the_generator_and_keeps_the_cheap_ranking(billing: PreparedSpec) -> None:
    generator = FakeGenerator(_answer(PAY), delay_s=5)
    asked = _consult(generator, billing, LLMSettings(mode="always"), budget_ms=50)
    assert (asked.used, asked.outcome, asked.why) == (False, "failed", "llm timed out")
    assert generator.cancelled and asked.hits is None and 40 <= asked.latency_ms < 1000


def test_a_failing_engine_is_named(billing: PreparedSpec) -> None:
    generator = FakeGenerator("", error=ConnectionError("engine core died"))
    asked = _consult(generator, billing, LLMSettings(mode="always"))
    assert (asked.used, asked.outcome, asked.why) == (False, "failed", "llm failed: ConnectionError")
