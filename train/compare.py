"""A change judged as decisions are taken: models before and after it, paired seed by seed, on the dev suite.

One seed's models spread macro hit@1 as widely as most changes move it (docs/decisions.md), so a change is judged on
the mean over seeds, set by set, and on the **worst set**: the one where the ranker is least above its best peer at
hit@1 (the peers rank the same cases without the model, so their scores are the same before and after). A change is
kept when that worst margin does not fall and the macro without any one set (leave-one-set-out) does not fall by
more than its seeds' spread: a gain that costs the hardest set, or that one set alone carries, is fitting the
suite. The set that falls most, against its seeds' spread, is reported beside it. Each input is a model directory (the `dev_suite` of the
report.json `opensesame train` writes) or the JSON of `opensesame eval --suite --json`; the peers' scores come from
such a JSON (`--peers`) or from the reports themselves when they hold them.
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


def best_peers(report: dict[str, Any]) -> Scores:
    """Each set's best peer hit@1, from an `eval --suite --json` report (the peers do not depend on the model)."""
    best = {name: max((float(p["hit@1"]) for p in row.get("peers", {}).values()), default=None)
            for name, row in report["sets"].items()}
    return {name: value for name, value in best.items() if value is not None}


def compare(before: list[dict[str, Any]], after: list[dict[str, Any]], labels: list[str],
            peers: Scores | None = None) -> dict[str, Any]:
    """Pairs `before[i]` with `after[i]` (one seed each): the macro of every pair, their mean, each set's mean over
    the pairs (the sets every report has), the worst set by its margin over `peers` (each set's best peer hit@1;
    default: the peers the first report holds) and the verdict."""
    if not before or len(before) != len(after) or len(labels) != len(before):
        raise OpenSesameError(f"give as many reports after the change as before it, one per seed "
                              f"({len(before)} before, {len(after)} after)")
    peers = best_peers(before[0]) if peers is None else peers
    pairs = [{"label": label, **_paired(_scores(b["macro"]), _scores(a["macro"]))}
             for label, b, a in zip(labels, before, after)]
    names = [n for n in before[0]["sets"] if all(n in r["sets"] for r in [*before, *after])]
    missing = [n for n in names if n not in peers]
    if missing:
        raise OpenSesameError(f"no peers' scores for {', '.join(missing)}: give --peers, the output of `opensesame "
                              "eval --suite --json` (with its peers) on the same suite")
    sets = {name: _paired(_mean([_scores(r["sets"][name]) for r in before]),
                          _mean([_scores(r["sets"][name]) for r in after])) for name in names}
    mean = _paired(_mean([p["before"] for p in pairs]), _mean([p["after"] for p in pairs]))
    worst, loso = worst_set(sets, peers), leave_one_out(before, sets)
    return {"pairs": pairs, "mean": mean, "sets": sets, "best_peer": {n: peers[n] for n in names}, "worst": worst,
            "largest_fall": largest_fall(before, sets),
            "leave_one_out": loso,
            "kept": not worst["falls"] and not any(row["falls"] for row in loso.values())}


def _spread(values: list[float]) -> float:
    """How far one seed's value lies from another's, before the change: what noise alone moves it by."""
    return max(values) - min(values)


def _falls(delta: float, spread: float, seeds: int) -> bool:
    """A fall beyond the seeds' spread; with one seed there is no spread to measure, and any fall counts."""
    return delta < -spread if seeds > 1 else delta < 0


def worst_set(sets: dict[str, dict[str, Scores]], peers: Scores) -> dict[str, Any]:
    """The set where the ranker is least above its best peer at hit@1 (mean over seeds), before and after the
    change (it may be another set after), and whether that worst margin falls."""
    def lowest(side: str) -> dict[str, Any]:
        margins = {n: row[side]["hit@1"] - peers[n] for n, row in sets.items()}
        name = min(margins, key=lambda n: margins[n])
        return {"set": name, "margin": round(margins[name], 4)}

    was, now = lowest("before"), lowest("after")
    return {"before": was, "after": now, "change": round(now["margin"] - was["margin"], 4),
            "falls": now["margin"] < was["margin"]}


def largest_fall(before: list[dict[str, Any]], sets: dict[str, dict[str, Scores]]) -> dict[str, Any]:
    """The set whose hit@1 falls most (mean over seeds), against the seeds' spread on it."""
    name = min(sets, key=lambda n: sets[n]["delta"]["hit@1"])
    spread = _spread([float(r["sets"][name]["hit@1"]) for r in before])
    return {"set": name, "delta": sets[name]["delta"], "spread": round(spread, 4),
            "beyond_spread": _falls(sets[name]["delta"]["hit@1"], spread, len(before))}


def leave_one_out(before: list[dict[str, Any]], sets: dict[str, dict[str, Scores]]) -> dict[str, dict[str, Any]]:
    """The macro delta without each set in turn (a set and its restyled versions leave together), and that macro's
    spread over the seeds before the change: a change that only one set carries shows as a delta that turns
    negative, beyond the spread, when that set is out."""
    out: dict[str, dict[str, Any]] = {}
    for left in dict.fromkeys(n.partition("@")[0] for n in sets):
        rest = [n for n in sets if n.partition("@")[0] != left]
        if rest:
            delta = {m: sum(sets[n]["delta"][m] for n in rest) / len(rest) for m in VERDICT_METRICS}
            spread = _spread([sum(float(r["sets"][n]["hit@1"]) for n in rest) / len(rest) for r in before])
            out[left] = {"delta": delta, "spread": round(spread, 4),
                         "falls": _falls(delta["hit@1"], spread, len(before))}
    return out


def _cell(scores: Scores, signed: bool = False) -> str:
    return " / ".join(f"{scores[m]:+.3f}" if signed else f"{scores[m]:.3f}" for m in VERDICT_METRICS)


def format_comparison(result: dict[str, Any]) -> str:
    """The Markdown tables of docs/benchmarks.md (the macro per pair and its mean, every set's mean beside its
    best peer, the macro with each set left out), then the worst set and the verdict."""
    head = " / ".join(VERDICT_METRICS)
    lines = [f"| macro ({head}) | before | after | delta |", "|---|---|---|---|"]
    for pair in result["pairs"]:
        lines.append(f"| {pair['label']} | {_cell(pair['before'])} | {_cell(pair['after'])} | "
                     f"{_cell(pair['delta'], signed=True)} |")
    mean = result["mean"]
    lines.append(f"| mean | {_cell(mean['before'])} | {_cell(mean['after'])} | **{_cell(mean['delta'], signed=True)}** |")
    lines += ["", f"| set (mean of {len(result['pairs'])}) | before | after | delta | best peer hit@1 |",
              "|---|---|---|---|---|"]
    for name, row in result["sets"].items():
        lines.append(f"| {name} | {_cell(row['before'])} | {_cell(row['after'])} | {_cell(row['delta'], signed=True)} "
                     f"| {result['best_peer'][name]:.3f} |")
    lines += ["", "| left out | macro delta of the rest | its seeds' spread (hit@1) |", "|---|---|---|"]
    lines += [f"| {name} | {_cell(row['delta'], signed=True)} | {row['spread']:.3f}" + (" (falls)" if row["falls"] else "")
              + " |" for name, row in result["leave_one_out"].items()]
    worst, fall = result["worst"], result["largest_fall"]
    lines += ["",
              f"worst set (least above its best peer at hit@1): {worst['before']['set']} {worst['before']['margin']:+.3f} "
              f"before, {worst['after']['set']} {worst['after']['margin']:+.3f} after: "
              + ("falls" if worst["falls"] else "does not fall"),
              f"largest fall: {fall['set']} {fall['delta']['hit@1']:+.3f} hit@1 (seeds' spread {fall['spread']:.3f})",
              "kept" if result["kept"] else "not kept (the worst set falls, or the macro with a set left out falls "
              "beyond its seeds' spread)"]
    return "\n".join(lines)
