"""The path of one prediction, top to bottom:

    context (match history, read prompt) -> signals -> candidate sources -> union -> features -> ranker
    -> guardrails -> hedge -> parameter carry-over -> reasons -> top k

`assemble` (everything up to the features) is shared with training, so both see identical features.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from pipeline.ranking.carry import carry_params
from pipeline.ranking.context import Context, Event, PreparedSpec, build_context
from pipeline.ranking.embedding import CachedEmbedder, OperationEmbeddings
from pipeline.ranking.features import PromptReading, TransitionView, column, featurize, read_prompt
from pipeline.ranking.guardrails import demote_destructive
from pipeline.ranking.hedge import hedge, steps
from pipeline.ranking.model import RankerModel
from pipeline.ranking.reasons import explain
from pipeline.ranking.request_values import JSONScalar, Source, fill_request
from pipeline.ranking.said_values import SaidValues
from pipeline.ranking.signals import Signals, compute_signals
from pipeline.ranking.sources import (
    CandidateSet,
    Hits,
    PatternView,
    pattern_view,
    popular,
    retrieval,
    structure,
    transitions,
    union,
)
from pipeline.ranking.stats import (
    HabitOffer,
    PatternCounts,
    PatternOffer,
    PatternRates,
    PatternStats,
    PromptVector,
    TransitionCounts,
    best_prior,
    habit_mixture,
)
from pipeline.settings import RankingSettings
from pipeline.spec.catalogue import Catalogue
from pipeline.timing import ms_since


@dataclass(frozen=True, slots=True)
class RankedCall:
    endpoint: str  # "METHOD /template" of a real operation of the spec
    method: str
    path: str  # concrete where the history fills it, with the server prefix
    params: dict[str, str]  # the path's
    score: float  # calibrated, monotone in rank
    reason: str
    sources: list[str]
    query: dict[str, JSONScalar] = field(default_factory=dict)
    body: dict[str, JSONScalar] = field(default_factory=dict)  # top-level fields
    filled_from: dict[str, Source] = field(default_factory=dict)  # query and body field -> where its value came from
    missing: list[str] = field(default_factory=list)  # required parameters and fields nothing filled


@dataclass(slots=True)
class PredictOutcome:
    predictions: list[RankedCall]
    model_version: str
    matched_events: int
    unmatched_events: list[str]
    timing_ms: dict[str, float] = field(default_factory=dict)
    # What a label needs to become training rows later: the candidate pool in feature-row order, its feature
    # matrix, and the operation the prediction followed (the `previous` of an online transition count).
    candidates: list[str] = field(default_factory=list)
    features: np.ndarray | None = None
    last_operation: str | None = None
    prompt: PromptVector | None = None  # remembered with the label (the online counts' recall)
    patterns: PatternOffer | None = None  # what the label teaches the spec-agnostic patterns
    habit: HabitOffer | None = None  # what the label teaches the weight of the spec's counts (None: no counts yet)


@dataclass(slots=True)
class Assembled:
    """Everything known about one problem before the model scores it."""

    ctx: Context
    signals: Signals
    candidates: CandidateSet
    transitions: TransitionView
    reading: PromptReading
    X: np.ndarray
    patterns: PatternView

    @property
    def labels(self) -> float:
        """Labels this spec's counts hold after the last call (every operation's support is their total)."""
        return float(self.transitions.support[0])

    def pattern_offer(self, trained: PatternStats) -> PatternOffer:
        """Each pattern's share of the `trained` rates over every operation, and each candidate's pattern in the
        order of `candidates`."""
        table, keys = self.patterns.table, self.patterns.keys
        rate = trained.first_rate if table == "first" else trained.transition_rate
        mass = {key: n * rate(key) for key, n in Counter(keys).items()}
        total = sum(mass.values()) or 1.0
        return PatternOffer(table=table, expected={key: m / total for key, m in mass.items()},
                            keys=[keys[int(i)] for i in self.candidates.indices])


def assemble(
    ctx: Context,
    patterns: PatternRates,
    counts: TransitionCounts,
    settings: RankingSettings,
    extra_sources: dict[str, Hits] | None = None,
    disabled: frozenset[str] = frozenset(),
    space: str = "",
) -> Assembled:
    """Signals, sources, their union and the feature matrix. `disabled` sources propose nothing (ablations);
    `space` names the embedder of `ctx.prompt_vec` (remembered prompts of another embedder are not compared)."""
    signals = compute_signals(ctx)
    limit = settings.per_source
    rates = pattern_view(ctx, signals, patterns)
    trans_hits, spec_prob, support = transitions(ctx, limit, counts, rates.rates, space)
    hits: dict[str, Hits] = {
        "retrieval": retrieval(ctx, signals, limit),
        "structure": structure(ctx, signals, limit),
        "transitions": trans_hits,
        "popular": popular(ctx, signals, limit // 2, rates.first),
        **(extra_sources or {}),
    }
    candidates = union({name: h for name, h in hits.items() if name not in disabled}, settings.candidate_pool)
    view = TransitionView(spec_prob, support, rates.rates)
    reading = read_prompt(ctx.prompt)
    X = featurize(ctx, signals, candidates, view, reading)
    return Assembled(ctx, signals, candidates, view, reading, X, rates)


class Predictor:
    """In-process prediction: holds the model, the embedder and the caches. The Serve graph wraps pieces of it."""

    def __init__(
        self,
        model: RankerModel,
        counts: TransitionCounts,
        settings: RankingSettings,
        embedder: CachedEmbedder | None = None,
        op_embeddings: OperationEmbeddings | None = None,
        patterns: PatternCounts | None = None,
    ) -> None:
        """Without `embedder`/`op_embeddings` (the Serve Ranker, whose vectors come from the Embedder
        deployment) callers pass `prompt_vec` and build the `PreparedSpec` themselves. With `patterns`, the
        trained spec-agnostic patterns are adapted by what labels chose; without, they are the model's."""
        self.model = model  # never replaced: a reload swaps the whole Predictor (serve/ranker.py)
        self.embedder = embedder
        self.op_embeddings = op_embeddings
        self.counts = counts
        self.patterns = patterns
        self.settings = settings

    def prepare(self, catalogue: Catalogue) -> PreparedSpec:
        if self.op_embeddings is None:
            raise RuntimeError("this Predictor has no operation embeddings: build the PreparedSpec with vectors")
        return PreparedSpec.build(catalogue, self.op_embeddings.get(catalogue))

    def embed_prompt(self, prompt: str) -> np.ndarray | None:
        prompt = prompt.strip()
        if not prompt:
            return None
        if self.embedder is None:
            raise RuntimeError("this Predictor has no embedder: pass prompt_vec")
        return self.embedder.embed([prompt])[0]

    def predict(
        self,
        spec: PreparedSpec,
        events: list[Event],
        prompt: str = "",
        k: int = 5,
        extra_sources: dict[str, Hits] | None = None,
        prompt_vec: np.ndarray | None = None,
        disabled: frozenset[str] = frozenset(),
    ) -> PredictOutcome:
        started = time.perf_counter()
        timing: dict[str, float] = {}
        if prompt_vec is None:
            prompt_vec = self.embed_prompt(prompt)
        timing["embed_prompt"] = ms_since(started)
        ctx = build_context(spec, events, prompt, prompt_vec, self.settings.max_history)
        model = self.model
        mark = time.perf_counter()
        patterns = model.patterns if self.patterns is None else self.patterns.adapt(model.patterns)
        assembled = assemble(ctx, patterns, self.counts, self.settings, extra_sources, disabled, model.meta.embedder)
        timing["candidates_features"] = ms_since(mark)
        mark = time.perf_counter()
        prior = self.settings.habit_prior
        if assembled.labels > 0:  # the spec's weight is read only where there are counts to weigh
            prior = best_prior(self.counts.prior_scores(spec.content_hash), self.settings.habit_priors, prior,
                               bool(ctx.prompt))
        ranked, habit = rank(model, assembled, k, self.settings, prior)
        timing["rank"] = ms_since(mark)
        timing["total"] = ms_since(started)
        unmatched = [e.endpoint for e, m in zip(events[-self.settings.max_history :], ctx.history) if not m.matched]
        operations = spec.catalogue.operations
        return PredictOutcome(
            ranked,
            model.version,
            len(ctx.op_history),
            unmatched,
            timing,
            candidates=[operations[int(i)].id for i in assembled.candidates.indices],
            features=assembled.X,
            last_operation=operations[ctx.last_op].id if ctx.last_op is not None else None,
            prompt=PromptVector(model.meta.embedder, prompt_vec) if prompt_vec is not None else None,
            patterns=assembled.pattern_offer(model.patterns),
            habit=habit,
        )


def rank(
    model: RankerModel, assembled: Assembled, k: int, settings: RankingSettings, prior: float
) -> tuple[list[RankedCall], HabitOffer | None]:
    """The top `k` calls; the spec's counts weigh n / (n + `prior`) against the model after n labels of the last
    call. With the calls, what a label of this prediction teaches that weight."""
    ctx, candidates = assembled.ctx, assembled.candidates
    if len(candidates.indices) == 0:
        return [], None
    raw = model.raw_scores(assembled.X)
    profile, operations = ctx.spec.profile, ctx.spec.catalogue.operations
    idx = candidates.indices
    probabilities = model.probabilities(raw)
    labels = assembled.labels
    habit = None
    if labels > 0:
        counted = assembled.transitions.spec_prob[idx]
        habit = HabitOffer(labels=labels, model=np.round(probabilities, 5).tolist(),
                           habit=np.round(counted, 5).tolist(), priors=settings.habit_priors,
                           prompted=bool(ctx.prompt))
        probabilities = habit_mixture(probabilities, counted, labels, prior)
        order = np.argsort(-probabilities, kind="stable")
    else:  # the raw scores: their order is the probabilities', without the ties of a saturated calibration
        order = np.argsort(-raw, kind="stable")
    # NaN (no prompt) compares false: nothing was asked for.
    asked = column(assembled.X, "destructive_intent") == 1.0
    order, ordered_scores, demoted = demote_destructive(order, profile.destructive[idx], asked, probabilities)
    if settings.hedge_share < 1.0:
        scores = np.empty_like(probabilities)
        scores[order] = ordered_scores
        order, ordered_scores = hedge(order, scores, steps(profile, idx, ctx.last_op), settings.hedge_width,
                                      settings.hedge_share)
    out: list[RankedCall] = []
    said = SaidValues.of(ctx.prompt, ctx.prompt_values)
    for position, score in zip(order[:k], ordered_scores[:k]):
        op_index = int(idx[position])
        op = operations[op_index]
        carried = carry_params(op, ctx, ctx.spec.catalogue.base_path)
        request = fill_request(op, op_index, ctx, said, frozenset(carried.params.values()), carried.unresolved)
        sources = candidates.sources_of(int(position))
        spec_prob = float(assembled.transitions.spec_prob[op_index])
        reason = explain(ctx, assembled.signals, op_index, sources, spec_prob, int(position) in demoted)
        out.append(RankedCall(op.id, op.method, carried.path, carried.params, round(float(score), 4), reason, sources,
                              request.query, request.body, request.filled_from, list(request.missing)))
    return out, habit

