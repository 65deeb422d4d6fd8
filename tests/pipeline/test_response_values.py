"""Ids a call's response holds fill the calls after it (`Event.response`)."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from pipeline.ranking.carry import carry_params
from pipeline.ranking.context import MAX_RESPONSE_BYTES, Event, PreparedSpec, build_context
from pipeline.ranking.response_values import produced_entity, response_ids
from pipeline.settings import FetchSettings
from pipeline.spec.load import load_catalogue
from tests.support import FIXTURES

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


def test_the_list_item_the_prompt_describes_fills_the_call_not_the_first() -> None:
    issues = [{"id": 901, "number": 7, "title": "Crash on start", "state": "open"},
              {"id": 902, "number": 5, "title": "Docs typo", "state": "open"}]
    assert response_ids(issues, "issue", ENTITIES, "close the docs typo issue")["issue_number"] == "5"
    customers = {"data": [{"id": "cus_1", "email": "a@x.com"}, {"id": "cus_2", "email": "b@x.com"}]}
    assert response_ids(customers, "customer", ENTITIES, "show b@x.com's subscriptions")["customer"] == "cus_2"
    # Nothing the prompt says tells them apart ("open" is every item's state), or no prompt: the first item.
    assert response_ids(issues, "issue", ENTITIES, "reopen the open one")["issue_number"] == "7"
    assert response_ids(customers, "customer", ENTITIES)["customer"] == "cus_1"


def test_the_item_meant_reaches_the_predicted_call() -> None:
    catalogue = load_catalogue(FIXTURES / "billing_oas30.yaml", FetchSettings())
    billing_spec = PreparedSpec.build(catalogue, np.eye(len(catalogue.operations), dtype=np.float32))
    listed = Event(endpoint="GET /v1/invoices", response=[
        {"id": "in_1", "description": "March hosting"}, {"id": "in_2", "description": "April support hours"}])
    ctx = build_context(billing_spec, [listed], "pay the april support invoice", None, 20)
    pay = billing_spec.catalogue.by_id()["POST /invoices/{invoice}/pay"]
    assert carry_params(pay, ctx, billing_spec.catalogue.base_path).params == {"invoice": "in_2"}


def test_a_quoted_value_that_describes_a_listed_item_names_the_item_not_an_id() -> None:
    """"pay invoice INV-0042" over invoices numbered INV-0041 and INV-0042: the second invoice's id, not the number
    the prompt quotes as if it were one; an id the list does not describe still fills as quoted."""
    catalogue = load_catalogue(FIXTURES / "billing_oas30.yaml", FetchSettings())
    billing_spec = PreparedSpec.build(catalogue, np.eye(len(catalogue.operations), dtype=np.float32))
    listed = Event(endpoint="GET /v1/invoices", response={"data": [
        {"id": "in_1Q0aAA", "number": "INV-0041"}, {"id": "in_1Q0bBB", "number": "INV-0042"}]})
    pay = billing_spec.catalogue.by_id()["POST /invoices/{invoice}/pay"]
    for prompt, invoice in (("pay invoice INV-0042", "in_1Q0bBB"), ("pay invoice in_9ZZZZZ", "in_9ZZZZZ")):
        ctx = build_context(billing_spec, [listed], prompt, None, 20)
        assert carry_params(pay, ctx, billing_spec.catalogue.base_path).params == {"invoice": invoice}, prompt
