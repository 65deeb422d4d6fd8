"""The LLM source offline: each problem's cheap shortlist is offered to the model, all in one batch.

Used by `opensesame eval --llm` and by `opensesame train --llm-problems N` (which adds the `llm` features to a
sample of training problems). Same shortlist, prompt and auto-patch as the Serve `CandidateGenerator` path.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.adapters.vllm_engine import OfflineLLM
from pipeline.llm.patch import PatchStats, hits, parse_answer, patch
from pipeline.llm.prompt import build_messages
from pipeline.ranking.context import Event, PreparedSpec
from pipeline.ranking.predict import Predictor
from pipeline.ranking.sources import Hits
from pipeline.settings import FetchSettings, LLMSettings
from pipeline.spec.load import load_catalogue
from train.evaluate import Case, spec_location


@dataclass(frozen=True, slots=True)
class Ask:
    id: str
    spec: PreparedSpec
    events: list[Event]
    prompt: str
    expected: str


def llm_hits(predictor: Predictor, asks: list[Ask], settings: LLMSettings) -> tuple[dict[str, Hits], dict[str, Any]]:
    shortlists = [
        [p.endpoint for p in predictor.predict(a.spec, a.events, a.prompt, k=settings.shortlist).predictions]
        for a in asks
    ]
    requests = [
        (build_messages(a.prompt, [e.endpoint for e in a.events], shortlist), shortlist)
        for a, shortlist in zip(asks, shortlists)
    ]
    started = time.perf_counter()
    with OfflineLLM(settings) as llm:
        load_s = time.perf_counter() - started
        started = time.perf_counter()
        answers = llm.answer(requests)
        generate_s = time.perf_counter() - started
    totals = PatchStats()
    out: dict[str, Hits] = {}
    own_hits = first_is_first = 0
    for a, answer, shortlist in zip(asks, answers, shortlists):
        suggestions, stats = patch(parse_answer(answer), a.spec.catalogue, a.spec.matcher, settings.max_calls)
        totals.add(stats)
        out[a.id] = hits(suggestions, a.spec.profile.index)
        if suggestions:
            own_hits += suggestions[0].endpoint == a.expected
            first_is_first += bool(shortlist) and suggestions[0].endpoint == shortlist[0]
    n = max(len(asks), 1)
    info = {
        "model": settings.model,
        "load_s": round(load_s, 1),
        "generate_s_per_problem": round(generate_s / n, 3),
        "operations_valid": totals.valid,
        "operations_patched": totals.patched,
        "operations_dropped": totals.dropped,
        "problems_with_llm_hits": sum(1 for h in out.values() if h),
        # The LLM on its own: how often its first pick is the expected call, and how often it simply took the
        # first operation offered (position bias; the shortlist is in cheap-ranking order).
        "llm_first_pick_hit@1": round(own_hits / n, 4),
        "llm_first_pick_is_shortlist_first": round(first_is_first / n, 4),
    }
    return out, info


def llm_hits_for_cases(
    predictor: Predictor, cases: list[Case], cases_dir: Path, fetch: FetchSettings, settings: LLMSettings
) -> tuple[dict[str, Hits], dict[str, Any]]:
    specs: dict[str, PreparedSpec] = {}
    asks = []
    for case in cases:
        location = spec_location(case, cases_dir)
        if location not in specs:
            specs[location] = predictor.prepare(load_catalogue(location, fetch))
        asks.append(Ask(case.id, specs[location], case.events, case.prompt, case.expected))
    return llm_hits(predictor, asks, settings)
