"""The LLM candidate source: what the model is asked, how its answer is checked, and when it is asked at all.

The engine itself (vLLM) lives in the Serve `CandidateGenerator` and in `train/`; everything here is plain
Python so it is tested without a model:

- `build_messages`: the user's request, the recent calls and a shortlist of the spec's operations, compact.
- `output_schema`: a JSON schema whose items are an enum of the shortlisted operation ids, so a constrained
  decoder can only name real operations (up to N, each with a short reason).
- `patch`: every answer is checked against the spec anyway (a server without structured outputs, or a model
  id that drifted): an unknown operation is mapped to the nearest real one by path-template matching, or
  dropped; both are counted.
- `Router.decide`: ask the LLM only when the latency budget allows it and the cheap ranking is not already
  confident.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pipeline.catalogue import Catalogue
from pipeline.matching import CallMatcher
from pipeline.settings import LLMSettings
from pipeline.sources import Hits

SYSTEM = (
    "You predict the next REST API call of a user. Choose from the listed operations only, most likely first. "
    "Answer with JSON."
)


@dataclass(frozen=True, slots=True)
class Suggestion:
    endpoint: str  # a real operation id of the spec
    reason: str


@dataclass(slots=True)
class PatchStats:
    """What auto-patching did to one answer (summed into the generator's metrics)."""

    valid: int = 0
    patched: int = 0
    dropped: int = 0
    examples: list[str] = field(default_factory=list)  # the raw ids that were patched or dropped, for logs

    def add(self, other: PatchStats) -> None:
        self.valid += other.valid
        self.patched += other.patched
        self.dropped += other.dropped


def build_messages(prompt: str, recent_calls: list[str], shortlist: list[str]) -> list[dict[str, str]]:
    calls = "\n".join(f"- {c}" for c in recent_calls[-5:]) or "- (none yet)"
    options = "\n".join(f"- {op}" for op in shortlist)
    request = prompt.strip() or "(not stated)"
    user = f"User request: {request}\nRecent calls, oldest first:\n{calls}\nOperations:\n{options}\nNext calls?"
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def output_schema(shortlist: list[str], max_calls: int, reason_chars: int = 40) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "calls": {
                "type": "array",
                "minItems": 1,
                "maxItems": max_calls,
                "items": {
                    "type": "object",
                    "properties": {
                        "operation": {"enum": shortlist},
                        "reason": {"type": "string", "maxLength": reason_chars},
                    },
                    "required": ["operation", "reason"],
                },
            }
        },
        "required": ["calls"],
    }


def parse_answer(text: str) -> list[tuple[str, str]]:
    """(operation, reason) pairs from the model's JSON; an unparsable answer is no answer."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return []
    calls = data.get("calls") if isinstance(data, dict) else None
    if not isinstance(calls, list):
        return []
    return [
        (str(c.get("operation", "")), str(c.get("reason", ""))[:200])
        for c in calls
        if isinstance(c, dict) and c.get("operation")
    ]


def patch(
    answer: list[tuple[str, str]], catalogue: Catalogue, matcher: CallMatcher, limit: int
) -> tuple[list[Suggestion], PatchStats]:
    """Keep real operations, map near misses onto real ones, drop the rest; distinct, in the model's order."""
    ids = {op.id for op in catalogue.operations}
    stats = PatchStats()
    out: list[Suggestion] = []
    for raw, reason in answer:
        endpoint = _normalise(raw)
        if endpoint in ids:
            stats.valid += 1
        else:
            match = matcher.match(endpoint)
            if match.operation is None:
                stats.dropped += 1
                stats.examples.append(raw)
                continue
            stats.patched += 1
            stats.examples.append(raw)
            endpoint = match.operation.id
        if endpoint not in {s.endpoint for s in out}:
            out.append(Suggestion(endpoint, reason))
    return out[:limit], stats


def _normalise(raw: str) -> str:
    """'get  /v1//invoices/' -> 'GET /v1/invoices': the slips a model makes when it writes an id itself."""
    method, _, path = raw.strip().partition(" ")
    path = "/" + "/".join(part for part in path.strip().split("/") if part)
    return f"{method.upper()} {path}"


def hits(suggestions: list[Suggestion], index: dict[str, int]) -> Hits:
    """The `llm` source: the model's order as a score in (0, 1], first = 1."""
    n = len(suggestions)
    return {index[s.endpoint]: 1.0 - i / max(n, 1) for i, s in enumerate(suggestions) if s.endpoint in index}


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
