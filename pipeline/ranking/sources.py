"""Candidate sources. Each proposes scored operations (index -> score) under its own name; their union is
what the ranker orders. Sources are cheap recall, not the final order: the ranker sees their scores and ranks
as features. An `llm` source (the vLLM generator) plugs in from outside as one more named source.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pipeline.ranking.context import Context
from pipeline.ranking.profile import Kind, SpecProfile
from pipeline.ranking.relations import Relation, links, relations_from, response_links
from pipeline.ranking.signals import Signals
from pipeline.ranking.stats import (
    START,
    PatternRates,
    PatternTable,
    PromptVector,
    TransitionCounts,
    first_key,
    link_levels,
    transition_key,
)

SOURCE_NAMES = ("retrieval", "structure", "transitions", "popular", "llm")
Hits = dict[int, float]

# How strongly a path relation to a recent call suggests the candidate (a prior; the ranker learns the rest).
_PRIOR = {Relation.SAME_PATH: 0.6, Relation.ITEM: 1.0, Relation.CHILD: 0.8, Relation.DESCENDANT: 0.3,
          Relation.PARENT: 0.5, Relation.ANCESTOR: 0.2, Relation.SIBLING: 0.6, Relation.SAME_ROOT: 0.2}
_RELATION_WEIGHT = np.array([_PRIOR.get(r, 0.0) for r in Relation], dtype=np.float32)
_RECENCY = 0.6  # weight of a call one step older than the last
# How far retrieval leans toward operations like the last call: a prompt's match first, the context second.
LAST_CALL_WEIGHT = 0.25
# The structure source's priors (the ranker learns the rest from their scores): an OpenAPI link from a recent
# call is nearly as strong a hint as its item, a response field naming the candidate's parameter half as
# strong; an operation the history can fill, or a list narrowed to the thing just called, is half a relation.
_LINK_WEIGHT = 0.9
_RESPONSE_LINK_WEIGHT = 0.5
_FILLABLE_BONUS = 0.5
_FILTERED_BONUS = 0.5
# Below this the structure source proposes nothing: a distant relation alone (same root, ancestor) is noise.
_STRUCTURE_FLOOR = 0.15
# The transitions source's Dirichlet strength: the per-spec counts outweigh the agnostic pattern after a few labels.
_PATTERN_STRENGTH = 3.0
# The popular source's tie-breaks among equal first-call rates: lists and searches first, shallow paths first.
_BROWSE_BONUS = 0.05
_DEPTH_PENALTY = 0.01


def _top(scores: np.ndarray, limit: int, mask: np.ndarray | None = None) -> Hits:
    if mask is not None:
        scores = np.where(mask, scores, -np.inf)
    count = min(limit, int(np.isfinite(scores).sum()))
    if count == 0:
        return {}
    order = np.argpartition(-scores, count - 1)[:count]
    return {int(i): float(scores[i]) for i in order}


def retrieval(ctx: Context, signals: Signals, limit: int) -> Hits:
    """Prompt against operation texts, nudged toward the recent context when there is one; with no prompt, the
    operations most like the last call. Where an API's paths say nothing (RPC style), the structure source finds
    no neighbours, and what is like the last call in name and text is the next call's best recall."""
    if signals.prompt_sim is None:
        return {} if signals.last_sim is None else _top(signals.last_sim, limit)
    scores = signals.prompt_sim.copy()
    if signals.last_sim is not None:
        scores += LAST_CALL_WEIGHT * signals.last_sim
    return _top(scores, limit)


def structure(ctx: Context, signals: Signals, limit: int) -> Hits:
    """Path-tree neighbours of the recent calls, operations they enable, and operations the history can fill."""
    if not ctx.op_history:
        return {}
    profile = ctx.spec.profile
    scores = np.zeros(len(profile), dtype=np.float32)
    for age, op in enumerate(reversed(ctx.op_history[-3:])):
        weight = _RECENCY**age
        rel = signals.rel_last if age == 0 else relations_from(profile, op)
        scores += weight * (_RELATION_WEIGHT[rel] + _LINK_WEIGHT * links(profile, op)
                           + _RESPONSE_LINK_WEIGHT * response_links(profile, op))
    needs = profile.n_required > 0
    all_known = needs & (signals.known_required >= profile.n_required)
    scores += _FILLABLE_BONUS * all_known
    for entity in ctx.last_entities & profile.filtered_by.keys():  # lists narrowed to the thing just called
        scores[profile.filtered_by[entity]] += _FILTERED_BONUS
    return _top(scores, limit, mask=scores > _STRUCTURE_FLOOR)


def transitions(
    ctx: Context, limit: int, counts: TransitionCounts, pattern: np.ndarray, space: str = ""
) -> tuple[Hits, np.ndarray, np.ndarray]:
    """Per-spec operation->operation frequencies, leaning toward what followed alike prompts (`space` names the
    embedder of `ctx.prompt_vec`), backed off to the spec-agnostic `pattern` rates.

    Returns the hits plus, for features, the per-spec probability and its support per op.
    """
    profile = ctx.spec.profile
    n = len(profile)
    previous = ctx.spec.catalogue.operations[ctx.last_op].id if ctx.last_op is not None else START
    prompt = PromptVector(space, ctx.prompt_vec) if ctx.prompt_vec is not None else None
    observed = counts.next_counts(ctx.spec.content_hash, previous, prompt)
    total = float(sum(observed.values()))
    spec_prob = np.zeros(n, dtype=np.float32)
    for op_id, count in observed.items():
        index = profile.index.get(op_id)
        if index is not None:
            spec_prob[index] = count / total
    # Dirichlet-style blend: with little per-spec evidence the agnostic pattern dominates.
    scores = (spec_prob * total + _PATTERN_STRENGTH * pattern) / (total + _PATTERN_STRENGTH)
    support = np.full(n, total, dtype=np.float32)
    return _top(scores, limit), spec_prob, support


def _keyed(make: Callable[..., str], *columns: np.ndarray) -> list[str]:
    """`make(*row)` for every row of the integer columns, made once per distinct row: a spec's operations fall
    into a few dozen rows, and a string per operation on every request is a loop the hot path does not need."""
    rows = [np.asarray(c).astype(np.int64) for c in columns]
    if not len(rows[0]):
        return []
    codes = np.ravel_multi_index([r - r.min() for r in rows], [int(r.max() - r.min()) + 1 for r in rows])
    _, first, inverse = np.unique(codes, return_index=True, return_inverse=True)
    keys = np.array([make(*(int(r[j]) for r in rows)) for j in first], dtype=object)
    return keys[inverse].tolist()


def first_keys(profile: SpecProfile, unfillable: np.ndarray) -> list[str]:
    """Pattern key of every operation as a session's first call. Training counts and serving looks up these."""
    return _keyed(first_key, profile.kind, profile.depth, unfillable)


def transition_keys(profile: SpecProfile, last: int, rel: np.ndarray, link: np.ndarray) -> list[str]:
    """Pattern key of every operation as the call after operation `last` (relation and link level to it)."""
    last_kind = np.full(len(profile), int(profile.kind[last]))
    return _keyed(transition_key, last_kind, rel, profile.kind, link)


def _rates(keys: list[str], rate: Callable[[str], float]) -> np.ndarray:
    cache: dict[str, float] = {}
    out = np.empty(len(keys), dtype=np.float32)
    for j, key in enumerate(keys):
        value = cache.get(key)
        if value is None:
            value = cache[key] = rate(key)
        out[j] = value
    return out


@dataclass(frozen=True, slots=True)
class PatternView:
    """The spec-agnostic patterns of one problem: the key of every operation in the table that applies (first
    calls with no history, else transitions from the last call), its rates, and the first-call rates (the
    popular source reads them with or without history)."""

    table: PatternTable
    keys: list[str]
    rates: np.ndarray
    first: np.ndarray


def pattern_view(ctx: Context, signals: Signals, patterns: PatternRates) -> PatternView:
    keys = first_keys(ctx.spec.profile, signals.unfillable)
    first = _rates(keys, patterns.first_rate)
    if ctx.last_op is None:
        return PatternView("first", keys, first, first)
    assert signals.rel_last is not None
    link = link_levels(signals.linked_last, signals.linked_response)
    keys = transition_keys(ctx.spec.profile, ctx.last_op, signals.rel_last, link)
    return PatternView("transition", keys, _rates(keys, patterns.transition_rate), first)


def popular(ctx: Context, signals: Signals, limit: int, first: np.ndarray) -> Hits:
    """Entry points: operations callable with what the client already has (no unfillable path parameter),
    ranked by the learned first-call rates `first` and preferring lists and searches, the usual way in."""
    profile = ctx.spec.profile
    browse = np.isin(profile.kind, (Kind.LIST, Kind.SEARCH))
    scores = first + _BROWSE_BONUS * browse - _DEPTH_PENALTY * profile.depth
    return _top(scores, limit, mask=(signals.unfillable == 0) & ~profile.deprecated)


@dataclass(slots=True)
class CandidateSet:
    """The union of all sources' proposals, with each source's score and rank for every candidate."""

    indices: np.ndarray  # operation indices, in a stable order
    scores: dict[str, np.ndarray]  # source -> score per candidate (NaN where the source did not propose it)
    ranks: dict[str, np.ndarray]  # source -> 1-based rank within the source (NaN where not proposed)

    def sources_of(self, position: int) -> list[str]:
        return [name for name, s in self.scores.items() if not np.isnan(s[position])]


def union(hits: dict[str, Hits], pool: int) -> CandidateSet:
    """Merge sources round-robin by rank so every source gets its best into a pool of `pool` candidates."""
    ordered = {name: sorted(h.items(), key=lambda kv: -kv[1]) for name, h in hits.items()}
    chosen: dict[int, None] = {}
    depth = max((len(v) for v in ordered.values()), default=0)
    for r in range(depth):
        for name in SOURCE_NAMES:
            row = ordered.get(name)
            if row and r < len(row) and len(chosen) < pool:
                chosen.setdefault(row[r][0], None)
    indices = np.fromiter(chosen, dtype=np.int64, count=len(chosen))
    position = {int(op): i for i, op in enumerate(indices)}
    scores: dict[str, np.ndarray] = {}
    ranks: dict[str, np.ndarray] = {}
    for name in SOURCE_NAMES:
        s = np.full(len(indices), np.nan, dtype=np.float32)
        r = np.full(len(indices), np.nan, dtype=np.float32)
        for rank, (op, score) in enumerate(ordered.get(name, []), start=1):
            if op in position:
                s[position[op]] = score
                r[position[op]] = rank
        scores[name], ranks[name] = s, r
    return CandidateSet(indices, scores, ranks)
