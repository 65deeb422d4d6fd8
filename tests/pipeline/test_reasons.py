"""One test per reason template: each says what is true of this request, and only then (a response cited only when
the client sent it, a last call only when there was one)."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.ranking.context import Context, Event, PreparedSpec, build_context
from pipeline.ranking.guardrails import DEMOTED_REASON
from pipeline.ranking.reasons import explain
from pipeline.ranking.signals import compute_signals
from pipeline.settings import FetchSettings
from pipeline.spec.load import load_catalogue
from tests.support import FIXTURES, TMDB_SPEC

FARM = FIXTURES / "links_oas30.yaml"
BILLING = FIXTURES / "billing_oas30.yaml"


def spec_of(path) -> PreparedSpec:
    """The spec with one unit vector per operation: a prompt vector equal to an operation's matches it alone."""
    catalogue = load_catalogue(path, FetchSettings())
    return PreparedSpec.build(catalogue, np.eye(len(catalogue.operations), dtype=np.float32))


def reason(spec: PreparedSpec, operation: str, events: list[Event], prompt: str = "", *, like: tuple[str, ...] = (),
           sources: tuple[str, ...] = ("retrieval",), spec_prob: float = 0.0, demoted: bool = False) -> str:
    """The reason for `operation`; `like`: the operations the prompt's vector is equally close to."""
    vector = None
    if like:
        vector = spec.embeddings[[spec.profile.index[op] for op in like]].sum(axis=0)
        vector /= np.linalg.norm(vector)
    ctx: Context = build_context(spec, events, prompt, vector, 20)
    return explain(ctx, compute_signals(ctx), spec.profile.index[operation], list(sources), spec_prob, demoted)


@pytest.fixture(scope="module")
def farm() -> PreparedSpec:
    return spec_of(FARM)


@pytest.fixture(scope="module")
def billing() -> PreparedSpec:
    return spec_of(BILLING)


@pytest.fixture(scope="module")
def tmdb() -> PreparedSpec:
    return spec_of(TMDB_SPEC)


def test_a_demoted_destructive_call_says_so(billing) -> None:
    assert reason(billing, "POST /invoices/{invoice}/void", [], demoted=True).startswith(DEMOTED_REASON)


def test_a_link_cites_the_response_only_when_it_was_sent(farm) -> None:
    answered = Event(endpoint="POST /api/jobs", response={"receipt": {"code": "T-9"}})
    assert reason(farm, "GET /frames/{ticket}", [answered]).startswith(
        "the spec links it from the response of POST /jobs")
    unanswered = reason(farm, "GET /frames/{ticket}", [Event(endpoint="POST /api/jobs")])
    assert unanswered.startswith("the spec links it from POST /jobs") and "response" not in unanswered


def test_acting_on_what_the_last_call_addressed(billing) -> None:
    assert reason(billing, "POST /invoices/{invoice}/pay", [Event(endpoint="GET /v1/invoices/in_1")]).startswith(
        "acts on what your last call addressed")


def test_an_id_the_last_call_lists(billing) -> None:
    assert reason(billing, "GET /invoices/{invoice}", [Event(endpoint="GET /v1/invoices")]).startswith(
        "needs an id that GET /invoices lists or creates")


def test_an_id_a_response_names_cites_the_response_only_when_it_was_sent(tmdb) -> None:
    network = "GET /network/{network_id}"
    assert reason(tmdb, network, [Event(endpoint="GET /3/tv/1399")]).startswith(
        "needs an id returned by GET /tv/{tv_id}")
    answered = Event(endpoint="GET /3/tv/1399", response={"id": 1399, "networks": [{"id": 49}]})
    assert reason(tmdb, network, [answered]).startswith("needs an id named in the response of GET /tv/{tv_id}")


def test_a_path_relation_to_the_last_call(billing) -> None:
    assert reason(billing, "GET /invoices/search", [Event(endpoint="GET /v1/invoices/in_1")]).startswith(
        "next to GET /invoices/{invoice}")


def test_what_the_prompt_asks_for_and_the_id_it_names(billing) -> None:
    text = reason(billing, "POST /invoices/{invoice}/void", [], "void invoice in_77Qx2")
    assert "does what the prompt asks for" in text and "takes the id the prompt names" in text


def test_matching_the_prompt(billing) -> None:
    assert "matches the prompt" in reason(billing, "GET /invoices", [], "anything", like=("GET /invoices",))


def test_leading_to_what_the_prompt_matches(tmdb) -> None:
    # Four operations as close to the prompt as each other, the search for a person not among them: the search
    # leads to one of them (the person it finds).
    like = ("GET /person/{person_id}", "GET /movie/popular", "GET /tv/popular", "GET /trending/{media_type}/{time_window}")
    text = reason(tmdb, "GET /search/person", [], "anything", like=like)
    assert "leads to an operation that matches the prompt" in text.split("; ") and "matches the prompt" not in text.split("; ")


def test_a_response_field_asked_for(tmdb) -> None:
    assert "its response has the birthday asked for" in reason(tmdb, "GET /person/{person_id}", [],
                                                               "what is the birthday")


def test_a_learned_habit_after_a_call_and_as_a_first_call(billing) -> None:
    after = reason(billing, "GET /invoices/{invoice}/lines", [Event(endpoint="GET /v1/invoices/in_1")],
                   spec_prob=0.4)
    assert "follows this call 40% of the time on this API" in after
    first = reason(billing, "GET /invoices", [], spec_prob=0.4)
    assert first == "the first call 40% of the time on this API" and "follows" not in first


def test_a_common_first_call_only_without_a_history(billing) -> None:
    assert reason(billing, "GET /invoices", [], sources=("popular",)) == "a common first call"
    assert "first call" not in reason(billing, "GET /invoices", [Event(endpoint="GET /v1/invoices/search")],
                                      sources=("popular",))


def test_the_language_model(billing) -> None:
    assert "suggested by the language model" in reason(billing, "GET /invoices", [], sources=("llm",))


def test_a_next_step_only_after_a_call(billing) -> None:
    last = [Event(endpoint="GET /v1/customers/cu_1/sources/src_1.json")]
    assert reason(billing, "POST /invoices", last, sources=("transitions",)) == \
        "a common next step after a call like your last one"
    assert reason(billing, "POST /invoices", [], sources=("transitions",)) == "proposed by transitions"
