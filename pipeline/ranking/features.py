"""The feature vector: the relation between the context (history, prompt) and one candidate operation.

Nothing here names an operation or a spec, so a model trained on Stripe and GitHub ranks TMDB. Training and
serving both call `featurize`; the model is saved with `SCHEMA_VERSION` and refuses another schema.
Missing values are NaN (no prompt, no history, no LLM), which LightGBM routes on its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pipeline.ranking.context import Context
from pipeline.ranking.intent import (
    asks_for,
    destructive_words,
    name_types,
    named_mentions,
    named_things,
    owners,
    prompt_intents,
    requested_words,
)
from pipeline.ranking.signals import Signals
from pipeline.ranking.sources import SOURCE_NAMES, CandidateSet
from pipeline.ranking.text import stem, tokens

SCHEMA_VERSION = "opensesame-features-v8"

# Prompt similarity enters only scale-free (ranks, z-scores, ratios to the best match): real questions sit at
# about half the cosine of operation-summary-like prompts, and an absolute threshold learned on one style
# would not transfer to the other. Retrieval's raw score is a cosine too, so only its rank is a feature.
FEATURE_NAMES: tuple[str, ...] = (
    *(f"{source}_score" for source in SOURCE_NAMES if source != "retrieval"),
    *(f"{source}_rank" for source in SOURCE_NAMES),
    "n_sources",
    "prompt_sim_rank", "prompt_sim_ratio", "prompt_sim_z",
    "goal_sim_ratio",
    # Words rare in the spec single an operation out where the embedding blurs ("trending" vs fifty TV ops);
    # response field names say which operation answers the question ("birthday", "headquarters").
    "lex_idf", "lex_idf_rank", "field_idf", "field_idf_rank", "goal_field",
    # The prompt names what the operation *does* (its last path word: "refund", "comment on", "power on"), and
    # quotes the ids it needs ("server 4712"): a request specific enough to outweigh the history's habits.
    "verb_idf", "verb_idf_rank", "prompt_valued",
    # Where the request names the candidate: of two requests in one prompt, the first is usually next; and its
    # place among the operations named and not called yet ("details, reviews and offers" after the details).
    "mention_pos", "mention_rank_pending",
    # Rank of the prompt match *within* a group: among ops needing what the last call returned, among ops
    # reachable now (ids known, in the last response or named by the prompt), among ops of the same kind.
    # "Best match among the person operations" is the signal, not the raw cosine.
    "prompt_rank_linked", "prompt_rank_reachable", "goal_rank_reachable", "prompt_rank_kind",
    "last_sim", "last_sim_rank", "history_sim", "prompt_last_ratio",
    "trans_spec_prob", "trans_support", "trans_pattern",
    "rel_last", "linked_last", "linked_response", "linked_any",
    "cand_kind", "cand_method", "cand_depth", "depth_diff", "centrality",
    "n_required", "unfillable", "prompt_fills", "unreachable", "known_from_last", "has_body", "deprecated", "destructive",
    "last_kind", "last_method", "n_events", "n_matched", "times_called", "calls_since", "is_last_op",
    # Working through items: those left for the candidate (listed by the prompt or a response, not yet called
    # with), and how many calls in a row the session has made of its last operation.
    "items_left", "run_length",
    # A list narrowed to the thing the session has open ("the charges of this customer": `?customer=`): 2 by the
    # last call's thing, 1 by one read earlier.
    "filters_known",
    "has_prompt", "n_names", "name_type_match", "intent_match", "n_intents", "lex_overlap", "lex_action", "destructive_intent",
    "log_n_ops",
)
CATEGORICAL: tuple[str, ...] = ("rel_last", "cand_kind", "cand_method", "last_kind", "last_method")
# What a candidate is, apart from what was asked (its kind, method, depth, place in the API, how often sessions
# open with its pattern): priors learned from the training generator's sessions. A request with nothing before it
# is decided on what it asks, so these are missing there (docs/decisions.md, "A request with nothing before it").
GENERATOR_PRIORS: tuple[str, ...] = ("cand_kind", "cand_method", "cand_depth", "centrality", "has_body",
                                     "trans_pattern", "popular_score", "popular_rank")
_COLUMN = {name: i for i, name in enumerate(FEATURE_NAMES)}
_PRIORS = [_COLUMN[name] for name in GENERATOR_PRIORS]


@dataclass(frozen=True, slots=True)
class PromptReading:
    content: frozenset[str]  # stemmed content words, for lexical overlap
    intents: frozenset[int]  # operation kinds the prompt's verbs ask for
    destructive: frozenset[str]  # destructive verbs it uses
    names: int  # proper names / quoted titles: a named thing usually has to be searched for first
    name_types: frozenset[str]  # entity nouns written next to those names ("the collection Harry Potter")
    things: frozenset[str]  # head nouns it names, possessors left out (`intent.named_things`)
    owners: frozenset[str]  # head nouns of its possessors (`intent.owners`)


def read_prompt(prompt: str) -> PromptReading:
    all_words = frozenset(stem(w) for w in requested_words(prompt))
    return PromptReading(
        tokens(prompt), prompt_intents(all_words), destructive_words(all_words), len(named_mentions(prompt)),
        name_types(prompt), named_things(prompt), owners(prompt),
    )


@dataclass(frozen=True, slots=True)
class TransitionView:
    """The transitions source's per-op arrays (over all operations), kept for features."""

    spec_prob: np.ndarray
    support: np.ndarray
    pattern: np.ndarray


def _rank_of(values: np.ndarray) -> np.ndarray:
    """1-based descending rank of every entry (ties share the better rank)."""
    order = np.argsort(-values, kind="stable")
    ranks = np.empty(len(values), dtype=np.float32)
    ranks[order] = np.arange(1, len(values) + 1, dtype=np.float32)
    return ranks


def _run_length(ops: list[int]) -> int:
    """Calls in a row of the last operation at the end of the history."""
    run = 0
    for op in reversed(ops):
        if op != ops[-1]:
            break
        run += 1
    return run


def column(X: np.ndarray, name: str) -> np.ndarray:
    return X[:, _COLUMN[name]]


def _rank_within(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Descending 1-based rank among the entries where `mask` holds; NaN elsewhere."""
    out = np.full(len(values), np.nan, dtype=np.float32)
    if mask.any():
        out[mask] = _rank_of(np.nan_to_num(values[mask], nan=-1.0))
    return out


# Writes one feature column of every candidate.
Put = Callable[[str, "np.ndarray | float"], None]


def featurize(
    ctx: Context, signals: Signals, candidates: CandidateSet, transitions: TransitionView, reading: PromptReading
) -> np.ndarray:
    """One row per candidate of `candidates`, in `FEATURE_NAMES` order; NaN where a group does not apply."""
    X = np.full((len(candidates.indices), len(FEATURE_NAMES)), np.nan, dtype=np.float32)

    def put(name: str, values: np.ndarray | float) -> None:
        X[:, _COLUMN[name]] = values

    _sources(put, candidates)
    if signals.prompt_sim is not None:
        _prompt_similarity(put, ctx, signals, candidates.indices)
    if signals.last_sim is not None and ctx.last_op is not None:
        _last_call(put, ctx, signals, candidates.indices)
    _candidate(put, ctx, signals, transitions, candidates.indices)
    if signals.lex_idf is not None:
        _prompt_words(put, signals, candidates.indices)
    put("has_prompt", float(bool(ctx.prompt)))
    if ctx.prompt:
        _prompt_reading(put, ctx, reading, candidates.indices)
        if ctx.last_op is None:
            X[:, _PRIORS] = np.nan
    return X



def _sources(put: Put, candidates: CandidateSet) -> None:
    for source in SOURCE_NAMES:
        if source != "retrieval":
            put(f"{source}_score", candidates.scores[source])
        put(f"{source}_rank", candidates.ranks[source])
    put("n_sources", sum((~np.isnan(candidates.scores[s])).astype(np.float32) for s in SOURCE_NAMES))


def _prompt_similarity(put: Put, ctx: Context, signals: Signals, idx: np.ndarray) -> None:
    profile = ctx.spec.profile
    sim = signals.prompt_sim
    assert sim is not None and signals.goal_sim is not None
    best = max(float(sim.max()), 1e-3)
    put("prompt_sim_rank", _rank_of(sim)[idx])
    put("prompt_sim_ratio", sim[idx] / best)
    put("prompt_sim_z", (sim[idx] - sim.mean()) / (sim.std() + 1e-6))
    put("goal_sim_ratio", signals.goal_sim[idx] / best)
    reachable = signals.unreachable == 0
    put("prompt_rank_linked", _rank_within(sim, signals.linked_last)[idx])
    put("prompt_rank_reachable", _rank_within(sim, reachable)[idx])
    put("goal_rank_reachable", _rank_within(signals.goal_sim, reachable)[idx])
    kind_rank = np.full(len(sim), np.nan, dtype=np.float32)
    for kind in np.unique(profile.kind[idx]):
        same = profile.kind == kind
        kind_rank[same] = _rank_within(sim, same)[same]
    put("prompt_rank_kind", kind_rank[idx])
    if ctx.last_op is not None:
        put("prompt_last_ratio", float(sim[ctx.last_op]) / best)


def _last_call(put: Put, ctx: Context, signals: Signals, idx: np.ndarray) -> None:
    profile, last = ctx.spec.profile, ctx.last_op
    assert last is not None and signals.last_sim is not None
    assert signals.history_sim is not None and signals.rel_last is not None
    put("last_sim", signals.last_sim[idx])
    put("last_sim_rank", _rank_of(signals.last_sim)[idx])
    put("history_sim", signals.history_sim[idx])
    put("rel_last", signals.rel_last[idx])
    put("last_kind", float(profile.kind[last]))
    put("last_method", float(profile.method[last]))
    put("depth_diff", profile.depth[idx] - profile.depth[last])
    put("is_last_op", (idx == last).astype(np.float32))
    put("run_length", float(_run_length(ctx.op_history)))


def _candidate(put: Put, ctx: Context, signals: Signals, transitions: TransitionView, idx: np.ndarray) -> None:
    profile = ctx.spec.profile
    put("trans_spec_prob", transitions.spec_prob[idx])
    put("trans_support", transitions.support[idx])
    put("trans_pattern", transitions.pattern[idx])
    put("linked_last", signals.linked_last[idx])
    put("linked_response", signals.linked_response[idx])
    put("linked_any", signals.linked_any[idx])
    put("prompt_fills", signals.prompt_fills[idx])
    put("prompt_valued", signals.prompt_valued[idx])
    put("unreachable", signals.unreachable[idx])
    put("cand_kind", profile.kind[idx])
    put("cand_method", profile.method[idx])
    put("cand_depth", profile.depth[idx])
    put("centrality", profile.centrality[idx])
    put("n_required", profile.n_required[idx])
    put("unfillable", signals.unfillable[idx])
    put("known_from_last", signals.known_from_last[idx])
    put("has_body", profile.has_body[idx])
    put("deprecated", profile.deprecated[idx])
    put("destructive", profile.destructive[idx])
    put("n_events", float(len(ctx.history)))
    put("n_matched", float(len(ctx.op_history)))
    put("times_called", signals.times_called[idx])
    put("items_left", signals.items_left[idx])
    put("filters_known", np.fromiter(
        (2.0 if f & ctx.last_entities else 1.0 if f & ctx.entity_values.keys() else 0.0
         for f in (profile.ops[int(i)].filters for i in idx)), np.float32, len(idx)))
    put("calls_since", signals.calls_since[idx])
    put("log_n_ops", float(np.log1p(len(profile))))


def _prompt_words(put: Put, signals: Signals, idx: np.ndarray) -> None:
    assert signals.lex_idf is not None and signals.field_idf is not None and signals.goal_field is not None
    assert signals.verb_idf is not None and signals.mention_pos is not None
    put("lex_idf", signals.lex_idf[idx])
    put("lex_idf_rank", _rank_within(signals.lex_idf, signals.lex_idf > 0)[idx])
    put("field_idf", signals.field_idf[idx])
    put("field_idf_rank", _rank_within(signals.field_idf, signals.field_idf > 0)[idx])
    put("goal_field", signals.goal_field[idx])
    put("verb_idf", signals.verb_idf[idx])
    put("verb_idf_rank", _rank_within(signals.verb_idf, signals.verb_idf > 0)[idx])
    put("mention_pos", signals.mention_pos[idx])
    pending = signals.mention_pos.copy()
    pending[signals.times_called > 0] = np.nan
    put("mention_rank_pending", _rank_within(-pending, ~np.isnan(pending))[idx])


def _prompt_reading(put: Put, ctx: Context, reading: PromptReading, idx: np.ndarray) -> None:
    profile = ctx.spec.profile
    ops = [profile.ops[int(i)] for i in idx]
    content = reading.content
    size = max(1, len(content))
    put("lex_overlap", np.fromiter((len(content & op.tokens) / size for op in ops), np.float32, len(ops)))
    put("lex_action", np.fromiter((bool(content & op.action) for op in ops), np.float32, len(ops)))
    put("n_intents", float(len(reading.intents)))
    put("n_names", float(reading.names))
    if reading.names:
        put("name_type_match", np.fromiter(
            (bool(reading.name_types & op.produces) for op in ops), np.float32, len(ops)))
    if reading.intents:
        put("intent_match", np.isin(profile.kind[idx], list(reading.intents)).astype(np.float32))
    methods = [ctx.spec.catalogue.operations[int(i)].method for i in idx]
    named, owned = reading.things & profile.nouns, reading.owners & profile.nouns
    put("destructive_intent", np.fromiter(
        (asks_for(reading.destructive, op, m, named, owned) for op, m in zip(ops, methods)), np.float32, len(ops)))
