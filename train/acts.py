"""The shapes of sessions that act on a thing (`training.shapes`: act, support, scoped, asked): the request
names one operation, and the user finds, opens or reads the thing it acts on around it."""

from __future__ import annotations

from pipeline.ranking.profile import Kind
from pipeline.ranking.relations import Relation, relation
from pipeline.ranking.text import entity as text_entity
from train.prompts import (
    act_phrase,
    multi_intent,
    object_phrase,
    phrase,
    question_about,
    reference,
    summary_request,
)
from train.walk import HISTORY, WRITES, Session, SpecWalker, Walk


class ActShapes(SpecWalker):
    """The shapes that act on a thing, and how a user finds, opens or reads it."""

    def _act(self) -> Session | None:
        """The prompt asks for one operation, mostly a write; the user identifies the thing, looks it up and acts,
        or quotes its id and acts at once."""
        profile = self.profile
        targets = [i for i in range(len(profile)) if not self._avoid(i)
                   and (self.kind[i] in WRITES or (self.kind[i] == Kind.GET and profile.ops[i].required))]
        if not targets:
            return None
        weights = [0.3 if profile.destructive[i] else 1.0 for i in targets]
        target = self.rng.choices(targets, weights=weights)[0]
        free = self.free[target]
        walk = Walk(self, {})
        approached = self._approach(walk, target)
        if approached is None or not walk.follow([target]):
            return None
        ref, opened = approached
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

    def _approach(self, walk: Walk, target: int) -> tuple[str, bool] | None:
        """The calls before the act on `target`: how the thing it acts on is referred to in the request, and whether
        the user opened it before asking (the request then comes with the act); None when it cannot be reached."""
        free = self.free[target]
        listing = self._listing(target) if self.kind[target] == Kind.CREATE and self.rng.random() < 0.4 else None
        if listing is not None:
            # Look at what exists, then create ("GET /labels", then "create a label called needs-triage"): ids of
            # the parents are held from before the session; the request comes with the act.
            walk.values.update({ent: self.ids.make(ent) for ent in free})
            walk.follow([listing])
            ref = reference(free[-1], self.rng) if free else object_phrase(self.catalogue.operations[target], self.rng)
            return ref, True
        if not free:
            if self.rng.random() < 0.5:
                walk.follow([self.rng.choice(self.entry)])
            return object_phrase(self.catalogue.operations[target], self.rng), False
        # Parents the user already holds (the repository of an issue): their ids, made up front.
        for ent in free[:-1]:
            walk.values[ent] = self.ids.make(ent)
        entity = free[-1]
        if self.rng.random() < 0.35:
            quoted = walk.values[entity] = self.ids.make(entity)
            # The parents show in the history (the repository page before "comment on issue 128").
            parents = [j for j in range(len(self.profile)) if not self._avoid(j) and self.free[j] == free[:-1]
                       and self.kind[j] in (Kind.GET, Kind.LIST)] if len(free) > 1 else []
            if len(free) > 1 and not parents:
                return None
            if parents:
                walk.follow([self.rng.choice(parents)])
            elif self.rng.random() < 0.5:  # whatever they did before (an entry point), then the act
                walk.follow([self.rng.choice(self.entry)])
            return reference(entity, self.rng, quoted), False
        way = self._way_to(target, entity, walk.values)
        if way is None or not walk.follow(way):
            return None
        # Opened first, asked after ("email it to the customer" on the invoice page): the request comes with the
        # act. Asked first, the thing still to be found: the request is there at every step.
        return reference(entity, self.rng, None), len(way) > 1

    def _lookups(self, target: int) -> list[int]:
        """The thing's own lookups: GETs with the same ids, on the same path or the one `target` is a
        sub-resource of (`GET /invoices/{id}` for `POST /invoices/{id}/void`)."""
        opens = (Relation.SAME_PATH, Relation.CHILD, Relation.DESCENDANT)
        ops = self.profile.ops
        return [j for j in range(len(ops)) if j != target and not self._avoid(j) and self.kind[j] == Kind.GET
                and self.free[j] == self.free[target] and relation(ops[j], ops[target]) in opens]

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

    def _support(self) -> Session | None:
        """Read before act: the request acts on one thing; the user opens the thing first, by the id the prompt
        quotes or after finding it in a list, and acts once it has been read. Mostly the request is there from
        the start; sometimes the thing was opened first and the request came with the act."""
        profile = self.profile
        targets = [i for i in range(len(profile)) if not self._avoid(i) and self.free[i]
                   and (self.kind[i] in WRITES or (self.kind[i] == Kind.GET and profile.depth[i] >= 2))]
        if not targets:
            return None
        target = self.rng.choices(targets, weights=[0.3 if profile.destructive[i] else 1.0 for i in targets])[0]
        free = self.free[target]
        items = self._lookups(target)
        if not items:
            return None
        item = self.rng.choice(items)
        entity = free[-1]
        walk = Walk(self, {ent: self.ids.make(ent) for ent in free[:-1]})
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
        # A request that quotes the id is acted on at once where the session starts with it; the thing was read
        # first when the user had opened it before asking.
        asked_late = quoted is not None or self.rng.random() < 0.3
        prompts = [""] * (len(walk.ops) - 1) + [prompt] if asked_late else [prompt] * len(walk.ops)
        return walk.session("act", target, prompts)

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
        walk = Walk(self, {ent: self.ids.make(ent) for ent in self.free[reader]})
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

    def _scoped_act(self, walk: Walk, listing: int, entity: str) -> Session | None:
        """The request acts on one of the things the narrowed list holds ("cancel this patient's appointment"):
        nobody has that thing's id, so the list comes first, then the act on the thing it shows."""
        items_of = self.catalogue.operations[listing].path + "/{"
        targets = [i for i in range(len(self.profile)) if not self._avoid(i) and self.kind[i] in WRITES
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
                   and ((self.kind[i] == Kind.ACTION and not profile.ops[i].verb & HISTORY)
                        or (self.kind[i] in (Kind.DELETE, Kind.UPDATE) and ops[i].path.endswith("}")))]
        if not targets:
            return None
        target = self.rng.choice(targets)
        reads = self._lookups(target)
        if not reads:
            return None
        read = self.rng.choice(reads)
        entity = self.free[target][-1]
        walk = Walk(self, {ent: self.ids.make(ent) for ent in self.free[target]})
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
        ops, told = self.profile.ops, HISTORY | self.profile.ops[target].verb
        return [j for j in range(len(ops)) if j != read and not self._avoid(j) and self.kind[j] in (Kind.GET, Kind.LIST)
                and self.free[j] == self.free[read] and relation(ops[read], ops[j]) in (Relation.CHILD, Relation.DESCENDANT)
                and ops[j].verb & told]
