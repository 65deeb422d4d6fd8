"""`opensesame compare`: models before and after a change, paired seed by seed, judged on the worst set's margin
over its best peer and the macro with each set left out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ops.cli import main
from pipeline.errors import OpenSesameError


def _model_dir(root: Path, name: str, sets: dict[str, float], peers: dict[str, float] | None = None) -> Path:
    """A model directory as `opensesame train` leaves it, as far as the comparison reads it: report.json's suite
    (with `peers`, each set's one peer hit@1 as `eval --suite --json` writes it)."""
    rows = {s: {"cases": 10, "hit@1": v, "hit@3": v + 0.2, "mrr": v + 0.1} for s, v in sets.items()}
    for s, v in (peers or {}).items():
        rows[s]["peers"] = {"tuned": {"hit@1": v, "hit@3": v, "mrr": v}, "bm25": {"hit@1": v - 0.1, "hit@3": v, "mrr": v}}
    macro = {m: sum(r[m] for r in rows.values()) / len(rows) for m in ("hit@1", "hit@3", "mrr")}
    directory = root / name
    directory.mkdir()
    (directory / "report.json").write_text(json.dumps({"model_version": name, "dev_suite": {"sets": rows, "macro": macro}}))
    return directory


def test_a_gain_on_one_seed_and_set_is_weighed_against_the_others(tmp_path, capsys) -> None:
    peers = {"tmdb": 0.3, "bfcl": 0.4}
    before = [_model_dir(tmp_path, "b7", {"tmdb": 0.6, "bfcl": 0.5}, peers),
              _model_dir(tmp_path, "b13", {"tmdb": 0.6, "bfcl": 0.4}, peers)]
    after = [_model_dir(tmp_path, "a7", {"tmdb": 0.7, "bfcl": 0.5}), _model_dir(tmp_path, "a13", {"tmdb": 0.5, "bfcl": 0.3})]
    assert main(["compare", "--before", *map(str, before), "--after", *map(str, after), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [p["label"] for p in result["pairs"]] == ["b7 -> a7", "b13 -> a13"]
    assert result["pairs"][0]["delta"]["hit@1"] == pytest.approx(0.05)  # seed 7 alone says "better"
    assert result["mean"]["delta"]["hit@1"] == pytest.approx(-0.025)  # the mean over seeds says otherwise
    assert result["sets"]["tmdb"]["delta"]["hit@1"] == pytest.approx(0.0)
    assert result["sets"]["bfcl"]["delta"]["mrr"] == pytest.approx(-0.05)
    # bfcl, 0.05 above its best peer (0.4), is the worst set and falls to 0.00 above it
    assert result["worst"] == {"before": {"set": "bfcl", "margin": 0.05}, "after": {"set": "bfcl", "margin": 0.0},
                               "change": -0.05, "falls": True}
    # ... by 0.05, within its seeds' spread (0.5 and 0.4 before): noise alone could do it, reported beside
    assert result["largest_fall"] == {"set": "bfcl", "spread": 0.1, "beyond_spread": False,
                                      "delta": pytest.approx({"hit@1": -0.05, "hit@3": -0.05, "mrr": -0.05})}
    assert result["leave_one_out"]["bfcl"]["delta"]["hit@1"] == pytest.approx(0.0)  # without bfcl, tmdb: no change
    assert result["kept"] is False

    assert main(["compare", "--before", *map(str, before), "--after", *map(str, after)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert "| mean | 0.525 / 0.725 / 0.625 | 0.500 / 0.700 / 0.600 | **-0.025 / -0.025 / -0.025** |" in table
    assert "| bfcl | 0.450 / 0.650 / 0.550 | 0.400 / 0.600 / 0.500 | -0.050 / -0.050 / -0.050 | 0.400 |" in table
    assert ("worst set (least above its best peer at hit@1): bfcl +0.050 before, bfcl +0.000 after: falls"
            in table)
    assert "not kept (the worst set falls, or the macro with a set left out falls beyond its seeds' spread)" in table


def test_a_gain_where_the_ranker_is_weakest_is_kept_though_a_strong_set_falls(tmp_path) -> None:
    from train.compare import compare, load_suite_report

    # the ranker is below its peer on bfcl@other; the change lifts it there and costs tmdb, far above its peer
    peers = {"tmdb": 0.2, "bfcl": 0.4, "bfcl@other": 0.4, "agent": 0.3}
    before = [_model_dir(tmp_path, f"b{s}", {"tmdb": 0.8, "bfcl": 0.5, "bfcl@other": 0.3, "agent": 0.5}, peers)
              for s in (7, 13)]
    after = [_model_dir(tmp_path, f"a{s}", {"tmdb": 0.75, "bfcl": 0.5, "bfcl@other": 0.38, "agent": 0.56})
             for s in (7, 13)]
    result = compare([load_suite_report(p) for p in before], [load_suite_report(p) for p in after], ["7", "13"])
    assert result["worst"]["before"] == {"set": "bfcl@other", "margin": -0.1}
    assert result["worst"]["after"] == {"set": "bfcl@other", "margin": -0.02} and not result["worst"]["falls"]
    assert result["largest_fall"]["set"] == "tmdb" and result["largest_fall"]["beyond_spread"]  # reported beside
    assert set(result["leave_one_out"]) == {"tmdb", "bfcl", "agent"}  # a set leaves with its restyled version
    assert result["leave_one_out"]["bfcl"]["delta"]["hit@1"] == pytest.approx(0.005)  # not bfcl@other's gain alone
    assert result["kept"] is True


def test_a_gain_one_set_alone_carries_is_not_kept(tmp_path) -> None:
    from train.compare import compare, load_suite_report

    before = [_model_dir(tmp_path, f"b{s}", {"tmdb": 0.6, "bfcl": 0.5, "bfcl@other": 0.4}) for s in (7, 13)]
    after = [_model_dir(tmp_path, f"a{s}", {"tmdb": 0.9, "bfcl": 0.49, "bfcl@other": 0.4}) for s in (7, 13)]
    reports = [load_suite_report(p) for p in before], [load_suite_report(p) for p in after]
    with pytest.raises(OpenSesameError, match="no peers' scores for tmdb, bfcl, bfcl@other: give --peers"):
        compare(*reports, ["7", "13"])
    result = compare(*reports, ["7", "13"], peers={"tmdb": 0.2, "bfcl": 0.2, "bfcl@other": 0.2})
    assert result["mean"]["delta"]["hit@1"] == pytest.approx(0.0967, abs=1e-4)  # the macro rises
    assert not result["worst"]["falls"]  # the worst set (bfcl@other, +0.2) holds
    # but the gain is tmdb's alone: without it the rest falls, where the seeds agreed to the last digit
    assert result["leave_one_out"]["tmdb"] == {"delta": pytest.approx({"hit@1": -0.005, "hit@3": -0.005, "mrr": -0.005}),
                                               "spread": 0.0, "falls": True}
    assert result["kept"] is False


def test_the_peers_come_from_an_eval_report(tmp_path, capsys) -> None:
    before = [_model_dir(tmp_path, "b7", {"tmdb": 0.6})]
    after = [_model_dir(tmp_path, "a7", {"tmdb": 0.65})]
    peers = _model_dir(tmp_path, "eval", {"tmdb": 0.1}, peers={"tmdb": 0.62}) / "report.json"
    assert main(["compare", "--before", str(before[0]), "--after", str(after[0]), "--peers", str(peers),
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["worst"]["before"] == {"set": "tmdb", "margin": -0.02}
    assert result["worst"]["after"] == {"set": "tmdb", "margin": 0.03}
    assert result["kept"] is True


def test_unpaired_or_unreadable_reports_are_clear_errors(tmp_path, capsys) -> None:
    one = _model_dir(tmp_path, "b7", {"tmdb": 0.6})
    assert main(["compare", "--before", str(one), str(one), "--after", str(one)]) == 2
    assert "as many reports after the change as before it, one per seed (2 before, 1 after)" in capsys.readouterr().err
    stray = tmp_path / "stray.json"
    stray.write_text(json.dumps({"hit@1": 0.5}))
    assert main(["compare", "--before", str(stray), "--after", str(one)]) == 2
    assert "holds no dev suite" in capsys.readouterr().err
