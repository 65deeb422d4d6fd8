"""Offline evaluation on eval-case files (the format of ../shared/data/README.md), against simple peers
(train/peers.py) scored on the same cases: the ranker is worth having only where it is above the best of them.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from pipeline.errors import OpenSesameError
from pipeline.ranking.context import Event, PreparedSpec
from pipeline.ranking.predict import Predictor, RankedCall
from pipeline.ranking.request_values import JSONScalar
from pipeline.ranking.sources import Hits
from pipeline.settings import FetchSettings
from pipeline.spec.load import load_catalogue
from pipeline.timing import ms_since
from train.metrics import VERDICT_METRICS, calibration_error, summary
from train.peers import Peers


class Case(BaseModel):
    id: str
    spec: str
    prompt: str = ""
    events: list[Event] = Field(default_factory=list)
    expected: str
    # Path, query and body values by name; a string stands for a value of any type ("2500" for 2500).
    expected_params: dict[str, JSONScalar] | None = None


def load_cases(path: Path) -> list[Case]:
    cases = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip():
            try:
                cases.append(Case.model_validate_json(line))
            except ValueError as exc:
                raise ValueError(f"{path}:{number}: not an eval case: {exc}") from exc
    return cases


def _same(got: JSONScalar, want: JSONScalar) -> bool:
    if isinstance(want, str):
        return (str(got).lower() if isinstance(got, bool) else str(got)) == want
    return isinstance(got, bool) == isinstance(want, bool) and got == want


def params_match(call: RankedCall, expected: dict[str, JSONScalar]) -> bool:
    """The call holds every value expected, wherever it goes (path, query, body), and no path value the case does
    not expect: `{}` expects a call without path parameters. A query or body value the case does not name is not
    judged (a default a console would show anyway)."""
    values: dict[str, JSONScalar] = {**call.query, **call.body, **call.params}
    return not set(call.params) - set(expected) and all(
        name in values and _same(values[name], want) for name, want in expected.items())


class ValueTally:
    """Each expected value right or not, by where the call holds it (path, query, body, or nowhere) and by the
    source the prediction names for it: what `params_exact` is made of."""

    def __init__(self) -> None:
        self.by_place: dict[str, list[int]] = {}
        self.by_source: dict[str, list[int]] = {}

    def add(self, call: RankedCall | None, expected: dict[str, JSONScalar]) -> None:
        for name, want in expected.items():
            place, source, got = "not ranked", "not ranked", None
            if call is not None:
                holders = (("path", call.params), ("query", call.query), ("body", call.body))
                place, got = next(((where, held[name]) for where, held in holders if name in held), ("unfilled", None))
                source = "path" if place == "path" else call.filled_from.get(name, "unfilled")
            for tally, key in ((self.by_place, place), (self.by_source, source)):
                counts = tally.setdefault(key, [0, 0])
                counts[0] += got is not None and _same(got, want)
                counts[1] += 1

    def report(self) -> dict[str, dict[str, str]]:
        return {"by_place": {k: f"{a}/{n}" for k, (a, n) in sorted(self.by_place.items())},
                "by_source": {k: f"{a}/{n}" for k, (a, n) in sorted(self.by_source.items())}}


def spec_location(case: Case, cases_dir: Path) -> str:
    return case.spec if "://" in case.spec else str(cases_dir / case.spec)


def peer_verdict(report: dict[str, Any]) -> None:
    """Name the best peer (by MRR) and whether the ranker is above every peer at each verdict metric."""
    peers: dict[str, dict[str, float]] = report["peers"]
    report["best_peer"] = max(peers, key=lambda name: peers[name]["mrr"])
    behind = [m for m in VERDICT_METRICS if report[m] <= max(p[m] for p in peers.values())]
    report["above_best_peer"] = not behind
    report["not_above_at"] = behind


def evaluate(
    predictor: Predictor,
    cases: list[Case],
    cases_dir: Path,
    fetch: FetchSettings,
    peers: Peers | None = None,
    disabled: frozenset[str] = frozenset(),
    k: int = 10,
    llm_hits: dict[str, Hits] | None = None,
    ignore_links: bool = False,
) -> dict[str, Any]:
    """`peers` adds each peer's metrics on the same cases and the verdict; `llm_hits` (case id -> the `llm`
    source's hits, from `train.llm_eval`) adds the LLM to the candidates; `ignore_links` reads each spec as if it
    declared no OpenAPI `links`."""
    specs: dict[str, PreparedSpec] = {}
    ranks: list[int | None] = []
    peer_ranks: dict[str, list[int | None]] = {name: [] for name in (peers.names if peers else [])}
    params_ok: list[bool] = []
    values = ValueTally()
    top_scores: list[float] = []  # the first answer's score, for its calibration
    latencies: list[float] = []
    misses: list[dict[str, Any]] = []
    for case in cases:
        location = spec_location(case, cases_dir)
        if location not in specs:
            catalogue = load_catalogue(location, fetch)
            specs[location] = predictor.prepare(catalogue.without_links() if ignore_links else catalogue)
        spec = specs[location]
        if case.expected not in spec.profile.index:
            # A typo in a case would count as a miss of the ranker and of every peer alike, unseen.
            raise OpenSesameError(f"case {case.id}: expected {case.expected!r} is not an operation of {location}; "
                                  "write it as METHOD and the spec's path template")
        started = time.perf_counter()
        extra = {"llm": llm_hits[case.id]} if llm_hits is not None and case.id in llm_hits else None
        outcome = predictor.predict(spec, case.events, case.prompt, k=k, extra_sources=extra, disabled=disabled)
        latencies.append(ms_since(started))
        endpoints = [p.endpoint for p in outcome.predictions]
        rank = endpoints.index(case.expected) + 1 if case.expected in endpoints else None
        ranks.append(rank)
        top_scores.append(outcome.predictions[0].score if outcome.predictions else 0.0)
        if peers is not None:
            for name, peer_rank in peers.ranks(spec, case.events, case.prompt, case.expected).items():
                peer_ranks[name].append(peer_rank)
        if case.expected_params is not None:  # {} is a definition too: the call takes no path parameter
            top = outcome.predictions[rank - 1] if rank else None
            params_ok.append(top is not None and params_match(top, case.expected_params))
            values.add(top, case.expected_params)
        if rank != 1:
            misses.append({"id": case.id, "expected": case.expected, "rank": rank, "top": endpoints[:3]})
    report: dict[str, Any] = {"cases": len(cases), **summary(ranks)}
    report["params_exact"] = round(sum(params_ok) / len(params_ok), 4) if params_ok else None
    report["values"] = values.report()  # right / expected, by where the value went and where it came from
    report["ece@1"] = round(calibration_error(top_scores, [r == 1 for r in ranks]), 4)
    report["p50_ms"] = round(float(np.percentile(latencies, 50)), 2) if latencies else None
    report["p95_ms"] = round(float(np.percentile(latencies, 95)), 2) if latencies else None
    if peers is not None:
        report["peers"] = {name: summary(r) for name, r in peer_ranks.items()}
        peer_verdict(report)
    report["misses"] = misses
    return report
