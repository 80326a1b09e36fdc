"""A real aiohttp server carrying the gateway, for the gateway's tests.

`serve_gateway` builds the application exactly as the HTTP transport does for one listen
URL (`dispatchio_http._server.build_app`: the transport's guard with its token, origin,
CORS and body-cap checks in front; `dispatchio_http._server.start`: the header timeout),
minus the peer route, so the gateway tests run what users run. It takes an already
running dispatcher, so one dispatcher can be served on several URLs with different
options; tests of the transport serving its own gateway are in test_http_gateway_seam.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from dispatchio import MessageDispatcher
from dispatchio_http import _server
from dispatchio_http._gateway import install_gateway
from dispatchio_http._options import HttpOptions


@asynccontextmanager
async def serve_gateway(
    dispatcher: MessageDispatcher,
    *,
    prefix: str = "",
    **options: Any,
) -> AsyncIterator[str]:
    """Serve the gateway of ``dispatcher`` on 127.0.0.1 (a free port); yield its base URL.

    The base URL includes ``prefix``; the gateway's routes are under ``<base>/v1/``.
    """
    opts = HttpOptions(**options)
    app = _server.build_app(prefix, opts)
    install_gateway(app, prefix=prefix, dispatcher=dispatcher, options=opts)
    sock = _server.bind("127.0.0.1", 0)
    try:
        runner = await _server.start(app, sock, opts, tls=False)
        try:
            host, port = sock.getsockname()[:2]
            yield f"http://{host}:{port}{prefix}"
        finally:
            await runner.cleanup()
    finally:
        sock.close()


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
