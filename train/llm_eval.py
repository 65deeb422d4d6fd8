"""The LLM source over eval cases, offline: each case's cheap shortlist is offered to the model in one batch.

Used by `opensesame eval --llm` (and reusable for training features: same shortlist, same prompt, same patch
as the Serve `CandidateGenerator`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from pipeline.context import PreparedSpec
from pipeline.llm import PatchStats, build_messages, hits, parse_answer, patch
from pipeline.llm_engine import OfflineLLM
from pipeline.predict import Predictor
from pipeline.settings import FetchSettings, LLMSettings
from pipeline.sources import Hits
from pipeline.specs import load_catalogue
from train.evaluate import Case, spec_location


def llm_hits_for_cases(
    predictor: Predictor, cases: list[Case], cases_dir: Path, fetch: FetchSettings, settings: LLMSettings
) -> tuple[dict[str, Hits], dict[str, Any]]:
    specs: dict[str, PreparedSpec] = {}
    requests: list[tuple[list[dict[str, str]], list[str]]] = []
    for case in cases:
        location = spec_location(case, cases_dir)
        if location not in specs:
            specs[location] = predictor.prepare(load_catalogue(location, fetch))
        cheap = predictor.predict(specs[location], case.events, case.prompt, k=settings.shortlist)
        shortlist = [p.endpoint for p in cheap.predictions]
        requests.append((build_messages(case.prompt, [e.endpoint for e in case.events], shortlist), shortlist))
    started = time.perf_counter()
    llm = OfflineLLM(settings)
    load_s = time.perf_counter() - started
    started = time.perf_counter()
    answers = llm.answer(requests)
    generate_s = time.perf_counter() - started
    totals = PatchStats()
    out: dict[str, Hits] = {}
    own_hits = first_is_first = 0
    for case, answer, (_, shortlist) in zip(cases, answers, requests):
        spec = specs[spec_location(case, cases_dir)]
        suggestions, stats = patch(parse_answer(answer), spec.catalogue, spec.matcher, settings.max_calls)
        totals.add(stats)
        out[case.id] = hits(suggestions, spec.profile.index)
        if suggestions:
            own_hits += suggestions[0].endpoint == case.expected
            first_is_first += bool(shortlist) and suggestions[0].endpoint == shortlist[0]
    info = {
        "model": settings.model,
        "load_s": round(load_s, 1),
        "generate_s_per_case": round(generate_s / max(len(cases), 1), 3),
        "operations_valid": totals.valid,
        "operations_patched": totals.patched,
        "operations_dropped": totals.dropped,
        "cases_with_llm_hits": sum(1 for h in out.values() if h),
        # The LLM on its own: how often its first pick is the expected call, and how often it simply took the
        # first operation offered (position bias; the shortlist is in cheap-ranking order).
        "llm_first_pick_hit@1": round(own_hits / max(len(cases), 1), 4),
        "llm_first_pick_is_shortlist_first": round(first_is_first / max(len(cases), 1), 4),
    }
    return out, info
