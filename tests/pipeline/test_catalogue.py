from __future__ import annotations

import json

import pytest

from pipeline.errors import MissingPathsError, NotASpecError, SpecNotFoundError, SpecSyntaxError, SpecTooLargeError
from pipeline.settings import FetchSettings
from pipeline.spec.catalogue import Catalogue, is_destructive
from pipeline.spec.load import load_catalogue
from pipeline.spec.source import parse_text, repair_yaml
from tests.support import FIXTURES, REAL, TMDB_SPEC

FETCH = FetchSettings()


def load(name: str) -> Catalogue:
    return load_catalogue(FIXTURES / name, FETCH)


def test_oas30_operations_refs_and_server_prefix() -> None:
    cat = load("billing_oas30.yaml")
    ops = cat.by_id()
    assert cat.openapi == "3.0.3" and cat.title == "Billing"
    assert cat.base_path == "/v1"  # server variable {version} substituted with its default
    assert "POST /invoices/{invoice}/pay" in ops  # path item given as a $ref
    retrieve = ops["GET /invoices/{invoice}"]
    # path-level parameter from a $ref, its schema type from a $ref in turn
    assert [(p.name, p.location, p.required, p.type) for p in retrieve.parameters] == [("invoice", "path", True, "string")]
    listing = ops["GET /invoices"]
    assert {p.name for p in listing.parameters} == {"limit", "customer"}
    assert ops["POST /invoices"].has_body and not listing.has_body
    assert listing.operation_id == "ListInvoices" and listing.summary == "List all invoices"


def test_reference_cycle_and_recursive_schema_do_not_loop() -> None:
    ops = load("billing_oas30.yaml").by_id()
    # Cycle -> CycleAgain -> Cycle resolves to nothing rather than recursing forever.
    assert [p.name for p in ops["GET /invoices/{invoice}/lines"].parameters] == ["invoice"]


def test_destructive_flags() -> None:
    ops = load("billing_oas30.yaml").by_id()
    assert ops["DELETE /invoices/{invoice}"].destructive
    assert ops["POST /invoices/{invoice}/void"].destructive
    assert not ops["POST /invoices/{invoice}/pay"].destructive
    assert not ops["GET /invoices"].destructive
    assert is_destructive("POST", "/v1/subscriptions/{id}/cancel", None)
    assert is_destructive("POST", "/tokens/{t}", "RevokeToken")
    assert not is_destructive("GET", "/v1/cancellations/{id}/status", "GetCancellationStatus")


def test_swagger2_base_path_body_formdata_and_param_override() -> None:
    cat = load("pets_swagger2.yaml")
    ops = cat.by_id()
    assert cat.openapi == "2.0" and cat.base_path == "/api/v2"
    get_pet = ops["GET /pets/{petId}"]
    assert [(p.name, p.type, p.description) for p in get_pet.parameters] == [("petId", "integer", "operation-level")]
    assert ops["DELETE /pets/{petId}"].parameters[0].description == "path-level"
    assert ops["DELETE /pets/{petId}"].deprecated and ops["DELETE /pets/{petId}"].destructive
    assert ops["POST /pets"].has_body and ops["POST /pets/{petId}/photos"].has_body
    status = ops["PUT /pets/{petId}/status/{status}"].parameters[1]
    assert status.enum == ("available", "pending", "sold")
    # The body's fields: the `in: body` parameter's schema, and a form's formData parameters.
    assert [(f.name, f.location, f.type) for f in ops["POST /pets"].body] == [("id", "body", "integer"),
                                                                              ("parent", "body", "object")]
    assert [(f.name, f.type) for f in ops["POST /pets/{petId}/photos"].body] == [("file", "file")]


def test_a_request_bodys_top_level_fields_required_first_typed_with_defaults() -> None:
    """OAS 3: JSON and form bodies, fields composed by `allOf` with their `required`, fields the server writes
    (`readOnly`) left out; a query parameter's default kept."""
    ops = load("requests_oas30.yaml").by_id()
    repos = {f.name: f for f in ops["POST /user/repos"].body}
    assert next(iter(repos)) == "name" and repos["name"].required and "id" not in repos
    assert (repos["private"].type, repos["private"].default, repos["private"].required) == ("boolean", False, False)
    issue = ops["POST /repos/{owner}/{repo}/issues"].body
    assert [(f.name, f.required) for f in issue] == [("title", True), ("body", False), ("labels", False),
                                                      ("assignees", False)]
    charge = {f.name: f for f in ops["POST /charges"].body}  # application/x-www-form-urlencoded
    assert charge["amount"].required and "smallest currency unit" in charge["amount"].description
    sort = next(p for p in ops["GET /repos/{owner}/{repo}/issues"].parameters if p.name == "sort")
    assert (sort.enum, sort.default) == (("created", "updated", "comments"), "created")
    assert ops["GET /customers"].body == ()


def test_oas31_nullable_type_lists_and_webhooks_ignored() -> None:
    cat = load("events_oas31.json")
    assert cat.openapi == "3.1.0" and cat.base_path == ""
    assert sorted(cat.by_id()) == ["GET /events", "GET /events/{event_id}", "POST /events/{event_id}/revoke"]
    assert cat.by_id()["GET /events"].parameters[0].type == "string"


def test_real_specs_parse() -> None:
    tmdb = load_catalogue(TMDB_SPEC, FETCH)
    assert len(tmdb.operations) == 54 and tmdb.base_path == "/3"
    adyen = load_catalogue(REAL / "adyen.com__PayoutService__30__openapi.yaml", FETCH)  # tabs: tolerant path
    assert adyen.openapi == "3.1.0" and len(adyen.operations) > 0
    posty = load_catalogue(REAL / "posty-api.herokuapp.com__v1__swagger.yaml", FETCH)
    assert posty.openapi == "2.0"


def test_inline_string_and_object_sources() -> None:
    text = (FIXTURES / "events_oas31.json").read_text()
    from_text = load_catalogue(text, FETCH)
    from_obj = load_catalogue(json.loads(text), FETCH)
    assert len(from_text.operations) == len(from_obj.operations) == 3
    yaml_inline = "openapi: 3.0.0\ninfo: {title: t, version: '1'}\npaths:\n  /a:\n    get: {}\n"
    assert load_catalogue(yaml_inline, FETCH).by_id().keys() == {"GET /a"}


def test_catalogue_round_trips_as_json() -> None:
    cat = load("billing_oas30.yaml")
    assert Catalogue.model_validate_json(cat.model_dump_json()) == cat


@pytest.mark.parametrize(
    "text",
    [
        "a:\n  b: |-\n    \t\n    text after a tab-only line\n",  # tab in a block scalar
        "operator: =\n",  # the YAML 1.1 value tag
        "a: one\u2028two\n",  # Unicode line separator
        "a: bad\x83char\n",  # C1 control character
    ],
)
def test_tolerant_yaml_quirks(text: str) -> None:
    assert isinstance(parse_text(text), dict)
    assert repair_yaml("x:\n  \t\n") == "x:\n\n"


def test_errors_say_what_to_fix(tmp_path) -> None:
    with pytest.raises(SpecSyntaxError, match=r"at line 3"):
        parse_text("a: 1\nb: 2\n  c: 3\nd: 4\n")
    with pytest.raises(NotASpecError, match="not an OpenAPI/Swagger document"):
        load_catalogue({"hello": "world"}, FETCH)
    with pytest.raises(NotASpecError, match="add the version field"):
        load_catalogue({"info": {}, "paths": {"/a": {"get": {}}}}, FETCH)
    with pytest.raises(MissingPathsError, match="no `paths`"):
        load_catalogue({"openapi": "3.0.0", "info": {}}, FETCH)
    with pytest.raises(MissingPathsError, match="holds no operations"):
        load_catalogue({"openapi": "3.0.0", "info": {}, "paths": {"/a": {"summary": "x"}}}, FETCH)
    with pytest.raises(NotASpecError, match="expected an OpenAPI/Swagger object"):
        load_catalogue("- just\n- a list\n", FETCH)
    with pytest.raises(SpecNotFoundError, match="no spec file at"):
        load_catalogue(str(tmp_path / "missing.yaml"), FETCH)
    big = tmp_path / "big.json"
    big.write_text(json.dumps({"openapi": "3.0.0", "x": "y" * 2000}))
    with pytest.raises(SpecTooLargeError, match="larger than the 1000 byte limit"):
        load_catalogue(big, FetchSettings(max_bytes=1000))
