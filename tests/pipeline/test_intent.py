from __future__ import annotations

import pytest

from pipeline.ranking.features import read_prompt
from pipeline.ranking.intent import asks_for, name_types, named_mentions
from pipeline.ranking.profile import Kind, profile_operation
from pipeline.ranking.text import stem
from pipeline.spec.catalogue import Operation


@pytest.mark.parametrize(
    ("prompt", "names"),
    [
        ("give me the number of movies directed by Sofia Coppola", ["Sofia Coppola"]),
        ('Who is the director of the movie "Twilight"?', ["Twilight"]),
        ("Star Wars is great", ["Star Wars"]),
        ("Who directed the top-1 rated movie?", []),  # a sentence-initial capital alone is no name
        ("holidays in Japan for 2023? Also, in English!", ["Japan", "English"]),  # after "?" a sentence starts
        ("show me the TV listings", []),  # short acronyms are not names
        ("the forecast for Acme Corp, Globex and Blue Horizon", ["Acme Corp", "Globex", "Blue Horizon"]),  # a comma parts
        ("the weather in New York City? Find flights to Boston", ["New York City", "Boston"]),  # so does a sentence end
    ],
)
def test_named_mentions(prompt: str, names: list[str]) -> None:
    assert named_mentions(prompt) == names


def test_name_types_read_the_noun_next_to_the_name() -> None:
    assert name_types("a movie from the collection Harry Potter") == {"collection"}
    assert name_types("the first movie of Star Wars collection") == {"collection"}
    assert "person" in name_types("movies directed by Sofia Coppola")
    assert "person" in name_types("When is Clint Eastwood's latest movie out?")


def op(method: str, path: str, operation_id: str | None = None) -> tuple[Operation, object]:
    from pipeline.spec.catalogue import is_destructive

    operation = Operation(id=f"{method} {path}", method=method, path=path, operation_id=operation_id,
                          destructive=is_destructive(method, path, operation_id))
    return operation, profile_operation(operation)


@pytest.mark.parametrize(
    ("prompt", "method", "path", "asked"),
    [
        ("delete the webhook", "DELETE", "/webhooks/{id}", True),
        ("remove this webhook endpoint", "DELETE", "/webhooks/{id}", True),
        ("clean up my invoices list", "DELETE", "/invoices/{id}", False),
        ("cancel my subscription", "POST", "/subscriptions/{id}/cancel", True),
        ("delete the subscription", "POST", "/subscriptions/{id}/cancel", False),  # cancel was not asked for
        ("void the invoice", "POST", "/invoices/{id}/void", True),
        ("I need a cancellation", "POST", "/orders/{id}/cancel", True),
        ("cancel the subscription", "DELETE", "/v1/subscriptions/{id}", True),
        ("cancel it", "DELETE", "/customers/{id}", True),  # names no thing: whatever the last call addressed
        # The thing it ends is the subscription; the customer only owns it.
        ("cancel this customer's subscription", "DELETE", "/customers/{id}", False),
        ("remove the card from this customer", "DELETE", "/customers/{id}", False),
        ("remove the card from this customer", "DELETE", "/customers/{customer}/sources/{id}", True),
        ("delete the document uploaded for this patient", "DELETE", "/patients/{id}", False),
        ("delete the document uploaded for this patient", "DELETE", "/documents/{id}", True),
        ("remove Ann from the team", "DELETE", "/teams/{id}/members/{user}", True),
        ("delete the invoice's line items", "DELETE", "/invoices/{id}", False),
    ],
)
def test_explicit_destructive_intent(prompt: str, method: str, path: str, asked: bool) -> None:
    operation, profile = op(method, path)
    assert operation.destructive
    api_things = frozenset({"customer", "subscription", "card", "team", "member", "invoice", "line", "order", "webhook",
                            "source", "patient", "document"})
    reading = read_prompt(prompt)
    assert asks_for(reading.destructive, profile, method, reading.things & api_things,
                    reading.owners & api_things) is asked


@pytest.mark.parametrize(("prompt", "asked"), [("delete this invoice's line items", False), ("delete this invoice", True)])
def test_an_owner_is_not_the_thing_ended_whatever_the_operation_id_says(prompt: str, asked: bool) -> None:
    # The verb matches `DeleteInvoice`; in the first request the invoice only owns the line items.
    _, profile = op("DELETE", "/invoices/{invoice}", "DeleteInvoice")
    reading = read_prompt(prompt)
    things = frozenset({"invoice", "line"})
    assert asks_for(reading.destructive, profile, "DELETE", reading.things & things, reading.owners & things) is asked


def test_prompt_intents_map_to_kinds() -> None:
    assert Kind.CREATE in read_prompt("create a new customer").intents
    assert Kind.SEARCH in read_prompt("find invoices over 100").intents
    assert Kind.GET in read_prompt("what is the status").intents  # stop words still carry intent
    assert Kind.LIST in read_prompt("What is the python file here? Do not list hidden files.").intents


@pytest.mark.parametrize(
    ("prompt", "destructive", "write"),
    [
        ("was invoice in_1PbT4k voided?", set(), False),
        ("did payment intent pi_3PbU0r get canceled", set(), False),
        ("who moved this card and when?", set(), False),
        ("when was this card deleted", set(), False),
        ("is this invoice paid?", set(), False),
        # Requests, though some end with a question mark.
        ("how do I cancel this subscription", {"cancel"}, False),
        ("can you void it?", {"void"}, False),
        ("was this invoice voided? if not, void it", {"void"}, False),
        ("move this card to Done", set(), True),
        ("delete the archived cards", {"delete"}, True),
    ],
)
def test_a_question_about_what_was_done_asks_for_no_act(prompt: str, destructive: set[str], write: bool) -> None:
    """"Was this invoice voided?" names the void it asks about: the request is a read, nothing destructive, no write."""
    reading = read_prompt(prompt)
    assert reading.destructive == {stem(w) for w in destructive}
    assert bool(reading.intents & {Kind.UPDATE, Kind.DELETE}) is write


@pytest.mark.parametrize(
    ("method", "path", "kind"),
    [
        ("GET", "/v1/invoices", Kind.LIST),
        ("GET", "/v1/invoices/{invoice}", Kind.GET),
        ("GET", "/v1/invoices/search", Kind.SEARCH),
        ("POST", "/v1/invoices", Kind.CREATE),
        ("POST", "/v1/invoices/{invoice}", Kind.UPDATE),
        ("POST", "/v1/invoices/{invoice}/pay", Kind.ACTION),
        ("POST", "/v1/invoices/{invoice}/lines", Kind.CREATE),
        ("DELETE", "/v1/invoices/{invoice}", Kind.DELETE),
    ],
)
def test_operation_kinds(method: str, path: str, kind: Kind) -> None:
    assert op(method, path)[1].kind == kind
