"""Per-request arrays over *all* operations of the spec, computed once and shared by sources and features."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.ranking.context import Context, fresh_listed, names_left
from pipeline.ranking.lexical import first_mentions, shares
from pipeline.ranking.prompt_values import fill_from_prompt
from pipeline.ranking.relations import links, relations_from, response_links
from pipeline.ranking.text import request_words, stem, token_sequence
from pipeline.spec.catalogue import words

_NAN = np.float32(np.nan)


@dataclass(slots=True)
class Signals:
    prompt_sim: np.ndarray | None  # cosine(prompt, op)
    goal_sim: np.ndarray | None  # best cosine(prompt, g) over operations g that this op enables
    lex_idf: np.ndarray | None  # IDF-weighted share of the prompt's words in the op's path, id and summary
    field_idf: np.ndarray | None  # ... in its response's field names ("birthday", "headquarters")
    goal_field: np.ndarray | None  # best field_idf over the operations this op leads to (NaN: leads nowhere)
    verb_idf: np.ndarray | None  # ... in its last path word alone, what it does ("refund", "comments", "poweron")
    mention_pos: np.ndarray | None  # where the request first names the op (0 first word, 1 last; NaN: never)
    last_sim: np.ndarray | None  # cosine(last op, op)
    history_sim: np.ndarray | None  # best cosine(any earlier op, op)
    rel_last: np.ndarray | None  # Relation of each op to the last op
    linked_last: np.ndarray  # op needs an entity the last op lists, searches, creates or reads
    linked_response: np.ndarray  # ... one that the last op's response names (and not already linked)
    linked_any: np.ndarray  # ... that any op of the history produced
    known_required: np.ndarray  # required path params fillable from history values or enums
    known_from_last: np.ndarray  # required path params fillable from the last call's values
    times_called: np.ndarray
    calls_since: np.ndarray  # events since the op was last called (NaN if never)
    unfillable: np.ndarray  # required path params nothing in the history or the spec can fill
    prompt_fills: np.ndarray  # unfillable params whose noun the prompt mentions ("the second season")
    unreachable: np.ndarray  # required params neither known, nor in the last response, nor named by the prompt
    prompt_valued: np.ndarray  # required params a value quoted in the prompt fills ("power on server 4712")
    # Items the op has not been called with yet, of those the prompt lists ("refund payments 881, 882 and 884"), a
    # response listed, or the names the prompt gives once the op took one of them ("the distance between San
    # Francisco and Rivermist"): what working through them with this op has left
    items_left: np.ndarray


def _fillable(ctx: Context) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per op: required params known (history, enum or a value the prompt quotes), known from the last call,
    whose noun the prompt names, not reachable at all (neither of those nor an entity the last call lists or
    returns), filled by a value the prompt quotes, and the items left for it (`Signals.items_left`)."""
    profile = ctx.spec.profile
    last = profile.ops[ctx.last_op] if ctx.last_op is not None else None
    last_outputs = (last.produces | last.returns) if last is not None else frozenset()
    prompt_words = {stem(w) for w in words(ctx.prompt)}
    last_values = ctx.history[-1].path_params if ctx.history else {}
    last_entities = ctx.last_entities
    known = np.zeros(len(profile), dtype=np.float32)
    from_last = np.zeros(len(profile), dtype=np.float32)
    by_prompt = np.zeros(len(profile), dtype=np.float32)
    unreachable = np.zeros(len(profile), dtype=np.float32)
    valued = np.zeros(len(profile), dtype=np.float32)
    left = np.zeros(len(profile), dtype=np.float32)
    for i, op in enumerate(profile.ops):
        if not op.required:
            continue
        linked = ctx.linked_values.get(i, ())
        held = frozenset(n for n, e in zip(op.required, op.required_entities)
                         if n in ctx.values or n in linked or e in ctx.entity_values
                         or (e == "person" and ctx.first_person))
        quoted: dict[str, str] = {}
        if ctx.prompt_values:
            values = ctx.prompt_values_for(i)
            quoted = fill_from_prompt(op, values, held)
            valued[i] = len(quoted)
            if quoted:  # the prompt's values this op takes, one at a time, that it was not called with yet
                done = ctx.sent.get(i, set())
                left[i] = sum(1 for v in values if v.value not in done and fill_from_prompt(op, (v,), held))
        if ctx.listed:
            left[i] += len(fresh_listed(ctx, op.required_entities[-1], i))
        last_linked = ctx.last_linked.get(i, ())
        for name, ent in zip(op.required, op.required_entities):
            if name in op.enum_params or name in held or name in quoted:
                known[i] += 1
            elif stem(ent) in prompt_words:
                by_prompt[i] += 1
            elif ent not in last_outputs:
                unreachable[i] += 1
            if name in last_values or ent in last_entities or name in last_linked:
                from_last[i] += 1
    # The names of an enumeration left for an op already sent one of them, where the prompt's values it takes (names
    # among them) were not counted above.
    for i in ctx.sent if ctx.enumerated else ():
        if not valued[i]:
            left[i] += len(names_left(ctx, i))
    return known, from_last, by_prompt, unreachable, valued, left


def compute_signals(ctx: Context) -> Signals:
    spec = ctx.spec
    n = len(spec.profile)
    emb = spec.embeddings
    prompt_sim = goal_sim = last_sim = history_sim = rel_last = lex_idf = field_idf = goal_field = verb_idf = None
    mention_pos = None
    if ctx.prompt:
        # Users ask for a piece of data ("when is her birthday?"): the operation whose response holds it is
        # the goal, and what leads to that operation is the way there.
        prompt_words = request_words(ctx.prompt)
        lex_idf, field_idf = shares(prompt_words, spec.profile.words, spec.profile.fields)
        goal_field = spec.profile.reaches_fanout.best(field_idf)
        # Or for an action ("refund", "comment on", "power on"): the operation whose last path word does it.
        (verb_idf,) = shares(prompt_words, spec.profile.verbs)
        # Two requests in one prompt ("find flights, then hotels"): the one named first comes first.
        mention_pos = first_mentions(token_sequence(ctx.prompt), spec.profile.words)
    if ctx.prompt_vec is not None:
        prompt_sim = emb @ ctx.prompt_vec
        goal_sim = spec.profile.enables_fanout.best(prompt_sim)
    linked_last = np.zeros(n, dtype=bool)
    linked_response = np.zeros(n, dtype=bool)
    linked_any = np.zeros(n, dtype=bool)
    times_called = np.zeros(n, dtype=np.float32)
    calls_since = np.full(n, _NAN, dtype=np.float32)
    if ctx.op_history:
        last = ctx.op_history[-1]
        last_sim = emb @ emb[last]
        history_sim = (emb @ emb[ctx.op_history].T).max(axis=1)
        rel_last = relations_from(spec.profile, last)
        linked_last = links(spec.profile, last)
        linked_response = response_links(spec.profile, last)
        for age, op in enumerate(reversed(ctx.op_history)):
            linked_any |= links(spec.profile, op)
            times_called[op] += 1
            if np.isnan(calls_since[op]):
                calls_since[op] = age
    known, from_last, prompt_fills, unreachable, prompt_valued, items_left = _fillable(ctx)
    return Signals(
        prompt_sim, goal_sim, lex_idf, field_idf, goal_field, verb_idf, mention_pos, last_sim, history_sim, rel_last,
        linked_last, linked_response, linked_any, known, from_last, times_called, calls_since,
        spec.profile.n_required - known, prompt_fills, unreachable, prompt_valued, items_left,
    )
