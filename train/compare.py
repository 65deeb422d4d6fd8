"""A change judged as decisions are taken: models before and after it, paired seed by seed, on the dev suite.

One seed's models spread macro hit@1 as widely as most changes move it (docs/decisions.md), so a change is judged on
the mean over seeds of the macro average, with every set's mean beside it: a gain on one set that costs another is
not a gain. Each input is a model directory (the `dev_suite` of the report.json `opensesame train` writes) or the
JSON of `opensesame eval --suite --json`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.errors import OpenSesameError
from train.metrics import VERDICT_METRICS

Scores = dict[str, float]


def load_suite_report(path: Path) -> dict[str, Any]:
    """The suite part of a model directory's report.json, or of a saved `eval --suite --json`."""
    file = path / "report.json" if path.is_dir() else path
    try:
        raw = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise OpenSesameError(f"{file}: cannot read a report ({exc})") from exc
    suite = raw.get("dev_suite", raw) if isinstance(raw, dict) else None
    if not isinstance(suite, dict) or not isinstance(suite.get("sets"), dict) or "macro" not in suite:
        raise OpenSesameError(f"{file}: holds no dev suite; give a model directory `opensesame train` wrote, or the "
                              "output of `opensesame eval --suite --json`")
    return suite


def _scores(row: dict[str, Any]) -> Scores:
    return {m: float(row[m]) for m in VERDICT_METRICS}


def _mean(rows: list[Scores]) -> Scores:
    return {m: sum(r[m] for r in rows) / len(rows) for m in VERDICT_METRICS}


def _paired(before: Scores, after: Scores) -> dict[str, Scores]:
    return {"before": before, "after": after, "delta": {m: after[m] - before[m] for m in VERDICT_METRICS}}


def compare(before: list[dict[str, Any]], after: list[dict[str, Any]], labels: list[str]) -> dict[str, Any]:
    """Pairs `before[i]` with `after[i]` (one seed each): the macro of every pair, their mean, and each set's mean
    over the pairs (the sets every report has)."""
    if not before or len(before) != len(after) or len(labels) != len(before):
        raise OpenSesameError(f"give as many reports after the change as before it, one per seed "
                              f"({len(before)} before, {len(after)} after)")
    pairs = [{"label": label, **_paired(_scores(b["macro"]), _scores(a["macro"]))}
             for label, b, a in zip(labels, before, after)]
    names = [n for n in before[0]["sets"] if all(n in r["sets"] for r in [*before, *after])]
    sets = {name: _paired(_mean([_scores(r["sets"][name]) for r in before]),
                          _mean([_scores(r["sets"][name]) for r in after])) for name in names}
    mean = _paired(_mean([p["before"] for p in pairs]), _mean([p["after"] for p in pairs]))
    return {"pairs": pairs, "mean": mean, "sets": sets}


def _cell(scores: Scores, signed: bool = False) -> str:
    return " / ".join(f"{scores[m]:+.3f}" if signed else f"{scores[m]:.3f}" for m in VERDICT_METRICS)


def format_comparison(result: dict[str, Any]) -> str:
    """The two Markdown tables of docs/benchmarks.md: the macro per pair and its mean, then every set's mean."""
    head = " / ".join(VERDICT_METRICS)
    lines = [f"| macro ({head}) | before | after | delta |", "|---|---|---|---|"]
    for pair in result["pairs"]:
        lines.append(f"| {pair['label']} | {_cell(pair['before'])} | {_cell(pair['after'])} | "
                     f"{_cell(pair['delta'], signed=True)} |")
    mean = result["mean"]
    lines.append(f"| mean | {_cell(mean['before'])} | {_cell(mean['after'])} | **{_cell(mean['delta'], signed=True)}** |")
    lines += ["", f"| set (mean of {len(result['pairs'])}) | before | after | delta |", "|---|---|---|---|"]
    for name, row in result["sets"].items():
        lines.append(f"| {name} | {_cell(row['before'])} | {_cell(row['after'])} | {_cell(row['delta'], signed=True)} |")
    return "\n".join(lines)
