"""A real aiohttp server carrying the gateway, for the gateway's tests.

Until the HTTP transport serves the gateway itself, the tests mount `install_gateway` on
an application of their own, behind a small middleware that does what the transport's
does for the gateway: the bearer token (every route but /v1/health).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web

from dispatchio import MessageDispatcher
from dispatchio_http._auth import authorized
from dispatchio_http._gateway import install_gateway
from dispatchio_http._options import HttpOptions
from dispatchio_http._problems import problem_response

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _auth_middleware(token: str | None) -> Any:
    @web.middleware
    async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.endswith("/v1/health") and not authorized(request, token):
            return problem_response(
                401,
                "unauthorized",
                "send Authorization: Bearer <token>",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return await handler(request)

    return auth


@asynccontextmanager
async def serve_gateway(
    dispatcher: MessageDispatcher,
    *,
    prefix: str = "",
    extra_routes: list[web.RouteDef] | None = None,
    **options: Any,
) -> AsyncIterator[str]:
    """Serve the gateway of ``dispatcher`` on 127.0.0.1 (a free port); yield its base URL.

    The base URL includes ``prefix``; the gateway's routes are under ``<base>/v1/``.
    """
    opts = HttpOptions(**options)
    app = web.Application(middlewares=[_auth_middleware(opts.token)])
    install_gateway(app, prefix=prefix, dispatcher=dispatcher, options=opts)
    if extra_routes:
        app.add_routes(extra_routes)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}{prefix}"
    finally:
        await runner.cleanup()


class SseEvent:
    """One Server-Sent Event as a client sees it."""

    def __init__(self, event: str, data: str, event_id: str | None) -> None:
        self.event = event
        self.data = data
        self.id = event_id

    def json(self) -> Any:
        import json

        return json.loads(self.data)


async def next_event(response: Any) -> SseEvent:
    """Read the next event (comments skipped) from an aiohttp streaming response.

    Raises:
        EOFError: the stream ended first.
    """
    fields: dict[str, str] = {}
    while True:
        raw = await response.content.readline()
        if not raw:
            raise EOFError("the event stream ended")
        line = raw.decode().rstrip("\r\n")
        if not line:
            if "data" in fields or "event" in fields:
                return SseEvent(
                    fields.get("event", "message"), fields.get("data", ""), fields.get("id")
                )
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        fields[name] = value[1:] if value.startswith(" ") else value
