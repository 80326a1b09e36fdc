"""Bearer-token checks shared by the peer endpoints, the gateway and the status page."""

from __future__ import annotations

import hmac

from aiohttp import web

__all__ = ["authorized"]


def authorized(request: web.Request, token: str | None) -> bool:
    """Whether ``request`` carries ``token``; always true when no token is configured.

    Accepts ``Authorization: Bearer <token>``, and for GET requests only an
    ``access_token`` query parameter (a browser's ``EventSource`` cannot set headers).
    The comparison takes constant time; the token is never logged.
    """
    if token is None:
        return True
    expected = token.encode()
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected):
        return True
    if request.method == "GET":
        query = request.query.get("access_token")
        if query is not None and hmac.compare_digest(query.encode(), expected):
            return True
    return False
