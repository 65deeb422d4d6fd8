"""An eval set rendered in another API style, keeping what each call means: the same sessions, asked of the same
operations, written as another team would have written the API.

The ranker must not depend on how an API names things. On held-out sessions over BFCL's APIs written as resource
paths (`POST /directories` for `POST /file_system/mkdir`) it lost 0.07 hit@1 while the cosine held, and nothing in
the suite showed it. `restyle` turns a set's specs and cases into another style, deterministically:

- `rpc -> resource`: `POST /account/GetUserToken` becomes `GET /account/user-token`: the verb of the function name
  chooses the method (get -> GET, add -> POST, update -> PATCH, delete -> DELETE; none known: the method stays),
  the rest of the name the path, kebab-case; a name whose path another operation already took keeps its verb.
- `resource -> rpc`: `GET /v1/invoices/{invoice}` becomes `GET /api/getInvoicesInvoice?invoice=...`: one path per
  operation named by its operationId (else its method and literal segments), reads stay GET and writes become
  POST, path parameters become required query parameters.
- operationIds removed (unless the spec's `links` name them), summaries removed where a description says the
  same thing in more words, and every path under a version prefix (`/v2`).

A spec is RPC-style when no path has a parameter and most paths end with the operation's own operationId.
Events are matched on the original spec and written again on the new one (path values into the new path, or into
the query for RPC), `expected` is mapped operation by operation, and `expected_params` is kept where the values
still sit in the path (resource style) and dropped where they moved to the query (params_exact scores path values).
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urlencode

from pipeline.ranking.context import Event
from pipeline.settings import FetchSettings
from pipeline.spec.catalogue import Catalogue, build_catalogue
from pipeline.spec.matching import CallMatcher
from pipeline.spec.refs import RefResolver
from pipeline.spec.source import SpecDocument, content_hash, read_spec
from train.evaluate import Case, spec_location

Style = Literal["other"]
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
VERSION_PREFIX = "/v2"

# The first word of a function name that says what the call does, and the method a resource API gives it.
_VERB_METHOD = {
    **dict.fromkeys(("get", "retrieve", "fetch", "show", "view", "read", "query", "find", "search", "list",
                     "lookup", "check", "display", "count"), "get"),
    **dict.fromkeys(("create", "add", "post", "make", "book", "register", "new", "submit", "insert"), "post"),
    **dict.fromkeys(("update", "set", "edit", "modify", "change", "rename", "adjust"), "patch"),
    **dict.fromkeys(("delete", "remove", "cancel", "revoke", "clear", "erase"), "delete"),
}
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")


def name_words(name: str) -> list[str]:
    """`GetUserToken`, `get_user_token`, `get-user-token` -> ["get", "user", "token"]."""
    return [w.lower() for part in re.split(r"[^A-Za-z0-9]+", name) for w in _CAMEL.findall(part)]


def camel(words: list[str]) -> str:
    return words[0] + "".join(w.capitalize() for w in words[1:]) if words else "call"


@dataclass(frozen=True, slots=True)
class Renamed:
    """Where one operation of the original spec went."""

    method: str
    path: str  # the new template
    query_from_path: bool  # its path parameters now travel in the query


def _operations(data: dict[str, Any]) -> list[tuple[str, str, dict[str, Any], dict[str, Any]]]:
    """(path, method, operation, its path item), path items `$ref`'d under components followed."""
    items = {path: _resolve(data, item) for path, item in (data.get("paths") or {}).items()}
    return [(path, method, op, item) for path, item in items.items() if isinstance(item, dict)
            for method, op in item.items() if method in METHODS and isinstance(op, dict)]


def is_rpc(data: dict[str, Any]) -> bool:
    ops = _operations(data)
    if not ops or any("{" in path for path, _, _, _ in ops):
        return False
    named = sum(path.rstrip("/").rsplit("/", 1)[-1].lower() == str(op.get("operationId", "")).lower()
                for path, _, op, _ in ops)
    return named * 2 > len(ops)


def _resolve(data: dict[str, Any], node: Any) -> Any:
    """A local `$ref` followed (parameters and path items are often shared under components)."""
    return RefResolver(data).deref(node)


def _to_resource(data: dict[str, Any]) -> dict[tuple[str, str], Renamed]:
    taken: set[tuple[str, str]] = set()
    plan: dict[tuple[str, str], Renamed] = {}
    for path, method, op, _ in _operations(data):  # a name keeps its verb in the path when dropping it would collide
        head, _, function = path.rstrip("/").rpartition("/")
        words = name_words(function)
        verb_method = _VERB_METHOD.get(words[0]) if len(words) > 1 else None
        if verb_method in ("get", "delete") and method not in ("get", "delete") and "requestBody" in op \
                and _inline_body(data, op) is None:
            verb_method = None  # a body only a POST can carry keeps its POST
        new = (verb_method, f"{head}/{'-'.join(words[1:])}") if verb_method else (method, f"{head}/{'-'.join(words)}")
        if new in taken:
            new = (method, f"{head}/{'-'.join(words)}")
        taken.add(new)
        plan[(method, path)] = Renamed(*new, query_from_path=False)
    return plan


def _inline_body(data: dict[str, Any], op: dict[str, Any]) -> dict[str, Any] | None:
    body = _resolve(data, op.get("requestBody"))
    schema = _resolve(data, (((body or {}).get("content") or {}).get("application/json") or {}).get("schema"))
    return schema if isinstance(schema, dict) and isinstance(schema.get("properties"), dict) else None


def _to_rpc(data: dict[str, Any]) -> dict[tuple[str, str], Renamed]:
    taken: set[str] = set()
    plan: dict[tuple[str, str], Renamed] = {}
    for path, method, op, _ in _operations(data):
        literals = [s for s in path.split("/") if s and "{" not in s]
        base = camel(name_words(str(op.get("operationId") or "")) or [method, *name_words(" ".join(literals))])
        name, n = base, 1
        while name in taken:
            n += 1
            name = f"{base}{n}"
        taken.add(name)
        plan[(method, path)] = Renamed("get" if method == "get" else "post", f"/api/{name}", "{" in path)
    return plan


def restyle_spec(data: dict[str, Any]) -> tuple[dict[str, Any], dict[tuple[str, str], Renamed]]:
    """The spec in the other style, and where each (method, path) went (before the version prefix)."""
    out = copy.deepcopy(data)
    plan = _to_resource(data) if is_rpc(data) else _to_rpc(data)
    linked = "links" in json.dumps(data.get("paths", {}))
    paths: dict[str, dict[str, Any]] = {}
    for path, method, op, item in _operations(data):
        renamed = plan[(method, path)]
        new_op = copy.deepcopy(op)
        params = [_resolve(data, p) for p in [*(item.get("parameters") or []), *(new_op.get("parameters") or [])]]
        if renamed.query_from_path:
            params = [{**p, "in": "query", "required": True} if isinstance(p, dict) and p.get("in") == "path" else p
                      for p in params]
        if renamed.method in ("get", "delete") and method not in ("get", "delete"):
            schema = _inline_body(data, op)
            if schema is not None:  # a body becomes query parameters: a GET or DELETE sends none
                required = set(schema.get("required") or [])
                params += [{"name": k, "in": "query", "required": k in required, "schema": v,
                            **({"description": v["description"]} if isinstance(v, dict) and "description" in v else {})}
                           for k, v in schema["properties"].items()]
                new_op.pop("requestBody", None)
        if params:
            new_op["parameters"] = [p for p in params if isinstance(p, dict)]
        if not linked:
            new_op.pop("operationId", None)
        if new_op.get("description") and new_op.get("summary"):
            new_op.pop("summary")
        paths.setdefault(VERSION_PREFIX + renamed.path, {})[renamed.method] = new_op
    out["paths"] = paths
    return out, plan


def _render(renamed: Renamed, values: dict[str, str], query: dict[str, Any]) -> str:
    path = VERSION_PREFIX + renamed.path
    if renamed.query_from_path:
        query = {**values, **query}
    else:
        for name, value in values.items():
            path = path.replace("{" + name + "}", quote(value, safe=""))
    return f"{renamed.method.upper()} {path}" + (f"?{urlencode(query, doseq=True)}" if query else "")


@dataclass(frozen=True, slots=True)
class RestyledSpec:
    """One spec in the other style, and how its calls and operations are written there."""

    data: dict[str, Any]
    catalogue: Catalogue  # of the restyled spec
    matcher: CallMatcher  # of the original spec: events are read as written for it
    plan: dict[str, Renamed]  # original operation id -> where it went

    @classmethod
    def of(cls, document: SpecDocument) -> RestyledSpec:
        original = build_catalogue(document)
        data, plan = restyle_spec(document.data)
        raw = json.dumps(data, separators=(",", ":")).encode()  # keys in document order: some specs mix types
        catalogue = build_catalogue(SpecDocument(f"{document.source}@other", data, content_hash(raw)))
        by_route = {(op.method.lower(), op.path): op.id for op in original.operations}
        return cls(data, catalogue, CallMatcher(original), {by_route[key]: r for key, r in plan.items() if key in by_route})

    def operation(self, operation_id: str) -> str:
        renamed = self.plan[operation_id]
        return f"{renamed.method.upper()} {VERSION_PREFIX}{renamed.path}"

    def moves_path_values(self, operation_id: str) -> bool:
        """Whether the operation's path values travel in the query in this style (no path parameter holds them)."""
        return self.plan[operation_id].query_from_path

    def event(self, event: Event) -> Event:
        match = self.matcher.match(event.endpoint)
        if match.operation is None:  # an unmatched call stays unmatched in any style
            return event
        endpoint = _render(self.plan[match.operation.id], match.path_params, match.query_params)
        return event.model_copy(update={"endpoint": endpoint})


def restyle_set(cases: list[Case], cases_dir: Path, out_dir: Path, fetch: FetchSettings) -> list[Case]:
    """Writes each spec of the set in the other style under `out_dir` and returns the cases pointing at them."""
    out_dir.mkdir(parents=True, exist_ok=True)
    specs: dict[str, tuple[str, RestyledSpec]] = {}
    for location in dict.fromkeys(spec_location(c, cases_dir) for c in cases):
        restyled = RestyledSpec.of(read_spec(location, fetch))
        specs[location] = (f"{len(specs):03d}-{Path(location).stem}.json", restyled)
        (out_dir / specs[location][0]).write_text(json.dumps(restyled.data))
    out = []
    for case in cases:
        name, restyled = specs[spec_location(case, cases_dir)]
        out.append(case.model_copy(update={
            "spec": name,
            "events": [restyled.event(e) for e in case.events],
            "expected": restyled.operation(case.expected),
            "expected_params": None if restyled.moves_path_values(case.expected) else case.expected_params,
        }))
    return out
