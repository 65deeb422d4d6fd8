"""Ids a call's response holds fill the calls after it (`Event.response`)."""

from __future__ import annotations

import pytest
from conftest import FIXTURES
from pydantic import ValidationError

from pipeline.ranking.context import MAX_RESPONSE_BYTES, Event
from pipeline.ranking.response_values import produced_entity, response_ids
from pipeline.settings import FetchSettings
from pipeline.spec.load import load_catalogue

ENTITIES = frozenset({"invoice", "customer", "issue", "server", "intent"})


def test_the_top_level_id_is_the_produced_things_and_named_fields_are_their_entities() -> None:
    invoice = {"id": "in_5", "object": "invoice", "customer": "cus_9", "status": "draft", "amount_due": 1200}
    assert response_ids(invoice, "invoice", ENTITIES) == {"invoice": "in_5", "invoice_id": "in_5", "customer": "cus_9"}
    # GitHub's issues: the path takes the number, not the id.
    issue = {"id": 1802233, "number": 42, "title": "Login fails", "locked": False}
    assert response_ids(issue, "issue", ENTITIES)["issue_number"] == "42"
    # Hetzner wraps the created thing; Stripe's lists hold their items in `data`.
    assert response_ids({"server": {"id": 4711, "name": "web-1"}}, None, ENTITIES) == {"server": "4711"}
    page = {"object": "list", "data": [{"id": "in_A", "customer_id": "cus_1"}, {"id": "in_B"}]}
    assert response_ids(page, "invoice", ENTITIES) == {"invoice": "in_A", "invoice_id": "in_A", "customer_id": "cus_1"}
    assert response_ids({"id": "x y z", "note": "free text"}, "invoice", ENTITIES) == {}
    assert produced_entity("/v1/payment_intents", frozenset({"payment", "intent"}), ENTITIES) == "intent"


def test_an_id_only_a_response_holds_fills_the_next_call(predictor) -> None:
    billing = predictor.prepare(load_catalogue(FIXTURES / "billing_oas30.yaml", FetchSettings()))
    created = Event(endpoint="POST /v1/invoices", response={"id": "in_77", "object": "invoice"})
    outcome = predictor.predict(billing, [created], "pay it", k=10)
    pay = next(p for p in outcome.predictions if p.endpoint == "POST /invoices/{invoice}/pay")
    assert (pay.path, pay.params) == ("/v1/invoices/in_77/pay", {"invoice": "in_77"})
    without = predictor.predict(billing, [Event(endpoint="POST /v1/invoices")], "pay it", k=10)
    unfilled = next(p for p in without.predictions if p.endpoint == "POST /invoices/{invoice}/pay")
    assert unfilled.params == {}


def test_a_response_over_the_cap_is_refused_with_what_to_send() -> None:
    with pytest.raises(ValidationError, match="send the part with the ids later calls need"):
        Event(endpoint="GET /v1/invoices", response={"data": ["x" * MAX_RESPONSE_BYTES]})
