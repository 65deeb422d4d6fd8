"""Synthetic sessions over real specs: the training data of the ranker.

Assumptions (also in the README), chosen to resemble how people and agents use REST APIs:
- ~60% of sessions pursue a goal operation that needs an id (`GET /movie/{id}/credits`): the user first calls
  an operation that *produces* that entity (a search when the prompt names the thing, else a list), sometimes
  hopping through an operation whose response names it, then calls the goal: lookup chains like RestBench's.
  The session ends there (now and then one more step). The prompt describes the goal, not the next step.
- Otherwise the user browses a resource's lifecycle: list -> get -> update/action -> sub-resources, or
  create -> get -> update, moving mostly to path-tree neighbours and to operations whose ids they hold.
- Ids are concrete (`in_3kf92ja`, `4821`, a UUID, a slug: one style per spec) and an entity keeps its id for
  the session, so carried-over parameters are learnable and checkable.
- Destructive operations are rare unless the goal is destructive; deprecated ones are avoided.
- Prompts: goal sessions carry the goal's prompt 85% of the time, browsing sessions a step prompt 40% of the
  time; the rest have none.
  A third of the prompts for items ask for a piece of the answer (a response property) instead of the call.
Every call a session makes is a concrete call that matches its own operation (tests assert it).
"""

from __future__ import annotations

import random
import string
import uuid
from dataclasses import dataclass, field

from pipeline.catalogue import Catalogue
from pipeline.context import Event
from pipeline.profile import Kind, OpProfile, SpecProfile
from pipeline.relations import Relation, relation
from train.prompts import PERSON_NAMES, THING_NAMES, object_phrase, phrase, with_context

_STEP_WEIGHT = {
    Relation.ITEM: 3.0, Relation.SAME_PATH: 1.5, Relation.CHILD: 1.5, Relation.SIBLING: 0.5,
    Relation.PARENT: 0.7, Relation.DESCENDANT: 0.4, Relation.ANCESTOR: 0.3, Relation.SAME_ROOT: 0.3,
}
# Share of a step's probability that goes to unrelated operations (people do wander off), whatever their count.
_WANDER = 0.15


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
    prompt_mode: str  # "goal", "step" or "none"
    goal: int | None
    prompts: list[str]


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
        prefix = "".join(p[0] for p in entity_name.split("_"))[:3] or "x"
        return f"{prefix}_{''.join(r.choices(string.ascii_letters + string.digits, k=10))}"


class SessionGenerator:
    def __init__(self, catalogue: Catalogue, rng: random.Random) -> None:
        self.catalogue = catalogue
        self.profile = SpecProfile(catalogue)
        self.rng = rng
        self.ids = IdMaker(rng)
        ops = self.profile.ops
        self.entry = [i for i, p in enumerate(ops) if len(p.required) == len(p.enum_params) and not self._avoid(i)]
        self.goals = [i for i, p in enumerate(ops) if p.required and not self._avoid(i)]
        self.required_heads = {e for p in ops for e in p.required_entities}
        # producers[g]: entry points that list/search/create what g needs; reachers[g]: operations with a
        # producer of their own whose response names what g needs (the middle hop of a two-hop lookup).
        self.producers: dict[int, list[int]] = {}
        for i in self.entry:
            if self.profile.kind[i] in (Kind.LIST, Kind.SEARCH, Kind.CREATE):
                for g in self.profile.enables[i]:
                    self.producers.setdefault(int(g), []).append(i)
        self.reachers: dict[int, list[int]] = {}
        for m in self.producers:
            if self._avoid(m) or self.profile.kind[m] not in (Kind.GET, Kind.LIST):
                continue
            for g in self.profile.enables_by_response[m]:
                if int(g) != m and not self._avoid(int(g)):
                    self.reachers.setdefault(int(g), []).append(m)

    def _avoid(self, i: int) -> bool:
        return bool(self.profile.deprecated[i]) or self.profile.kind[i] == Kind.OTHER

    # -- calls -----------------------------------------------------------------------------------------
    def _fillable(self, i: int, values: dict[str, str]) -> bool:
        p = self.profile.ops[i]
        return all(n in p.enum_params or e in values for n, e in zip(p.required, p.required_entities))

    def _concrete(self, i: int, values: dict[str, str]) -> tuple[str, dict[str, str]]:
        """The call as the user sends it, and the entity ids it carries (enum values are not carried)."""
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
        return f"{op.method} {self.catalogue.base_path}{path}", carried

    def _produce(self, i: int, values: dict[str, str]) -> None:
        """After a call, the user holds ids of what it produced (the item it listed, searched or created) and
        of the entities its response names (an invoice's customer)."""
        op = self.profile.ops[i]
        for ent in op.produces | (op.returns & self.required_heads):
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
            if self._avoid(j) or not self._fillable(j, values):
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
        searches = [p for p in producers if self.profile.kind[p] == Kind.SEARCH]
        producer = self.rng.choice(searches) if searches and self.rng.random() < 0.6 else None
        # Naming the thing makes its type implicit: mostly the prompt never says what kind of thing it is.
        implicit = self.profile.ops[producer].produces if producer is not None and self.rng.random() < 0.7 else frozenset()
        prompt = phrase(ops[goal], self.profile.ops[goal], self.rng, implicit)
        if middle is not None:  # "the credits of the movie credits of ...": the hop shows in the question
            prompt = f"{prompt} {self.rng.choice(['of the', 'from the', 'in the'])} {object_phrase(ops[middle], self.rng)}"
        if producer is not None:
            prompt = f"{prompt} {named(self.profile.ops[producer], self.rng)}"
        else:
            lists = [p for p in producers if self.profile.kind[p] == Kind.LIST] or producers
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
        values: dict[str, str] = {}
        goal: int | None = None
        goal_prompt: str | None = None
        chain: list[int] = []
        if self.rng.random() < 0.6 and (found := self._goal_chain()) is not None:
            chain, goal, goal_prompt, supplied = found
            values.update(supplied)
        else:
            browse = [i for i in self.entry if self.profile.kind[i] in (Kind.LIST, Kind.SEARCH, Kind.CREATE)]
            chain = [self.rng.choice(browse or self.entry)]
        ops: list[int] = []
        calls: list[str] = []
        params: list[dict[str, str]] = []

        def call(i: int) -> None:
            text, carried = self._concrete(i, values)
            calls.append(text)
            params.append(carried)
            ops.append(i)
            self._produce(i, values)

        for i in chain:
            if not self._fillable(i, values):
                break
            call(i)
        # A goal session ends at its goal (now and then one more step); browsing wanders for a while.
        length = len(ops) + (self.rng.random() < 0.25) if goal is not None else self.rng.randint(len(ops), max_len)
        while len(ops) < length:
            step = self._next_step(ops[-1], values, ops)
            if step is None:
                break
            call(step)
        if len(ops) < 2 and self.rng.random() < 0.5:
            return None  # one-call sessions teach only cold start; keep some, not all
        if goal is not None:
            mode = self.rng.choices(["goal", "none"], weights=[0.85, 0.15])[0]
        else:
            mode = self.rng.choices(["step", "none"], weights=[0.4, 0.6])[0]
        prompts = self._prompts(mode, goal, goal_prompt, ops)
        return Session(ops, calls, params, mode, goal, prompts)

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
            events = [Event(endpoint=c) for c in session.calls[:t]]
            earlier = {v for p in session.params[:t] for v in p.values()}
            carried = {k: v for k, v in session.params[t].items() if v in earlier}
            out.append(Problem(f"{session_id}-{t}", spec_name, events, session.prompts[t], ops[i].id, carried))
        return out
