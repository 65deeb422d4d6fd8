"""Transition statistics: per spec (operation -> operation counts from real sessions and feedback) and
spec-agnostic patterns (which *kind* of operation follows which, through which path relation) that let a
spec with no history still get sensible transitions.
"""

from __future__ import annotations

import math
import threading
from collections import Counter, defaultdict, deque
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
from pydantic import BaseModel

from pipeline.settings import RecallSettings

START = "^"  # the "previous operation" of a session's first call
SHARED = "*"  # the spec key of the counts every spec with an operation adds to


@dataclass(frozen=True, slots=True)
class PromptVector:
    """A prompt's unit vector and the embedder that made it: vectors of two embedders are not comparable."""

    space: str
    vector: np.ndarray


class TransitionCounts(Protocol):
    """Per-spec counts; the in-memory one below for training and tests, Redis-backed in the service. Given the
    prompt asked now, the counts lean toward what followed the remembered labels with alike prompts
    (`recall_counts`). Beside them, how well each weight of the counts against the model has predicted the spec's
    labels (`habit_scores`)."""

    def next_counts(self, spec_hash: str, previous: str, prompt: PromptVector | None = None) -> dict[str, float]: ...

    def add(
        self, spec_hash: str, previous: str, following: str, weight: int = 1, prompt: PromptVector | None = None
    ) -> None: ...

    def prior_scores(self, spec_hash: str) -> dict[str, float]: ...

    def add_prior_scores(self, spec_hash: str, scores: dict[str, float]) -> None: ...


# A candidate's least probability in a label's score: a label the mixture gave nothing costs every weight alike.
_FLOOR = 1e-6


class HabitOffer(BaseModel):
    """The two halves of a prediction's mixture, per candidate in the prediction's order: the model's probability
    and the share the spec's counts gave it after `labels` labels of the last call; and the weights (`habit_prior`
    values) its label is to score."""

    labels: float
    model: list[float]
    habit: list[float]
    priors: list[float]
    prompted: bool  # the request asked something: the model reads it, the counts barely


def prior_key(prior: float, prompted: bool) -> str:
    """Weights are scored apart for requests with a prompt and without: traffic imported from logs has no prompt,
    and where the counts beat the model without one they need not beat it when the request says what it wants."""
    return f"{'asked' if prompted else 'plain'}:{prior:g}"


def habit_mixture(model: np.ndarray, habit: np.ndarray, labels: float, prior: float) -> np.ndarray:
    """The model's probabilities with the spec's counts mixed in: they weigh n / (n + `prior`) after n `labels`."""
    share = labels / (labels + prior)
    return (1 - share) * model + share * habit


def habit_scores(offer: HabitOffer, chosen: int) -> dict[str, float]:
    """For each weight of `offer.priors`, the log-probability its mixture gave the chosen candidate among the
    candidates: summed over a spec's labels, the weight that predicts them best has the highest."""
    model, habit = np.asarray(offer.model), np.asarray(offer.habit)
    scores = {}
    for prior in offer.priors:
        mixed = habit_mixture(model, habit, offer.labels, prior)
        scores[prior_key(prior, offer.prompted)] = float(np.log(max(mixed[chosen], _FLOOR) / max(mixed.sum(), _FLOOR)))
    return scores


# A weight replaces the configured one once its mixture has made the spec's labels three times as likely (Jeffreys'
# "substantial" Bayes factor): on a few labels the best weight is mostly noise (docs/decisions.md, "Evidence wins").
_SUBSTANTIAL = math.log(3.0)


def best_prior(scores: dict[str, float], priors: list[float], default: float, prompted: bool) -> float:
    """The weight whose mixture has predicted the spec's labels (of requests with a prompt, or without) best;
    `default` until one does substantially better than it."""
    score = {prior: scores.get(prior_key(prior, prompted), 0.0) for prior in {*priors, default}}
    best = max(priors, key=score.__getitem__)
    return best if score[best] > score[default] + _SUBSTANTIAL else default


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


@dataclass(frozen=True, slots=True)
class Evidence:
    """What labels said followed one operation: counts of the following operations and the latest labels with
    their prompt vectors, each with the spec it was given on (the shared evidence mixes specs)."""

    counts: dict[str, int]
    remembered: list[tuple[str, str, np.ndarray]]  # (spec hash, following operation, unit prompt vector)


def pooled_counts(
    spec_hash: str, own: Evidence, shared: Evidence, prompt: np.ndarray | None, recall: RecallSettings,
    borrow: float,
) -> dict[str, float]:
    """The spec's own counts (re-weighed by its remembered prompts) plus `borrow` times what the labels of other
    specs said followed the same operation: an API registered anew, or in another version, starts from what its
    users did elsewhere instead of from nothing."""
    counts = recall_counts(own.counts, [(op, v) for _, op, v in own.remembered], prompt, recall)
    if borrow <= 0:
        return counts
    others = {op: n - own.counts.get(op, 0) for op, n in shared.counts.items() if n > own.counts.get(op, 0)}
    theirs = [(op, v) for spec, op, v in shared.remembered if spec != spec_hash]
    for op, n in recall_counts(others, theirs, prompt, recall).items():
        counts[op] = counts.get(op, 0.0) + borrow * n
    return counts


def counted_under(spec_hash: str, previous: str, borrow: float) -> tuple[str, ...]:
    """The spec keys a label after `previous` is counted under: its spec's, and the shared one when specs borrow.
    What starts a session is not shared: a first call is a property of one API, and unrelated APIs that happen to
    name an operation alike would lend each other their habits."""
    return (spec_hash, SHARED) if borrow > 0 and previous != START else (spec_hash,)


class InMemoryTransitions:
    def __init__(self, recall: RecallSettings | None = None, borrow: float = 0.0) -> None:
        self._recall = recall or RecallSettings(per_key=0)
        self._borrow = borrow
        self._counts: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
        self._remembered: dict[tuple[str, str, str], deque[tuple[str, str, np.ndarray]]] = {}
        self._prior_scores: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self._lock = threading.Lock()

    def _evidence(self, spec_hash: str, previous: str, space: str | None) -> Evidence:
        remembered = self._remembered.get((space, spec_hash, previous), ()) if space is not None else ()
        return Evidence(dict(self._counts.get((spec_hash, previous), {})), list(remembered))

    def next_counts(self, spec_hash: str, previous: str, prompt: PromptVector | None = None) -> dict[str, float]:
        space = prompt.space if prompt else None
        shares = SHARED in counted_under(spec_hash, previous, self._borrow)
        with self._lock:
            own = self._evidence(spec_hash, previous, space)
            shared = self._evidence(SHARED, previous, space) if shares else Evidence({}, [])
        return pooled_counts(spec_hash, own, shared, prompt.vector if prompt else None, self._recall, self._borrow)

    def add(
        self, spec_hash: str, previous: str, following: str, weight: int = 1, prompt: PromptVector | None = None
    ) -> None:
        with self._lock:
            for key in counted_under(spec_hash, previous, self._borrow):
                self._counts[(key, previous)][following] += weight
                if prompt is not None and self._recall.per_key > 0:
                    queue = self._remembered.setdefault((prompt.space, key, previous),
                                                        deque(maxlen=self._recall.per_key))
                    queue.append((spec_hash, following, prompt.vector))

    def prior_scores(self, spec_hash: str) -> dict[str, float]:
        with self._lock:
            return dict(self._prior_scores.get(spec_hash, {}))

    def add_prior_scores(self, spec_hash: str, scores: dict[str, float]) -> None:
        with self._lock:
            self._prior_scores[spec_hash].update(scores)


PatternTable = Literal["first", "transition"]
# A pattern's rate before its counts: most candidates are not the next call (about one in a hundred is), and
# five observations of a pattern outweigh that prior as much as it weighs.
_RATE_PRIOR = 0.01
_RATE_STRENGTH = 5.0


class PatternRates(Protocol):
    """The spec-agnostic rate of a pattern as the next call: trained (`PatternStats`) or adapted by labels."""

    def first_rate(self, key: str) -> float: ...

    def transition_rate(self, key: str) -> float: ...


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
    def _rate(table: dict[str, tuple[int, int]], key: str) -> float:
        chosen, available = table.get(key, (0, 0))
        return (chosen + _RATE_PRIOR * _RATE_STRENGTH) / (available + _RATE_STRENGTH)

    def transition_rate(self, key: str) -> float:
        return self._rate(self.transition, key)

    def first_rate(self, key: str) -> float:
        return self._rate(self.first, key)


@dataclass(frozen=True, slots=True)
class PatternEvidence:
    """What labels chose, per pattern table: how often a pattern was the next call (`chosen`) and how often the
    trained rates expected it to be (`expected`: per label, the pattern's share of the trained rates of every
    operation there was to choose)."""

    chosen: dict[PatternTable, dict[str, int]]
    expected: dict[PatternTable, dict[str, float]]


class AdaptedPatterns:
    """The trained rates scaled by how much more (or less) often labels chose each pattern than the trained rates
    expected: a habit of this deployment (repeating a call for each item, reading before acting) lifts its
    pattern on every spec, including specs no label was given on. Observed over expected does not depend on how
    many operations a spec has, as a rate of chosen over available would. `prior` labels' worth of agreement
    with training keeps a few labels from swinging it; with no labels the rates are the trained ones."""

    def __init__(self, trained: PatternStats, evidence: PatternEvidence, prior: float) -> None:
        self._trained = trained
        self._evidence = evidence
        self._prior = prior

    def _rate(self, table: PatternTable, key: str, trained: float) -> float:
        chosen = self._evidence.chosen.get(table, {}).get(key, 0)
        expected = self._evidence.expected.get(table, {}).get(key, 0.0)
        return trained * (self._prior + chosen) / (self._prior + expected)

    def first_rate(self, key: str) -> float:
        return self._rate("first", key, self._trained.first_rate(key))

    def transition_rate(self, key: str) -> float:
        return self._rate("transition", key, self._trained.transition_rate(key))


class PatternOffer(BaseModel):
    """What a prediction offered, by pattern: each pattern's share of the trained rates of the operations there
    were to choose (what a label is expected to choose), and the pattern of each candidate, in the order of the
    prediction's candidates (kept for a day with it: no operation ids repeated)."""

    table: PatternTable
    expected: dict[str, float]
    keys: list[str]

    def chosen(self, candidates: list[str], endpoint: str) -> str | None:
        """The pattern of the candidate a label names; None for a call outside the candidate pool, which teaches
        the patterns nothing (its pattern was not kept)."""
        return self.keys[candidates.index(endpoint)] if endpoint in candidates else None


class PatternCounts(Protocol):
    """Labels counted by pattern, shared by every spec: in memory for the replay and tests, in Redis in the
    service (`pipeline.learning.online_patterns`)."""

    def adapt(self, trained: PatternStats) -> PatternRates: ...

    def add(self, offer: PatternOffer, chosen: str) -> None:
        """Count a label that chose pattern `chosen` where `offer` was offered."""
        ...


class InMemoryPatterns:
    def __init__(self, prior: float) -> None:
        self._prior = prior
        self._chosen: dict[PatternTable, Counter[str]] = {"first": Counter(), "transition": Counter()}
        self._expected: dict[PatternTable, defaultdict[str, float]] = {
            "first": defaultdict(float), "transition": defaultdict(float)}
        self._lock = threading.Lock()

    def adapt(self, trained: PatternStats) -> PatternRates:
        with self._lock:
            evidence = PatternEvidence({t: dict(c) for t, c in self._chosen.items()},
                                       {t: dict(e) for t, e in self._expected.items()})
        return AdaptedPatterns(trained, evidence, self._prior)

    def add(self, offer: PatternOffer, chosen: str) -> None:
        with self._lock:
            for pattern, share in offer.expected.items():
                self._expected[offer.table][pattern] += share
            self._chosen[offer.table][chosen] += 1


def transition_key(last_kind: int, relation: int, cand_kind: int, link: int) -> str:
    return f"{last_kind}:{relation}:{cand_kind}:{link}"


def link_levels(strong: np.ndarray, by_response: np.ndarray) -> np.ndarray:
    """2 where the candidate needs what the last call lists/creates, 1 what its response names, else 0."""
    return np.where(strong, 2, np.where(by_response, 1, 0))


def first_key(cand_kind: int, depth: int, free_required: int) -> str:
    return f"{cand_kind}:{min(depth, 5)}:{min(free_required, 2)}"
