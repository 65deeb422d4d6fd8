"""A change judged as decisions are taken: models before and after it, paired seed by seed, on the dev suite.

One seed's models spread macro hit@1 as widely as most changes move it (docs/decisions.md), so a change is judged on
the mean over seeds, set by set: it is kept when the worst set (the one whose hit@1 falls most) does not fall by more
than the seeds' spread on it; the macro and the macro without each set in turn (leave-one-set-out) are beside it.
A gain on the macro that costs one set is not a gain: the macro is what a suite can be fitted to. Each input is a model directory (the `dev_suite` of the report.json `opensesame train` writes) or the
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
    return {"pairs": pairs, "mean": mean, "sets": sets, "worst": worst_set(before, sets),
            "leave_one_out": leave_one_out(sets)}


def _spread(reports: list[dict[str, Any]], name: str) -> float:
    """How far one seed's hit@1 on a set lies from another's, before the change: what noise alone moves it by."""
    values = [float(r["sets"][name]["hit@1"]) for r in reports]
    return max(values) - min(values)


def worst_set(before: list[dict[str, Any]], sets: dict[str, dict[str, Scores]]) -> dict[str, Any]:
    """The set whose hit@1 falls most (mean over seeds), and whether that fall is beyond the seeds' spread on it:
    a change is kept only when the worst set does not fall."""
    name = min(sets, key=lambda n: sets[n]["delta"]["hit@1"])
    delta, spread = sets[name]["delta"]["hit@1"], _spread(before, name)
    return {"set": name, "delta": sets[name]["delta"], "spread": round(spread, 4),
            "falls": delta < -spread if len(before) > 1 else delta < 0}


def leave_one_out(sets: dict[str, dict[str, Scores]]) -> dict[str, Scores]:
    """The macro delta without each set in turn (a set and its restyled versions leave together): a change that
    only one set carries shows as a delta that turns negative when that set is out."""
    out: dict[str, Scores] = {}
    for left in dict.fromkeys(n.partition("@")[0] for n in sets):
        rest = [row["delta"] for n, row in sets.items() if n.partition("@")[0] != left]
        if rest:
            out[left] = {m: sum(r[m] for r in rest) / len(rest) for m in VERDICT_METRICS}
    return out


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
    lines += ["", "| left out | macro delta of the rest |", "|---|---|"]
    lines += [f"| {name} | {_cell(delta, signed=True)} |" for name, delta in result["leave_one_out"].items()]
    worst = result["worst"]
    lines += ["", f"worst set: {worst['set']} {worst['delta']['hit@1']:+.3f} hit@1 (seeds' spread {worst['spread']:.3f}): "
              + ("falls, not kept" if worst["falls"] else "does not fall")]
    return "\n".join(lines)
