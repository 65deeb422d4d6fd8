"""An eval set in another API style: the same calls, written as another team would have written the API."""

from __future__ import annotations

import json

from pipeline.settings import FetchSettings
from pipeline.spec.load import load_catalogue
from tests.support import FIXTURES, PROJECT_ROOT
from train.evaluate import Case
from train.restyle import is_rpc, name_words, restyle_set, restyle_spec

RPC_SPEC = {
    "openapi": "3.0.3",
    "info": {"title": "bank", "version": "1"},
    "paths": {
        "/account/GetUserToken": {"post": {
            "operationId": "GetUserToken", "summary": "Get a token.", "description": "Get the user token by password.",
            "requestBody": {"content": {"application/json": {"schema": {
                "type": "object", "required": ["username"],
                "properties": {"username": {"type": "string"}, "password": {"type": "string"}}}}}},
            "responses": {"200": {"description": "ok"}}}},
        "/account/DeleteAccount": {"post": {"operationId": "DeleteAccount", "responses": {"200": {"description": "ok"}}}},
        "/account/QueryBalance": {"get": {"operationId": "QueryBalance", "responses": {"200": {"description": "ok"}}}},
        "/files/mkdir": {"post": {"operationId": "mkdir", "responses": {"200": {"description": "ok"}}}},
    },
}


def test_function_names_split_into_words_in_any_case() -> None:
    assert name_words("GetUserToken") == ["get", "user", "token"]
    assert name_words("get_zipcode_based_on_city") == ["get", "zipcode", "based", "on", "city"]
    assert name_words("searchHTTPRoutes") == ["search", "http", "routes"]


def test_an_rpc_api_becomes_resource_paths_whose_verb_is_the_method() -> None:
    assert is_rpc(RPC_SPEC)
    restyled, _plan = restyle_spec(RPC_SPEC)
    assert sorted((m, p) for p, item in restyled["paths"].items() for m in item) == [
        ("delete", "/v2/account/account"), ("get", "/v2/account/balance"), ("get", "/v2/account/user-token"),
        ("post", "/v2/files/mkdir")]  # mkdir names no verb: its method stays
    token = restyled["paths"]["/v2/account/user-token"]["get"]
    assert "requestBody" not in token  # a GET sends no body: its fields went to the query, required kept
    assert [(p["name"], p["in"], p["required"]) for p in token["parameters"]] == [
        ("username", "query", True), ("password", "query", False)]
    assert "operationId" not in token and "summary" not in token  # the description says it in more words
    assert token["description"] == "Get the user token by password."
    assert not is_rpc(restyled)


def test_a_resource_api_becomes_rpc_with_path_values_in_the_query(tmp_path) -> None:
    catalogue = load_catalogue(str(FIXTURES / "support_desk_oas30.yaml"), FetchSettings())
    case = Case(id="c1", spec="support_desk_oas30.yaml", prompt="cancel order W1",
                events=[{"endpoint": "GET /users/u_7?expand=orders"}, {"endpoint": "GET /orders/W1"}],
                expected="POST /orders/{order_id}/cancel", expected_params={"order_id": "W1"})
    [styled] = restyle_set([case], FIXTURES, tmp_path, FetchSettings())
    spec = json.loads((tmp_path / styled.spec).read_text())
    restyled = load_catalogue(str(tmp_path / styled.spec), FetchSettings())
    assert [e.endpoint for e in styled.events] == [
        "GET /v2/api/getUserDetails?user_id=u_7&expand=orders", "GET /v2/api/getOrderDetails?order_id=W1"]
    assert styled.expected == "POST /v2/api/cancelPendingOrder"
    assert styled.expected in {op.id for op in restyled.operations}
    assert styled.expected_params is None  # the value is in the query now, not a path parameter
    assert styled.prompt == case.prompt
    cancel = spec["paths"]["/v2/api/cancelPendingOrder"]["post"]
    assert {"name": "order_id", "in": "query", "required": True, "schema": {"type": "string"}} in cancel["parameters"]
    assert len(restyled.operations) == len(catalogue.operations)  # no two operations on one path


def test_restyling_is_deterministic(tmp_path) -> None:
    case = Case(id="c1", spec="support_desk_oas30.yaml", expected="GET /orders/{order_id}")
    first = restyle_set([case], FIXTURES, tmp_path / "a", FetchSettings())
    second = restyle_set([case], FIXTURES, tmp_path / "b", FetchSettings())
    assert first == second
    assert (tmp_path / "a" / first[0].spec).read_bytes() == (tmp_path / "b" / second[0].spec).read_bytes()


def test_training_specs_in_the_other_style_keep_their_sessions_answerable(minilm) -> None:
    """`training.restyled`: the same sessions, rendered for the restyled spec: every problem's history matches its
    operations there and its answer is one of them; the other specs' sessions do not change."""
    from pipeline.ranking.embedding import OperationEmbeddings
    from train.dataset import generate

    paths = [FIXTURES / "support_desk_oas30.yaml", FIXTURES / "billing_oas30.yaml", FIXTURES / "pets_swagger2.yaml"]
    catalogues = [(p.name, load_catalogue(p, FetchSettings())) for p in paths]
    embeddings = OperationEmbeddings(minilm)
    plain = generate(catalogues, embeddings, seed=3, scale=2.0, history_fraction=0.0)
    styled = generate(catalogues, embeddings, seed=3, scale=2.0, history_fraction=0.0, restyled=1.0)
    assert sorted(styled.specs) == sorted(f"{p.name}@other" for p in paths)
    assert [(p.id, p.prompt) for p in plain.problems] == [(p.id, p.prompt) for p in styled.problems]
    for problem in styled.problems:
        spec = styled.specs[problem.spec]
        assert problem.expected in spec.profile.index
        assert all(spec.matcher.match(e.endpoint).matched for e in problem.events), problem.events
    assert any(p.expected.startswith("GET /v2/api/") for p in styled.problems)
    half = generate(catalogues, embeddings, seed=3, scale=2.0, history_fraction=0.0, restyled=0.5)
    kept = {n for n in half.specs if "@" not in n}
    assert [p.id for p in half.problems] == [p.id for p in plain.problems]
    assert [p for p in half.problems if p.spec in kept] == [p for p in plain.problems if p.spec in kept]


def test_the_restyle_command_writes_a_set_eval_reads(tmp_path, capsys) -> None:
    from ops.cli import main
    from train.evaluate import load_cases

    source = PROJECT_ROOT / "train" / "devsets" / "tmdb_cases.jsonl"
    assert main(["restyle", "--cases", str(source), "--out", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == f"225 cases over 1 restyled specs: {tmp_path / 'tmdb_cases.jsonl'}"
    original, styled = load_cases(source), load_cases(tmp_path / "tmdb_cases.jsonl")
    assert [c.id for c in styled] == [c.id for c in original]
    catalogue = load_catalogue(str(tmp_path / styled[0].spec), FetchSettings())
    assert {c.expected for c in styled} <= {op.id for op in catalogue.operations}
    assert all(op.path.startswith("/v2/api/") for op in catalogue.operations)  # TMDB's paths are resources: now RPC
