"""The aiohttp application behind one ``http://`` listen URL, and what guards it.

Every request passes one middleware (`guard`) before any route sees it:

* Origins: a request carrying an ``Origin`` header (a browser page) that is neither this
  server's own origin nor in ``cors_origins`` is refused ``403`` (so a page from another
  site cannot make the gateway act, even where the browser would hide the answer); CORS
  preflights from allowed origins are answered here, and their responses carry the
  CORS headers (added in `on_response_prepare`, so event streams get them too).
* Token: with ``token`` set, every route except ``{prefix}/v1/health`` needs it
  (`dispatchio_http._auth.authorized`), or gets ``401``.
* Bodies: a ``Content-Length`` over the cap is refused ``413`` before a byte of the body
  is read; a chunked body is cut off at the cap while it is read (the application's
  ``client_max_size``), again as a readable ``413``.

Refusals are RFC 9457 ``application/problem+json`` documents whose ``type`` ends in a
code, like the gateway's. Slow clients: the connection's keep-alive timer is the header
timeout, so a connection that has not sent a whole request head within
``header_timeout`` (after connecting, or after its previous response) is closed; this
is aiohttp's own timer, which needs no task per connection.

Logs: the access log is off (it would record ``access_token`` query parameters), and a
request too malformed to parse is logged as one line without the client's bytes
(`_ServerLog`): aiohttp would quote the offending line, which may hold a token.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any, Final

from aiohttp import hdrs, web
from aiohttp.http_exceptions import HttpProcessingError

from dispatchio_http._auth import authorized
from dispatchio_http._options import HttpOptions
from dispatchio_http._problems import problem_response

__all__ = ["bind", "build_app", "start"]

#: Seconds a refused body may keep arriving (and be thrown away) so the client can
#: read the refusal before the connection closes.
_LINGER: Final = 1.0
_PREFLIGHT_MAX_AGE: Final = "600"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _ServerLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """aiohttp's server log, minus the client's bytes in its parse errors."""

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info")
        if isinstance(exc, HttpProcessingError):
            # The parser's message quotes the bad line (a header may carry the token).
            peer = args[0] if args else "a client"
            self.logger.info(
                "refused a malformed request from %s: %s %s", peer, exc.code, type(exc).__name__
            )
            return
        super().log(level, msg, *args, **kwargs)


_SERVER_LOG: Final = _ServerLog(logging.getLogger("dispatchio.http.server"))


def _guard(prefix: str, options: HttpOptions) -> Any:
    health = f"{prefix}/v1/health"
    token = options.token
    limit = options.body_limit
    origins = frozenset(options.cors_origins)

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get(hdrs.ORIGIN)
        if origin is not None and origin not in origins:
            if origin != f"{request.scheme}://{request.host}":
                return problem_response(
                    403, "origin_not_allowed", f"origin {origin!r} is not allowed"
                )
            origin = None  # same origin: no CORS needed
        if (
            origin is not None
            and request.method == hdrs.METH_OPTIONS
            and hdrs.ACCESS_CONTROL_REQUEST_METHOD in request.headers
        ):
            # A preflight carries no credentials; it only asks what the page may send.
            return web.Response(
                status=204,
                headers={
                    hdrs.ACCESS_CONTROL_ALLOW_METHODS: "GET, POST",
                    hdrs.ACCESS_CONTROL_ALLOW_HEADERS: "Authorization, Content-Type",
                    hdrs.ACCESS_CONTROL_MAX_AGE: _PREFLIGHT_MAX_AGE,
                },
            )
        if request.path != health and not authorized(request, token):
            return problem_response(
                401,
                "unauthorized",
                "missing or wrong token: send Authorization: Bearer <token>",
                headers={hdrs.WWW_AUTHENTICATE: 'Bearer realm="dispatchio"'},
            )
        length = request.content_length
        if length is not None and length > limit:
            return _too_large(f"a body of {length} bytes exceeds the limit of {limit} bytes")
        try:
            return await handler(request)
        except web.HTTPRequestEntityTooLarge:
            # aiohttp's own cap (client_max_size) cut off a chunked body while reading it.
            return _too_large(f"the body exceeds the limit of {limit} bytes")

    return guard


def _too_large(detail: str) -> web.Response:
    response = problem_response(413, "too_large", detail)
    response.force_close()  # the rest of the body is never read
    return response


def _cors_headers(options: HttpOptions) -> Callable[[web.Request, web.StreamResponse], Any]:
    origins = frozenset(options.cors_origins)

    async def on_response_prepare(request: web.Request, response: web.StreamResponse) -> None:
        origin = request.headers.get(hdrs.ORIGIN)
        if origin is not None and origin in origins:
            response.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = origin
            response.headers.add(hdrs.VARY, hdrs.ORIGIN)

    return on_response_prepare


def build_app(prefix: str, options: HttpOptions) -> web.Application:
    """An application for ``prefix`` with the guard in front; the caller adds routes."""
    app = web.Application(middlewares=[_guard(prefix, options)], client_max_size=options.body_limit)
    if options.cors_origins:
        app.on_response_prepare.append(_cors_headers(options))
    return app


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: a free one).

    Raises:
        OSError: the address cannot be bound.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=512)


async def start(
    app: web.Application, sock: socket.socket, options: HttpOptions, *, tls: bool
) -> web.AppRunner:
    """Serve ``app`` on the bound socket ``sock``; the caller cleans the runner up.

    Raises:
        OSError: the server cannot start on ``sock``.
    """
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log=None,  # an access log would record access_token query parameters
        logger=_SERVER_LOG,
        keepalive_timeout=options.header_timeout,
        lingering_time=_LINGER,
        shutdown_timeout=options.close_timeout,
    )
    await runner.setup()
    try:
        site = web.SockSite(
            runner, sock, ssl_context=options.ssl_context if tls else None, backlog=512
        )
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner
