"""When the LLM is asked at all: only when the latency budget allows it and the cheap ranking is not already
confident."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.settings import LLMSettings


@dataclass(frozen=True, slots=True)
class Decision:
    use: bool
    why: str


class Router:
    """When is the LLM worth its latency? (`llm.mode` in configs/opensesame.yaml)

    - `off`: never. `always`: whenever a generator is deployed (for measuring it).
    - `auto`: only if the request's `latency_budget_ms` (or `llm.default_budget_ms` when it gives none) is at
      least `llm.min_budget_ms`, and the cheap ranking's top score is below `llm.confidence_threshold` (when the
      ranker is already sure, an LLM rarely changes the top of the list and only costs time).
    """

    def __init__(self, settings: LLMSettings) -> None:
        self.settings = settings

    def decide(self, budget_ms: float | None, top_score: float | None) -> Decision:
        s = self.settings
        budget_ms = budget_ms if budget_ms is not None else s.default_budget_ms
        if s.mode == "off":
            return Decision(False, "llm.mode is off")
        if s.mode == "always":
            return Decision(True, "llm.mode is always")
        if budget_ms < s.min_budget_ms:
            return Decision(False, f"latency budget {budget_ms:.0f} ms < {s.min_budget_ms:.0f} ms")
        if top_score is not None and top_score >= s.confidence_threshold:
            return Decision(False, f"ranker confident (top score {top_score:.2f} >= {s.confidence_threshold})")
        return Decision(True, "budget allows and the ranker is unsure")
