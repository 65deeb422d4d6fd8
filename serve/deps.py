"""Request dependencies of the HTTP routes (FastAPI `Depends`): what a route needs before it runs.

They are `async def` although they never await: FastAPI runs a plain `def` dependency in a worker thread, a
thread hop per request, a visible share of the Ingress's event loop under load, for microseconds of work."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Request

from pipeline.settings import ApiKey, ClientSettings
from serve import errors


async def require_admin(request: Request, authorization: Annotated[str | None, Header()] = None) -> None:
    """`Authorization: Bearer <learning.admin_token>`; the Ingress puts the token on `app.state.admin_token`."""
    token: str | None = request.app.state.admin_token
    if token is None:
        raise errors.ForbiddenError(
            "admin endpoints are disabled: set learning.admin_token (OPENSESAME__LEARNING__ADMIN_TOKEN)"
        )
    if authorization is None or not authorization.startswith("Bearer "):
        raise errors.UnauthorizedError("missing credentials: send 'Authorization: Bearer <learning.admin_token>'")
    if not secrets.compare_digest(authorization.removeprefix("Bearer ").encode(), token.encode()):
        raise errors.ForbiddenError("wrong admin token")


Admin = Depends(require_admin)


@dataclass(frozen=True, slots=True)
class Caller:
    """Who calls: the API key it presented, or nobody in particular (keys not required)."""

    key: ApiKey | None
    address: str

    @property
    def name(self) -> str:
        """Who this is when the request names no user: the key's name, else the address."""
        return f"key:{self.key.name}" if self.key is not None else f"addr:{self.address}"

    def quota_id(self, user_id: str | None = None) -> str:
        """Whose quota a call counts against: the key's; without one the user's, or the address's."""
        if self.key is not None:
            return f"key:{self.key.sha256[:16]}"
        return f"user:{user_id}" if user_id else f"addr:{self.address}"


async def current_caller(
    request: Request,
    authorization: Annotated[str | None, Header()] = None,
    x_api_key: Annotated[str | None, Header()] = None,
) -> Caller:
    """`X-API-Key: <key>` or else `Authorization: Bearer <key>`, checked against the SHA-256 digests of the accepted
    keys (`clients.api_keys`): an unknown key is refused; no key is refused only when keys are required."""
    address = request.client.host if request.client else "unknown"
    return identify(request.app.state.clients, authorization, x_api_key, address)


def identify(clients: ClientSettings, authorization: str | None, x_api_key: str | None, address: str) -> Caller:
    """The caller of an HTTP route or an MCP tool, from its headers (see `current_caller`)."""
    bearer = authorization.removeprefix("Bearer ") if authorization and authorization.startswith("Bearer ") else None
    presented = x_api_key or bearer
    if presented is None:
        if clients.require_api_key:
            raise errors.UnauthorizedError(
                "an API key is required: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
            )
        return Caller(None, address)
    digest = hashlib.sha256(presented.encode()).hexdigest()
    for key in clients.api_keys:
        if secrets.compare_digest(key.sha256, digest):
            return Caller(key, address)
    raise errors.UnauthorizedError("unknown API key: send a key issued for this service (clients.api_keys)")


CurrentCaller = Annotated[Caller, Depends(current_caller)]
