"""The operation catalogue: one entry per method + path template of a spec, whatever its flavour.

Swagger 2.0, OpenAPI 3.0 and 3.1 all reduce to the same `Catalogue`, which is what the rest of OpenSesame
sees. It is a pydantic model so that it can be cached (Redis, disk) as JSON and rebuilt without re-parsing.
"""

from __future__ import annotations

import re
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict

from pipeline.errors import MissingPathsError, NotASpecError
from pipeline.spec.refs import RefResolver, pointer_tokens
from pipeline.spec.response_schema import MAX_FIELDS, response_fields
from pipeline.spec.source import SpecDocument

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
# Words that make an operation destructive when they name its action (path segment or operationId word).
DESTRUCTIVE_WORDS = frozenset(
    {"cancel", "void", "delete", "remove", "revoke", "destroy", "purge", "terminate", "erase", "wipe", "detach",
     "reject", "deactivate", "disable", "unsubscribe", "expire", "archive", "suspend", "unpublish"}
)
_MAX_DESCRIPTION = 2000
_MAX_ENUM = 50
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")


ParameterLocation = Literal["path", "query", "header", "cookie", "body", "formData"]
_LOCATIONS = frozenset(ParameterLocation.__args__)


class Parameter(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    location: ParameterLocation
    required: bool
    type: str | None = None
    enum: tuple[str, ...] = ()
    description: str = ""
    default: str | int | float | bool | None = None  # the spec's default, when a JSON scalar


class Link(BaseModel):
    """An OpenAPI `links` entry of a success response: the spec's own statement that `target` may come next, and
    where its parameters' values are found (`$response.body#/job_id`, `$request.path.user_id`, or a constant)."""

    model_config = ConfigDict(frozen=True)

    target: str  # the id of the linked operation, "METHOD /template"
    parameters: tuple[tuple[str, str], ...] = ()  # (parameter name, runtime expression)


class Operation(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str  # "METHOD /template": the public name of an operation everywhere in OpenSesame
    method: str
    path: str
    operation_id: str | None = None
    summary: str = ""
    description: str = ""
    tags: tuple[str, ...] = ()
    parameters: tuple[Parameter, ...] = ()
    has_body: bool = False
    # The request body's top-level fields (JSON, form), `location` "body": what a console fills beside the path.
    body: tuple[Parameter, ...] = ()
    deprecated: bool = False
    destructive: bool = False
    # Field names (and referenced schema names) of the success response: which entities' ids it returns.
    response_fields: tuple[str, ...] = ()
    links: tuple[Link, ...] = ()

    @property
    def path_params(self) -> tuple[Parameter, ...]:
        return tuple(p for p in self.parameters if p.location == "path")

    @property
    def query_ids(self) -> tuple[Parameter, ...]:
        """Required query parameters that carry an id (`?product_id=`, `?geoId=`): RPC-style and search APIs
        pass the thing to act on there, and it has to come from somewhere, as a path id does."""
        return tuple(p for p in self.parameters if p.location == "query" and p.required and is_id_name(p.name))


_ID_SUFFIXES = frozenset({"id", "ids", "uuid", "guid", "sid"})


def is_id_name(name: str) -> bool:
    parts = words(name)
    return bool(parts) and parts[-1] in _ID_SUFFIXES


class Catalogue(BaseModel):
    model_config = ConfigDict(frozen=True)

    source: str
    content_hash: str
    title: str
    version: str
    openapi: str  # "2.0", "3.0.3", "3.1.0"
    base_path: str  # "" or "/v1": prefix the server adds before every path template
    operations: tuple[Operation, ...]

    def by_id(self) -> dict[str, Operation]:
        return {op.id: op for op in self.operations}

    def routes(self) -> Catalogue:
        """The operations' names and path templates alone: all that matching a call needs (Stripe's: 121 KB of
        JSON of the catalogue's 1.37 MB), for a process that matches calls itself instead of asking the spec store
        each time."""
        slim = tuple(Operation(id=op.id, method=op.method, path=op.path) for op in self.operations)
        return self.model_copy(update={"operations": slim})

    def without_links(self) -> Catalogue:
        """The same operations as if the spec declared no OpenAPI `links`: what they add, measured."""
        return self.model_copy(update={"operations": tuple(op.model_copy(update={"links": ()})
                                                           for op in self.operations)})


def words(text: str) -> list[str]:
    """Split identifiers and prose into lower-case words: `PostInvoicesInvoiceVoid` -> post invoices invoice void."""
    return [w.lower() for w in _WORD.findall(text)]


def is_destructive(method: str, path: str, operation_id: str | None) -> bool:
    if method == "DELETE":
        return True
    # Only the *last* literal segment names the action: /v1/subscriptions/{id}/cancel, not /cancellations/list.
    last = next((seg for seg in reversed(path.split("/")) if seg and "{" not in seg), "")
    action_words = set(words(last)) | (set(words(operation_id)) if operation_id else set())
    return bool(action_words & DESTRUCTIVE_WORDS)


def _spec_version(data: dict[str, Any], source: str) -> str:
    if str(data.get("swagger", "")).startswith("2"):
        return "2.0"
    openapi = data.get("openapi")
    if isinstance(openapi, str) and openapi.startswith("3"):
        return openapi
    if "paths" in data and "info" in data:
        raise NotASpecError(
            f"{source}: has `paths` but no `openapi: 3.x` or `swagger: '2.0'` field; add the version field"
        )
    raise NotASpecError(
        f"{source}: not an OpenAPI/Swagger document (no `openapi` or `swagger` field); send an OpenAPI 3.x or "
        "Swagger 2.0 spec"
    )


def _server_path(url: str, variables: dict[str, Any]) -> str:
    def substitute(match: re.Match[str]) -> str:
        var = variables.get(match.group(1)) or {}
        return str(var.get("default", "")) if isinstance(var, dict) else ""

    url = re.sub(r"\{([^}]+)\}", substitute, url)
    path = urlsplit(url).path if "://" in url else url
    return _normalise_base(path)


def _normalise_base(path: str) -> str:
    path = "/" + path.strip("/")
    return "" if path == "/" else path


def base_path(data: dict[str, Any], version: str) -> str:
    if version == "2.0":
        return _normalise_base(str(data.get("basePath") or ""))
    servers = data.get("servers")
    if isinstance(servers, list) and servers and isinstance(servers[0], dict):
        return _server_path(str(servers[0].get("url", "")), servers[0].get("variables") or {})
    return ""


def _parameter(raw: dict[str, Any], resolver: RefResolver) -> Parameter | None:
    name, location = raw.get("name"), raw.get("in")
    if not isinstance(name, str) or location not in _LOCATIONS:
        return None
    schema = resolver.deref(raw.get("schema") or {})
    if not isinstance(schema, dict):
        schema = {}
    # A Swagger 2.0 parameter carries its schema's keys itself; the description read is the parameter's own.
    merged = {**schema, **{key: value for key, value in raw.items() if value}, "description": raw.get("description")}
    return _described(name, location, bool(raw.get("required")) or location == "path", merged)


def _described(name: str, location: ParameterLocation, required: bool, schema: dict[str, Any]) -> Parameter:
    """A parameter or body field from its schema."""
    param_type = schema.get("type")
    if isinstance(param_type, list):  # OAS 3.1: type: [string, "null"]
        param_type = next((t for t in param_type if t != "null"), None)
    enum = schema.get("enum") or []
    default = schema.get("default")
    return Parameter(
        name=name,
        location=location,
        required=required,
        type=str(param_type) if param_type else None,
        enum=tuple(str(v) for v in enum[:_MAX_ENUM]) if isinstance(enum, list) else (),
        description=str(schema.get("description") or "")[:300],
        default=default if isinstance(default, (str, int, float, bool)) else None,
    )


# A body's media types in the order a client would choose to send one.
_BODY_MEDIA = ("application/json", "application/x-www-form-urlencoded", "multipart/form-data")


def _body_schema(op: dict[str, Any], item_params: Any, resolver: RefResolver) -> Any:
    """The request body's schema: OAS 3's `requestBody`, or a Swagger 2.0 `in: body` parameter's."""
    body = resolver.deref(op.get("requestBody"))
    if isinstance(body, dict):
        content = resolver.deref(body.get("content"))
        if isinstance(content, dict) and content:
            media = next((content[m] for m in _BODY_MEDIA if m in content), next(iter(content.values())))
            media = resolver.deref(media)
            return media.get("schema") if isinstance(media, dict) else None
    for raw_list in (item_params, op.get("parameters")):
        for raw in raw_list if isinstance(raw_list, list) else []:
            param = resolver.deref(raw)
            if isinstance(param, dict) and param.get("in") == "body":
                return param.get("schema")
    return None


def _body_fields(op: dict[str, Any], item_params: Any, params: tuple[Parameter, ...],
                resolver: RefResolver) -> tuple[Parameter, ...]:
    """The top-level fields of the request body (its own and those of the schemas it is composed of by `allOf`),
    required ones first; a Swagger 2.0 form's fields are its `formData` parameters. Fields the server writes
    (`readOnly`) are no part of a request."""
    found: dict[str, Parameter] = {p.name: p.model_copy(update={"location": "body"})
                                   for p in params if p.location == "formData"}
    required: set[str] = set()
    parts, seen = [_body_schema(op, item_params, resolver)], set()
    while parts:
        schema = resolver.deref(parts.pop(0))
        if not isinstance(schema, dict) or id(schema) in seen:
            continue
        seen.add(id(schema))
        parts += schema.get("allOf") if isinstance(schema.get("allOf"), list) else []
        required.update(str(n) for n in schema.get("required") or [] if isinstance(schema.get("required"), list))
        properties = schema.get("properties")
        for name, raw in properties.items() if isinstance(properties, dict) else ():
            field = resolver.deref(raw)
            if isinstance(field, dict) and not field.get("readOnly") and str(name) not in found:
                found[str(name)] = _described(str(name), "body", False, field)
    fields = [f.model_copy(update={"required": True}) if f.name in required else f for f in found.values()]
    return tuple(sorted(fields, key=lambda f: not f.required))[:MAX_FIELDS]


def _merged_parameters(item_params: Any, op_params: Any, resolver: RefResolver) -> tuple[Parameter, ...]:
    """Path-item parameters, overridden by operation parameters with the same (name, in)."""
    merged: dict[tuple[str, str], Parameter] = {}
    for raw_list in (item_params, op_params):
        for raw in raw_list if isinstance(raw_list, list) else []:
            param = _parameter(resolver.deref(raw), resolver)
            if param is not None:
                merged[(param.name, param.location)] = param
    return tuple(merged.values())


_MAX_LINKS = 32
_LOCATION_PREFIX = re.compile(r"^(path|query|header|cookie)\.")


def _declared_links(op: dict[str, Any], resolver: RefResolver) -> list[dict[str, Any]]:
    """The link objects of the operation's success responses (links on errors are no next step)."""
    responses = resolver.deref(op.get("responses"))
    found: list[dict[str, Any]] = []
    for code, raw in responses.items() if isinstance(responses, dict) else ():
        response = resolver.deref(raw)
        links = resolver.deref(response.get("links")) if str(code).startswith("2") and isinstance(response, dict) else None
        if isinstance(links, dict):
            found += [link for link in map(resolver.deref, links.values()) if isinstance(link, dict) and link]
    return found[:_MAX_LINKS]


def _link(raw: dict[str, Any], by_operation_id: dict[str, str], by_route: dict[tuple[str, str], str]) -> Link | None:
    """`raw` resolved to an operation of this spec; a link to another document (a remote `operationRef`) or to
    an operation the spec lacks is dropped."""
    target: str | None = None
    if isinstance(raw.get("operationId"), str):
        target = by_operation_id.get(raw["operationId"])
    elif isinstance(raw.get("operationRef"), str) and raw["operationRef"].startswith("#/paths/"):
        tokens = pointer_tokens(raw["operationRef"])
        target = by_route.get((tokens[1], tokens[2].lower())) if len(tokens) == 3 else None
    if target is None:
        return None
    parameters = raw.get("parameters") if isinstance(raw.get("parameters"), dict) else {}
    # A name may be qualified by its location ("path.id") when two parameters share it.
    return Link(target=target, parameters=tuple(
        (_LOCATION_PREFIX.sub("", str(name)), str(value)) for name, value in parameters.items()
        if isinstance(value, (str, int, float)) and not isinstance(value, bool)
    ))


def _text(value: Any, limit: int) -> str:
    return str(value).strip()[:limit] if value else ""


def _operation(method: str, template: str, op: dict[str, Any], item_params: Any, resolver: RefResolver) -> Operation:
    params = _merged_parameters(item_params, op.get("parameters"), resolver)
    operation_id = op.get("operationId") if isinstance(op.get("operationId"), str) else None
    tags = op.get("tags") if isinstance(op.get("tags"), list) else []
    return Operation(
        id=f"{method} {template}",
        method=method,
        path=template,
        operation_id=operation_id,
        summary=_text(op.get("summary"), 300),
        description=_text(op.get("description"), _MAX_DESCRIPTION),
        tags=tuple(str(t) for t in tags),
        parameters=params,
        has_body="requestBody" in op or any(p.location in ("body", "formData") for p in params),
        body=_body_fields(op, item_params, params, resolver),
        deprecated=bool(op.get("deprecated")),
        destructive=is_destructive(method, template, operation_id),
        response_fields=response_fields(op, resolver),
    )


def build_catalogue(document: SpecDocument) -> Catalogue:
    data, source = document.data, document.source
    version = _spec_version(data, source)
    paths = data.get("paths")
    if not isinstance(paths, dict) or not paths:
        raise MissingPathsError(f"{source}: the spec has no `paths`; there are no operations to predict")
    resolver = RefResolver(data)
    operations: list[Operation] = []
    declared: list[list[dict[str, Any]]] = []
    by_route: dict[tuple[str, str], str] = {}
    for path, raw_item in paths.items():
        item = resolver.deref(raw_item)
        if not isinstance(item, dict) or not isinstance(path, str):
            continue
        template = "/" + path.strip().lstrip("/") if path.strip() else "/"
        for method in HTTP_METHODS:
            op = resolver.deref(item.get(method))
            if not isinstance(op, dict) or method not in item:
                continue
            operations.append(_operation(method.upper(), template, op, item.get("parameters"), resolver))
            declared.append(_declared_links(op, resolver))
            by_route[(path, method)] = operations[-1].id
    if not operations:
        raise MissingPathsError(f"{source}: `paths` holds no operations (no get/post/put/patch/delete/...)")
    # Links name their target by operationId or by a reference to it, so they resolve once all are read.
    by_operation_id = {op.operation_id: op.id for op in operations if op.operation_id}
    operations = [
        op.model_copy(update={"links": tuple(link for raw in links if (link := _link(raw, by_operation_id, by_route)))})
        if links else op
        for op, links in zip(operations, declared)
    ]
    info = data.get("info") if isinstance(data.get("info"), dict) else {}
    return Catalogue(
        source=source,
        content_hash=document.content_hash,
        title=_text(info.get("title"), 200) or "untitled",
        version=_text(info.get("version"), 100),
        openapi=version,
        base_path=base_path(data, version),
        operations=tuple(operations),
    )
