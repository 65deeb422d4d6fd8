from __future__ import annotations

import json

import pytest

from ops.cli import main
from tests.support import FIXTURES


def run_json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, object]:
    code = main(argv)
    return code, json.loads(capsys.readouterr().out)


def test_inspect_reports_each_input_and_keeps_going(capsys, tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: 1\n  b: 2\n")
    code, out = run_json(capsys, ["spec", "inspect", str(FIXTURES / "pets_swagger2.yaml"), str(bad),
                                  str(FIXTURES / "events_oas31.json"), "--json"])
    assert code == 1  # one input failed
    assert [r["operations"] for r in out] == [6, None, 3]
    assert out[0]["title"] == "Pet Store" and out[0]["openapi"] == "2.0" and out[0]["error"] is None
    assert out[1]["error"].startswith("SpecSyntaxError: invalid YAML/JSON at line 2")
    assert set(out[0]) == {"source", "title", "openapi", "operations", "parse_ms", "error"}


def test_match_json(capsys) -> None:
    code, out = run_json(capsys, ["spec", "match", str(FIXTURES / "billing_oas30.yaml"),
                                  "GET /v1/invoices/in_123?expand=lines", "--json"])
    assert code == 0
    assert out == {"operation": "GET /invoices/{invoice}", "path_params": {"invoice": "in_123"},
                   "query_params": {"expand": "lines"}}
    code, out = run_json(capsys, ["spec", "match", str(FIXTURES / "billing_oas30.yaml"), "GET /nope", "--json"])
    assert code == 1 and out["operation"] is None


def test_bad_spec_is_a_clear_error_not_a_traceback(capsys) -> None:
    assert main(["spec", "match", "/no/such/spec.yaml", "GET /a"]) == 2
    assert "error: no spec file at /no/such/spec.yaml" in capsys.readouterr().err
