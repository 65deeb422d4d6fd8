"""Filling a predicted operation's path parameters from the history: `POST /v1/invoices/in_123/pay`.

A value the prompt names for a parameter comes first ("comment on issue 130" while issue 128 is open means
130; see `pipeline.ranking.prompt_values`). Otherwise it is taken, in order of precision, from (1) the value an
OpenAPI link of an earlier call points at (`pipeline.ranking.link_values`), (2) the same position of the last call
when both paths share the prefix up to that parameter, (3) the most recent parameter with the same name, (4) the
most recent value of the same entity (`invoice_id` fills `{invoice}`); a generic `{id}` by position or by its
segment's entity (`/credit_notes/{id}`). A value the operation was already called with gives way to the next item
of a list a response held (the receipt of each ride listed). A value the prompt quotes that describes a listed item
(an invoice's number "INV-0042") names the item: its id, from the history, fills the parameter; an amount of money
("charge this customer 25 euros") is no id. Whatever stays unknown remains a `{placeholder}`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote

from pipeline.ranking.context import Context, fresh_listed
from pipeline.ranking.prompt_values import fill_from_prompt
from pipeline.ranking.text import GENERIC_NAMES
from pipeline.spec.catalogue import Operation
from pipeline.spec.matching import split_path

_WHOLE_PARAM = re.compile(r"\{[^{}]+\}")  # `{id}`, not a mixed segment like `{id}.json`


@dataclass(frozen=True, slots=True)
class CarriedCall:
    path: str  # concrete where known, with the server prefix: what the client would call
    params: dict[str, str]
    unresolved: tuple[str, ...]


def _positional(template: list[str], ctx: Context) -> dict[str, str]:
    """Values at positions where the candidate's path and the last call's share the same prefix."""
    if not ctx.history or ctx.history[-1].operation is None:
        return {}
    last = ctx.history[-1]
    last_template = split_path(last.operation.path)
    last_concrete = split_path(last.path)
    found: dict[str, str] = {}
    for i, (mine, theirs) in enumerate(zip(template, last_template)):
        both_params = bool(_WHOLE_PARAM.fullmatch(mine) and _WHOLE_PARAM.fullmatch(theirs))
        if not both_params and mine.lower() != theirs.lower():
            break
        if both_params and i < len(last_concrete) and not last_concrete[i].startswith("{"):
            found[mine[1:-1]] = last_concrete[i]
    return found


def carry_params(op: Operation, ctx: Context, base_path: str) -> CarriedCall:
    template = split_path(op.path)
    positional = _positional(template, ctx)
    index = ctx.spec.profile.index[op.id]
    profile = ctx.spec.profile.ops[index]
    entities = profile.entity_of
    linked = ctx.linked_values.get(index, {})
    from_history: dict[str, str] = {}
    for p in op.path_params:
        value = linked.get(p.name) or positional.get(p.name)
        if value is None:
            by_name = ctx.values.get(p.name) if p.name.lower() not in GENERIC_NAMES else None
            value = by_name or ctx.entity_values.get(entities.get(p.name, ""))
        if value is None or value in ctx.sent.get(index, ()):
            # Working through a list: the next item this operation has not been called with.
            value = next(iter(fresh_listed(ctx, entities.get(p.name, ""), index)), value)
        if value is not None:
            from_history[p.name] = value
    named = fill_from_prompt(profile, ctx.prompt_values_for(index), frozenset(from_history)) if ctx.prompt_values else {}
    # Not an id: a listed item's description ("pay invoice INV-0042" over a list holding it as an invoice's number:
    # the item's id, which the history holds).
    named = {name: value for name, value in named.items() if value not in ctx.described or name not in from_history}
    params = {p.name: value for p in op.path_params if (value := named.get(p.name) or from_history.get(p.name))}
    rendered = op.path
    for name, value in params.items():
        rendered = rendered.replace("{" + name + "}", quote(value, safe=""))
    unresolved = tuple(p.name for p in op.path_params if p.name not in params)
    return CarriedCall(path=base_path + rendered, params=params, unresolved=unresolved)
