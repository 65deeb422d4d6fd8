"""How an answer is checked: every operation the model names is checked against the spec anyway (a server
without structured outputs, or a model id that drifted). An unknown operation is mapped to the nearest real one by
path-template matching, or dropped; both are counted. The kept ones become the `llm` candidate source."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from pipeline.ranking.sources import Hits
from pipeline.spec.catalogue import Catalogue
from pipeline.spec.matching import CallMatcher


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


# A call the model finished writing, in an answer cut short by `llm.max_tokens` (the JSON then does not parse).
_FINISHED_CALL = re.compile(r'\{\s*"operation"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"reason"\s*:\s*"((?:[^"\\]|\\.)*)"\s*\}')


def parse_answer(text: str) -> list[tuple[str, str]]:
    """(operation, reason) pairs from the model's JSON; of an answer cut short, the calls it finished."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return [(json.loads(f'"{op}"'), json.loads(f'"{why}"')[:200]) for op, why in _FINISHED_CALL.findall(text)]
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
