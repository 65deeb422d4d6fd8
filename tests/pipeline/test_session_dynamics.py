"""Sessions that repeat a call for each item the prompt names, and the hedged top of the list."""

from __future__ import annotations

import numpy as np

from pipeline.ranking.context import Event
from pipeline.ranking.features import column
from pipeline.ranking.hedge import hedge
from pipeline.ranking.prompt_values import enumerations, prompt_values
from pipeline.settings import FetchSettings
from pipeline.spec.load import load_catalogue
from tests.support import FIXTURES


def test_the_items_of_an_enumeration_share_the_noun_of_the_first() -> None:
    values = prompt_values("check the prices of products 10001, 10002 and 10005")
    assert [(v.value, v.nouns) for v in values] == [(n, frozenset({"product"})) for n in ("10001", "10002", "10005")]
    assert prompt_values("the public holidays in Australia in 2023")[0].nouns == frozenset({"year"})


def test_the_next_item_of_the_prompt_fills_the_repeated_call(predictor) -> None:
    billing = predictor.prepare(load_catalogue(FIXTURES / "billing_oas30.yaml", FetchSettings()))
    prompt = "check the invoices in_4410, in_4411 and in_4415"
    for done, following in ((["in_4410"], "in_4411"), (["in_4410", "in_4411"], "in_4415")):
        history = [Event(endpoint=f"GET /v1/invoices/{n}") for n in done]
        outcome = predictor.predict(billing, history, prompt, k=10)
        item = next(p for p in outcome.predictions if p.endpoint == "GET /invoices/{invoice}")
        assert item.params == {"invoice": following}


def test_the_hedge_lets_the_other_step_on_a_listed_thing_into_the_top_three() -> None:
    order = np.array([0, 1, 2, 3])
    scores = np.array([0.40, 0.30, 0.20, 0.18])
    act, read = (False, True, "reservation"), (False, False, "reservation")
    new_order, new_scores = hedge(order, scores, [act, act, act, read], width=3, share=0.5)
    assert new_order.tolist() == [0, 3, 1, 2]  # the lookup (0.18 >= 0.5 * 0.30) before the third variant
    assert np.all(np.diff(new_scores) <= 0)  # scores stay monotone in rank
    # Not close enough for the second place (0.18 < 0.7 * 0.30), close enough for the third (0.18 >= 0.7 * 0.20).
    assert hedge(order, scores, [act, act, act, read], width=3, share=0.7)[0].tolist() == [0, 1, 3, 2]
    assert hedge(order, scores, [act, act, act, read], width=3, share=0.95)[0].tolist() == [0, 1, 2, 3]
    # Another thing altogether is left where the model put it: a list of different things already hedges.
    elsewhere = (False, False, "customer")
    assert hedge(order, scores, [act, act, act, elsewhere], width=3, share=0.5)[0].tolist() == [0, 1, 2, 3]


def test_the_hedge_keeps_a_place_for_repeating_the_last_call() -> None:
    """"Verses 35 to 39" after verse 37: the next verse is the last call again, on no thing the list names."""
    order = np.array([0, 1, 2, 3])
    scores = np.array([0.40, 0.30, 0.20, 0.18])
    chapter, versions, metadata = (False, False, "chapter"), (False, False, "versions"), (False, False, "book")
    verse_again = (True, False, "verse")
    assert hedge(order, scores, [chapter, versions, metadata, verse_again], width=3, share=0.5)[0].tolist() == [0, 3, 1, 2]
    # Not when it is implausible next to the variant it would displace.
    low = np.array([0.40, 0.30, 0.20, 0.05])
    assert hedge(order, low, [chapter, versions, metadata, verse_again], width=3, share=0.5)[0].tolist() == [0, 1, 2, 3]


def _desk(predictor):
    return predictor.prepare(load_catalogue(FIXTURES / "support_desk_oas30.yaml", FetchSettings()))


def _params_of(outcome, endpoint: str) -> dict[str, str]:
    return next(p for p in outcome.predictions if p.endpoint == endpoint).params


def test_the_orders_a_response_lists_are_worked_through_one_by_one(predictor) -> None:
    """An agent that read a customer's orders looks each up: the next one each time, not the one just read; an act
    after a read is on the thing read."""
    desk = _desk(predictor)
    user = Event(endpoint="GET /users/u_482", response={"user_id": "u_482", "orders": ["W2378156", "W4817420", "W9911002"]})
    read = "GET /orders/{order_id}"
    assert _params_of(predictor.predict(desk, [user], k=10), read) == {"order_id": "W2378156"}
    first = Event(endpoint="GET /orders/W2378156")
    outcome = predictor.predict(desk, [user, first], k=10)
    assert _params_of(outcome, read) == {"order_id": "W4817420"}
    assert _params_of(outcome, "POST /orders/{order_id}/cancel") == {"order_id": "W2378156"}
    second = Event(endpoint="GET /orders/W4817420")
    assert _params_of(predictor.predict(desk, [user, first, second], k=10), read) == {"order_id": "W9911002"}


def test_each_operation_works_through_the_prompts_items_in_turn(predictor) -> None:
    """"cancel orders W1 and W2", read before act: after reading W1 the cancel is of W1 and the next read of W2;
    after cancelling W1 the cancel is of W2."""
    desk = _desk(predictor)
    prompt = "cancel orders W2378156 and W4817420"
    read = [Event(endpoint="GET /orders/W2378156")]
    outcome = predictor.predict(desk, read, prompt, k=10)
    assert _params_of(outcome, "POST /orders/{order_id}/cancel") == {"order_id": "W2378156"}
    assert _params_of(outcome, "GET /orders/{order_id}") == {"order_id": "W4817420"}
    cancelled = [*read, Event(endpoint="POST /orders/W2378156/cancel")]
    outcome = predictor.predict(desk, cancelled, prompt, k=10)
    assert _params_of(outcome, "POST /orders/{order_id}/cancel") == {"order_id": "W4817420"}


def test_the_items_left_count_what_each_operation_has_not_done_yet(predictor) -> None:
    from pipeline.ranking.context import build_context
    from pipeline.ranking.signals import compute_signals

    desk = _desk(predictor)
    user = Event(endpoint="GET /users/u_482", response={"user_id": "u_482", "orders": ["W2378156", "W4817420", "W9911002"]})
    history = [user, Event(endpoint="GET /orders/W2378156")]
    signals = compute_signals(build_context(desk, history, "", None, 20))
    left = {op.id: signals.items_left[i] for i, op in enumerate(desk.catalogue.operations)}
    assert left["GET /orders/{order_id}"] == 2  # two orders not read yet
    assert left["POST /orders/{order_id}/cancel"] == 3  # none cancelled yet
    assert left["GET /users/{user_id}"] == 0  # no list of users
    prompted = compute_signals(build_context(desk, history[1:], "cancel orders W2378156 and W4817420", None, 20))
    left = {op.id: prompted.items_left[i] for i, op in enumerate(desk.catalogue.operations)}
    assert left["GET /orders/{order_id}"] == 1 and left["POST /orders/{order_id}/cancel"] == 2


def test_a_list_narrowed_to_the_thing_just_read_is_offered_and_marked(predictor) -> None:
    """After a call on customer cus_7, `GET /invoices?customer=` is a candidate whatever is asked, with the
    feature that says it narrows to that customer; after an invoice alone, to nothing known."""
    billing = predictor.prepare(load_catalogue(FIXTURES / "billing_oas30.yaml", FetchSettings()))
    assert billing.profile.filtered_by.keys() == {"customer"}

    def narrowed(history: str, prompt: str) -> float:
        outcome = predictor.predict(billing, [Event(endpoint=history)], prompt, k=10)
        return float(column(outcome.features, "filters_known")[outcome.candidates.index("GET /invoices")])

    assert narrowed("GET /v1/customers/cus_7/sources/src_2", "") == 2.0
    assert narrowed("GET /v1/customers/cus_7/sources/src_2", "list this customer's invoices") == 2.0
    assert narrowed("GET /v1/invoices/in_9", "list all invoices") == 0.0


def test_names_enumerated_together_are_one_run_each_names_apart_none() -> None:
    def runs(prompt: str) -> tuple[frozenset[str], ...]:
        return enumerations(prompt, prompt_values(prompt))

    assert runs("estimate the distance between San Francisco and Rivermist") == (
        frozenset({"San Francisco", "Rivermist"}),)
    assert runs("the public holidays of Canada and then of Mexico in 2024") == (frozenset({"Canada", "Mexico"}),)
    assert runs("find flights from New York to London leaving on August 15") == (frozenset({"New York", "London"}),)
    assert runs("send Alice the report from Paris") == ()


_CITIES = """{"openapi": "3.0.0", "info": {"title": "trips", "version": "1"}, "paths": {
  "/zipcode": {"get": {"operationId": "get_zipcode", "summary": "Gets the zipcode of a city",
    "parameters": [{"name": "city", "in": "query", "required": true, "schema": {"type": "string"}}],
    "responses": {"200": {"description": "OK"}}}},
  "/distance": {"get": {"operationId": "estimate_distance", "summary": "Estimates the distance between two zipcodes",
    "parameters": [{"name": "zipA", "in": "query", "required": true, "schema": {"type": "string"}},
                   {"name": "zipB", "in": "query", "required": true, "schema": {"type": "string"}}],
    "responses": {"200": {"description": "OK"}}}}}}"""


def test_a_lookup_made_for_one_enumerated_name_has_the_others_left(predictor) -> None:
    """"The distance between San Francisco and Rivermist" after the zipcode of San Francisco: the same lookup
    has Rivermist left; after both, nothing; and a name said apart from the one looked up is not left."""
    from pipeline.ranking.context import build_context
    from pipeline.ranking.signals import compute_signals

    trips = predictor.prepare(load_catalogue(_CITIES, FetchSettings()))

    def left(prompt: str, *cities: str) -> dict[str, float]:
        history = [Event(endpoint=f"GET /zipcode?city={c.replace(' ', '+')}") for c in cities]
        signals = compute_signals(build_context(trips, history, prompt, None, 20))
        return {op.id: float(signals.items_left[i]) for i, op in enumerate(trips.catalogue.operations)}

    prompt = "estimate the distance between San Francisco and Rivermist"
    assert left(prompt, "San Francisco") == {"GET /zipcode": 1.0, "GET /distance": 0.0}
    assert left(prompt, "San Francisco", "Rivermist") == {"GET /zipcode": 0.0, "GET /distance": 0.0}
    assert left("how far is Rivermist from here? I am in San Francisco", "San Francisco")["GET /zipcode"] == 0.0
