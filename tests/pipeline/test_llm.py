"""The LLM source without a model: prompt, schema, parsing, auto-patch and the router's decisions."""

from __future__ import annotations

import json

import pytest

from pipeline.llm.patch import hits, parse_answer, patch
from pipeline.llm.prompt import build_messages, output_schema
from pipeline.llm.router import Router
from pipeline.settings import FetchSettings, LLMSettings
from pipeline.spec.load import load_catalogue
from pipeline.spec.matching import CallMatcher
from tests.support import FIXTURES


@pytest.fixture(scope="module")
def billing():
    catalogue = load_catalogue(FIXTURES / "billing_oas30.yaml", FetchSettings())
    return catalogue, CallMatcher(catalogue)


def test_schema_allows_only_the_shortlist() -> None:
    schema = output_schema(["GET /a", "POST /b"], max_calls=3)
    items = schema["properties"]["calls"]["items"]
    assert items["properties"]["operation"]["enum"] == ["GET /a", "POST /b"]
    assert schema["properties"]["calls"]["maxItems"] == 3


def test_messages_are_compact_and_carry_the_context() -> None:
    messages = build_messages("pay it", [f"GET /v1/x/{i}" for i in range(9)], ["POST /v1/invoices/{invoice}/pay"])
    user = messages[-1]["content"]
    assert "pay it" in user and "POST /v1/invoices/{invoice}/pay" in user
    assert "GET /v1/x/3" not in user and "GET /v1/x/8" in user  # only the last 5 calls


def test_parse_answer_tolerates_garbage() -> None:
    assert parse_answer('{"calls": [{"operation": "GET /a", "reason": "r"}]}') == [("GET /a", "r")]
    assert parse_answer("not json") == []
    assert parse_answer('{"calls": "GET /a"}') == []


def test_an_answer_cut_short_by_max_tokens_keeps_the_calls_it_finished() -> None:
    cut = ('{\n  "calls": [\n    {\n      "operation": "GET /invoices/{invoice}",\n      "reason": "read it \\"first\\""\n'
           '    },\n    {\n      "operation": "POST /invoices/{invoice}/pay",\n      "reason": "pay the inv')
    assert parse_answer(cut) == [("GET /invoices/{invoice}", 'read it "first"')]


def test_patch_keeps_real_maps_near_misses_and_drops_inventions(billing) -> None:
    catalogue, matcher = billing
    answer = [
        ("GET /invoices/{invoice}", "real"),
        ("get //invoices/in_1/", "extra slash, lower-case method, a concrete id"),
        ("POST /invoices/{invoice}/pay", "real"),
        ("GET /invoices/{invoice}", "a repeat"),
        ("GET /teleport/now", "invented"),
        ("PATCH /invoices/{invoice}", "wrong method"),
    ]
    suggestions, stats = patch(answer, catalogue, matcher, limit=5)
    assert [s.endpoint for s in suggestions] == ["GET /invoices/{invoice}", "POST /invoices/{invoice}/pay"]
    assert (stats.valid, stats.patched, stats.dropped) == (3, 1, 2)
    assert stats.examples == ["get //invoices/in_1/", "GET /teleport/now", "PATCH /invoices/{invoice}"]
    index = {op.id: i for i, op in enumerate(catalogue.operations)}
    scored = hits(suggestions, index)
    assert scored[index["GET /invoices/{invoice}"]] == 1.0 > scored[index["POST /invoices/{invoice}/pay"]]


@pytest.mark.parametrize(
    ("mode", "budget", "top", "use", "why"),
    [
        ("off", 10_000, 0.1, False, "off"),
        ("always", 1, 0.99, True, "always"),
        ("auto", 500, 0.1, False, "latency budget 500 ms < 3000 ms"),
        ("auto", None, 0.1, False, "latency budget 1000 ms"),  # no budget stated: the default applies
        ("auto", 5000, 0.8, False, "ranker confident"),
        ("auto", 5000, 0.2, True, "budget allows"),
        ("auto", 5000, None, True, "budget allows"),  # no candidates at all: let the LLM try
    ],
)
def test_router(mode: str, budget: float | None, top: float | None, use: bool, why: str) -> None:
    router = Router(LLMSettings(mode=mode))
    decision = router.decide(budget, top)
    assert decision.use is use and why in decision.why


def test_schema_is_json_serialisable_for_the_engine() -> None:
    json.dumps(output_schema([f"GET /op{i}" for i in range(20)], 3))
