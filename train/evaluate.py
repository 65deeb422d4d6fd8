"""Offline evaluation on eval-case files (the format of ../shared/data/README.md), against a baseline.

The baseline is MiniLM-only retrieval over the whole catalogue: the prompt (plus a nudge toward the last call,
exactly as the `retrieval` source scores) — what a plain embedding search would answer.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from pipeline.ranking.context import Event, PreparedSpec, build_context
from pipeline.ranking.predict import Predictor
from pipeline.ranking.signals import compute_signals
from pipeline.ranking.sources import Hits, retrieval
from pipeline.settings import FetchSettings
from pipeline.spec.load import load_catalogue
from train.metrics import summary


class Case(BaseModel):
    id: str
    spec: str
    prompt: str = ""
    events: list[Event] = Field(default_factory=list)
    expected: str
    expected_params: dict[str, str] | None = None


def load_cases(path: Path) -> list[Case]:
    cases = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip():
            try:
                cases.append(Case.model_validate_json(line))
            except ValueError as exc:
                raise ValueError(f"{path}:{number}: not an eval case: {exc}") from exc
    return cases


def spec_location(case: Case, cases_dir: Path) -> str:
    return case.spec if "://" in case.spec else str(cases_dir / case.spec)


def baseline_rank(predictor: Predictor, spec: PreparedSpec, case: Case) -> int | None:
    prompt_vec = predictor.embed_prompt(case.prompt)
    ctx = build_context(spec, case.events, case.prompt, prompt_vec, predictor.settings.max_history)
    signals = compute_signals(ctx)
    n = len(spec.profile)
    hits = retrieval(ctx, signals, n)
    # No prompt and no history: a plain search has nothing to go on; it answers in catalogue order.
    scores = np.array([hits.get(i, -1.0 - i / n) for i in range(n)])
    expected = spec.profile.index.get(case.expected)
    return None if expected is None else int((scores > scores[expected]).sum()) + 1


def evaluate(
    predictor: Predictor,
    cases: list[Case],
    cases_dir: Path,
    fetch: FetchSettings,
    disabled: frozenset[str] = frozenset(),
    k: int = 10,
    llm_hits: dict[str, Hits] | None = None,
) -> dict[str, Any]:
    """`llm_hits` (case id -> the `llm` source's hits, from `train.llm_eval`) adds the LLM to the candidates."""
    specs: dict[str, PreparedSpec] = {}
    ranks: list[int | None] = []
    base: list[int | None] = []
    params_ok: list[bool] = []
    latencies: list[float] = []
    misses: list[dict[str, Any]] = []
    for case in cases:
        location = spec_location(case, cases_dir)
        if location not in specs:
            specs[location] = predictor.prepare(load_catalogue(location, fetch))
        spec = specs[location]
        started = time.perf_counter()
        extra = {"llm": llm_hits[case.id]} if llm_hits is not None and case.id in llm_hits else None
        outcome = predictor.predict(spec, case.events, case.prompt, k=k, extra_sources=extra, disabled=disabled)
        latencies.append((time.perf_counter() - started) * 1000)
        endpoints = [p.endpoint for p in outcome.predictions]
        rank = endpoints.index(case.expected) + 1 if case.expected in endpoints else None
        ranks.append(rank)
        base.append(baseline_rank(predictor, spec, case))
        if case.expected_params is not None:  # {} is a definition too: the call takes no path parameter
            top = outcome.predictions[rank - 1] if rank else None
            params_ok.append(top is not None and top.params == case.expected_params)
        if rank != 1:
            misses.append({"id": case.id, "expected": case.expected, "rank": rank, "top": endpoints[:3]})
    report: dict[str, Any] = {"cases": len(cases), **summary(ranks)}
    report["params_exact"] = round(sum(params_ok) / len(params_ok), 4) if params_ok else None
    report["p50_ms"] = round(float(np.percentile(latencies, 50)), 2) if latencies else None
    report["p95_ms"] = round(float(np.percentile(latencies, 95)), 2) if latencies else None
    report["baseline"] = summary(base)
    report["misses"] = misses
    return report
