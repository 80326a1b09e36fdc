"""RFC 9457 problem documents: every gateway failure, and every refusal of the guard in
front of all routes (`dispatchio_http._server`), is one of these.

The ``type`` of each problem ends in its code (``urn:dispatchio:problem:<code>``), and the
codes of the core's delivery errors are the core's own (``undeliverable``, ``timeout``,
``handler_error``, ``peer_lost``, ``outbox_full``), so a client can switch on one string.
"""

from __future__ import annotations

from typing import Any, Final

import pydantic_core
from aiohttp import web

__all__ = ["PROBLEM_TYPE", "HttpProblem", "problem_response"]

PROBLEM_TYPE: Final = "urn:dispatchio:problem:"
CONTENT_TYPE: Final = "application/problem+json"

_TITLES: Final = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    408: "Request timeout",
    409: "Conflict",
    413: "Content too large",
    415: "Unsupported media type",
    422: "Invalid message",
    426: "Upgrade required",
    429: "Too many requests",
    502: "Handler error",
    503: "Service unavailable",
    504: "Gateway timeout",
}


class HttpProblem(Exception):
    """A failure to answer with a problem document; raised inside handlers, caught once.

    Args:
        status: The HTTP status code.
        code: The machine-readable code the problem's ``type`` ends in.
        detail: Human-readable explanation of this occurrence.
        headers: Extra response headers (``Retry-After``, ``WWW-Authenticate``).
        close: Close the connection after the response (the request's body was not
            read to its end, so the connection cannot carry another request).
        extra: Extension members added to the document (e.g. ``field``).
    """

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        close: bool = False,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers
        self.close = close
        self.extra = extra

    def response(self) -> web.Response:
        """The problem as an ``application/problem+json`` response."""
        response = problem_response(
            self.status, self.code, self.detail, headers=self.headers, **self.extra
        )
        if self.close:
            response.force_close()
        return response


def problem_response(
    status: int,
    code: str,
    detail: str,
    *,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> web.Response:
    """Build an ``application/problem+json`` response (RFC 9457)."""
    body = {
        "type": PROBLEM_TYPE + code,
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "code": code,
        **extra,
    }
    return web.Response(
        status=status,
        body=pydantic_core.to_json(body),
        content_type=CONTENT_TYPE,
        headers=headers,
    )
