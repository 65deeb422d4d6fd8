"""The whole request: query and body values from the prompt, the spec's links, the history and the spec's defaults,
typed by the schema, each with where it came from, and the required fields nothing filled (issue 61)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from pipeline.ranking.carry import carry_params
from pipeline.ranking.context import Event, PreparedSpec, build_context
from pipeline.ranking.request_values import FilledRequest, fill_request
from pipeline.ranking.said_values import SaidValues
from pipeline.settings import FetchSettings
from pipeline.spec.load import load_catalogue
from tests.support import FIXTURES


@pytest.fixture(scope="module")
def spec() -> PreparedSpec:
    catalogue = load_catalogue(FIXTURES / "requests_oas30.yaml", FetchSettings())
    return PreparedSpec.build(catalogue, np.eye(len(catalogue.operations), dtype=np.float32))


def filled(spec: PreparedSpec, operation: str, prompt: str = "", events: list[dict[str, Any]] | None = None) -> FilledRequest:
    ctx = build_context(spec, [Event(**e) for e in events or []], prompt, None, 20)
    index = spec.profile.index[operation]
    op = spec.catalogue.operations[index]
    carried = carry_params(op, ctx, spec.catalogue.base_path)
    return fill_request(op, index, ctx, SaidValues.of(ctx.prompt, ctx.prompt_values),
                        frozenset(carried.params.values()), carried.unresolved)


def test_a_name_given_and_a_flag_said_fill_the_body_typed(spec: PreparedSpec) -> None:
    made = filled(spec, "POST /user/repos", "create a new private repository called demo")
    assert (made.body, made.query, made.missing) == ({"name": "demo", "private": True}, {}, ())
    assert made.filled_from == {"name": "prompt", "private": "prompt"}
    assert filled(spec, "POST /user/repos", "make a repo named demo, not private").body == {"name": "demo",
                                                                                           "private": False}


def test_a_quoted_text_fills_the_field_named_before_it_else_the_name(spec: PreparedSpec) -> None:
    made = filled(spec, "POST /user/repos", "a repository called 'my tools' with description 'CLI helpers'")
    assert made.body == {"name": "my tools", "description": "CLI helpers"}
    issue = filled(spec, "POST /repos/{owner}/{repo}/issues", 'open an issue "Crash on start"',
                   [{"endpoint": "GET /v1/repos/octo/hello/issues"}])
    assert (issue.body, issue.missing) == ({"title": "Crash on start"}, ())


def test_enum_values_said_fill_their_fields_and_a_number_the_field_it_stands_beside(spec: PreparedSpec) -> None:
    """"sorted by last update" is `sort=updated`, "closed" `state=closed`; "50 per page" is `per_page`'s, not the
    page's; "issues of this repo" says no `filter=repos`: the repo is the operation's own."""
    listed = filled(spec, "GET /repos/{owner}/{repo}/issues", "the closed issues of this repo sorted by last update, "
                    "50 per page", [{"endpoint": "GET /v1/repos/octo/hello/issues/7"}])
    assert listed.query == {"state": "closed", "sort": "updated", "per_page": 50}
    closed = filled(spec, "PATCH /repos/{owner}/{repo}/issues/{issue_number}", "close this issue",
                    [{"endpoint": "GET /v1/repos/octo/hello/issues/7"}])
    assert (closed.body, closed.filled_from) == ({"state": "closed"}, {"state": "prompt"})
    assert filled(spec, "GET /customers", "find the customer with email b@x.com, limit 3").query == {
        "email": "b@x.com", "limit": 3}


def test_an_amount_in_minor_units_only_where_the_field_says_so_and_its_currency(spec: PreparedSpec) -> None:
    assert filled(spec, "POST /charges", "charge $19.99").body == {"amount": 1999, "currency": "usd"}
    transfer = filled(spec, "POST /transfers", "send 25 euros to acct_1Nv8aBxx")
    # The amount is in euros here; the one id nobody named is the one text field left.
    assert transfer.body == {"amount": 25, "destination": "acct_1Nv8aBxx", "speed": "normal"}
    assert transfer.filled_from == {"mode": "default", "amount": "prompt", "speed": "default",
                                    "destination": "prompt"}


def test_ids_come_from_the_prompt_before_the_history_and_a_filter_only_when_asked(spec: PreparedSpec) -> None:
    customer = [{"endpoint": "GET /v1/customers/cus_9", "response": {"id": "cus_9", "email": "b@x.com"}}]
    invoice = filled(spec, "POST /invoices", "create an invoice for this customer", customer)
    assert (invoice.body, invoice.filled_from) == ({"customer": "cus_9"}, {"customer": "history"})
    quoted = filled(spec, "POST /invoices", "create an invoice for customer cus_7KzP2 and send it", customer)
    assert quoted.body == {"customer": "cus_7KzP2", "collection_method": "send_invoice"}
    assert filled(spec, "GET /charges", "show the charges of this customer", customer).query == {"customer": "cus_9"}
    assert filled(spec, "GET /charges", "list all charges", customer).query == {}
    charge = filled(spec, "POST /charges", "charge this customer 25 euros, receipt to b@x.com", customer)
    assert charge.body == {"amount": 2500, "currency": "eur", "customer": "cus_9", "receipt_email": "b@x.com"}


def test_required_fields_nothing_fills_are_missing_path_ones_included(spec: PreparedSpec) -> None:
    bare = filled(spec, "POST /charges")
    assert (bare.body, bare.missing) == ({}, ("amount", "currency"))
    issue = filled(spec, "POST /repos/{owner}/{repo}/issues")
    assert issue.missing == ("owner", "repo", "title")
    transfer = filled(spec, "POST /transfers")
    assert (transfer.query, transfer.missing) == ({"mode": "standard"}, ("amount", "destination"))


def test_a_value_said_after_its_fields_noun_goes_to_that_field(spec: PreparedSpec) -> None:
    """"image ubuntu-22.04" is the image's; "username is JaneSmith" the username's, over a linker; a quoted text
    said of a field over "to" is that field's, not the name's."""
    volume = filled(spec, "POST /volumes", "create a volume named data with image ubuntu-22.04, 50 GB")
    assert volume.body == {"name": "data", "size": 50, "image": "ubuntu-22.04"}
    login = filled(spec, "POST /login", "log me in, my username is JaneSmith and my password is hunter2")
    assert (login.body, login.missing) == ({"username": "JaneSmith", "password": "hunter2"}, ())
    repo = filled(spec, "POST /user/repos", "a repository called tools, set its description to 'CLI helpers'")
    assert repo.body == {"name": "tools", "description": "CLI helpers"}


def test_page_sizes_orders_offered_values_and_domain_names(spec: PreparedSpec) -> None:
    """"the last 5 charges" is a page size; "newest first" is the order a description offers as 'descending'; a
    domain name fills the DNS name (its final dot kept mid-sentence)."""
    assert filled(spec, "GET /charges", "the last 5 charges").query == {"limit": 5}
    zones = filled(spec, "GET /zones", "for example.com. list the zones, newest first, 10 per page")
    assert zones.query == {"dnsName": "example.com.", "sortOrder": "descending", "maxResults": 10}


def test_a_required_field_takes_what_an_earlier_response_answered_by_its_name(spec: PreparedSpec) -> None:
    login = {"endpoint": "POST /v1/login", "params": {"username": "jane"}, "response": {"token": "t0k3n9x8c7"}}
    alarm = filled(spec, "POST /alarms", "set an alarm", [login])
    assert (alarm.body, alarm.filled_from, alarm.missing) == ({"token": "t0k3n9x8c7"}, {"token": "history"},
                                                              ("time",))


def test_an_amount_of_money_beside_a_things_noun_is_no_id_of_it(spec: PreparedSpec) -> None:
    """"charge this customer 25 euros": 25 is the amount, not the customer's id; the customer is the one open."""
    ctx = build_context(spec, [Event(endpoint="GET /v1/customers/cus_9")], "charge this customer 25 euros", None, 20)
    read = spec.catalogue.by_id()["GET /customers/{customer}"]
    assert carry_params(read, ctx, spec.catalogue.base_path).params == {"customer": "cus_9"}
    charge = filled(spec, "POST /charges", "charge this customer 25 euros", [{"endpoint": "GET /v1/customers/cus_9"}])
    assert charge.body == {"amount": 2500, "currency": "eur", "customer": "cus_9"}
