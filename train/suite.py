"""The dev suite: several eval-case sets, one row each plus their macro average, ranker and baseline alike.

A decision is taken on the macro average (every set weighs the same, whatever its size), never on one set:
a gain on one shape of session that costs another is not a gain.
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
from train.evaluate import evaluate, load_cases, spec_location

METRICS = ("hit@1", "hit@3", "hit@5", "mrr", "ndcg@5")


class SuiteSet(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    cases: Path
    specs: Path | None = None  # folder the cases' spec paths are relative to; default the cases file's folder


class Suite(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sets: list[SuiteSet]


def load_suite(path: Path, data_dir: Path) -> Suite:
    """Read a suite file, expanding ${data} and ${project} in its paths."""
    try:
        raw = Template(path.read_text()).substitute(data=str(data_dir), project=str(PROJECT_ROOT))
    except (OSError, KeyError, ValueError) as exc:
        raise OpenSesameError(f"{path}: cannot read the suite file ({exc})") from exc
    return Suite.model_validate(yaml.safe_load(raw))


def macro(rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Unweighted mean over sets; params_exact over the sets that define it."""

    def mean(values: list[float]) -> float | None:
        return round(sum(values) / len(values), 4) if values else None

    out: dict[str, Any] = {"sets": len(rows), "cases": sum(r["cases"] for r in rows.values())}
    for metric in METRICS:
        out[metric] = mean([r[metric] for r in rows.values()])
    out["params_exact"] = mean([r["params_exact"] for r in rows.values() if r["params_exact"] is not None])
    out["baseline"] = {m: mean([r["baseline"][m] for r in rows.values()]) for m in METRICS}
    return out


def evaluate_suite(
    predictor: Predictor, suite: Suite, fetch: FetchSettings, misses: bool = False
) -> dict[str, Any]:
    """Every set whose cases file exists; the missing ones are named under `skipped`, not silently dropped."""
    rows: dict[str, dict[str, Any]] = {}
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
        report = evaluate(predictor, cases, specs_dir, fetch)
        if not misses:
            report.pop("misses")
        rows[entry.name] = report
    if not rows:
        raise OpenSesameError("no set of the suite was found: " + "; ".join(skipped))
    return {"sets": rows, "macro": macro(rows), "skipped": skipped}


def format_table(report: dict[str, Any]) -> str:
    """One line per set and one for the macro average: ranker / baseline for each metric."""
    header = f"{'set':<16}{'cases':>6}  " + "  ".join(f"{m:>13}" for m in (*METRICS, "params_exact"))
    lines = [header, f"{'':<24}" + "  ".join(f"{'ranker/base':>13}" for _ in METRICS)]
    rows = {**report["sets"], "MACRO": report["macro"]}
    for name, row in rows.items():
        cells = [f"{row[m]:.3f}/{row['baseline'][m]:.3f}" for m in METRICS]
        exact = "-" if row["params_exact"] is None else f"{row['params_exact']:.3f}"
        lines.append(f"{name:<16}{row['cases']:>6}  " + "  ".join(f"{c:>13}" for c in cells) + f"  {exact:>13}")
    lines += [f"skipped {s}" for s in report["skipped"]]
    return "\n".join(lines)
