from __future__ import annotations

import pytest

from pipeline.settings import FetchSettings
from pipeline.spec.load import load_catalogue
from pipeline.spec.matching import CallMatcher, parse_call
from tests.support import FIXTURES, TMDB_SPEC


@pytest.fixture(scope="module")
def billing() -> CallMatcher:
    return CallMatcher(load_catalogue(FIXTURES / "billing_oas30.yaml", FetchSettings()))


@pytest.mark.parametrize(
    ("call", "operation", "path_params"),
    [
        ("GET /v1/invoices/in_123", "GET /invoices/{invoice}", {"invoice": "in_123"}),
        ("GET /invoices/in_123", "GET /invoices/{invoice}", {"invoice": "in_123"}),  # without the prefix
        ("get https://api.billing.example/v1/invoices/in_1/", "GET /invoices/{invoice}", {"invoice": "in_1"}),
        ("GET /v1/invoices/search?query=total>10", "GET /invoices/search", {}),  # literal beats parameter
        ("POST /v1/invoices/in_9/pay", "POST /invoices/{invoice}/pay", {"invoice": "in_9"}),
        ("GET /v1/invoices/in%2F7", "GET /invoices/{invoice}", {"invoice": "in/7"}),  # encoded slash stays
        ("GET /v1/invoices/{invoice}", "GET /invoices/{invoice}", {}),  # a template binds nothing
        ("GET /invoices/{id}/lines", "GET /invoices/{invoice}/lines", {}),
        ("GET /customers/cu_1/sources/src_2.json", "GET /customers/{customer}/sources/{id}.json",
         {"customer": "cu_1", "id": "src_2"}),  # mixed segment beats a bare parameter
        ("GET /customers/cu_1/sources/src_2", "GET /customers/{customer}/sources/{id}",
         {"customer": "cu_1", "id": "src_2"}),
    ],
)
def test_match_call(billing: CallMatcher, call: str, operation: str, path_params: dict[str, str]) -> None:
    match = billing.match(call)
    assert match.operation is not None and match.operation.id == operation
    assert match.path_params == path_params


def test_query_parameters_are_returned(billing: CallMatcher) -> None:
    match = billing.match("GET /v1/invoices?limit=3&expand=lines&expand=customer")
    assert match.query_params == {"limit": "3", "expand": ["lines", "customer"]}


@pytest.mark.parametrize(
    "call",
    ["PATCH /v1/invoices/in_1", "GET /v1/nothing/here", "GET /v1/invoices/in_1/pay", "DELETE /v1/invoices"],
)
def test_unmatched_calls_are_results_not_errors(billing: CallMatcher, call: str) -> None:
    match = billing.match(call)
    assert not match.matched and match.operation is None


def test_server_prefix_from_swagger_base_path() -> None:
    pets = CallMatcher(load_catalogue(FIXTURES / "pets_swagger2.yaml", FetchSettings()))
    match = pets.match("PUT /api/v2/pets/42/status/sold")
    assert match.operation is not None and match.operation.id == "PUT /pets/{petId}/status/{status}"
    assert match.path_params == {"petId": "42", "status": "sold"}


def test_tmdb_templates_and_concrete_calls() -> None:
    tmdb = CallMatcher(load_catalogue(TMDB_SPEC, FetchSettings()))
    assert tmdb.match("GET /movie/top_rated").operation.id == "GET /movie/top_rated"  # not /movie/{movie_id}
    assert tmdb.match("GET /3/movie/603/credits").path_params == {"movie_id": "603"}


def test_parse_call() -> None:
    assert parse_call("delete  /a/b/?x=1#frag") == ("DELETE", "/a/b", {"x": "1"})


def test_operations_that_share_a_path_by_its_fragment() -> None:
    """APIs.guru's AWS specs keep operations on one path apart by a fragment of the path key: each is matched by
    the fragment the call repeats (as a prediction writes it), or by the query parameter it names."""
    catalogue = load_catalogue(FIXTURES / "fragment_paths_oas30.yaml", FetchSettings())
    matcher = CallMatcher(catalogue)
    assert {op.id for op in catalogue.operations} >= {"POST /#X-Amz-Target=Pipeline.List",
                                                      "POST /#X-Amz-Target=Pipeline.Delete"}
    for op in catalogue.operations:  # every operation's own endpoint is matched back to it
        assert matcher.match(f"{op.method} {op.path}").operation == op, op.id
    assert matcher.match("POST /#X-Amz-Target=Pipeline.Delete").operation.id == "POST /#X-Amz-Target=Pipeline.Delete"
    untag = matcher.match("DELETE /tags/arn_1?tagKeys=a")
    assert untag.operation.id == "DELETE /tags/{id}#tagKeys" and untag.path_params == {"id": "arn_1"}
    assert matcher.match("DELETE /tags/arn_1").operation.id == "DELETE /tags/{id}"  # no fragment named: the plain one
    assert matcher.match("POST /").matched  # a bare call still names one of the operations on its path
    picture = matcher.match("GET /users/u_1/pic?key=k_9")  # a query in the path key
    assert picture.operation.id == "GET /users/{userid}/pic?key={APIKEY}" and picture.path_params == {"userid": "u_1"}
