"""Synthetic sessions over real specs: the training data of the ranker.

Assumptions (also in docs/architecture.md), chosen to resemble how people and agents use REST APIs:
- Session shapes, drawn per session in the proportions of `training.shapes` (pipeline/settings.py): lookup
  chains, goal-directed acts, one-shot requests, lifecycle CRUD, browsing, repeated calls of one operation with
  other ids, support flows that read before they act, and iteration over the items a prompt or a list names.
- Lookup chains pursue a goal operation that needs an id (`GET /movie/{id}/credits`): the user first calls
  an operation that *produces* that entity (a search when the prompt names the thing, else a list), sometimes
  hopping through an operation whose response names it, then calls the goal: lookup chains like RestBench's.
  The session ends there (now and then one more step). The prompt describes the goal, not the next step.
- Goal-directed acts (support desks, consoles, agents): the prompt asks for one operation, most often a write
  ("refund this charge", "comment on issue 128", "reboot server 4711"); the user identifies the thing (list or
  search) and acts, the request there at every step (the asked operation is the answer as soon as it is
  reachable); or opens the thing first and asks then (the request comes with the act); or, to create, lists the
  collection first (40% of creates); or quotes its id in the prompt (35%): then acts at once after the parents'
  page or whatever they did before, and reads the thing first where the session starts with the request.
- One-shot requests: no history, one operation asked for (ToolAlpaca / NESTFUL shape, RPC-style specs), the
  prompt from the spec's own summary or description rephrased, from templates, or two requests in one. A write
  on a thing with a lookup of its own reads the thing first ("void invoice inv_77Q2K": `GET /invoices/{id}`).
- Lifecycle: create -> get -> update/action -> (delete), each step with its own prompt half the time.
- Browsing: list -> get -> update/action -> sub-resources, moving mostly to path-tree neighbours and to
  operations whose ids they hold. Browsing and lifecycles start on the spec's central operations (what most of it
  leads from: `SpecProfile.centrality`) up to four times as often as on its corners.
- Repeats: the same operation called for several ids (`GET /items/7`, `/items/9`).
- Support flows (read before act): the request acts on one thing; the user opens it first (by the id the prompt
  quotes, or found in a list) and acts once it has been read.
- Narrowed lists: with a thing open (`GET /customers/{id}`), a list of other things narrowed to it by a query
  parameter named after it ("the charges of this customer": `GET /charges?customer=...`), asked once the thing
  is open.
- Iteration: one call per item, the items named by the prompt ("invoices in_1, in_2 and in_3", "mark orders
  9001 and 9002 ready") or those of a list the user opened; without a prompt the user may move on after.
  Where a list was opened (iteration, repeats), half the sessions send its response with the call, as a
  console or an agent does (`{"invoices": [{"id": ...}, ...]}`), half send none.
- Ids are concrete (`in_3kf92ja`, `4821`, a UUID, a slug: one style per spec) and an entity keeps its id for
  the session, so carried-over parameters are learnable and checkable.
- Destructive operations are rare unless the goal is destructive; deprecated ones are avoided, and so is a PUT
  beside a PATCH of its path (the thing is updated by the PATCH).
- Prompts: lookup chains carry the goal's prompt 85% of the time, browsing sessions a step prompt 40% of the
  time, repeats none; long prompts come from an opener and a clause about something else, or two requests.
  A third of the prompts for items ask for a piece of the answer (a response property) instead of the call.
Every call a session makes is a concrete call that matches its own operation (tests assert it).
"""

from __future__ import annotations

import random
import string
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pipeline.ranking.context import Event
from pipeline.ranking.profile import Kind, OpProfile, SpecProfile
from pipeline.ranking.relations import Relation, relation
from pipeline.ranking.text import entity as text_entity
from pipeline.ranking.text import stem
from pipeline.settings import SessionShapes
from pipeline.spec.catalogue import Catalogue
from train.prompts import (
    PERSON_NAMES,
    THING_NAMES,
    act_phrase,
    multi_intent,
    object_phrase,
    phrase,
    question_about,
    reference,
    references,
    summary_request,
    with_context,
)

_STEP_WEIGHT = {
    Relation.ITEM: 3.0, Relation.SAME_PATH: 1.5, Relation.CHILD: 1.5, Relation.SIBLING: 0.5,
    Relation.PARENT: 0.7, Relation.DESCENDANT: 0.4, Relation.ANCESTOR: 0.3, Relation.SAME_ROOT: 0.3,
}
# Share of a step's probability that goes to unrelated operations (people do wander off), whatever their count.
_WANDER = 0.15
_WRITES = (Kind.CREATE, Kind.UPDATE, Kind.ACTION, Kind.DELETE)
# The last path words of a thing's record of what was done to it.
_HISTORY = frozenset(stem(w) for w in ("timeline", "actions", "events", "history", "logs", "activity", "audit", "changes"))


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


class _Walk:
    """The calls of one session as they are made: ids held, operations, concrete calls."""

    def __init__(self, generator: SessionGenerator, values: dict[str, str]) -> None:
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


class SessionGenerator:
    def __init__(self, catalogue: Catalogue, rng: random.Random, shapes: SessionShapes | None = None) -> None:
        self.catalogue = catalogue
        mixture = (shapes or SessionShapes()).model_dump()
        self.shapes, self.shape_weights = list(mixture), list(mixture.values())
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

    # -- calls -----------------------------------------------------------------------------------------
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

    # -- walks -----------------------------------------------------------------------------------------
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

    def session(self, max_len: int = 6) -> Session | None:
        if not self.entry:
            return None
        drawn = shape = self.rng.choices(self.shapes, weights=self.shape_weights)[0]
        made = _MAKERS[drawn](self, max_len)
        if made is None and drawn != "browse":  # a shape this spec cannot make (no goal, nothing to act on) browses
            shape, made = "browse", self._browse(max_len)
        if made is not None:
            made.drawn, made.shape = drawn, shape
        return made

    def _lookup(self) -> Session | None:
        """A lookup chain toward a goal (RestBench's shape); the session ends there, now and then one step later."""
        found = self._goal_chain()
        if found is None:
            return None
        chain, goal, goal_prompt, supplied = found
        walk = _Walk(self, dict(supplied))
        if not walk.follow(chain):
            return None
        if self.rng.random() < 0.25 and (step := self._next_step(walk.ops[-1], walk.values, walk.ops)) is not None:
            walk.call(step)
        mode = self.rng.choices(["goal", "none"], weights=[0.85, 0.15])[0]
        return walk.session(mode, goal, self._prompts(mode, goal, goal_prompt, walk.ops))

    def _browse(self, max_len: int) -> Session | None:
        browse = [i for i in self.entry if self.kind[i] in (Kind.LIST, Kind.SEARCH, Kind.CREATE)] or self.entry
        walk = _Walk(self, {})
        walk.call(self._central(browse))
        length = self.rng.randint(1, max_len)
        while len(walk.ops) < length:
            step = self._next_step(walk.ops[-1], walk.values, walk.ops)
            if step is None:
                break
            walk.call(step)
        if len(walk.ops) < 2 and self.rng.random() < 0.5:
            return None  # one-call sessions teach only cold start; keep some, not all
        mode = self.rng.choices(["step", "none"], weights=[0.4, 0.6])[0]
        return walk.session(mode, None, self._prompts(mode, None, None, walk.ops))

    def _central(self, ops: list[int]) -> int:
        """One of `ops`, the spec's central ones (what most of it leads from) up to four times as often: where
        people open an API with nothing asked, its main collections, not its corners."""
        return self.rng.choices(ops, weights=[1.0 + 3.0 * float(self.profile.centrality[i]) for i in ops])[0]

    def _act(self) -> Session | None:
        """The prompt asks for one operation, mostly a write; the user identifies the thing, looks it up and acts,
        or quotes its id and acts at once."""
        profile = self.profile
        targets = [i for i in range(len(profile)) if not self._avoid(i)
                   and (self.kind[i] in _WRITES or (self.kind[i] == Kind.GET and profile.ops[i].required))]
        if not targets:
            return None
        weights = [0.3 if profile.destructive[i] else 1.0 for i in targets]
        target = self.rng.choices(targets, weights=weights)[0]
        free = self.free[target]
        walk = _Walk(self, {})
        quoted: str | None = None
        opened = False
        listing = self._listing(target) if self.kind[target] == Kind.CREATE and self.rng.random() < 0.4 else None
        if listing is not None:
            # Look at what exists, then create ("GET /labels", then "create a label called needs-triage"): ids of
            # the parents are held from before the session; the request comes with the act.
            walk.values.update({ent: self.ids.make(ent) for ent in free})
            walk.follow([listing])
            opened = True
            ref = reference(free[-1], self.rng) if free else object_phrase(self.catalogue.operations[target], self.rng)
        elif free:
            # Parents the user already holds (the repository of an issue): their ids, made up front.
            for ent in free[:-1]:
                walk.values[ent] = self.ids.make(ent)
            entity = free[-1]
            if self.rng.random() < 0.35:
                quoted = walk.values[entity] = self.ids.make(entity)
                # The parents show in the history (the repository page before "comment on issue 128").
                parents = [j for j in range(len(profile)) if not self._avoid(j) and self.free[j] == free[:-1]
                           and self.kind[j] in (Kind.GET, Kind.LIST)] if len(free) > 1 else []
                if len(free) > 1 and not parents:
                    return None
                if parents:
                    walk.follow([self.rng.choice(parents)])
                elif self.rng.random() < 0.5:  # whatever they did before (an entry point), then the act
                    walk.follow([self.rng.choice(self.entry)])
                else:
                    self._read_first(walk, target)
            else:
                way = self._way_to(target, entity, walk.values)
                if way is None or not walk.follow(way):
                    return None
                # Opened first, asked after ("email it to the customer" on the invoice page): the request comes
                # with the act. Asked first, the thing still to be found: the request is there at every step.
                opened = len(way) > 1
            ref = reference(entity, self.rng, quoted)
        else:
            if self.rng.random() < 0.5:
                walk.follow([self.rng.choice(self.entry)])
            ref = object_phrase(self.catalogue.operations[target], self.rng)
        if not walk.follow([target]):
            return None
        op = self.catalogue.operations[target]
        asked = profile.ops[target]
        prompt = act_phrase(op, asked, self.rng, ref) if free else phrase(op, asked, self.rng)
        if self.rng.random() < 0.2 and (said := summary_request(op, self.rng)):
            prompt = f"{said} {self.rng.choice(['for', 'on'])} {ref}" if free else said
        then: int | None = None
        if self.rng.random() < 0.2:
            then = self.rng.randrange(len(profile))
            second = phrase(self.catalogue.operations[then], profile.ops[then], self.rng)
            prompt = multi_intent(prompt, second, self.rng)
        prompts = [""] * (len(walk.ops) - 1) + [prompt] if opened else [prompt] * len(walk.ops)
        # Two requests: once the first is done, the second is next (when it can be called).
        if then is not None and not self._avoid(then) and walk.follow([then]):
            prompts.append(prompt)
        return walk.session("act", target, prompts)

    def _lookups(self, target: int) -> list[int]:
        """The thing's own lookups: GETs with the same ids, on the same path or the one `target` is a
        sub-resource of (`GET /invoices/{id}` for `POST /invoices/{id}/void`)."""
        opens = (Relation.SAME_PATH, Relation.CHILD, Relation.DESCENDANT)
        ops = self.profile.ops
        return [j for j in range(len(ops)) if j != target and not self._avoid(j) and self.kind[j] == Kind.GET
                and self.free[j] == self.free[target] and relation(ops[j], ops[target]) in opens]

    def _read_first(self, walk: _Walk, target: int) -> None:
        """A request to act on a thing the session has not opened yet ("void invoice inv_77Q2K" as the first
        words of a session): the thing is read before it is acted on, where it has a lookup."""
        if self.kind[target] in _WRITES and (items := self._lookups(target)):
            walk.follow([self.rng.choice(items)])

    def _listing(self, target: int) -> int | None:
        """The list operation of the collection `target` creates in (`GET /labels` for `POST /labels`)."""
        same = [j for j in self.profile.by_shape.get(self.profile.ops[target].segments, [])
                if self.kind[j] == Kind.LIST and not self._avoid(j)]
        return self.rng.choice(same) if same else None

    def _way_to(self, target: int, entity: str, values: dict[str, str]) -> list[int] | None:
        """How a user finds the thing `target` acts on: list or search it (within the parents they hold), then,
        half of the time, open it."""
        finders = [j for j in range(len(self.profile)) if not self._avoid(j)
                   and self.kind[j] in (Kind.LIST, Kind.SEARCH) and entity in self.profile.ops[j].produces
                   and self.fillable(j, values)]
        if not finders:
            return None
        way = [self.rng.choice(finders)]
        items = [j for j in range(len(self.profile)) if j != target and not self._avoid(j)
                 and self.kind[j] == Kind.GET and self.free[j] == self.free[target]]
        if items and self.rng.random() < 0.5:
            way.append(self.rng.choice(items))
        return way

    def _oneshot(self) -> Session | None:
        """No history: one operation asked for, any ids it needs quoted in the prompt (ToolAlpaca's shape), and
        that operation is the call."""
        candidates = [i for i in range(len(self.profile)) if not self._avoid(i) and len(self.free[i]) <= 2]
        if not candidates:
            return None
        target = self.rng.choice(candidates)
        op, profile = self.catalogue.operations[target], self.profile.ops[target]
        free = self.free[target]
        walk = _Walk(self, {ent: self.ids.make(ent) for ent in free})
        walk.follow([target])
        if free:
            refs = " and ".join(f"{ent.replace('_', ' ')} {walk.values[ent]}" for ent in free) if len(free) > 1 \
                else reference(free[0], self.rng, walk.values[free[0]])
            if free == ["person"] and self.rng.random() < 0.5:
                refs = self.rng.choice(["me", "my account", "my profile", "myself"])  # their own id: theirs to give
            prompt = act_phrase(op, profile, self.rng, refs)
        elif self.rng.random() < 0.45 and (said := summary_request(op, self.rng)):
            prompt = said
        else:
            prompt = phrase(op, profile, self.rng)
        if self.rng.random() < 0.3:
            prompt = with_context(prompt, self.catalogue.operations[self.rng.randrange(len(self.profile))], self.rng)
        return walk.session("act", target, [prompt] * len(walk.ops))

    def _lifecycle(self) -> Session | None:
        """create -> get -> update/action -> (delete) of one thing, each step asked for half the time."""
        creates = [i for i in self.entry if self.kind[i] == Kind.CREATE and self.profile.ops[i].produces]
        if not creates:
            return None
        create = self._central(creates)
        walk = _Walk(self, {})
        walk.follow([create])
        made = self.profile.ops[create].produces
        later = [j for j in range(len(self.profile)) if not self._avoid(j) and self.free[j]
                 and self.free[j][-1] in made and self.fillable(j, walk.values)]
        order = sorted(later, key=lambda j: (self.kind[j] == Kind.DELETE, self.kind[j] != Kind.GET,
                                             self.rng.random()))
        for j in order[: self.rng.randint(1, 4)]:
            if self.kind[j] != Kind.DELETE or self.rng.random() < 0.3:
                walk.call(j)
        mode = self.rng.choices(["step", "none"], weights=[0.5, 0.5])[0]
        return walk.session(mode, None, self._prompts(mode, None, None, walk.ops))

    def _repeat(self) -> Session | None:
        """The same lookup for several things in a row (`GET /items/7`, `GET /items/9`, ...)."""
        items = [i for i in range(len(self.profile)) if not self._avoid(i) and self.kind[i] == Kind.GET
                 and len(self.free[i]) == 1]
        if not items:
            return None
        item = self.rng.choice(items)
        entity = self.free[item][0]
        walk = _Walk(self, {})
        way = self._way_to(item, entity, walk.values)
        if way is None:
            return None
        walk.follow(way[:1])
        items = [self.ids.make(entity) for _ in range(self.rng.randint(2, 4))]
        if walk.ops:
            walk.answer_with_list(entity, items)
        for value in items:
            walk.values[entity] = value
            walk.call(item)
        return walk.session("none", None, [""] * len(walk.ops))

    def _support(self) -> Session | None:
        """Read before act: the request acts on one thing; the user opens the thing first, by the id the prompt
        quotes or after finding it in a list, and acts once it has been read. Mostly the request is there from
        the start; sometimes the thing was opened first and the request came with the act."""
        profile = self.profile
        targets = [i for i in range(len(profile)) if not self._avoid(i) and self.free[i]
                   and (self.kind[i] in _WRITES or (self.kind[i] == Kind.GET and profile.depth[i] >= 2))]
        if not targets:
            return None
        target = self.rng.choices(targets, weights=[0.3 if profile.destructive[i] else 1.0 for i in targets])[0]
        free = self.free[target]
        items = self._lookups(target)
        if not items:
            return None
        item = self.rng.choice(items)
        entity = free[-1]
        walk = _Walk(self, {ent: self.ids.make(ent) for ent in free[:-1]})
        quoted: str | None = None
        if self.rng.random() < 0.5:
            quoted = walk.values[entity] = self.ids.make(entity)
        else:
            way = self._way_to(target, entity, walk.values)
            if way is None or not walk.follow(way[:1]):
                return None
        if not walk.follow([item, target]):
            return None
        op = self.catalogue.operations[target]
        prompt = act_phrase(op, profile.ops[target], self.rng, reference(entity, self.rng, quoted))
        asked_late = quoted is None and self.rng.random() < 0.3
        prompts = [""] * (len(walk.ops) - 1) + [prompt] if asked_late else [prompt] * len(walk.ops)
        return walk.session("act", target, prompts)

    def _iterate(self) -> Session | None:
        """One call per item, the items named by the prompt ("invoices in_1, in_2 and in_3") or those of a list
        the user opened; without a prompt the user now and then moves on after the last item."""
        profile = self.profile
        ops = [i for i in range(len(profile)) if not self._avoid(i) and self.free[i]
               and self.kind[i] in (Kind.GET, Kind.ACTION, Kind.UPDATE)]
        if not ops:
            return None
        op_index = self.rng.choice(ops)
        free = self.free[op_index]
        entity = free[-1]
        walk = _Walk(self, {ent: self.ids.make(ent) for ent in free[:-1]})
        items = [self.ids.make(entity) for _ in range(self.rng.randint(2, 4))]
        op = self.catalogue.operations[op_index]
        prompt = ""
        if self.rng.random() < 0.6:
            refs = references(entity, items, self.rng)
            prompt = act_phrase(op, profile.ops[op_index], self.rng, refs)
        else:
            way = self._way_to(op_index, entity, walk.values)
            if way is None or not walk.follow(way[:1]):
                return None
            walk.answer_with_list(entity, items)
        for value in items:
            walk.values[entity] = value
            walk.call(op_index)
        if not prompt and self.rng.random() < 0.4 and (step := self._next_step(op_index, walk.values, walk.ops)):
            walk.call(step)
        return walk.session("act" if prompt else "none", op_index, [prompt] * len(walk.ops))

    def _scoped(self) -> Session | None:
        """A list narrowed to the thing just read: the customer open, "show the charges of this customer" lists
        `GET /charges?customer=<its id>`."""
        profile, ops = self.profile, self.catalogue.operations
        lists = [(j, e) for e, members in profile.filtered_by.items() for j in members.tolist()
                 if not self._avoid(j) and not self.free[j] and e not in profile.ops[j].produces]
        if not lists:
            return None
        listing, entity = self.rng.choice(lists)
        # A read of the thing itself or of something of it (a customer's payment source holds the customer too).
        readers = [i for i in range(len(profile)) if not self._avoid(i) and self.kind[i] == Kind.GET
                   and entity in self.free[i]]
        if not readers:
            return None
        reader = self.rng.choice(readers)
        walk = _Walk(self, {ent: self.ids.make(ent) for ent in self.free[reader]})
        walk.follow([reader])
        param = next(p.name for p in ops[listing].parameters
                     if p.location == "query" and not p.required and text_entity(p.name) == entity)
        walk.call(listing, {param: walk.values[entity]})
        if self.rng.random() < 0.5 and (acted := self._scoped_act(walk, listing, entity)) is not None:
            return acted
        if self.rng.random() < 0.3:
            prompt = f"{self.rng.choice(['this', 'the', 'that'])} {entity}'s {object_phrase(ops[listing], self.rng)}"
        else:
            prompt = act_phrase(ops[listing], profile.ops[listing], self.rng, reference(entity, self.rng))
        # The thing was opened first; the request comes with the list. What a user does with the list is the
        # other shapes' (a list then an item, then an act), not this one's: its prompt asked for the list alone.
        return walk.session("act", listing, ["", prompt])

    def _scoped_act(self, walk: _Walk, listing: int, entity: str) -> Session | None:
        """The request acts on one of the things the narrowed list holds ("cancel this patient's appointment"):
        nobody has that thing's id, so the list comes first, then the act on the thing it shows."""
        items_of = self.catalogue.operations[listing].path + "/{"
        targets = [i for i in range(len(self.profile)) if not self._avoid(i) and self.kind[i] in _WRITES
                   and self.catalogue.operations[i].path.startswith(items_of) and self.free[i]
                   and self.free[i][-1] != entity]
        if not targets:
            return None
        target = self.rng.choice(targets)
        child = self.free[target][-1]
        items = [self.ids.make(child) for _ in range(self.rng.randint(1, 4))]
        walk.answer_with_list(child, items)
        walk.values[child] = self.rng.choice(items)
        if not walk.follow([target]):
            return None
        noun, owner = child.replace("_", " "), entity.replace("_", " ")
        ref = self.rng.choice([f"this {owner}'s {noun}", f"the {noun} of this {owner}", f"their {noun}",
                               f"the {owner}'s {noun}"])
        prompt = act_phrase(self.catalogue.operations[target], self.profile.ops[target], self.rng, ref)
        return walk.session("act", target, [""] + [prompt] * (len(walk.ops) - 1))

    def _asked(self) -> Session | None:
        """A question about what was done to a thing ("was invoice in_1 voided?", "who moved this card"): answered
        by reading the thing, or, once it is open, its history or what the act made (its timeline, its refunds)."""
        profile, ops = self.profile, self.catalogue.operations
        # An action (void, refund; not a post to the timeline itself), or a change or deletion of the thing itself.
        targets = [i for i in range(len(profile)) if not self._avoid(i) and self.free[i]
                   and ((self.kind[i] == Kind.ACTION and not profile.ops[i].verb & _HISTORY)
                        or (self.kind[i] in (Kind.DELETE, Kind.UPDATE) and ops[i].path.endswith("}")))]
        if not targets:
            return None
        target = self.rng.choice(targets)
        reads = self._lookups(target)
        if not reads:
            return None
        read = self.rng.choice(reads)
        entity = self.free[target][-1]
        walk = _Walk(self, {ent: self.ids.make(ent) for ent in self.free[target]})
        op = ops[target]
        answers = self._answers(read, target)
        if answers and self.rng.random() < 0.5:
            answer = self.rng.choice(answers)
            walk.follow([read, answer])
            prompt = question_about(op, profile.ops[target], self.rng, reference(entity, self.rng))
            return walk.session("act", answer, ["", prompt])
        walk.follow([read])
        prompt = question_about(op, profile.ops[target], self.rng, reference(entity, self.rng, walk.values[entity]))
        return walk.session("act", read, [prompt])

    def _answers(self, read: int, target: int) -> list[int]:
        """Reads under the thing `read` opens that say what was done to it: its history (timeline, actions,
        events, logs) or what `target`'s act makes (`GET /charges/{id}/refunds` for `.../refund`)."""
        ops, told = self.profile.ops, _HISTORY | self.profile.ops[target].verb
        return [j for j in range(len(ops)) if j != read and not self._avoid(j) and self.kind[j] in (Kind.GET, Kind.LIST)
                and self.free[j] == self.free[read] and relation(ops[read], ops[j]) in (Relation.CHILD, Relation.DESCENDANT)
                and ops[j].verb & told]

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


# Each shape of `SessionShapes` and what makes it (`max_len` bounds a browse), checked against the settings' fields.
_MAKERS: dict[str, Callable[[SessionGenerator, int], Session | None]] = {
    "lookup": lambda g, _: g._lookup(), "act": lambda g, _: g._act(), "oneshot": lambda g, _: g._oneshot(),
    "lifecycle": lambda g, _: g._lifecycle(), "browse": lambda g, max_len: g._browse(max_len),
    "repeat": lambda g, _: g._repeat(), "support": lambda g, _: g._support(), "iterate": lambda g, _: g._iterate(),
    "scoped": lambda g, _: g._scoped(), "asked": lambda g, _: g._asked(),
}
if set(_MAKERS) != set(SessionShapes.model_fields):
    raise TypeError(f"session shapes made {sorted(_MAKERS)} differ from SessionShapes {sorted(SessionShapes.model_fields)}")
