"""Spec-agnostic structure of a catalogue: what each operation *does* (kind), where it sits in the path tree,
which entities it needs (path parameters) and which it produces (collections it lists, searches or creates).

Everything the ranking features say about an operation comes from here, never from its identity, which is
what lets one model rank operations of specs it has never seen.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from pipeline.ranking.lexical import LexicalIndex
from pipeline.ranking.text import GENERIC_NAMES, entity, head, is_plural, stem, tokens, with_roles
from pipeline.spec.catalogue import Catalogue, Operation, Parameter, words

_VERSION_SEGMENT = re.compile(r"^(v\d+(\.\d+)*|api|rest|\d+(\.\d+)*)$", re.IGNORECASE)
_PARAM_NAME = re.compile(r"\{([^{}]+)\}")
SEARCH_WORDS = frozenset({"search", "query", "find", "lookup", "autocomplete", "suggest"})


class Kind(IntEnum):
    LIST = 0
    GET = 1
    CREATE = 2
    UPDATE = 3
    DELETE = 4
    SEARCH = 5
    ACTION = 6
    OTHER = 7


METHOD_CODES = {"GET": 0, "POST": 1, "PUT": 2, "PATCH": 3, "DELETE": 4, "HEAD": 5, "OPTIONS": 6, "TRACE": 7}


def _is_param(segment: str) -> bool:
    return "{" in segment


def classify(op: Operation, segments: list[str]) -> Kind:
    # Trailing enum parameters select a view (/trending/{media_type}/{time_window}); they do not name an item.
    enums = {p.name for p in op.path_params if p.enum}
    while segments and _is_param(segments[-1]) and segments[-1].strip("{}") in enums:
        segments = segments[:-1]
    last = segments[-1] if segments else ""
    ends_in_param = _is_param(last)
    literal_words = {w for s in segments if not _is_param(s) for w in s.lower().replace("-", "_").split("_")}
    if op.method == "DELETE":
        return Kind.DELETE
    if op.method in ("PUT", "PATCH"):
        return Kind.UPDATE
    if op.method in ("HEAD", "OPTIONS", "TRACE"):
        return Kind.OTHER
    if op.method == "GET":
        if literal_words & SEARCH_WORDS:
            return Kind.SEARCH
        return Kind.GET if ends_in_param else Kind.LIST
    # POST
    if literal_words & SEARCH_WORDS and not ends_in_param:
        return Kind.SEARCH
    if ends_in_param:
        return Kind.UPDATE  # Stripe-style POST /v1/invoices/{invoice}
    # POST /invoices/{invoice}/pay, /servers/{id}/actions/poweron: a verb-like word on a thing already named.
    under_param = any(_is_param(s) for s in segments[:-1])
    if under_param and not is_plural(last):
        return Kind.ACTION
    return Kind.CREATE


@dataclass(frozen=True, slots=True)
class OpProfile:
    kind: Kind
    method: int
    segments: tuple[str, ...]  # lower-case; parameters as "{}" so /a/{id} and /a/{x} compare equal
    depth: int
    root: str
    required: tuple[str, ...]  # required path parameter names, in path order, then required query ids
    required_entities: tuple[str, ...]  # head nouns of the required path parameters
    param_words: tuple[frozenset[str], ...]  # stemmed nouns that name each required parameter (prompt values)
    enum_params: frozenset[str]  # path parameters a client can fill from the spec alone
    produces: frozenset[str]  # entities this call lists, searches, creates or reads (by path)
    returns: frozenset[str]  # entities named by fields of its success response
    action: frozenset[str]  # stemmed words of the last literal segment and operationId
    verb: frozenset[str]  # stemmed words of the last literal segment alone: what it does (`/pay`, `/comments`)
    tokens: frozenset[str]  # stemmed words of path, operationId and summary
    fields: frozenset[str]  # stemmed words of its success response's field names: what it answers
    nouns: frozenset[str]  # head nouns of its path's literal segments: the things it is about
    thing: str  # head noun of its last literal segment: the thing it reads, ends or acts on
    filters: frozenset[str]  # entities a list or search narrows to by an optional query parameter (`?customer=`)

    @property
    def entity_of(self) -> dict[str, str]:
        """Required path parameter name -> its entity head (`{id}` under /credit_notes -> note)."""
        return dict(zip(self.required, self.required_entities))


def is_version_segment(segment: str) -> bool:
    return bool(_VERSION_SEGMENT.match(segment))


def _root(literals: list[str]) -> str:
    """First literal segment that names a resource, skipping version and API prefixes (/v1, /api, /3)."""
    return next((s.lower() for s in literals if not is_version_segment(s)), "")


def _segment_before(segments: list[str]) -> dict[str, str]:
    """Each path parameter's preceding literal segment: `/credit_notes/{id}` -> id: credit_notes."""
    before: dict[str, str] = {}
    previous = ""
    for segment in segments:
        if _is_param(segment):
            for name in _PARAM_NAME.findall(segment):  # also `{id}.json`
                before[name] = previous
        else:
            previous = segment
    return before


def _param_entities(before: dict[str, str], params: tuple[Parameter, ...]) -> tuple[str, ...]:
    """Head noun of each path parameter; a generic name (`{id}`) takes the noun of the segment before it."""
    return tuple(
        head(before.get(p.name) or p.name) if p.name.lower() in GENERIC_NAMES else head(p.name) for p in params
    )


# What a parameter's description says it identifies: "ID of the series", "the repository's identifier".
_IDENTIFIES = re.compile(r"\b(?:id|identifier|uuid|key|number|name)\s+of\s+(?:the|a|an)\s+([a-z]+)"
                         r"|\b(?:the|a|an)\s+([a-z]+)(?:'s|')?\s+(?:id|identifier|uuid)\b", re.IGNORECASE)


def _param_words(before: dict[str, str], params: tuple[Parameter, ...]) -> tuple[frozenset[str], ...]:
    """Nouns a user writes next to a value of each parameter: its own name's words without the id word
    (`issue_number` -> issue), its entity head, the noun of the segment before it (`/servers/{id}` -> server), and
    the thing its description says it identifies (`/user/favorites/{id}`, "ID of the series" -> series)."""
    out = []
    for p in params:
        named = [w for w in words(p.name) if w not in GENERIC_NAMES] + words(before.get(p.name, ""))[-2:]
        if said := _IDENTIFIES.search(p.description):
            named.append((said.group(1) or said.group(2)).lower())
        out.append(frozenset(stem(w) for w in named if w.isalpha()) | {head(p.name)})
    return tuple(out)


def property_names(op: Operation) -> list[str]:
    """The success response's property names, without the `$ref` schema names among `response_fields`
    (`movie-list-object`, `Customer`): those say what the response is, not what it holds."""
    return [f for f in op.response_fields if "-" not in f and not f[:1].isupper()]


def profile_operation(op: Operation) -> OpProfile:
    raw = [s for s in op.path.split("/") if s]
    shape = tuple("{}" if _is_param(s) else s.lower() for s in raw)
    literals = [s for s in raw if not _is_param(s)]
    kind = classify(op, raw)
    path_params = op.path_params
    needs = path_params + op.query_ids  # what the call needs an id for, wherever the id goes
    before = _segment_before(raw)
    # A generic id no path segment places (`POST /api/cancelProject?id=`, RPC style) identifies the thing the
    # operation is named after, as `/projects/{id}/cancel` says by its segment.
    before |= {p.name: literals[-1] for p in op.query_ids
               if literals and p.name.lower() in GENERIC_NAMES and p.name not in before}
    produces: set[str] = set()
    if kind in (Kind.LIST, Kind.SEARCH, Kind.CREATE):
        # Every word after the last parameter (before it is the parent, already known): /person/{id}/movie_credits
        # lists movies and credits, /v1/payment_intents creates intents; enum values name what a view lists
        # (/trending/{media_type} with media_type in movie, tv, person).
        last_param = max((i for i, s in enumerate(raw) if _is_param(s)), default=-1)
        own = [s for s in raw[last_param + 1 :] if not _is_param(s)]
        produces = {head(w) for s in own for w in words(s)}
        produces |= {head(v) for p in path_params if p.enum for v in p.enum}
    elif kind == Kind.GET:
        produces = {head(literals[-1])} if literals else set()
    last_literal = literals[-1] if literals else ""
    # An enum value or a response field without a word in it (PeerTube's `state` "", nic.at's property "") names
    # no entity: its head "" is dropped from both sets.
    return OpProfile(
        kind=kind,
        method=METHOD_CODES.get(op.method, 7),
        segments=shape,
        depth=len(shape),
        root=_root(literals),
        required=tuple(p.name for p in needs),
        required_entities=_param_entities(before, needs),
        param_words=_param_words(before, needs),
        enum_params=frozenset(p.name for p in needs if p.enum),
        produces=frozenset(produces) - {""},
        returns=frozenset(head(f) for f in op.response_fields if f.lower() not in GENERIC_NAMES) - {""},
        action=tokens(last_literal) | (tokens(op.operation_id) if op.operation_id else frozenset()),
        verb=tokens(last_literal) | {stem(last_literal.lower().replace("_", "").replace("-", ""))},
        tokens=tokens(" ".join(literals)) | tokens(op.operation_id or "") | tokens(op.summary),
        fields=with_roles(tokens(" ".join(property_names(op)))),
        nouns=frozenset(head(s) for s in literals if not is_version_segment(s)) - {""},
        thing=head(last_literal),
        filters=_filters(op, kind),
    )


def _filters(op: Operation, kind: Kind) -> frozenset[str]:
    """Entities a list or search can be narrowed to by an optional query parameter named after one
    (`GET /v1/charges?customer=`, `GET /api/appointments?patient=`, `GET /games?developers=`)."""
    if op.method != "GET" or kind not in (Kind.LIST, Kind.SEARCH):
        return frozenset()
    # One word (`automatic_tax` is a setting, not a tax), and a value, not a flag (GitHub's `pulls=true`).
    named = {entity(p.name) for p in op.parameters if p.location == "query" and not p.required and not p.enum
             and p.type not in ("boolean", "number", "object")}
    return frozenset(e for e in named if e and "_" not in e and e not in GENERIC_NAMES)


class Fanout:
    """A set of other operations per operation (flattened once per spec), so the best of a per-operation value
    over each set is one vectorised pass per request rather than a Python loop over the catalogue."""

    def __init__(self, sets: list[np.ndarray]) -> None:
        lengths = np.array([len(members) for members in sets], dtype=np.int64)
        self.nonempty = lengths > 0
        self.members = np.concatenate(sets).astype(np.int64) if lengths.sum() else np.zeros(0, dtype=np.int64)
        # reduceat over the non-empty sets only: each then runs exactly to the start of the next.
        self.starts = (np.cumsum(lengths) - lengths)[self.nonempty]

    def best(self, values: np.ndarray) -> np.ndarray:
        """Per operation: the max of `values` over its set; NaN where the set is empty."""
        out = np.full(len(self.nonempty), np.nan, dtype=np.float32)
        if len(self.members):
            out[self.nonempty] = np.maximum.reduceat(values[self.members], self.starts)
        return out


class SpecProfile:
    """Profiles of every operation plus the arrays and indexes the features need, built once per spec."""

    def __init__(self, catalogue: Catalogue) -> None:
        self.catalogue = catalogue
        self.operations = catalogue.operations
        self.index = {op.id: i for i, op in enumerate(catalogue.operations)}
        self.ops = [profile_operation(op) for op in catalogue.operations]
        self.kind = np.array([p.kind for p in self.ops], dtype=np.int8)
        self.method = np.array([p.method for p in self.ops], dtype=np.int8)
        self.depth = np.array([p.depth for p in self.ops], dtype=np.float32)
        self.n_required = np.array([len(p.required) for p in self.ops], dtype=np.float32)
        self.n_free_required = np.array(
            [len([r for r in p.required if r not in p.enum_params]) for p in self.ops], dtype=np.float32
        )
        self.destructive = np.array([op.destructive for op in self.operations], dtype=bool)
        self.deprecated = np.array([op.deprecated for op in self.operations], dtype=bool)
        self.has_body = np.array([op.has_body for op in self.operations], dtype=bool)
        # Nouns that name a parameter somewhere in the spec: a prompt's "order #W88" is an order's id, not a user's.
        self.param_nouns = frozenset(w for p in self.ops for names in p.param_words for w in names)
        # Entities some path parameter takes: a response field named after one holds its id.
        self.path_entities = frozenset(e for p in self.ops for e in p.required_entities)
        # The things the API's paths are about: a prompt that names one of them says what it acts on.
        self.nouns = frozenset(n for p in self.ops for n in p.nouns)
        # Lists and searches narrowed to an entity (of those a path takes an id of: the thing a user has open).
        filtered: dict[str, list[int]] = {}
        for i, p in enumerate(self.ops):
            for e in sorted(p.filters & self.path_entities):  # in a stable order: sessions draw from it
                filtered.setdefault(e, []).append(i)
        self.filtered_by = {e: np.array(ops, dtype=np.int32) for e, ops in filtered.items()}
        self.words = LexicalIndex([with_roles(p.tokens) for p in self.ops])
        self.fields = LexicalIndex([p.fields for p in self.ops])
        self.verbs = LexicalIndex([p.verb for p in self.ops])
        # enables[i]: operations needing an entity operation i produces (search person -> person credits), and
        # those its responses' OpenAPI `links` declare (the spec's own word, whatever the names say);
        # enables_by_response[i]: ... one its response names (tv show -> its network), when not already enabled.
        by_entity: dict[str, list[int]] = {}
        for j, p in enumerate(self.ops):
            for e in set(p.required_entities) - {e for n, e in zip(p.required, p.required_entities) if n in p.enum_params}:
                by_entity.setdefault(e, []).append(j)
        self.enables = [
            np.union1d(self._needing(p.produces, by_entity, i), self._declared(i)).astype(np.int32)
            for i, p in enumerate(self.ops)
        ]
        self.enables_by_response = [
            np.setdiff1d(self._needing(p.returns, by_entity, i), self.enables[i]) for i, p in enumerate(self.ops)
        ]
        self.enables_fanout = Fanout(self.enables)
        # What each operation leads to in one step, by what it produces or what its response names.
        reaches = [np.union1d(a, b) for a, b in zip(self.enables, self.enables_by_response)]
        self.reaches_fanout = Fanout(reaches)
        # How central an operation is: the share of the spec's busiest reach that its results lead to (the
        # products list of a catalogue API leads to most of it, an asset-categories list to a corner).
        counts = np.array([len(r) for r in reaches], dtype=np.float32)
        self.centrality = counts / max(float(counts.max(initial=0.0)), 1.0)
        self.by_shape: dict[tuple[str, ...], list[int]] = {}
        for i, p in enumerate(self.ops):
            self.by_shape.setdefault(p.segments, []).append(i)
        # Relations of every operation to one operation, filled per source as requests need them (relations.py).
        self.relation_rows: dict[int, np.ndarray] = {}

    @staticmethod
    def _needing(entities: frozenset[str], by_entity: dict[str, list[int]], source: int) -> np.ndarray:
        return np.array(sorted({j for e in entities for j in by_entity.get(e, ()) if j != source}), dtype=np.int32)

    def _declared(self, source: int) -> np.ndarray:
        targets = {self.index[link.target] for link in self.operations[source].links} - {source}
        return np.array(sorted(targets), dtype=np.int32)

    def __len__(self) -> int:
        return len(self.ops)
