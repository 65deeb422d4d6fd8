"""The prediction problem as the pipeline sees it: a prepared spec, the matched history and the prompt."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from pydantic import BaseModel, Field, field_validator

from pipeline.ranking.link_values import MadeCall, link_values
from pipeline.ranking.profile import SpecProfile
from pipeline.ranking.prompt_values import PromptValue, enumerations, prompt_values, speaks_for_self
from pipeline.ranking.response_values import described_by, listed_ids, produced_entity, response_ids
from pipeline.ranking.text import head
from pipeline.spec.catalogue import Catalogue, is_id_name
from pipeline.spec.matching import CallMatch, CallMatcher

# A response is read for its ids only: a few fields of the top level. The events of every prediction travel from
# the Ingress to the Ranker replica, so the cap bounds what a request ships there, and a client that sends a whole
# list page is told what to send.
MAX_RESPONSE_BYTES = 16 * 1024


class Event(BaseModel):
    """One call the user made, oldest first in a history."""

    endpoint: str = Field(..., min_length=3, max_length=2048, description='"METHOD path", e.g. "GET /v1/invoices/in_1"')
    ts: datetime | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    response: dict[str, Any] | list[Any] | None = Field(
        None, description=f"the call's response body (JSON), at most {MAX_RESPONSE_BYTES} bytes serialised: ids it "
        "holds (its `id`, `customer_id`, `\"customer\": \"cus_9\"`) fill the parameters of later calls")

    @field_validator("response")
    @classmethod
    def _response_fits(cls, response: dict[str, Any] | list[Any] | None) -> dict[str, Any] | list[Any] | None:
        if response is not None and len(json.dumps(response, separators=(",", ":"))) > MAX_RESPONSE_BYTES:
            raise ValueError(f"at most {MAX_RESPONSE_BYTES} bytes of JSON: send the part with the ids later calls need")
        return response


@dataclass(frozen=True, slots=True)
class PreparedSpec:
    """Everything derived from one spec that does not depend on the request; built once per content hash."""

    catalogue: Catalogue
    profile: SpecProfile
    matcher: CallMatcher
    embeddings: np.ndarray  # (n_operations, dim), unit length

    @classmethod
    def build(cls, catalogue: Catalogue, embeddings: np.ndarray) -> PreparedSpec:
        return cls(catalogue, SpecProfile(catalogue), CallMatcher(catalogue), embeddings)

    @property
    def content_hash(self) -> str:
        return self.catalogue.content_hash


@dataclass(slots=True)
class Context:
    spec: PreparedSpec
    history: list[CallMatch]  # most recent last, capped to the configured length
    prompt: str
    prompt_vec: np.ndarray | None
    op_history: list[int] = field(default_factory=list)  # matched operation indices, most recent last
    values: dict[str, str] = field(default_factory=dict)  # parameter name -> latest value seen
    entity_values: dict[str, str] = field(default_factory=dict)  # entity head ("invoice") -> latest id seen
    last_entities: set[str] = field(default_factory=set)  # entities whose ids the last call carried
    last_answered: bool = False  # the last matched call came with its response
    prompt_values: tuple[PromptValue, ...] = ()  # ids and codes the prompt quotes ("order #W8855135"), in its order
    # names the prompt enumerates together ("between San Francisco and Rivermist"): each is one more call
    enumerated: tuple[frozenset[str], ...] = ()
    first_person: bool = False  # "my profile", "for me": the caller holds their own user id
    sent: dict[int, set[str]] = field(default_factory=dict)  # operation index -> values its calls sent: items done
    # entity -> the ids of the items of the latest list a call answered with ("rides": [{"ride_id": ...}, ...]),
    # in the list's order: a user who opened a list works through it
    listed: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # operation index -> parameter -> value, by the OpenAPI `links` of the calls made (the latest call's values win)
    # and of the last call alone
    linked_values: dict[int, dict[str, str]] = field(default_factory=dict)
    last_linked: dict[int, dict[str, str]] = field(default_factory=dict)
    # the top-level scalar fields of the responses sent, by name, the latest winning (a login's `token`): what a
    # later call's required field of the same name takes
    answered: dict[str, str] = field(default_factory=dict)
    described: frozenset[str] = frozenset()  # the text listed items are described by (`response_values.described_by`)

    @property
    def last_op(self) -> int | None:
        return self.op_history[-1] if self.op_history else None

    def prompt_values_for(self, op: int) -> tuple[PromptValue, ...]:
        """The prompt's values, those operation `op` was already called with last: a prompt that lists several
        items ("invoices inv_1, inv_2 and inv_3") is worked through in turn by each operation (read each, then act
        on each), and a stable sort keeps the prompt's order within each part."""
        done = self.sent.get(op)
        if not done or not any(v.value in done for v in self.prompt_values):
            return self.prompt_values
        return tuple(sorted(self.prompt_values, key=lambda v: v.value in done))


def build_context(
    spec: PreparedSpec, events: list[Event], prompt: str, prompt_vec: np.ndarray | None, max_history: int
) -> Context:
    history = [spec.matcher.match(e.endpoint) for e in events[-max_history:]]
    ctx = Context(spec=spec, history=history, prompt=prompt.strip(), prompt_vec=prompt_vec,
                  first_person=speaks_for_self(prompt))
    for event, match in zip(events[-max_history:], history):
        heads: dict[str, str] = {}
        ctx.last_entities, ctx.last_linked = set(), {}
        if match.operation is not None:
            ctx.last_answered = event.response is not None
            index = spec.profile.index[match.operation.id]
            ctx.op_history.append(index)
            heads = spec.profile.ops[index].entity_of
            made = MadeCall(match, event.params, event.response)
            ctx.last_linked = {spec.profile.index[link.target]: link_values(link, made)
                               for link in spec.profile.operations[index].links}
            for target, values in ctx.last_linked.items():
                ctx.linked_values.setdefault(target, {}).update(values)
        # Later values overwrite earlier ones: the most recent id of an entity is the one to carry over.
        query_ids = {k: v for k, v in match.query_params.items() if isinstance(v, str) and is_id_name(k)}
        # A body's scalar values (a flag is no value to carry).
        scalars = {k: str(v) for k, v in event.params.items() if isinstance(v, (str, int)) and not isinstance(v, bool)}
        # Any value a call sent is an item that operation has done ("the zip codes of Boston and Austin":
        # `?city=Boston`).
        if match.operation is not None:
            sent = ctx.sent.setdefault(ctx.op_history[-1], set())
            sent.update(v for v in match.query_params.values() if isinstance(v, str))
            sent.update(match.path_params.values())
            sent.update(scalars.values())
        for name, value in {**match.path_params, **query_ids}.items():
            ent = heads.get(name) or head(name)
            ctx.values[name] = value
            ctx.entity_values[ent] = value
            ctx.last_entities.add(ent)
        if isinstance(event.response, dict):
            ctx.answered.update({k: str(v) for k, v in event.response.items()
                                 if isinstance(v, (str, int, float)) and not isinstance(v, bool)})
        if event.response is not None and match.operation is not None:
            produced = spec.profile.ops[spec.profile.index[match.operation.id]].produces
            thing = produced_entity(match.operation.path, produced, spec.profile.path_entities)
            ctx.listed.update(listed_ids(event.response, thing, spec.profile.path_entities))
            ctx.described |= described_by(event.response, thing)
            for name, value in response_ids(event.response, thing, spec.profile.path_entities, prompt).items():
                ctx.values[name] = value
                ctx.entity_values[head(name)] = value
        for name, value in scalars.items():
            ctx.values[name] = value
            ctx.entity_values[head(name)] = value
    ctx.prompt_values = prompt_values(prompt, spec.profile.param_nouns)
    ctx.enumerated = enumerations(ctx.prompt, ctx.prompt_values)
    return ctx


def fresh_listed(ctx: Context, entity: str, op: int) -> list[str]:
    """The items of the latest list of `entity` that no call of operation `op` has sent yet, in the list's order:
    what working through the list with that operation has left."""
    done = ctx.sent.get(op, set())
    return [v for v in ctx.listed.get(entity, ()) if v not in done]


def names_left(ctx: Context, op: int) -> list[str]:
    """The names of an enumeration in the prompt that operation `op` was not called with yet, once it was called
    with one of them: "the distance between San Francisco and Rivermist" after `?city=San Francisco` leaves
    Rivermist for the same lookup. A sent value stands for a name it equals, contains or is contained in ("New York
    City" asked, `?query=New York` sent)."""
    sent = [v.casefold() for v in ctx.sent.get(op, ())]
    left: list[str] = []
    for run in ctx.enumerated if sent else ():
        done = {n for n in run if any(n.casefold() in s or s in n.casefold() for s in sent)}
        if done:
            left += [n for n in run if n not in done]
    return left
