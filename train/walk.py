"""A spec's operations as a user walks them: the calls of one session as they are made (`Walk`), concrete ids
(`IdMaker`), and what every session shape asks of the spec (`SpecWalker`: what can be called with the ids held,
the call as sent, a step from the last call, a lookup chain toward a goal, the problems a session makes).
`train/sessions.py` says what the shapes are and why."""

from __future__ import annotations

import random
import string
import uuid
from dataclasses import dataclass, field
from typing import Any

from pipeline.ranking.context import Event
from pipeline.ranking.profile import Kind, OpProfile, SpecProfile
from pipeline.ranking.relations import Relation, relation
from pipeline.ranking.text import stem
from pipeline.spec.catalogue import Catalogue
from train.prompts import (
    PERSON_NAMES,
    THING_NAMES,
    object_phrase,
    phrase,
    with_context,
)

_STEP_WEIGHT = {
    Relation.ITEM: 3.0, Relation.SAME_PATH: 1.5, Relation.CHILD: 1.5, Relation.SIBLING: 0.5,
    Relation.PARENT: 0.7, Relation.DESCENDANT: 0.4, Relation.ANCESTOR: 0.3, Relation.SAME_ROOT: 0.3,
}
# Share of a step's probability that goes to unrelated operations (people do wander off), whatever their count.
_WANDER = 0.15
# What changes a thing.
WRITES = (Kind.CREATE, Kind.UPDATE, Kind.ACTION, Kind.DELETE)
# The last path words of a thing's record of what was done to it.
HISTORY = frozenset(stem(w) for w in ("timeline", "actions", "events", "history", "logs", "activity", "audit", "changes"))


@dataclass(slots=True)
class Problem:
    """One prediction problem in the eval-case format: what happened, what came next."""

    id: str
    spec: str
    events: list[Event]
    prompt: str
    expected: str
    expected_params: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class Session:
    ops: list[int]
    calls: list[str]
    params: list[dict[str, str]]  # entity path parameters of each call
    prompt_mode: str  # "goal" (lookup chain), "act" (asks for the last call), "step" (one per call) or "none"
    goal: int | None
    prompts: list[str]
    responses: list[dict[str, Any] | None]  # the response body a call is sent with, when the client sends one
    drawn: str = ""  # the shape of `SessionShapes` drawn for it
    shape: str = ""  # the shape it has: the drawn one, or browse where the spec could not make that


def named(searched: OpProfile, rng: random.Random) -> str:
    """How a prompt names the thing to search for: bare ("for Project Apollo"), with its type ("of the project
    Apollo", "the Apollo project"), or as an agent when it is a person ("by Maria Garcia")."""
    nouns = sorted(searched.produces - {"search", "query", "find"})
    noun = rng.choice(nouns).replace("_", " ") if nouns else ""
    name = rng.choice(PERSON_NAMES if noun == "person" else THING_NAMES)
    roll = rng.random()
    if noun == "person" and roll < 0.45:
        return f"by {name}"
    if noun and roll < 0.4:
        return f"{rng.choice(['for the', 'of the', 'about the'])} {noun} {name}"
    if noun and roll < 0.55:
        return f"{rng.choice(['for the', 'of the'])} {name} {noun}"
    return f"{rng.choice(['for', 'of', 'about', 'from'])} {name}"


class Walk:
    """The calls of one session as they are made: ids held, operations, concrete calls."""

    def __init__(self, generator: SpecWalker, values: dict[str, str]) -> None:
        self.generator = generator
        self.values = values
        self.ops: list[int] = []
        self.calls: list[str] = []
        self.params: list[dict[str, str]] = []
        self.responses: list[dict[str, Any] | None] = []

    def call(self, i: int, query: dict[str, str] | None = None) -> None:
        text, carried = self.generator.concrete(i, self.values, query)
        self.calls.append(text)
        self.params.append(carried)
        self.responses.append(None)
        self.ops.append(i)
        self.generator.produce(i, self.values)

    def follow(self, chain: list[int]) -> bool:
        """Call each operation of `chain` in turn; False as soon as one cannot be filled."""
        for i in chain:
            if not self.generator.fillable(i, self.values):
                return False
            self.call(i)
        return True

    def session(self, mode: str, goal: int | None, prompts: list[str]) -> Session:
        return Session(self.ops, self.calls, self.params, mode, goal, prompts, self.responses)

    def answer_with_list(self, entity: str, items: list[str]) -> None:
        """The last call's response lists `items` of `entity` (half the time: clients that send no responses)."""
        if self.generator.rng.random() < 0.5:
            self.responses[-1] = {f"{entity}s": [{"id": item} for item in items]}


class IdMaker:
    """Concrete ids in one style per spec; an entity keeps its id through a session."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.style = rng.choice(["prefixed", "numeric", "uuid", "slug"])

    def make(self, entity_name: str) -> str:
        r = self.rng
        if self.style == "numeric":
            return str(r.randint(1, 999_999))
        if self.style == "uuid":
            return str(uuid.UUID(int=r.getrandbits(128)))
        if self.style == "slug":
            return f"{entity_name.replace('_', '-')}-{r.randint(1, 999)}"
        # An entity name can be empty (a parameter named `_`) or have empty parts (`_links`).
        prefix = "".join(p[0] for p in entity_name.split("_") if p)[:3] or "x"
        return f"{prefix}_{''.join(r.choices(string.ascii_letters + string.digits, k=10))}"

class SpecWalker:
    """One spec, read once for every session drawn over it."""

    def __init__(self, catalogue: Catalogue, rng: random.Random) -> None:
        self.catalogue = catalogue
        self.profile = SpecProfile(catalogue)
        # Plain lists of the profile's columns the walks test per operation, over and over: a numpy scalar compared
        # with an enum member costs microseconds, and the sessions of a training make millions of such tests.
        self.kind = [Kind(k) for k in self.profile.kind.tolist()]
        # A PUT beside a PATCH of the same path replaces the whole thing: a user changing some of its fields sends
        # the PATCH.
        patched = {op.path for op in catalogue.operations if op.method == "PATCH"}
        replaces = [op.method == "PUT" and op.path in patched for op in catalogue.operations]
        self.avoided = [bool(d) or k == Kind.OTHER or r
                        for d, k, r in zip(self.profile.deprecated.tolist(), self.kind, replaces)]
        self.rng = rng
        self.ids = IdMaker(rng)
        ops = self.profile.ops
        self.entry = [i for i, p in enumerate(ops) if len(p.required) == len(p.enum_params) and not self._avoid(i)]
        self.goals = [i for i, p in enumerate(ops) if p.required and not self._avoid(i)]
        self.required_heads = {e for p in ops for e in p.required_entities}
        # Entities each operation needs an id of (enum parameters aside): asked in every scan of every session.
        self.free = [[e for n, e in zip(p.required, p.required_entities) if n not in p.enum_params] for p in ops]
        # producers[g]: entry points that list/search/create what g needs; reachers[g]: operations with a
        # producer of their own whose response names what g needs (the middle hop of a two-hop lookup).
        self.producers: dict[int, list[int]] = {}
        for i in self.entry:
            if self.kind[i] in (Kind.LIST, Kind.SEARCH, Kind.CREATE):
                for g in self.profile.enables[i]:
                    self.producers.setdefault(int(g), []).append(i)
        self.reachers: dict[int, list[int]] = {}
        for m in self.producers:
            if self._avoid(m) or self.kind[m] not in (Kind.GET, Kind.LIST):
                continue
            for g in self.profile.enables_by_response[m]:
                if int(g) != m and not self._avoid(int(g)):
                    self.reachers.setdefault(int(g), []).append(m)

    def _avoid(self, i: int) -> bool:
        return self.avoided[i]

    def fillable(self, i: int, values: dict[str, str]) -> bool:
        p = self.profile.ops[i]
        return all(n in p.enum_params or e in values for n, e in zip(p.required, p.required_entities))

    def concrete(
        self, i: int, values: dict[str, str], query: dict[str, str] | None = None
    ) -> tuple[str, dict[str, str]]:
        """The call as the user sends it, and the entity ids it carries (enum values are not carried); `query`:
        optional parameters it is sent with."""
        op = self.catalogue.operations[i]
        entities = self.profile.ops[i].entity_of
        path = op.path
        carried: dict[str, str] = {}
        for param in op.path_params:
            if param.enum:
                value = self.rng.choice(param.enum)
            else:
                value = carried[param.name] = values[entities[param.name]]
            path = path.replace("{" + param.name + "}", value)
        # Query ids travel in the query string (`/product-reviews?product_id=...`); they are not carried params.
        pairs = [f"{p.name}={values[entities[p.name]]}" for p in op.query_ids if not p.enum]
        pairs += [f"{name}={value}" for name, value in (query or {}).items()]
        return f"{op.method} {self.catalogue.base_path}{path}{'?' + '&'.join(pairs) if pairs else ''}", carried

    def produce(self, i: int, values: dict[str, str]) -> None:
        """After a call, the user holds ids of what it produced (the item it listed, searched or created) and
        of the entities its response names (an invoice's customer)."""
        op = self.profile.ops[i]
        for ent in sorted(op.produces | (op.returns & self.required_heads)):  # sorted: ids by seed, not by hash
            values.setdefault(ent, self.ids.make(ent))

    def _next_step(self, current: int, values: dict[str, str], visited: list[int]) -> int | None:
        a = self.profile.ops[current]
        choices: list[int] = []
        weights: list[float] = []
        unrelated: list[int] = []
        enabled = set(self.profile.enables[current].tolist())
        by_response = set(self.profile.enables_by_response[current].tolist())
        for j, b in enumerate(self.profile.ops):
            if self._avoid(j) or not self.fillable(j, values):
                continue
            rel = relation(a, b)
            if rel == Relation.UNRELATED and j not in enabled and j not in by_response:
                unrelated.append(j)
                continue
            weight = _STEP_WEIGHT.get(rel, 0.0) + (2.0 if j in enabled else 1.0 if j in by_response else 0.0)
            if self.profile.destructive[j]:
                weight *= 0.1
            if j == current:
                weight = 0.1
            elif j in visited:
                weight *= 0.3
            choices.append(j)
            weights.append(weight)
        if unrelated:
            related_mass = sum(weights)
            each = _WANDER * related_mass / len(unrelated) if related_mass else 1.0
            choices.extend(unrelated)
            weights.extend([each] * len(unrelated))
        if not choices:
            return None
        return self.rng.choices(choices, weights=weights, k=1)[0]

    def _goal_chain(self) -> tuple[list[int], int, str, dict[str, str]] | None:
        """A lookup chain toward a goal, the prompt that asks for the goal, and values the prompt supplies.

        A prompt that names a thing ("... by Maria Garcia") is served by *searching* for it when the spec can;
        otherwise the user lists the collection, and the prompt often says which part ("... of the top rated
        movie"), so the producer's meaning shows in the prompt as it does in RestBench. A third of the chains
        hop through an operation whose response names the goal's entity (tv show -> its network). Parameters
        no call produces come from the prompt ("... season 2").
        """
        candidates = [g for g in self.goals if g in self.producers or g in self.reachers]
        if not candidates:
            return None
        goal = self.rng.choice(candidates)
        middle: int | None = None
        if goal in self.reachers and (goal not in self.producers or self.rng.random() < 0.35):
            middle = self.rng.choice(self.reachers[goal])
        first_target = middle if middle is not None else goal
        ops = self.catalogue.operations
        producers = self.producers[first_target]
        searches = [p for p in producers if self.kind[p] == Kind.SEARCH]
        producer = self.rng.choice(searches) if searches and self.rng.random() < 0.6 else None
        # Naming the thing makes its type implicit: mostly the prompt never says what kind of thing it is.
        implicit = self.profile.ops[producer].produces if producer is not None and self.rng.random() < 0.7 else frozenset()
        prompt = phrase(ops[goal], self.profile.ops[goal], self.rng, implicit)
        if middle is not None:  # "the credits of the movie credits of ...": the hop shows in the question
            prompt = f"{prompt} {self.rng.choice(['of the', 'from the', 'in the'])} {object_phrase(ops[middle], self.rng)}"
        if producer is not None:
            prompt = f"{prompt} {named(self.profile.ops[producer], self.rng)}"
        else:
            lists = [p for p in producers if self.kind[p] == Kind.LIST] or producers
            producer = self.rng.choice(lists)
            if self.rng.random() < 0.6:
                prompt = f"{prompt} {self.rng.choice(['of the', 'for the', 'in'])} {object_phrase(ops[producer], self.rng)}"
        if self.rng.random() < 0.4:
            prompt = with_context(prompt, ops[self.rng.randrange(len(ops))], self.rng)
        chain = [producer] + ([middle] if middle is not None else []) + [goal]
        supplied: dict[str, str] = {}
        available = {e for i in chain[:-1] for e in self.profile.ops[i].produces | self.profile.ops[i].returns}
        for step in chain[1:]:
            p = self.profile.ops[step]
            for name, ent in zip(p.required, p.required_entities):
                if name not in p.enum_params and ent not in available and ent not in supplied:
                    supplied[ent] = str(self.rng.randint(1, 12))
                    prompt = f"{prompt} {ent.replace('_', ' ')} {supplied[ent]}"
        return chain, goal, prompt, supplied

    def _central(self, ops: list[int]) -> int:
        """One of `ops`, the spec's central ones (what most of it leads from) up to four times as often: where
        people open an API with nothing asked, its main collections, not its corners."""
        return self.rng.choices(ops, weights=[1.0 + 3.0 * float(self.profile.centrality[i]) for i in ops])[0]

    def _prompts(self, mode: str, goal: int | None, goal_prompt: str | None, ops: list[int]) -> list[str]:
        catalogue_ops = self.catalogue.operations
        if mode == "none":
            return [""] * len(ops)
        if mode == "goal":
            assert goal is not None
            text = goal_prompt or phrase(catalogue_ops[goal], self.profile.ops[goal], self.rng)
            return [text] * len(ops)
        return [phrase(catalogue_ops[i], self.profile.ops[i], self.rng) for i in ops]

    def problems(self, session: Session, spec_name: str, session_id: str) -> list[Problem]:
        out: list[Problem] = []
        ops = self.catalogue.operations
        for t, i in enumerate(session.ops):
            events = [Event(endpoint=c, response=r) for c, r in zip(session.calls[:t], session.responses[:t])]
            earlier = {v for p in session.params[:t] for v in p.values()}
            carried = {k: v for k, v in session.params[t].items() if v in earlier or v in session.prompts[t]}
            out.append(Problem(f"{session_id}-{t}", spec_name, events, session.prompts[t], ops[i].id, carried))
        return out
