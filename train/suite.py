"""The dev suite: several eval-case sets, one row each plus their macro average, the ranker and every peer alike.

A decision is taken on the macro average (every set weighs the same, whatever its size), never on one set:
a gain on one shape of session that costs another is not a gain. The suite's verdict is stricter: the ranker is
above the best peer on every set at hit@1, hit@3 and MRR.
"""

from __future__ import annotations

from pathlib import Path
from string import Template
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict

from pipeline.errors import OpenSesameError
from pipeline.ranking.predict import Predictor
from pipeline.settings import PROJECT_ROOT, FetchSettings
from train.evaluate import Case, evaluate, load_cases, spec_location
from train.peers import Peers
from train.restyle import Style, restyle_set

METRICS = ("hit@1", "hit@3", "hit@5", "mrr", "ndcg@5")
# Restyled specs are written again on every evaluation (deterministic: the same bytes, so the same embedding cache).
RESTYLED_DIR = PROJECT_ROOT / "var" / "restyled"


class SuiteSet(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    cases: Path
    specs: Path | None = None  # folder the cases' spec paths are relative to; default the cases file's folder


class Suite(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sets: list[SuiteSet]
    # Every set is also evaluated rendered in each of these styles (train/restyle.py), as `name@style`.
    styles: list[Style] = []


def load_suite(path: Path, data_dir: Path) -> Suite:
    """Read a suite file, expanding ${data} and ${project} in its paths."""
    try:
        raw = Template(path.read_text()).substitute(data=str(data_dir), project=str(PROJECT_ROOT))
    except (OSError, KeyError, ValueError) as exc:
        raise OpenSesameError(f"{path}: cannot read the suite file ({exc})") from exc
    return Suite.model_validate(yaml.safe_load(raw))


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def macro(rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Unweighted mean over sets, of the ranker and of each peer; params_exact over the sets that define it."""
    out: dict[str, Any] = {"sets": len(rows), "cases": sum(r["cases"] for r in rows.values())}
    for metric in METRICS:
        out[metric] = _mean([r[metric] for r in rows.values()])
    out["params_exact"] = _mean([r["params_exact"] for r in rows.values() if r["params_exact"] is not None])
    out["ece@1"] = _mean([r["ece@1"] for r in rows.values() if "ece@1" in r])
    names = next(iter(rows.values())).get("peers", {}) if rows else {}
    out["peers"] = {name: {m: _mean([r["peers"][name][m] for r in rows.values()]) for m in METRICS} for name in names}
    if names:
        out["best_peer"] = max(names, key=lambda name: out["peers"][name]["mrr"])
    return out


def verdict(rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Above the best peer on every set at every verdict metric, and where not."""
    behind = [f"{name} {metric}" for name, row in rows.items() for metric in row.get("not_above_at", [])]
    return {"above_best_peer_everywhere": not behind, "not_above": behind}


def readable_sets(suite: Suite, fetch: FetchSettings) -> tuple[list[tuple[str, list[Case], Path]], list[str]]:
    """Each set whose cases and specs exist, as (name, cases, specs folder), then each of them in every style of
    the suite (its specs written under `RESTYLED_DIR`); the others named with the reason, not silently dropped."""
    found: list[tuple[str, list[Case], Path]] = []
    skipped: list[str] = []
    for entry in suite.sets:
        if not entry.cases.exists():
            skipped.append(f"{entry.name}: {entry.cases} not found")
            continue
        cases, specs_dir = load_cases(entry.cases), entry.specs or entry.cases.parent
        locations = {spec_location(c, specs_dir) for c in cases}
        missing = sorted(loc for loc in locations if "://" not in loc and not Path(loc).exists())
        if missing:  # e.g. `--data` names a folder of other specs: say so, and evaluate the rest
            skipped.append(f"{entry.name}: spec {missing[0]} not found")
            continue
        found.append((entry.name, cases, specs_dir))
    if not found:
        raise OpenSesameError("no set of the suite was found: " + "; ".join(skipped))
    styled = [(f"{name}@{style}", restyle_set(cases, specs_dir, RESTYLED_DIR / f"{name}@{style}", fetch),
               RESTYLED_DIR / f"{name}@{style}") for style in suite.styles for name, cases, specs_dir in found]
    return found + styled, skipped


def evaluate_suite(
    predictor: Predictor, suite: Suite, fetch: FetchSettings, peers: Peers | None = None, misses: bool = False
) -> dict[str, Any]:
    """Every readable set, with the peers and the verdict when `peers` is given (training's own report has none)."""
    sets, skipped = readable_sets(suite, fetch)
    rows: dict[str, dict[str, Any]] = {}
    for name, cases, specs_dir in sets:
        report = evaluate(predictor, cases, specs_dir, fetch, peers)
        if not misses:
            report.pop("misses")
        rows[name] = report
    report = {"sets": rows, "macro": macro(rows), "style_gap": style_gaps(rows), "skipped": skipped}
    if peers is not None:
        report["verdict"] = verdict(rows)
        report["worst"] = worst_margin(rows)
    return report


def style_gaps(rows: dict[str, dict[str, Any]]) -> dict[str, float]:
    """hit@1 of each set minus that of its restyled version (`name@style`): what the API's style alone costs."""
    return {name: round(rows[name.partition("@")[0]]["hit@1"] - row["hit@1"], 4)
            for name, row in rows.items() if "@" in name and name.partition("@")[0] in rows}


def worst_margin(rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The set where the ranker is least above its best peer at hit@1 (negative: below it), and by how much."""
    margins = {name: row["hit@1"] - max(p["hit@1"] for p in row["peers"].values()) for name, row in rows.items()}
    name = min(margins, key=lambda n: margins[n])
    return {"set": name, "hit@1_margin": round(margins[name], 4)}


def format_table(report: dict[str, Any]) -> str:
    """Per set, the ranker's line and one per peer (`*` the best peer, by MRR); the macro average last; then the
    verdict."""
    lines = [f"{'set':<16}{'cases':>6}  {'system':<14}" + "".join(f"{m:>8}" for m in METRICS)
             + f"{'params_exact':>14}{'ece@1':>8}"]
    for name, row in {**report["sets"], "MACRO": report["macro"]}.items():
        exact = "-" if row["params_exact"] is None else f"{row['params_exact']:.3f}"
        ece = "-" if row.get("ece@1") is None else f"{row['ece@1']:.3f}"
        lines.append(f"{name:<16}{row['cases']:>6}  {'ranker':<14}" + "".join(f"{row[m]:>8.3f}" for m in METRICS)
                     + f"{exact:>14}{ece:>8}")
        for peer, metrics in row["peers"].items():
            label = peer + (" *" if row.get("best_peer") == peer else "")
            lines.append(f"{'':<24}{label:<14}" + "".join(f"{metrics[m]:>8.3f}" for m in METRICS))
    outcome = report["verdict"]
    lines.append("above the best peer on every set at hit@1, hit@3 and MRR: "
                 + ("yes" if outcome["above_best_peer_everywhere"] else "no (" + ", ".join(outcome["not_above"]) + ")"))
    lines += [f"skipped {s}" for s in report["skipped"]]
    return "\n".join(lines)
