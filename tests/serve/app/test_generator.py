"""The LLM generator's place in an answer: a prediction before it is up, its candidates real operations, its
time-out never an error. A module of its own so that it runs early in its lane, before the other lane's clusters
and trainings slow every token (with its threads bound to both cores, vLLM answered nothing there at all:
docs/decisions.md, "vLLM binds its CPU threads itself")."""

from __future__ import annotations

import httpx
import pytest

from pipeline.settings import FetchSettings
from pipeline.spec.load import load_catalogue
from tests.serve.app.served import Served
from tests.support import FIXTURES, poll

pytestmark = pytest.mark.slow


def test_predictions_are_answered_before_the_llm_generator_is_up(served: Served) -> None:
    """`make serve` says it is up when /readyz answers, not when the app is RUNNING: the vLLM generator takes half
    a minute more, and a prediction that asks it meanwhile ranks without it, within its budget."""
    assert served.early.app_status != "RUNNING"
    assert served.early.predicted.status_code == 200, served.early.predicted.text
    body = served.early.predicted.json()
    assert body["llm"]["used"] is False and body["llm"]["why"] == "llm timed out"
    assert body["predictions"][0]["endpoint"] == "POST /invoices/{invoice}/pay"


def test_llm_candidates_are_real_operations_and_a_timeout_never_fails_predict(served: Served) -> None:
    """The generator's candidates are operations of the spec. Asked with a budget it cannot meet, or while the
    other lane's clusters keep both cores busy, it times out and the answer comes without it, never an error: each
    try is a 200, until one within the budget uses it."""
    real = {op.id for op in load_catalogue(FIXTURES / "billing_oas30.yaml", FetchSettings()).operations}
    body = {"spec_url": served.spec_url, "events": [{"endpoint": "GET /v1/invoices/in_5"}], "prompt": "pay it", "k": 5}

    def answered_with_the_llm() -> httpx.Response | None:
        response = served.predict(**body, latency_budget_ms=20000)
        assert response.status_code == 200, response.text
        return response if response.json()["llm"]["used"] else None

    used = poll(answered_with_the_llm, timeout_s=240)
    assert used.json()["llm"]["dropped"] == 0
    assert used.json()["timing"]["llm"] > 0
    assert any("llm" in p["sources"] for p in used.json()["predictions"])
    assert {p["endpoint"] for p in used.json()["predictions"]} <= real
    timed_out = served.predict(**body, latency_budget_ms=150)  # the router asks, but 150 ms cannot be met
    assert timed_out.status_code == 200, timed_out.text
    assert timed_out.json()["llm"]["used"] is False and timed_out.json()["llm"]["why"] == "llm timed out"
    assert timed_out.json()["predictions"][0]["endpoint"] == "POST /invoices/{invoice}/pay"
    assert "llm" not in {source for p in timed_out.json()["predictions"] for source in p["sources"]}
