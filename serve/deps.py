"""Request dependencies of the HTTP routes (FastAPI `Depends`): what a route needs before it runs."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Header, Request

from serve import errors


def require_admin(request: Request, authorization: Annotated[str | None, Header()] = None) -> None:
    """`Authorization: Bearer <learning.admin_token>`; the Ingress puts the token on `app.state.admin_token`."""
    token: str | None = request.app.state.admin_token
    if token is None:
        raise errors.Forbidden(
            "admin endpoints are disabled: set learning.admin_token (OPENSESAME__LEARNING__ADMIN_TOKEN)"
        )
    if authorization is None or not authorization.startswith("Bearer "):
        raise errors.Unauthorized("missing credentials: send 'Authorization: Bearer <learning.admin_token>'")
    if not secrets.compare_digest(authorization.removeprefix("Bearer ").encode(), token.encode()):
        raise errors.Forbidden("wrong admin token")


Admin = Depends(require_admin)
