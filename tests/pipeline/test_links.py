"""A spec's OpenAPI `links`: read into the catalogue, a candidate source and a feature (`linked_last`), and the
values they point at fill the linked call's parameters where no name would."""

from __future__ import annotations

from pipeline.ranking.context import Event, build_context
from pipeline.ranking.link_values import MadeCall, link_values
from pipeline.ranking.signals import compute_signals
from pipeline.settings import FetchSettings
from pipeline.spec.catalogue import Link
from pipeline.spec.load import load_catalogue
from pipeline.spec.matching import CallMatch
from tests.support import FIXTURES

FARM = FIXTURES / "links_oas30.yaml"
GRAPHHOPPER = FIXTURES / "real" / "graphhopper.com__1.0.0__openapi.yaml"
SUBMITTED = Event(endpoint="POST /api/jobs", params={"scene": "forest"}, response={"receipt": {"code": "T-9"}})


def test_links_of_success_responses_resolve_to_operations_of_the_spec() -> None:
    catalogue = load_catalogue(FARM, FetchSettings())
    submit = catalogue.by_id()["POST /jobs"]
    # By operationId (its parameter's location prefix dropped), by a local operationRef, through components/links;
    # a remote operationRef and an unknown operationId are dropped.
    assert {link.target: link.parameters for link in submit.links} == {
        "GET /frames/{ticket}": (("ticket", "$response.body#/receipt/code"),),
        "DELETE /jobs/{job}": (("job", "{$response.body#/receipt/code}"),),
        "GET /scenes/{scene_name}": (("scene_name", "$request.body#/scene"), ("quality", "high")),
    }
    # A link on an error response is no next step.
    assert [op.id for op in catalogue.operations if op.links] == ["POST /jobs"]
    optimize = load_catalogue(GRAPHHOPPER, FetchSettings()).by_id()["POST /vrp/optimize"]
    assert optimize.links == (Link(target="GET /vrp/solution/{jobId}", parameters=(("jobId", "$response.body#/job_id"),)),)


def test_link_expressions_read_the_call_that_carried_them() -> None:
    link = Link(target="GET /x/{a}", parameters=(
        ("a", "$request.path.job"), ("b", "$request.query.page"), ("c", "$request.body#/items/0/sku"),
        ("d", "$response.header.Location"), ("e", "7"), ("f", "$response.body#/missing"), ("g", "$response.body#/id"),
    ))
    match = CallMatch(method="GET", path="/jobs/j1", operation=None, path_params={"job": "j1"},
                      query_params={"page": "3"})
    made = MadeCall(match, params={"items": [{"sku": "S-1"}]}, response={"id": 41})
    assert link_values(link, made) == {"a": "j1", "b": "3", "c": "S-1", "e": "7", "g": "41"}


def test_a_declared_link_is_a_candidate_and_the_linked_last_feature(predictor) -> None:
    catalogue = load_catalogue(FARM, FetchSettings())
    for spec, linked in ((predictor.prepare(catalogue), True), (predictor.prepare(catalogue.without_links()), False)):
        signals = compute_signals(build_context(spec, [SUBMITTED], "", None, 20))
        frames = spec.profile.index["GET /frames/{ticket}"]
        # Nothing but the link says a ticket comes from a submitted job.
        assert bool(signals.linked_last[frames]) is linked
        assert signals.unfillable[frames] == (0 if linked else 1)


def test_the_linked_value_fills_the_linked_calls_and_says_why(predictor) -> None:
    farm = predictor.prepare(load_catalogue(FARM, FetchSettings()))
    outcome = predictor.predict(farm, [SUBMITTED], "", k=10)
    by_endpoint = {p.endpoint: p for p in outcome.predictions}
    frames = by_endpoint["GET /frames/{ticket}"]
    assert (frames.path, frames.params) == ("/api/frames/T-9", {"ticket": "T-9"})
    assert frames.reason.startswith("the spec links it from the response of POST /jobs")
    assert by_endpoint["DELETE /jobs/{job}"].params == {"job": "T-9"}
    assert by_endpoint["GET /scenes/{scene_name}"].params == {"scene_name": "forest"}
    ranked = [p.endpoint for p in outcome.predictions]
    assert ranked.index("GET /frames/{ticket}") < ranked.index("GET /reports/{report_id}")
    unlinked = predictor.predict(predictor.prepare(load_catalogue(FARM, FetchSettings()).without_links()), [SUBMITTED], "", k=10)
    assert next(p for p in unlinked.predictions if p.endpoint == "GET /frames/{ticket}").params == {}


def test_graphhoppers_job_id_reaches_its_solution(predictor) -> None:
    spec = predictor.prepare(load_catalogue(GRAPHHOPPER, FetchSettings()))
    optimized = Event(endpoint="POST /api/1/vrp/optimize", response={"job_id": "44886560-b584-4a8b"})
    # Every candidate: what is asserted is the value carried and the reason, not the tests' tiny model's rank.
    outcome = predictor.predict(spec, [optimized], "", k=50)
    solution = next(p for p in outcome.predictions if p.endpoint == "GET /vrp/solution/{jobId}")
    assert solution.path == "/api/1/vrp/solution/44886560-b584-4a8b"
    assert solution.reason.startswith("the spec links it from the response of POST /vrp/optimize")
