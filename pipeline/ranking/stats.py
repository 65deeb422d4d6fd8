"""Transition statistics: per spec (operation -> operation counts from real sessions and feedback) and
spec-agnostic patterns (which *kind* of operation follows which, through which path relation) that let a
spec with no history still get sensible transitions.
"""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from typing import Protocol

import numpy as np
from pydantic import BaseModel

START = "^"  # the "previous operation" of a session's first call


class TransitionCounts(Protocol):
    """Per-spec counts; the in-memory one below for training and tests, Redis-backed in the service."""

    def next_counts(self, spec_hash: str, previous: str) -> dict[str, int]: ...

    def add(self, spec_hash: str, previous: str, following: str, weight: int = 1) -> None: ...


class InMemoryTransitions:
    def __init__(self) -> None:
        self._counts: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
        self._lock = threading.Lock()

    def next_counts(self, spec_hash: str, previous: str) -> dict[str, int]:
        with self._lock:
            return dict(self._counts.get((spec_hash, previous), {}))

    def add(self, spec_hash: str, previous: str, following: str, weight: int = 1) -> None:
        with self._lock:
            self._counts[(spec_hash, previous)][following] += weight


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
