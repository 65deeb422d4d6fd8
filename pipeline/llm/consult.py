"""One consultation of the LLM for one request: the router decides, the generator answers within the budget,
the answer is checked against the spec and becomes the `llm` candidate source.

The generator is anything with the `Generator` contract (the Serve `CandidateGenerator` behind a handle, or a
fake in tests), so this flow is tested without a model. A time-out, back-pressure or a dead engine never fails
the request: the consultation then says why and the caller keeps its cheap ranking.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Protocol

from pipeline.llm.patch import PatchStats, hits, parse_answer, patch
from pipeline.llm.prompt import build_messages
from pipeline.llm.router import Router
from pipeline.ranking.context import PreparedSpec
from pipeline.ranking.sources import Hits
from pipeline.settings import LLMSettings
from pipeline.timing import ms_since

log = logging.getLogger("opensesame.llm")


class Generator(Protocol):
    async def answer(self, messages: list[dict[str, str]], shortlist: list[str]) -> str:
        """The raw JSON answer naming operations of `shortlist`; cancelled when the budget runs out."""
        ...


@dataclass(slots=True)
class Consultation:
    used: bool
    why: str  # the router's decision, or what went wrong
    outcome: str  # "used", "skipped" or "failed": what the request counts under
    latency_ms: float | None = None
    hits: Hits | None = None  # the `llm` source, when used
    stats: PatchStats = field(default_factory=PatchStats)


async def consult(
    generator: Generator,
    settings: LLMSettings,
    spec: PreparedSpec,
    prompt: str,
    recent_calls: list[str],
    cheap_ranking: list[str],
    top_score: float | None,
    budget_ms: float | None,
) -> Consultation:
    decision = Router(settings).decide(budget_ms, top_score)
    if not decision.use:
        return Consultation(False, decision.why, "skipped")
    shortlist = cheap_ranking[: settings.shortlist]
    messages = build_messages(prompt, recent_calls, shortlist)
    timeout_s = min(settings.timeout_ms, budget_ms or settings.timeout_ms) / 1000
    started = time.perf_counter()
    try:
        answer = await asyncio.wait_for(generator.answer(messages, shortlist), timeout=timeout_s)
    except Exception as exc:  # time-out, back-pressure, a dead engine: the request goes on without the LLM
        latency = ms_since(started)
        why = "timed out" if isinstance(exc, TimeoutError) else f"failed: {type(exc).__name__}"
        log.warning("llm %s after %.0f ms; answering with the cheap ranking", why, latency, exc_info=exc)
        return Consultation(False, f"llm {why}", "failed", latency_ms=latency)
    latency = ms_since(started)
    suggestions, stats = patch(parse_answer(answer), spec.catalogue, spec.matcher, settings.max_calls)
    if stats.patched or stats.dropped:
        log.info("llm answer: %d patched, %d dropped: %s", stats.patched, stats.dropped, stats.examples[:5])
    return Consultation(True, decision.why, "used", latency, hits(suggestions, spec.profile.index), stats)

