"""The dev suite: one row per set and their unweighted (macro) average, ranker and baseline alike."""

from __future__ import annotations

import json

import pytest

from ops.cli import main
from tests.support import FIXTURES, PACKAGED
from train.evaluate import peer_verdict
from train.suite import macro, verdict

pytestmark = pytest.mark.usefixtures("packaged_cli")  # `--embedder packaged` finds its export


def row(cases: int, hit1: float, exact: float | None, bm25: float = 0.0) -> dict:
    metrics = {"hit@1": hit1, "hit@3": hit1, "hit@5": hit1, "mrr": hit1, "ndcg@5": hit1}
    peers = {"minilm": {k: v / 2 for k, v in metrics.items()}, "bm25": {k: bm25 for k in metrics}}
    report = {"cases": cases, **metrics, "params_exact": exact, "peers": peers}
    peer_verdict(report)
    return report


def test_macro_weighs_every_set_the_same_whatever_its_size() -> None:
    rows = {"big": row(1000, 0.9, None), "small": row(10, 0.5, 0.8)}
    out = macro(rows)
    assert out["hit@1"] == 0.7 and out["peers"]["minilm"]["hit@1"] == 0.35  # not the case-weighted 0.896
    assert out["params_exact"] == 0.8  # over the sets that define it only
    assert out["cases"] == 1010 and out["sets"] == 2


def test_the_verdict_names_every_set_and_metric_not_above_the_best_peer() -> None:
    ahead, tied = row(100, 0.6, None, bm25=0.4), row(100, 0.5, None, bm25=0.5)
    assert ahead["best_peer"] == "bm25" and ahead["above_best_peer"]
    assert tied["best_peer"] == "bm25" and tied["not_above_at"] == ["hit@1", "hit@3", "mrr"]  # a tie is not above
    assert verdict({"a": ahead, "b": tied}) == {"above_best_peer_everywhere": False,
                                                "not_above": ["b hit@1", "b hit@3", "b mrr"]}
    assert verdict({"a": ahead})["above_best_peer_everywhere"]


def test_eval_suite_prints_a_row_per_set_and_the_macro(capsys, tiny_settings, tiny_model) -> None:
    model = str(tiny_settings.paths.model_dir)
    code = main(["eval", "--suite", str(FIXTURES / "dev_suite.yaml"), "--json", "--model", model, *PACKAGED])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and list(out["sets"]) == ["tmdb"] and out["skipped"] == []
    tmdb = out["sets"]["tmdb"]
    assert tmdb["cases"] == 225 and out["macro"]["hit@3"] == tmdb["hit@3"]
    assert out["macro"]["peers"]["minilm"]["mrr"] == tmdb["peers"]["minilm"]["mrr"]
    assert out["verdict"]["above_best_peer_everywhere"] == tmdb["above_best_peer"]
    main(["eval", "--suite", str(FIXTURES / "dev_suite.yaml"), "--model", model, *PACKAGED])
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:4] == ["set", "cases", "system", "hit@1"]
    assert table[1].split()[:3] == ["tmdb", "225", "ranker"]
    assert [line.split()[0] for line in table[2:5]] == ["bm25", "minilm", "repeat+minilm"]
    assert table[5].split()[:3] == ["MACRO", "225", "ranker"]
    assert table[-1].startswith("above the best peer on every set at hit@1, hit@3 and MRR: ")


def test_a_missing_set_is_named_not_dropped(tmp_path, capsys, tiny_settings, tiny_model) -> None:
    suite = tmp_path / "suite.yaml"
    suite.write_text((FIXTURES / "dev_suite.yaml").read_text() + "  - name: gone\n    cases: ${data}/nowhere.jsonl\n")
    model = str(tiny_settings.paths.model_dir)
    main(["eval", "--suite", str(suite), "--json", "--model", model, "--data", str(tmp_path), *PACKAGED])
    out = json.loads(capsys.readouterr().out)
    assert list(out["sets"]) == ["tmdb"] and out["skipped"] == [f"gone: {tmp_path}/nowhere.jsonl not found"]


def test_a_set_whose_specs_are_elsewhere_is_skipped(tmp_path, capsys, tiny_settings, tiny_model) -> None:
    # `--data` names a folder without the specs a set's cases refer to: that set is skipped, the rest evaluated.
    suite = tmp_path / "suite.yaml"
    extra = "  - name: elsewhere\n    cases: ${project}/train/devsets/tmdb_cases.jsonl\n    specs: ${data}\n"
    suite.write_text((FIXTURES / "dev_suite.yaml").read_text() + extra)
    model = str(tiny_settings.paths.model_dir)
    main(["eval", "--suite", str(suite), "--json", "--model", model, "--data", str(tmp_path), *PACKAGED])
    out = json.loads(capsys.readouterr().out)
    assert list(out["sets"]) == ["tmdb"] and out["skipped"] == [f"elsewhere: spec {tmp_path}/tmdb_oas.json not found"]


def test_every_set_is_also_evaluated_in_the_other_style(tmp_path, capsys, tiny_settings, tiny_model) -> None:
    """`styles: [other]`: each set again with its API restyled, its style gap, and the set where the ranker is
    least above its best peer."""
    suite = tmp_path / "suite.yaml"
    suite.write_text("styles: [other]\n" + (FIXTURES / "dev_suite.yaml").read_text())
    model = str(tiny_settings.paths.model_dir)
    assert main(["eval", "--suite", str(suite), "--json", "--model", model, *PACKAGED]) == 0
    out = json.loads(capsys.readouterr().out)
    assert list(out["sets"]) == ["tmdb", "tmdb@other"] and out["sets"]["tmdb@other"]["cases"] == 225
    assert out["style_gap"] == {"tmdb@other": pytest.approx(out["sets"]["tmdb"]["hit@1"] - out["sets"]["tmdb@other"]["hit@1"])}
    margins = {n: r["hit@1"] - max(p["hit@1"] for p in r["peers"].values()) for n, r in out["sets"].items()}
    assert out["worst"] == {"set": min(margins, key=margins.get), "hit@1_margin": pytest.approx(min(margins.values()), abs=1e-4)}
    assert out["macro"]["sets"] == 2  # a restyled set weighs as much as any other
