"""A short, human reason for each prediction, from the strongest signals behind it, and true of this request: a
response is cited only when the client sent it, a last call only when there was one (tests/pipeline/test_reasons.py holds
one test per template)."""

from __future__ import annotations

import numpy as np

from pipeline.ranking.context import Context
from pipeline.ranking.guardrails import DEMOTED_REASON
from pipeline.ranking.relations import Relation
from pipeline.ranking.signals import Signals
from pipeline.ranking.text import tokens

_RELATION_TEXT = {
    Relation.SAME_PATH: "same resource as",
    Relation.ITEM: "an item of the list from",
    Relation.CHILD: "a sub-resource of",
    Relation.DESCENDANT: "under",
    Relation.PARENT: "the parent of",
    Relation.SIBLING: "next to",
}
_MAX_PARTS = 3


def explain(
    ctx: Context, signals: Signals, op_index: int, sources: list[str], spec_prob: float, demoted: bool
) -> str:
    ops = ctx.spec.catalogue.operations
    parts: list[str] = []
    if demoted:
        parts.append(DEMOTED_REASON)
    last = ops[ctx.last_op] if ctx.last_op is not None else None
    if last is not None and any(link.target == ops[op_index].id for link in last.links):
        origin = f"the response of {last.id}" if ctx.last_answered else last.id
        parts.append(f"the spec links it from {origin}")
    elif last is not None:
        if signals.known_from_last[op_index] > 0:
            parts.append("acts on what your last call addressed")
        elif signals.linked_last[op_index]:
            parts.append(f"needs an id that {last.id} lists or creates")
        elif signals.linked_response[op_index]:
            parts.append(f"needs an id {'named in the response of' if ctx.last_answered else 'returned by'} {last.id}")
        elif signals.rel_last is not None and Relation(int(signals.rel_last[op_index])) in _RELATION_TEXT:
            parts.append(f"{_RELATION_TEXT[Relation(int(signals.rel_last[op_index]))]} {last.id}")
    if signals.verb_idf is not None and 0 < signals.verb_idf[op_index] == signals.verb_idf.max():
        parts.append("does what the prompt asks for")
    if signals.prompt_valued[op_index] > 0:
        parts.append("takes the id the prompt names")
    if signals.prompt_sim is not None and len(parts) < _MAX_PARTS:
        rank = int((signals.prompt_sim > signals.prompt_sim[op_index]).sum()) + 1
        if rank <= 3:
            parts.append("matches the prompt")
        elif signals.goal_sim is not None and np.isfinite(signals.goal_sim[op_index]):
            goal_rank = int((signals.prompt_sim > signals.goal_sim[op_index]).sum()) + 1
            if goal_rank <= 3:
                parts.append("leads to an operation that matches the prompt")
    if signals.field_idf is not None and 0 < signals.field_idf[op_index] == signals.field_idf.max():
        asked = sorted(tokens(ctx.prompt) & ctx.spec.profile.ops[op_index].fields)
        if asked:
            parts.append(f"its response has the {' and '.join(asked[:2])} asked for")
    if spec_prob >= 0.2:
        parts.append(f"follows this call {spec_prob:.0%} of the time on this API" if last is not None
                     else f"the first call {spec_prob:.0%} of the time on this API")
    if not ctx.op_history and "popular" in sources and len(parts) < _MAX_PARTS:
        parts.append("a common first call")
    if "llm" in sources:
        parts.append("suggested by the language model")
    if not parts and last is not None and "transitions" in sources:
        parts.append("a common next step after a call like your last one")
    return "; ".join(parts[:_MAX_PARTS]) or f"proposed by {', '.join(sources)}"
