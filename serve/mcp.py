"""MCP tools for agents, served by the Ingress at `/mcp` over Streamable HTTP (the official `mcp` SDK).

`suggest_next_calls` and `record_call` are answered by the Ingress's own `/predict` and `/feedback` code, with the
caller identified from the same headers (`X-API-Key` or `Authorization: Bearer`), the same quotas, and each refusal
as a tool error carrying the HTTP status, error and detail the route would have answered. Stateless: each call
stands alone, so any Ingress replica can answer it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.transport_security import TransportSecuritySettings
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from pipeline.ranking.context import Event
from pipeline.settings import ClientSettings
from serve.deps import Caller, identify
from serve.errors import error_response, validation_response
from serve.schemas import MAX_K, VERSION, FeedbackRequest, PredictRequest

# The Ingress's route code: a request and its caller in, the route's response out.
Route = Callable[[Any, Caller], Awaitable[Any]]

PATH = "/mcp"
INSTRUCTIONS = (
    "OpenSesame predicts the next REST API call of a user or agent from the calls made so far, an optional request "
    "in words and an OpenAPI spec. Call suggest_next_calls before choosing a call; after making one, report it with "
    "record_call so the service learns the API's habits."
)


def build(predict_route: Route, feedback_route: Route, clients: ClientSettings) -> ASGIApp:
    """The tools, answered by the Ingress's `/predict` and `/feedback` code."""
    server = MCPServer("OpenSesame", version=VERSION, instructions=INSTRUCTIONS)

    async def caller(ctx: Context) -> Caller:
        request: Request = ctx.request_context.request
        return identify(clients, request.headers.get("authorization"), request.headers.get("x-api-key"),
                        request.client.host if request.client else "unknown")

    @server.tool(description="The k most likely next calls of the API whose spec is named (spec_id from a previous "
                 "answer or POST /specs, spec_url, or the spec itself as spec), given the calls made so far (oldest "
                 "first, each 'METHOD /concrete/path' or an object with its endpoint and optionally the params "
                 "sent and the JSON response) and what the user asked for. Each call comes with its filled path, "
                 "query and body (filled_from says where each value came from), the required fields still missing, "
                 "a score and a reason; keep the prediction_id for record_call. user_id names whose session it is "
                 "(default: the API key's name, else the client's address).")
    async def suggest_next_calls(ctx: Context, events: list[str | Event], prompt: str = "", k: int = 5,
                                 spec_id: str | None = None, spec_url: str | None = None,
                                 spec: dict[str, Any] | str | None = None,
                                 user_id: str | None = None) -> dict[str, Any]:
        async def predict() -> Any:
            who = await caller(ctx)
            source = {"spec_id": spec_id, "spec_url": spec_url, "spec": spec}
            body = PredictRequest(user_id=user_id or who.name,
                                  events=[Event(endpoint=e) if isinstance(e, str) else e for e in events],
                                  prompt=prompt, k=min(k, MAX_K),
                                  **{name: value for name, value in source.items() if value})
            return await predict_route(body, who)

        return await _answered(predict)

    @server.tool(description="Report the call that was made after a suggest_next_calls answer ('METHOD "
                 "/concrete/path', whether or not it was suggested): the service learns from it.")
    async def record_call(ctx: Context, prediction_id: str, called: str) -> dict[str, Any]:
        async def feedback() -> Any:
            return await feedback_route(FeedbackRequest(prediction_id=prediction_id, called=called),
                                        await caller(ctx))

        return await _answered(feedback)

    return _Started(server)


async def _answered(route: Callable[[], Awaitable[Any]]) -> dict[str, Any]:
    """What the route answers, as the tool's result; its refusal as a tool error in the route's words."""
    try:
        response = await route()
    except ValidationError as exc:  # the tool's arguments, refused as the HTTP route refuses its body
        raise _refusal(validation_response(exc.errors())) from exc
    except Exception as exc:  # the domain errors, mapped as the HTTP routes map them
        raise _refusal(error_response(exc)) from exc
    return json.loads(bytes(response.body))


def _refusal(refused: JSONResponse) -> ToolError:
    body = json.loads(bytes(refused.body))
    retry = refused.headers.get("Retry-After")
    return ToolError(f"{refused.status_code} {body['error']}: {body['detail']}"
                     + (f" (retry after {retry} s)" if retry else ""))


class _Started:
    """The SDK's ASGI app, with its session manager running: it needs a task group that outlives each request,
    started on the replica's event loop by the first MCP request (the Ingress has no lifespan of its own)."""

    def __init__(self, server: MCPServer) -> None:
        # Host checks are the Ingress's and the network's business, as for every other route.
        self.app = server.streamable_http_app(
            streamable_http_path=PATH, stateless_http=True, json_response=True,
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        )
        self.manager = server.session_manager
        self._running: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def _run(self) -> None:
        async with self.manager.run():
            self._ready.set()
            await asyncio.Event().wait()  # for the replica's lifetime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._running is None:
            self._running = asyncio.get_running_loop().create_task(self._run())
        await self._ready.wait()
        await self.app(scope, receive, send)
