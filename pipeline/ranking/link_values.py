"""Parameter values a spec's OpenAPI `links` point at: GraphHopper's `POST /vrp/optimize` answers
`{"job_id": "j-7"}`, and its link says `GET /vrp/solution/{jobId}` takes `jobId` from `$response.body#/job_id`, which
no name-matching would find. The link is the spec's own statement, so its values outrank what names suggest.

Runtime expressions read the call that carried the link: its response body and request body (by JSON pointer), its
path and query parameters; a constant is taken as written. Headers, `$url`, `$method` and `$statusCode` never
fill a path parameter and are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline.ranking.response_values import id_value
from pipeline.spec.catalogue import Link
from pipeline.spec.matching import CallMatch
from pipeline.spec.refs import pointer_tokens, resolve_pointer


@dataclass(frozen=True, slots=True)
class MadeCall:
    """What a link's expressions can read of one call of the history."""

    match: CallMatch
    params: dict[str, Any]  # the request's body or query, as the event carried them
    response: Any


def link_values(link: Link, call: MadeCall) -> dict[str, str]:
    """Parameter name -> value of the link's target, for the expressions this call can answer."""
    found: dict[str, str] = {}
    for name, expression in link.parameters:
        value = id_value(_evaluate(expression, call))
        if value is not None:
            found[name] = value
    return found


def _evaluate(expression: str, call: MadeCall) -> Any:
    expression = expression.strip()
    if expression.startswith("{$") and expression.endswith("}"):  # the embedded form, "{$response.body#/id}"
        expression = expression[1:-1]
    if not expression.startswith("$"):
        return expression
    source, _, pointer = expression.partition("#")
    if source == "$response.body":
        return resolve_pointer(call.response, pointer_tokens(pointer))
    if source == "$request.body":
        return resolve_pointer(call.params, pointer_tokens(pointer))
    if source.startswith("$request.path."):
        return call.match.path_params.get(source.removeprefix("$request.path."))
    if source.startswith("$request.query."):
        name = source.removeprefix("$request.query.")
        return call.match.query_params.get(name, call.params.get(name))
    return None
