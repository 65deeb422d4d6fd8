from __future__ import annotations

import json

import pytest

from ops.cli import main
from tests.support import FIXTURES, PACKAGED, TMDB_CASES

pytestmark = pytest.mark.usefixtures("packaged_cli")  # `--embedder packaged` finds its export


def test_predict_json(capsys, tiny_settings, tiny_model) -> None:
    code = main(["predict", "--spec", str(FIXTURES / "billing_oas30.yaml"), "--event", "GET /v1/invoices/in_5",
                 "--prompt", "pay this invoice", "-k", "3", "--json", "--model", str(tiny_settings.paths.model_dir),
                 *PACKAGED])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and len(out["predictions"]) == 3
    assert out["predictions"][0]["endpoint"] == "POST /invoices/{invoice}/pay"
    assert out["predictions"][0]["path"] == "/v1/invoices/in_5/pay"
    assert set(out["predictions"][0]) == {"endpoint", "method", "path", "params", "score", "reason", "sources",
                                          "query", "body", "filled_from", "missing"}


def test_eval_json_has_the_documented_keys(capsys, tiny_settings, tiny_model) -> None:
    code = main(["eval", "--cases", str(TMDB_CASES), "--json", "--model", str(tiny_settings.paths.model_dir),
                 *PACKAGED])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert set(out) == {"cases", "hit@1", "hit@3", "hit@5", "mrr", "ndcg@5", "params_exact", "values", "ece@1",
                        "p50_ms", "p95_ms", "peers", "best_peer", "above_best_peer", "not_above_at"}
    assert set(out["values"]) == {"by_place", "by_source"}
    assert 0.0 <= out["ece@1"] <= 1.0
    # The packaged MiniLM serves this ranker: its "tuned" peer would repeat "minilm".
    assert set(out["peers"]) == {"bm25", "minilm", "repeat+minilm"} and out["best_peer"] in out["peers"]
    assert out["above_best_peer"] == (not out["not_above_at"])
    assert all(out[m] > max(p[m] for p in out["peers"].values()) for m in ("hit@1", "hit@3", "mrr")
               if m not in out["not_above_at"])
    assert out["cases"] == 225 and out["params_exact"] is None  # TMDB cases carry no expected_params
    assert 0.0 <= out["hit@1"] <= out["hit@3"] <= out["hit@5"] <= 1.0


def test_eval_without_a_source_changes_the_candidates(capsys, tiny_settings, tiny_model) -> None:
    model = str(tiny_settings.paths.model_dir)
    main(["eval", "--cases", str(TMDB_CASES), "--json", "--model", model, *PACKAGED])
    full = json.loads(capsys.readouterr().out)
    main(["eval", "--cases", str(TMDB_CASES), "--json", "--model", model, *PACKAGED, "--without", "retrieval",
          "--without", "structure"])
    ablated = json.loads(capsys.readouterr().out)
    assert ablated["hit@5"] < full["hit@5"]


def test_training_without_data_is_a_clear_error(capsys, tmp_path) -> None:
    code = main(["train", "--data", str(tmp_path / "nothing-here"), "--out", str(tmp_path / "model")])
    assert code == 2
    assert "no training specs under" in capsys.readouterr().err


def test_eval_reads_specs_from_the_folder_specs_names(capsys, tmp_path, tiny_settings, tiny_model) -> None:
    # Cases kept apart from their specs (train/devsets over ../shared/data): `--specs` says where those are.
    case = {"id": "pay", "spec": "billing_oas30.yaml", "prompt": "pay this invoice",
            "events": [{"endpoint": "GET /v1/invoices/in_5"}], "expected": "POST /invoices/{invoice}/pay",
            "expected_params": {"invoice": "in_5"}}
    cases = tmp_path / "cases.jsonl"
    cases.write_text(json.dumps(case) + "\n")
    model = str(tiny_settings.paths.model_dir)
    assert main(["eval", "--cases", str(cases), "--json", "--model", model, *PACKAGED]) == 2
    assert "no spec file at" in capsys.readouterr().err
    main(["eval", "--cases", str(cases), "--specs", str(FIXTURES), "--json", "--model", model, *PACKAGED])
    out = json.loads(capsys.readouterr().out)
    assert out["hit@1"] == 1.0 and out["params_exact"] == 1.0


def test_a_case_expecting_no_operation_of_its_spec_is_refused(capsys, tmp_path, tiny_settings, tiny_model) -> None:
    # A typo in a case would otherwise count as a miss of the ranker and of every peer alike.
    case = {"id": "typo", "spec": "billing_oas30.yaml", "prompt": "pay this invoice", "events": [],
            "expected": "POST /invoices/{invoice}/pays"}
    cases = tmp_path / "cases.jsonl"
    cases.write_text(json.dumps(case) + "\n")
    model = str(tiny_settings.paths.model_dir)
    assert main(["eval", "--cases", str(cases), "--specs", str(FIXTURES), "--json", "--model", model, *PACKAGED]) == 2
    assert ("case typo: expected 'POST /invoices/{invoice}/pays' is not an operation of" in capsys.readouterr().err)
