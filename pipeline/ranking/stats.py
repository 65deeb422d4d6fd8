"""Transition statistics: per spec (operation -> operation counts from real sessions and feedback) and
spec-agnostic patterns (which *kind* of operation follows which, through which path relation) that let a
spec with no history still get sensible transitions.
"""

from __future__ import annotations

import threading
from collections import Counter, defaultdict, deque
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from pydantic import BaseModel

from pipeline.settings import RecallSettings

START = "^"  # the "previous operation" of a session's first call


@dataclass(frozen=True, slots=True)
class PromptVector:
    """A prompt's unit vector and the embedder that made it: vectors of two embedders are not comparable."""

    space: str
    vector: np.ndarray


class TransitionCounts(Protocol):
    """Per-spec counts; the in-memory one below for training and tests, Redis-backed in the service. Given the
    prompt asked now, the counts lean toward what followed the remembered labels with alike prompts
    (`recall_counts`)."""

    def next_counts(self, spec_hash: str, previous: str, prompt: PromptVector | None = None) -> dict[str, float]: ...

    def add(
        self, spec_hash: str, previous: str, following: str, weight: int = 1, prompt: PromptVector | None = None
    ) -> None: ...


def recall_counts(
    counts: dict[str, int], remembered: list[tuple[str, np.ndarray]], prompt: np.ndarray | None,
    recall: RecallSettings,
) -> dict[str, float]:
    """`counts` re-weighed by the remembered (following operation, unit prompt vector) labels: each weighs
    exp((cos - 1) / temperature) against `prompt`, the plain counts `prior` in all. The total stays the counts'
    total, so the evidence the ranker sees (`trans_support`) is what it was trained with; the shares change."""
    total = float(sum(counts.values()))
    if prompt is None or not remembered or total == 0:
        return {op: float(n) for op, n in counts.items()}
    vectors = np.stack([vector for _, vector in remembered]).astype(np.float32)
    kernel = np.exp((vectors @ (prompt / (np.linalg.norm(prompt) or 1.0)) - 1.0) / recall.temperature)
    weights: defaultdict[str, float] = defaultdict(float)
    for (following, _), weight in zip(remembered, kernel):
        weights[following] += float(weight)
    mass = float(kernel.sum()) + recall.prior
    return {op: total * (weights.get(op, 0.0) + recall.prior * counts.get(op, 0) / total) / mass
            for op in counts.keys() | weights.keys()}


class InMemoryTransitions:
    def __init__(self, recall: RecallSettings | None = None) -> None:
        self._recall = recall or RecallSettings(per_key=0)
        self._counts: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
        self._remembered: dict[tuple[str, str, str], deque[tuple[str, np.ndarray]]] = {}
        self._lock = threading.Lock()

    def next_counts(self, spec_hash: str, previous: str, prompt: PromptVector | None = None) -> dict[str, float]:
        with self._lock:
            counts = dict(self._counts.get((spec_hash, previous), {}))
            remembered = list(self._remembered.get((prompt.space, spec_hash, previous), ())) if prompt else []
        return recall_counts(counts, remembered, prompt.vector if prompt else None, self._recall)

    def add(
        self, spec_hash: str, previous: str, following: str, weight: int = 1, prompt: PromptVector | None = None
    ) -> None:
        with self._lock:
            self._counts[(spec_hash, previous)][following] += weight
            if prompt is not None and self._recall.per_key > 0:
                key = (prompt.space, spec_hash, previous)
                queue = self._remembered.setdefault(key, deque(maxlen=self._recall.per_key))
                queue.append((following, prompt.vector))


class PatternStats(BaseModel):
    """Counts of (context pattern -> chosen?) learned from training sessions, stored with the model.

    `transition[key]` with key "last_kind:relation:cand_kind:link" (link 2: needs what the last call lists or
    creates, 1: what its response names, 0: neither) and `first[key]` with key
    "cand_kind:depth:free_required" hold [chosen, available]: how often a candidate with that pattern was the
    next call, out of how often one was there to choose.
    """

    transition: dict[str, tuple[int, int]] = {}
    first: dict[str, tuple[int, int]] = {}

    @staticmethod
    def _rate(table: dict[str, tuple[int, int]], key: str, prior: float, strength: float = 5.0) -> float:
        chosen, available = table.get(key, (0, 0))
        return (chosen + prior * strength) / (available + strength)

    def transition_rate(self, key: str) -> float:
        return self._rate(self.transition, key, prior=0.01)

    def first_rate(self, key: str) -> float:
        return self._rate(self.first, key, prior=0.01)


def transition_key(last_kind: int, relation: int, cand_kind: int, link: int) -> str:
    return f"{last_kind}:{relation}:{cand_kind}:{link}"


def link_levels(strong: np.ndarray, by_response: np.ndarray) -> np.ndarray:
    """2 where the candidate needs what the last call lists/creates, 1 what its response names, else 0."""
    return np.where(strong, 2, np.where(by_response, 1, 0))


def first_key(cand_kind: int, depth: int, free_required: int) -> str:
    return f"{cand_kind}:{min(depth, 5)}:{min(free_required, 2)}"
