"""Synthetic sessions over real specs: the training data of the ranker.

Assumptions (also in docs/architecture.md), chosen to resemble how people and agents use REST APIs:
- Session shapes, drawn per session in the proportions of `training.shapes` (pipeline/settings/training.py): lookup
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
  collection first (40% of creates); or quotes its id in the prompt (35%): then acts at once, after the parents'
  page, whatever they did before, or nothing.
- One-shot requests: no history, one operation asked for (ToolAlpaca / NESTFUL shape, RPC-style specs), the
  prompt from the spec's own summary or description rephrased, from templates, or two requests in one; a request
  that quotes the id of the thing it acts on is that act ("void invoice inv_77Q2K": the void).
- Lifecycle: create -> get -> update/action -> (delete), each step with its own prompt half the time.
- Browsing: list -> get -> update/action -> sub-resources, moving mostly to path-tree neighbours and to
  operations whose ids they hold. Browsing and lifecycles start on the spec's central operations (what most of it
  leads from: `SpecProfile.centrality`) up to four times as often as on its corners.
- Repeats: the same operation called for several ids (`GET /items/7`, `/items/9`).
- Support flows (read before act): the request acts on one thing; the user opens it first (by its id, or found in
  a list) and acts once it has been read. Where the user opened it by its id, the request comes with the act:
  a request quoting the id with nothing before it is acted on at once, as in a one-shot request.
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
from collections.abc import Callable

from pipeline.ranking.profile import Kind
from pipeline.settings import SessionShapes
from pipeline.spec.catalogue import Catalogue
from train.acts import ActShapes
from train.prompts import act_phrase, phrase, reference, references, summary_request, with_context
from train.walk import Session, Walk


class SessionGenerator(ActShapes):
    """Sessions over one spec, each of a shape drawn from the mixture `shapes`."""

    def __init__(self, catalogue: Catalogue, rng: random.Random, shapes: SessionShapes | None = None) -> None:
        super().__init__(catalogue, rng)
        mixture = (shapes or SessionShapes()).model_dump()
        self.shapes, self.shape_weights = list(mixture), list(mixture.values())

    def session(self, max_len: int = 6) -> Session | None:
        """A session of the shape drawn; a shape this spec does not make in `_ATTEMPTS` tries is replaced by
        another drawn from the rest of the mixture, so each spec makes the mixture as far as it can."""
        if not self.entry:
            return None
        shapes, weights = list(self.shapes), list(self.shape_weights)
        drawn = shape = self.rng.choices(shapes, weights=weights)[0]
        while True:
            for _ in range(_ATTEMPTS):
                made = _MAKERS[shape](self, max_len)
                if made is not None:
                    made.drawn, made.shape = drawn, shape
                    return made
            at = shapes.index(shape)
            del shapes[at], weights[at]
            if sum(weights) <= 0:
                return None
            shape = self.rng.choices(shapes, weights=weights)[0]

    def _lookup(self) -> Session | None:
        """A lookup chain toward a goal (RestBench's shape); the session ends there, now and then one step later."""
        found = self._goal_chain()
        if found is None:
            return None
        chain, goal, goal_prompt, supplied = found
        walk = Walk(self, dict(supplied))
        if not walk.follow(chain):
            return None
        if self.rng.random() < 0.25 and (step := self._next_step(walk.ops[-1], walk.values, walk.ops)) is not None:
            walk.call(step)
        mode = self.rng.choices(["goal", "none"], weights=[0.85, 0.15])[0]
        return walk.session(mode, goal, self._prompts(mode, goal, goal_prompt, walk.ops))

    def _browse(self, max_len: int) -> Session | None:
        browse = [i for i in self.entry if self.kind[i] in (Kind.LIST, Kind.SEARCH, Kind.CREATE)] or self.entry
        walk = Walk(self, {})
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

    def _oneshot(self) -> Session | None:
        """No history: one operation asked for, any ids it needs quoted in the prompt (ToolAlpaca's shape), and
        that operation is the call."""
        candidates = [i for i in range(len(self.profile)) if not self._avoid(i) and len(self.free[i]) <= 2]
        if not candidates:
            return None
        target = self.rng.choice(candidates)
        op, profile = self.catalogue.operations[target], self.profile.ops[target]
        free = self.free[target]
        walk = Walk(self, {ent: self.ids.make(ent) for ent in free})
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
        walk = Walk(self, {})
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
        walk = Walk(self, {})
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
        walk = Walk(self, {ent: self.ids.make(ent) for ent in free[:-1]})
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


# Where a spec can make a shape at all, one try makes it four times in five, a support flow two in five (the thing
# drawn to act on may have no lookup): four tries make nearly every session a spec can (docs/decisions.md).
_ATTEMPTS = 4

# Each shape of `SessionShapes` and what makes it (`max_len` bounds a browse), checked against the settings' fields.
_MAKERS: dict[str, Callable[[SessionGenerator, int], Session | None]] = {
    "lookup": lambda g, _: g._lookup(), "act": lambda g, _: g._act(), "oneshot": lambda g, _: g._oneshot(),
    "lifecycle": lambda g, _: g._lifecycle(), "browse": lambda g, max_len: g._browse(max_len),
    "repeat": lambda g, _: g._repeat(), "support": lambda g, _: g._support(), "iterate": lambda g, _: g._iterate(),
    "scoped": lambda g, _: g._scoped(), "asked": lambda g, _: g._asked(),
}
if set(_MAKERS) != set(SessionShapes.model_fields):
    raise TypeError(f"session shapes made {sorted(_MAKERS)} differ from SessionShapes {sorted(SessionShapes.model_fields)}")
