"""The gateway: plain HTTP clients (curl, a browser page, any service) as senders and listeners.

`install_gateway` adds the routes to the aiohttp application the HTTP transport serves.
The transport's middleware authenticates requests (every route but ``/v1/health``), caps
request bodies and answers CORS; the gateway itself caps chunked bodies as it reads
them, the bytes of bodies its requests hold at once, the number of open event streams
and of requests handled at once.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import secrets
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, Final

import anyio
import pydantic_core
from aiohttp import web

from dispatchio import (
    DispatcherNotRunningError,
    DispatchError,
    DuplicateListenerError,
    HandlerError,
    InvalidMessageError,
    ListenerId,
    MessageDispatcher,
    MessageTooLargeError,
    OutboxFullError,
    PeerLostError,
    ReplyTimeoutError,
    UndeliverableError,
)
from dispatchio_http._directory import directory, listener_taken, reachable
from dispatchio_http._frames import ReceiveBudget
from dispatchio_http._json import (
    JS_SAFE,
    BodyHold,
    id_key,
    message_json,
    parse_message,
    parse_wait,
    read_json,
)
from dispatchio_http._openapi import openapi_document
from dispatchio_http._options import HttpOptions
from dispatchio_http._problems import HttpProblem, problem_response
from dispatchio_http._sse import StreamListener, sse_event
from dispatchio_http._status_page import status_page

__all__ = ["Gateway", "install_gateway"]

logger = logging.getLogger("dispatchio.http.gateway")

#: How often an idle stream checks whether its client has gone (the unregister bound).
_POLL: Final = 0.25
#: Seconds between SSE comments on an idle stream, so proxies keep it open.
_KEEPALIVE: Final = 15.0
_JSON: Final = "application/json"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: A route that reads a body: it counts it in the request's `BodyHold`.
BodyHandler = Callable[[web.Request, BodyHold], Awaitable[web.StreamResponse]]


def install_gateway(
    app: web.Application,
    *,
    prefix: str,
    dispatcher: MessageDispatcher,
    options: HttpOptions,
) -> None:
    """Add the gateway's routes under ``{prefix}/v1/`` and the status page at ``{prefix}/``.

    With ``options.gateway`` false this adds nothing, so every gateway URL answers 404.

    Args:
        app: The application the HTTP transport serves (not yet started).
        prefix: The URL path prefix of the listener URL: ``""`` or ``"/name"``.
        dispatcher: The running dispatcher whose listeners the gateway reaches.
        options: The transport's options (caps and limits).
    """
    if not options.gateway:
        return
    gateway = Gateway(dispatcher, options, prefix.rstrip("/"))
    gateway.add_routes(app)


class _Shared:
    """What the gateways of one dispatcher share, whichever of its URLs serves them.

    A transport listening on several URLs installs one gateway per URL; the caps count
    across all of them, and a message delivered on a stream of one URL can be answered
    through another. The budget of request bodies is the first gateway's
    ``max_pending_body_bytes`` (a transport's URLs share its options).
    """

    def __init__(self, body_limit: int) -> None:
        self.bodies = ReceiveBudget(body_limit)
        self.streams: dict[ListenerId, StreamListener] = {}
        #: Messages delivered on streams and not yet answered: ID key -> listener -> stream.
        self.held: dict[str, dict[ListenerId, StreamListener]] = {}
        self.active = 0
        self.started = time.time()
        self.counters = {"requests": 0, "refused_busy": 0, "streams_opened": 0}


_SHARED: weakref.WeakKeyDictionary[MessageDispatcher, _Shared] = weakref.WeakKeyDictionary()


def _shared(dispatcher: MessageDispatcher, options: HttpOptions) -> _Shared:
    shared = _SHARED.get(dispatcher)
    if shared is None:
        shared = _SHARED[dispatcher] = _Shared(options.pending_body_limit)
    return shared


class Gateway:
    """The routes of one URL: open streams, answerable messages, the request cap."""

    def __init__(self, dispatcher: MessageDispatcher, options: HttpOptions, prefix: str) -> None:
        self.dispatcher = dispatcher
        self.options = options
        self.prefix = prefix
        self.limit = options.body_limit
        shared = self.shared = _shared(dispatcher, options)
        self.streams = shared.streams
        self.held = shared.held
        self.counters = shared.counters
        self.started = shared.started
        #: The streams this URL serves (its shutdown ends them).
        self.mine: set[ListenerId] = set()
        self.closing = False
        self._openapi = pydantic_core.to_json(openapi_document(prefix))

    def add_routes(self, app: web.Application) -> None:
        v1 = f"{self.prefix}/v1"
        guard = self._guarded
        app.router.add_post(f"{v1}/messages", self._guarded_body(self.post_message))
        app.router.add_post(f"{v1}/messages/{{id}}/reply", self._guarded_body(self.post_reply))
        app.router.add_get(f"{v1}/events", self.events)
        app.router.add_get(f"{v1}/directory", guard(self.get_directory))
        app.router.add_get(f"{v1}/status", guard(self.get_status))
        app.router.add_get(f"{v1}/health", self.health)
        app.router.add_get(f"{v1}/openapi.json", guard(self.openapi))
        app.router.add_get(f"{self.prefix}/", guard(self.page))
        app.on_shutdown.append(self._shutdown)

    # ------------------------------------------------------------------ plumbing

    def _guarded(self, handler: Handler) -> Handler:
        """`_guarded_body` for a route without a body."""

        async def bodiless(request: web.Request, hold: BodyHold) -> web.StreamResponse:
            return await handler(request)

        return functools.wraps(handler)(self._guarded_body(bodiless))

    def _guarded_body(self, handler: BodyHandler) -> Handler:
        """Cap concurrent requests (503 beyond), give the handler the `BodyHold` its body
        is counted in (released with the response: bodies held at once are capped), and
        turn `HttpProblem` into its response."""

        @functools.wraps(handler)
        async def guarded(request: web.Request) -> web.StreamResponse:
            if self.shared.active >= self.options.max_concurrent_requests:
                self.counters["refused_busy"] += 1
                return problem_response(
                    503,
                    "busy",
                    f"{self.shared.active} requests are being handled; try again shortly",
                    headers={"Retry-After": "1"},
                )
            self.shared.active += 1
            self.counters["requests"] += 1
            hold = BodyHold(self.shared.bodies)
            try:
                return await handler(request, hold)
            except HttpProblem as problem:
                if problem.code == "busy":  # the bodies held at once
                    self.counters["refused_busy"] += 1
                return problem.response()
            finally:
                hold.release()
                self.shared.active -= 1

        return guarded

    async def _shutdown(self, app: web.Application) -> None:
        self.closing = True
        for lid in self.mine:
            self.streams[lid].wake.set()

    def _hold(self, key: str, stream: StreamListener) -> None:
        self.held.setdefault(key, {})[stream.lid] = stream

    def _release(self, key: str, stream: StreamListener) -> None:
        streams = self.held.get(key)
        if streams is not None:
            streams.pop(stream.lid, None)
            if not streams:
                del self.held[key]

    # ------------------------------------------------------------------ routes

    async def post_message(self, request: web.Request, hold: BodyHold) -> web.Response:
        """POST /v1/messages: a letter (202), or with ?wait= a request or a gather (200)."""
        raw_wait = request.query.get("wait")
        wait = None if raw_wait is None else parse_wait(raw_wait)
        data = await read_json(request, self.limit, self.options.body_timeout, hold)
        message = parse_message(data)
        dispatcher = self.dispatcher
        try:
            if wait is None:
                # With a source to return it to, the core would hand an undeliverable
                # letter back to that listener; an HTTP client wants the 404 now.
                if message.source is not None and not reachable(
                    directory(dispatcher), message.destination, message.group
                ):
                    raise UndeliverableError(_nobody(message.destination, message.group))
                await dispatcher.send(message)
                return _json(202, {"id": id_key(message.id)})
            if message.group is None:
                reply = await dispatcher.request(message, timeout=wait)
                return _json(200, message_json(reply))
            replies = await dispatcher.gather(message, timeout=wait)
            return _json(200, [message_json(r) for r in replies])
        except DispatchError as exc:
            raise delivery_problem(exc, running=dispatcher.running) from exc

    async def post_reply(self, request: web.Request, hold: BodyHold) -> web.Response:
        """POST /v1/messages/{id}/reply: answer a message delivered on an event stream."""
        key = request.match_info["id"]
        data = await read_json(request, self.limit, self.options.body_timeout, hold)
        if not isinstance(data, dict):
            raise HttpProblem(422, "invalid_reply", "the body must be a JSON object", field="reply")
        unknown = data.keys() - {"content", "listener"}
        if unknown:
            field = sorted(unknown)[0]
            raise HttpProblem(
                422,
                "invalid_reply",
                f"{field}: not a field of a reply (allowed: content, listener)",
                field=field,
            )
        listener = data.get("listener")
        if listener is not None and (listener.__class__ not in (str, int)):
            raise HttpProblem(
                422, "invalid_reply", "listener: must be a string or an integer", field="listener"
            )
        candidates = self.held.get(key)
        if not candidates:
            raise HttpProblem(
                404, "unknown_message", f"no message {key!r} is waiting for a reply here"
            )
        if listener is None:
            if len(candidates) > 1:
                raise HttpProblem(
                    409,
                    "ambiguous",
                    f"message {key!r} reached several streams; name the replying listener",
                    listeners=sorted(str(lid) for lid in candidates),
                )
            stream = next(iter(candidates.values()))
        else:
            found = candidates.get(id_key(listener))
            if found is None:
                raise HttpProblem(
                    404,
                    "unknown_message",
                    f"listener {listener!r} holds no message {key!r} waiting for a reply",
                )
            stream = found
        message = stream.take(key)
        assert message is not None
        try:
            await self.dispatcher.reply(message, data.get("content"))
        except DispatchError as exc:
            raise delivery_problem(exc, running=self.dispatcher.running) from exc
        return web.Response(status=204)

    async def events(self, request: web.Request) -> web.StreamResponse:
        """GET /v1/events: the client becomes a listener for as long as the stream is open."""
        try:
            return await self._events(request)
        except HttpProblem as problem:
            return problem.response()

    async def _events(self, request: web.Request) -> web.StreamResponse:
        names = request.query.getall("listener", [])
        groups: list[ListenerId] = list(dict.fromkeys(request.query.getall("group", [])))
        if len(names) > 1:
            raise HttpProblem(400, "invalid_query", "give one listener per stream")
        if not names and not groups:
            raise HttpProblem(
                400, "invalid_query", "name a listener (?listener=<id>) or a group (?group=<g>)"
            )
        if any(not name for name in (*names, *groups)):
            raise HttpProblem(400, "invalid_query", "listener and group IDs must not be empty")
        if len(self.streams) >= self.options.max_streams:
            raise HttpProblem(
                429,
                "too_many_streams",
                f"{len(self.streams)} event streams are open (max_streams)",
                headers={"Retry-After": "1"},
            )
        dispatcher = self.dispatcher
        lid: ListenerId = names[0] if names else f"http-{secrets.token_hex(6)}"
        owner = listener_taken(directory(dispatcher), lid)
        if owner is not None:
            raise HttpProblem(
                409, "listener_taken", f"listener {lid!r} already exists (process {owner!r})"
            )
        stream = StreamListener(lid, dispatcher, self._hold, self._release)
        try:
            dispatcher.register(stream)
        except DuplicateListenerError as exc:
            raise HttpProblem(409, "listener_taken", str(exc)) from exc
        self.streams[lid] = stream
        self.mine.add(lid)
        self.counters["streams_opened"] += 1
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        try:
            for group in groups:
                dispatcher.subscribe(group, stream)
            await response.prepare(request)
            ready = {"listener": lid, "groups": groups}
            await response.write(b"retry: 2000\n" + sse_event("ready", ready))
            await self._pump(request, response, stream)
        except ConnectionError:
            pass  # the client went away mid-write
        finally:
            del self.streams[lid]
            self.mine.discard(lid)
            await stream.close()
            with contextlib.suppress(KeyError):
                dispatcher.unregister(lid)
        return response

    async def _pump(
        self, request: web.Request, response: web.StreamResponse, stream: StreamListener
    ) -> None:
        transport = request.transport
        last_write = time.monotonic()
        while not self.closing:
            outgoing = stream.outgoing
            while outgoing:
                message = outgoing.popleft()
                event = sse_event("message", message_json(message), id_key(message.id))
                await response.write(event)
                last_write = time.monotonic()
            if transport is None or transport.is_closing():
                return
            if time.monotonic() - last_write > _KEEPALIVE:
                await response.write(b": keepalive\n\n")
                last_write = time.monotonic()
                continue
            # No await since the queue was seen empty, so no message can slip in between.
            stream.wake = anyio.Event()
            with anyio.move_on_after(_POLL):
                await stream.wake.wait()

    async def get_directory(self, request: web.Request) -> web.Response:
        """GET /v1/directory: every process, listener and group the mesh knows."""
        return _json(200, _safe_ids(directory(self.dispatcher)))

    async def get_status(self, request: web.Request) -> web.Response:
        """GET /v1/status: what the status page shows, as JSON."""
        return _json(200, _safe_ids(self.status()))

    def status(self) -> dict[str, Any]:
        """This process, its peers, listeners, groups and counters."""
        dispatcher = self.dispatcher
        return {
            "process": dispatcher.process_id,
            "running": dispatcher.running,
            "uptime": round(time.time() - self.started, 1),
            "peers": sorted(str(p) for p in dispatcher.peers),
            "directory": directory(dispatcher),
            "stats": dispatcher.stats.as_dict(),
            "gateway": {
                "open_streams": len(self.streams),
                "max_streams": self.options.max_streams,
                "requests_in_flight": self.shared.active - 1,  # not counting this one
                "max_concurrent_requests": self.options.max_concurrent_requests,
                "body_bytes_held": self.shared.bodies.held,
                "max_pending_body_bytes": self.shared.bodies.limit,
                "awaiting_replies": sum(len(s.answerable) for s in self.streams.values()),
                **self.counters,
            },
        }

    async def health(self, request: web.Request) -> web.Response:
        """GET /v1/health: liveness only, never behind the token."""
        ok = self.dispatcher.running and not self.closing
        return _json(200 if ok else 503, {"status": "ok" if ok else "stopping"})

    async def openapi(self, request: web.Request) -> web.Response:
        """GET /v1/openapi.json: the OpenAPI 3.1 description of these routes."""
        return web.Response(body=self._openapi, content_type=_JSON)

    async def page(self, request: web.Request) -> web.Response:
        """GET {prefix}/: the status page for people."""
        body = status_page(self.status(), self.prefix)
        return web.Response(
            text=body,
            content_type="text/html",
            headers={
                "Content-Security-Policy": (
                    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline';"
                    " connect-src 'self'; img-src 'self' data:"
                ),
                "Cache-Control": "no-store",
            },
        )


def _json(status: int, data: Any) -> web.Response:
    return web.Response(status=status, body=pydantic_core.to_json(data), content_type=_JSON)


def _safe_ids(data: Any) -> Any:
    # For documents made of IDs only (directory, status), which may hold int IDs beyond
    # 2**53 that a browser would round. Never for messages: content is the user's data.
    cls = data.__class__
    if cls is int:
        return data if -JS_SAFE <= data <= JS_SAFE else str(data)
    if cls is list:
        return [_safe_ids(item) for item in data]
    if cls is dict:
        return {key: _safe_ids(value) for key, value in data.items()}
    return data


def _nobody(destination: Any, group: Any) -> str:
    if group is None:
        return f"no process has a listener {destination!r}"
    return f"group {group!r} has no subscribers in any process"


def delivery_problem(exc: DispatchError, *, running: bool = True) -> HttpProblem:
    """The problem (status and code) for an error the dispatcher raised.

    ``running``: whether the dispatcher still runs (a request it fails while closing is
    ``503 not_running``, not a conflict).
    """
    if isinstance(exc, UndeliverableError):
        return HttpProblem(404, exc.code, str(exc))
    if isinstance(exc, ReplyTimeoutError):
        return HttpProblem(504, exc.code, str(exc))
    if isinstance(exc, HandlerError):
        return HttpProblem(502, exc.code, str(exc))
    if isinstance(exc, (PeerLostError, OutboxFullError)):
        return HttpProblem(503, exc.code, str(exc), headers={"Retry-After": "1"})
    if isinstance(exc, MessageTooLargeError):
        return HttpProblem(413, "too_large", str(exc))
    if isinstance(exc, InvalidMessageError):
        return HttpProblem(422, "invalid_message", str(exc))
    if isinstance(exc, DispatcherNotRunningError) or not running:
        return HttpProblem(503, "not_running", str(exc), headers={"Retry-After": "1"})
    # The remaining DispatchError the send path raises: an id already awaiting replies.
    return HttpProblem(409, "conflict", str(exc))
