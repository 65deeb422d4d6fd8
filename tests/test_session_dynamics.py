"""Sessions that repeat a call for each item the prompt names, and the hedged top of the list."""

from __future__ import annotations

import numpy as np

from pipeline.ranking.context import Event
from pipeline.ranking.hedge import hedge
from pipeline.ranking.prompt_values import prompt_values
from pipeline.settings import FetchSettings
from pipeline.spec.load import load_catalogue
from tests.conftest import FIXTURES


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
