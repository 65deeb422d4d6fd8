"""Mapping an observed call (`GET /v1/invoices/in_123?expand=lines`) onto an operation of the catalogue.

Precedence follows what routers do: at the first segment where two templates differ, a literal beats a
mixed segment (`{name}.json`), which beats a bare parameter, so `/v1/invoices/search` wins over
`/v1/invoices/{invoice}`. Calls may come with or without the server prefix, as a full URL, with a query
string, a trailing slash or percent-encoding, or as a template themselves (`/invoices/{id}`).

Some specs keep several operations on one path by a fragment or a query in the path key (APIs.guru's AWS specs:
`POST /#X-Amz-Target=DataPipeline.ListPipelines`, `DELETE /tags/{id}#tagKeys`; others `GET /users/{id}/pic?key=
{APIKEY}`): it says what else the request carries (a header, a query parameter), never part of the URL path.
Such templates match on the path alone; among operations sharing it, the one whose fragment the call repeats (as
our predictions write them) wins, then one whose query parameters the call sends, then one with neither.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit

from pipeline.spec.catalogue import Catalogue, Operation

_PARAM = re.compile(r"\{([^{}]+)\}")
_LITERAL, _MIXED, _PARAMETER = 2, 1, 0


@dataclass(frozen=True, slots=True)
class CallMatch:
    method: str
    path: str  # the observed path, prefix stripped when it matched that way
    operation: Operation | None
    path_params: dict[str, str] = field(default_factory=dict)
    query_params: dict[str, str | list[str]] = field(default_factory=dict)

    @property
    def matched(self) -> bool:
        return self.operation is not None


@dataclass(frozen=True, slots=True)
class _Segment:
    kind: int
    literal: str = ""
    pattern: re.Pattern[str] | None = None
    names: tuple[str, ...] = ()


def _compile_segment(segment: str) -> _Segment:
    names = tuple(_PARAM.findall(segment))
    if not names:
        return _Segment(_LITERAL, literal=segment.lower())
    if _PARAM.fullmatch(segment):
        return _Segment(_PARAMETER, names=names)
    pieces = _PARAM.split(segment)  # literal, name, literal, name, ..., literal
    regex = "".join(re.escape(p) if i % 2 == 0 else "(.+?)" for i, p in enumerate(pieces))
    return _Segment(_MIXED, pattern=re.compile(regex + r"\Z", re.IGNORECASE), names=names)


def split_path(path: str) -> list[str]:
    """Split on `/` *before* decoding, so an encoded `%2F` stays inside its segment."""
    return [unquote(s) for s in path.strip("/").split("/") if s]


def parse_call(call: str) -> tuple[str, str, dict[str, str | list[str]]]:
    """`"get https://x/v1/a?b=1"` -> ("GET", "/v1/a", {"b": "1"})."""
    method, _, target = call.strip().partition(" ")
    target = target.strip().split("#", 1)[0]
    if "://" in target:
        parts = urlsplit(target)
        path, query = parts.path, parts.query
    else:
        path, _, query = target.partition("?")
    params: dict[str, str | list[str]] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key in params:
            existing = params[key]
            params[key] = [*existing, value] if isinstance(existing, list) else [existing, value]
        else:
            params[key] = value
    return method.upper(), "/" + path.strip("/"), params


_Template = tuple[Operation, tuple[_Segment, ...], str]  # operation, segments, what its path key adds


@dataclass(slots=True)
class _Shape:
    """The templates of one method and segment count, in catalogue order, with bit masks per position: which
    have each literal there, and which a parameter (that binds any value)."""

    templates: list[_Template] = field(default_factory=list)
    literals: list[dict[str, int]] = field(default_factory=list)
    open: list[int] = field(default_factory=list)

    def add(self, template: _Template) -> None:
        bit = 1 << len(self.templates)
        self.templates.append(template)
        segments = template[1]
        if not self.literals:
            self.literals, self.open = [{} for _ in segments], [0] * len(segments)
        for position, segment in enumerate(segments):
            if segment.kind == _LITERAL:
                self.literals[position][segment.literal] = self.literals[position].get(segment.literal, 0) | bit
            else:
                self.open[position] |= bit

    def candidates(self, observed: list[str]) -> list[_Template]:
        """The templates whose literals all equal `observed`'s segments, in catalogue order (ties break as a
        scan of all would)."""
        mask = (1 << len(self.templates)) - 1
        for position, value in enumerate(observed):
            fits = self.open[position]
            if not (value.startswith("{") and value.endswith("}")):  # a template segment binds no literal
                fits |= self.literals[position].get(value.lower(), 0)
            mask &= fits
            if not mask:
                return []
        found = []
        while mask:
            low = mask & -mask
            found.append(self.templates[low.bit_length() - 1])
            mask ^= low
        return found


class CallMatcher:
    """Compiled templates of one catalogue, grouped by (method, segment count), each group indexed by the
    literal at every position: a large API has dozens of templates per method and length, and a call is tried
    only against those whose literals it repeats."""

    def __init__(self, catalogue: Catalogue) -> None:
        self.base_segments = split_path(catalogue.base_path)
        self._shapes: dict[tuple[str, int], _Shape] = {}
        for op in catalogue.operations:
            path, extra = _split_key(op.path)
            segments = tuple(_compile_segment(s) for s in path.strip("/").split("/") if s)
            self._shapes.setdefault((op.method, len(segments)), _Shape()).add((op, segments, extra))

    def match(self, call: str) -> CallMatch:
        method, path, query = parse_call(call)
        repeated = call.partition("#")[2].strip()
        observed = split_path(path)
        attempts = [observed]
        n = len(self.base_segments)
        if n and [s.lower() for s in observed[:n]] == [s.lower() for s in self.base_segments]:
            attempts.insert(0, observed[n:])  # with the server prefix stripped first: the usual case
        best: tuple[tuple[int, ...], Operation, dict[str, str], list[str]] | None = None
        for segments in attempts:
            shape = self._shapes.get((method, len(segments)))
            for op, template, extra in shape.candidates(segments) if shape is not None else ():
                bound = _bind(template, segments)
                if bound is None:
                    continue
                score = (*bound[0], _extra_fit(extra, repeated, query))
                if best is None or score > best[0]:
                    best = (score, op, bound[1], segments)
        if best is None:
            return CallMatch(method=method, path=path, operation=None, query_params=query)
        _, op, params, segments = best
        return CallMatch(method, "/" + "/".join(segments), op, params, query)


def _split_key(key: str) -> tuple[str, str]:
    """A path key -> (its path, what follows the path's first `#` or `?`: "" for a plain one)."""
    cut = min((i for i in (key.find("#"), key.find("?")) if i >= 0), default=len(key))
    return key[:cut], key[cut + 1:]


def _extra_fit(extra: str, repeated: str, query: dict[str, str | list[str]]) -> int:
    """How well what a path key adds to its path fits a call: repeated as is, each of its query parameters sent
    (with its value, unless the key's is a template), nothing added."""
    if not extra:
        return 1
    if extra == repeated:
        return 3
    wanted = [part.partition("=") for part in extra.split("&") if part]
    if all(name in query and (not value or value.startswith("{") or query[name] == value) for name, _, value in wanted):
        return 2
    return 0


def _bind(template: tuple[_Segment, ...], observed: list[str]) -> tuple[tuple[int, ...], dict[str, str]] | None:
    score: list[int] = []
    params: dict[str, str] = {}
    for seg, value in zip(template, observed):
        if value.startswith("{") and value.endswith("}"):
            # The caller sent a template segment: it fits any parameter, binds no value.
            if seg.kind == _LITERAL:
                return None
            score.append(seg.kind)
            continue
        if seg.kind == _LITERAL:
            if seg.literal != value.lower():
                return None
        elif seg.kind == _PARAMETER:
            params[seg.names[0]] = value
        else:
            assert seg.pattern is not None
            found = seg.pattern.match(value)
            if found is None:
                return None
            params.update(zip(seg.names, found.groups()))
        score.append(seg.kind)
    return tuple(score), params
