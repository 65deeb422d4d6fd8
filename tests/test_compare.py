"""`opensesame compare`: models before and after a change, paired seed by seed, judged on the mean macro."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ops.cli import main


def _model_dir(root: Path, name: str, sets: dict[str, float]) -> Path:
    """A model directory as `opensesame train` leaves it, as far as the comparison reads it: report.json's suite."""
    rows = {s: {"cases": 10, "hit@1": v, "hit@3": v + 0.2, "mrr": v + 0.1} for s, v in sets.items()}
    macro = {m: sum(r[m] for r in rows.values()) / len(rows) for m in ("hit@1", "hit@3", "mrr")}
    directory = root / name
    directory.mkdir()
    (directory / "report.json").write_text(json.dumps({"model_version": name, "dev_suite": {"sets": rows, "macro": macro}}))
    return directory


def test_a_gain_on_one_seed_and_set_is_weighed_against_the_others(tmp_path, capsys) -> None:
    before = [_model_dir(tmp_path, "b7", {"tmdb": 0.6, "bfcl": 0.5}), _model_dir(tmp_path, "b13", {"tmdb": 0.6, "bfcl": 0.4})]
    after = [_model_dir(tmp_path, "a7", {"tmdb": 0.7, "bfcl": 0.5}), _model_dir(tmp_path, "a13", {"tmdb": 0.5, "bfcl": 0.3})]
    assert main(["compare", "--before", *map(str, before), "--after", *map(str, after), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [p["label"] for p in result["pairs"]] == ["b7 -> a7", "b13 -> a13"]
    assert result["pairs"][0]["delta"]["hit@1"] == pytest.approx(0.05)  # seed 7 alone says "better"
    assert result["mean"]["delta"]["hit@1"] == pytest.approx(-0.025)  # the mean over seeds says otherwise
    assert result["sets"]["tmdb"]["delta"]["hit@1"] == pytest.approx(0.0)
    assert result["sets"]["bfcl"]["delta"]["mrr"] == pytest.approx(-0.05)
    # bfcl falls by 0.05, within its seeds' spread (0.5 and 0.4 before): noise, not a fall
    assert result["worst"] == {"set": "bfcl", "delta": pytest.approx({"hit@1": -0.05, "hit@3": -0.05, "mrr": -0.05}),
                               "spread": 0.1, "falls": False}
    assert result["leave_one_out"]["bfcl"]["hit@1"] == pytest.approx(0.0)  # without bfcl, tmdb: no change

    assert main(["compare", "--before", *map(str, before), "--after", *map(str, after)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert "| mean | 0.525 / 0.725 / 0.625 | 0.500 / 0.700 / 0.600 | **-0.025 / -0.025 / -0.025** |" in table
    assert "| bfcl | 0.450 / 0.650 / 0.550 | 0.400 / 0.600 / 0.500 | -0.050 / -0.050 / -0.050 |" in table
    assert "worst set: bfcl -0.050 hit@1 (seeds' spread 0.100): does not fall" in table


def test_a_set_that_falls_beyond_its_seeds_spread_is_not_kept_whatever_the_macro(tmp_path) -> None:
    from train.compare import compare, load_suite_report

    before = [_model_dir(tmp_path, f"b{s}", {"tmdb": 0.6, "bfcl": 0.5, "bfcl@other": 0.4}) for s in (7, 13)]
    after = [_model_dir(tmp_path, f"a{s}", {"tmdb": 0.9, "bfcl": 0.5, "bfcl@other": 0.3}) for s in (7, 13)]
    result = compare([load_suite_report(p) for p in before], [load_suite_report(p) for p in after], ["7", "13"])
    assert result["mean"]["delta"]["hit@1"] == pytest.approx(0.0667, abs=1e-4)  # the macro rises
    assert result["worst"]["set"] == "bfcl@other" and result["worst"]["falls"]  # and a restyled set falls
    assert result["leave_one_out"]["tmdb"]["hit@1"] == pytest.approx(-0.05)  # the gain is tmdb's alone
    assert set(result["leave_one_out"]) == {"tmdb", "bfcl"}  # a set leaves with its restyled version


def test_unpaired_or_unreadable_reports_are_clear_errors(tmp_path, capsys) -> None:
    one = _model_dir(tmp_path, "b7", {"tmdb": 0.6})
    assert main(["compare", "--before", str(one), str(one), "--after", str(one)]) == 2
    assert "as many reports after the change as before it, one per seed (2 before, 1 after)" in capsys.readouterr().err
    stray = tmp_path / "stray.json"
    stray.write_text(json.dumps({"hit@1": 0.5}))
    assert main(["compare", "--before", str(stray), "--after", str(one)]) == 2
    assert "holds no dev suite" in capsys.readouterr().err
