"""The guard in front of every route: token, body caps, header timeout, origins and CORS.

Requests go to a real server (the transport's own, or `_server.build_app` with a route
that reads its body), some through aiohttp's client, the hostile ones over raw sockets.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import anyio
import pytest
from aiohttp import web

from dispatchio import MessageDispatcher
from dispatchio.testing import RecordingHandler
from dispatchio_http import HttpOptions, _server
from tests._transport_support import linked
from tests.http import _hostile
from tests.http._http_support import running, watching_logs

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@asynccontextmanager
async def echo_server(**options: Any) -> AsyncIterator[str]:
    """The guard in front of ``POST {prefix}/echo``, which reads its body; yields the URL."""
    opts = HttpOptions.model_validate(options)

    async def echo(request: web.Request) -> web.Response:
        return web.Response(body=await request.read())

    async def health(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = _server.build_app("/p", opts)
    app.router.add_post("/p/echo", echo)
    app.router.add_get("/p/v1/health", health)
    sock = _server.bind("127.0.0.1", 0)
    runner = await _server.start(app, sock, opts, tls=False)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/p"
    finally:
        await runner.cleanup()
        sock.close()


def _problem(data: bytes) -> dict[str, Any]:
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"content-type: application/problem+json" in head.lower()
    document: dict[str, Any] = json.loads(body)
    return document


# --------------------------------------------------------------------- token


async def test_without_the_token_every_route_but_health_is_401_problem_json() -> None:
    with anyio.fail_after(5):
        async with echo_server(token="t0k") as url, aiohttp.ClientSession() as http:
            async with http.post(url + "/echo", data=b"x") as refused:
                body = await refused.json(content_type="application/problem+json")
                challenge = refused.headers["WWW-Authenticate"]
            async with http.get(url + "/nowhere") as unknown:
                unknown_status = unknown.status
            async with http.get(url + "/v1/health") as health:
                health_status = health.status
            async with http.post(
                url + "/echo", data=b"x", headers={"Authorization": "Bearer t0k"}
            ) as allowed:
                allowed_body = await allowed.read()
    assert (refused.status, body["type"], body["code"]) == (
        401,
        "urn:dispatchio:problem:unauthorized",
        "unauthorized",
    )
    assert "t0k" not in json.dumps(body)
    assert challenge.startswith("Bearer")
    assert (unknown_status, health_status, allowed_body) == (401, 200, b"x")


async def test_a_wrong_bearer_token_is_401_and_a_query_token_works_for_get_only() -> None:
    with anyio.fail_after(5):
        async with echo_server(token="t0k") as url, aiohttp.ClientSession() as http:
            async with http.post(
                url + "/echo", data=b"x", headers={"Authorization": "Bearer nope"}
            ) as wrong:
                wrong_status = wrong.status
            async with http.post(url + "/echo?access_token=t0k", data=b"x") as post_query:
                post_query_status = post_query.status
            async with http.get(url + "/v1/anything?access_token=t0k") as get_query:
                get_query_status = get_query.status
    assert (wrong_status, post_query_status, get_query_status) == (401, 401, 404)


async def test_peer_links_need_the_token_too() -> None:
    with anyio.fail_after(5):
        async with running("alpha", token="t") as a:
            status, data, stream = await _hostile.peer_upgrade(a.url, _hostile.peer_hello("zz"))
            await stream.aclose()
    assert status == 401
    assert _problem(data)["code"] == "unauthorized"
    assert "zz" not in a.handler.up


# --------------------------------------------------------------------- bodies


async def test_a_content_length_over_the_cap_is_413_before_the_body_is_sent() -> None:
    with anyio.fail_after(5):
        async with echo_server(max_body_size=4096) as url:
            status, data = await _hostile.huge_content_length(url, "/echo")
    assert status == 413
    assert _problem(data)["type"] == "urn:dispatchio:problem:too_large"
    assert b"connection: close" in data.lower()


async def test_a_chunked_body_passing_the_cap_gets_a_readable_413() -> None:
    with anyio.fail_after(10):
        async with echo_server(max_body_size=16 * 1024) as url:
            status, data = await _hostile.chunked_over_cap(url, "/echo", 16 * 1024)
    assert status == 413
    assert "exceeds the limit of 16384 bytes" in _problem(data)["detail"]


async def test_a_body_at_the_cap_passes() -> None:
    body = b"y" * 4096
    with anyio.fail_after(5):
        async with (
            echo_server(max_body_size=4096) as url,
            aiohttp.ClientSession() as http,
            http.post(url + "/echo", data=body) as response,
        ):
            echoed = await response.read()
    assert echoed == body


async def test_a_body_cut_off_half_way_leaves_the_server_serving() -> None:
    with anyio.fail_after(5):
        async with echo_server() as url, aiohttp.ClientSession() as http:
            await _hostile.cut_off_body(url, "/echo")
            async with http.post(url + "/echo", data=b"next") as response:
                echoed = await response.read()
    assert echoed == b"next"


async def test_bytes_that_are_not_http_get_400_and_the_server_keeps_serving() -> None:
    with anyio.fail_after(5):
        async with echo_server() as url, aiohttp.ClientSession() as http:
            status, _ = await _hostile.random_bytes(url, random.Random(3))
            async with http.post(url + "/echo", data=b"still") as response:
                echoed = await response.read()
    assert (status, echoed) == (400, b"still")


# --------------------------------------------------------------------- slow clients


async def test_a_slowloris_is_dropped_after_the_header_timeout_and_delays_no_one() -> None:
    timeout = 0.5
    with anyio.fail_after(5):
        async with echo_server(header_timeout=timeout) as url, aiohttp.ClientSession() as http:
            dropped = anyio.Event()
            outcome: list[tuple[float, int]] = []

            async def slow() -> None:
                start = anyio.current_time()
                status, _ = await _hostile.slowloris(url)
                outcome.append((anyio.current_time() - start, status))
                dropped.set()

            async with anyio.create_task_group() as tg:
                tg.start_soon(slow)
                for n in range(20):  # served while the slow client holds its connection
                    async with http.post(url + "/echo", data=b"%d" % n) as response:
                        assert await response.read() == b"%d" % n
                assert not dropped.is_set()
                await dropped.wait()
    ((elapsed, status),) = outcome
    assert status == 0  # closed without an answer
    assert elapsed >= timeout


async def test_an_idle_connection_is_closed_after_the_header_timeout() -> None:
    with anyio.fail_after(5):
        async with echo_server(header_timeout=0.3) as url:
            # Timed from before the connect: the server's clock starts when it accepts,
            # which may be before connect() returns here.
            start = anyio.current_time()
            async with await _hostile.connect(url) as stream:
                status, _ = await _hostile.status_of(stream)  # sends nothing at all
            elapsed = anyio.current_time() - start
    assert status == 0
    assert elapsed >= 0.3


async def test_a_keep_alive_connection_trickling_its_next_head_is_dropped_too() -> None:
    timeout = 0.3
    with anyio.fail_after(5):
        async with (
            echo_server(header_timeout=timeout) as url,
            await _hostile.connect(url) as stream,
        ):
            await stream.send(
                b"POST /p/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n\r\nok"
            )
            first = await stream.receive()
            start = anyio.current_time()
            status, _ = await _hostile.trickle(stream, b"GET /p/v1/health HTTP/1.1\r\n")
            elapsed = anyio.current_time() - start
    assert first.startswith(b"HTTP/1.1 200")
    assert (status, elapsed >= timeout) == (0, True)


# --------------------------------------------------------------------- origins and CORS

ALLOWED = "https://app.example"


async def test_a_page_from_another_origin_is_refused_403() -> None:
    with anyio.fail_after(5):
        async with (
            echo_server(cors_origins=(ALLOWED,)) as url,
            aiohttp.ClientSession() as http,
            http.post(
                url + "/echo", data=b"x", headers={"Origin": "https://evil.example"}
            ) as response,
        ):
            body = await response.json(content_type="application/problem+json")
            cors = response.headers.get("Access-Control-Allow-Origin")
    assert (response.status, body["code"], cors) == (403, "origin_not_allowed", None)


async def test_an_allowed_origin_gets_cors_headers_and_its_preflight_answered() -> None:
    with anyio.fail_after(5):
        async with (
            echo_server(cors_origins=(ALLOWED,), token="t") as url,
            aiohttp.ClientSession() as http,
        ):
            async with http.options(
                url + "/echo",
                headers={
                    "Origin": ALLOWED,
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "authorization, content-type",
                },
            ) as preflight:
                pre = dict(preflight.headers)
            async with http.post(
                url + "/echo",
                data=b"x",
                headers={"Origin": ALLOWED, "Authorization": "Bearer t"},
            ) as response:
                echoed = await response.read()
                cors = response.headers.get("Access-Control-Allow-Origin")
                vary = response.headers.get("Vary")
    assert preflight.status == 204  # no token needed: a preflight carries none
    assert pre["Access-Control-Allow-Origin"] == ALLOWED
    assert "POST" in pre["Access-Control-Allow-Methods"]
    assert "Authorization" in pre["Access-Control-Allow-Headers"]
    assert (echoed, cors, vary) == (b"x", ALLOWED, "Origin")


async def test_same_origin_requests_need_no_cors() -> None:
    with anyio.fail_after(5):
        async with echo_server() as url, aiohttp.ClientSession() as http:
            origin = url.rsplit("/", 1)[0]
            async with http.post(url + "/echo", data=b"x", headers={"Origin": origin}) as response:
                echoed = await response.read()
                cors = response.headers.get("Access-Control-Allow-Origin")
    assert (echoed, cors) == (b"x", None)


async def test_a_browser_cannot_open_a_peer_link() -> None:
    with anyio.fail_after(5):
        async with running("alpha", cors_origins=(ALLOWED,)) as a:
            hello = _hostile.peer_hello("zz-page")
            stream = await _hostile.connect(a.url)
            async with stream:
                await stream.send(
                    b"GET /v1/peer HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: "
                    + ALLOWED.encode()
                    + b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                    + f"X-Dispatchio-Hello: {hello}\r\n\r\n".encode()
                )
                status, data = await _hostile.status_of(stream)
    assert status == 403
    assert _problem(data)["code"] == "browser"


# --------------------------------------------------------------------- peer-link refusals


async def test_bad_hellos_are_400_problem_json_and_logged() -> None:
    hellos = [None, "{not json", json.dumps({"v": 99}), "[]", "x" * 5000]
    with anyio.fail_after(5):
        async with running("alpha") as a:
            answers = []
            for hello in hellos:
                status, data, stream = await _hostile.peer_upgrade(a.url, hello)
                await stream.aclose()
                answers.append((status, _problem(data)["code"] if status != 431 else None))
    assert answers[:4] == [(400, "bad_hello")] * 4
    assert answers[4][0] in (400, 431)  # too long for the hello, or for the header line


async def test_a_plain_get_of_the_peer_endpoint_is_426() -> None:
    with anyio.fail_after(5):
        async with (
            running("alpha") as a,
            aiohttp.ClientSession() as http,
            http.get(
                a.url + "/v1/peer", headers={"X-Dispatchio-Hello": _hostile.peer_hello("zz")}
            ) as response,
        ):
            body = await response.json(content_type="application/problem+json")
    assert (response.status, body["code"]) == (426, "upgrade")


async def test_the_gateway_off_means_its_routes_are_404_and_peers_still_link() -> None:
    with anyio.fail_after(5):
        async with (
            running("alpha", gateway=False) as a,
            running("beta") as b,
            aiohttp.ClientSession() as http,
        ):
            async with http.post(a.url + "/v1/messages", json={"type": "x"}) as response:
                status = response.status
            await linked(a, b)
    assert status == 404
    assert isinstance(a.handler, RecordingHandler)


# --------------------------------------------------------------------- the token in logs

SECRET = "s3cret-Never-Logged-42"


async def test_the_token_never_appears_in_any_log_record(caplog: pytest.LogCaptureFixture) -> None:
    """Every path a token travels (header, query, peer dial, wrong tokens), logs at DEBUG."""
    options = {"http": {"token": SECRET}}
    wrong = {"http": {"token": SECRET + "-wrong"}}
    caplog.set_level(logging.DEBUG)  # every logger, aiohttp's and asyncio's included
    good = {"Authorization": f"Bearer {SECRET}"}
    with anyio.fail_after(10):
        server = MessageDispatcher(
            "server", listen=["http://127.0.0.1:0"], transport_options=options
        )
        async with server, aiohttp.ClientSession() as http:
            url = server.listen_urls[0]
            async with MessageDispatcher(
                "friend", connect=[url], transport_options=options
            ) as friend:
                await friend.wait_for_peer("server")
            intruder = MessageDispatcher("intruder", connect=[url], transport_options=wrong)
            async with watching_logs() as logs, intruder:
                refusal = await logs.wait_for("token")  # the refused dial is logged
            for headers, path in (
                (good, "/v1/directory"),
                ({"Authorization": f"Bearer {SECRET}x"}, "/v1/directory"),
                ({}, f"/v1/directory?access_token={SECRET}"),
                ({}, f"/v1/nowhere?access_token={SECRET}"),
                ({}, f"/?access_token={SECRET}"),
            ):
                async with http.get(url + path, headers=headers) as response:
                    await response.read()
            async with http.get(f"{url}/v1/events?listener=web&access_token={SECRET}") as stream:
                assert stream.status == 200
                await stream.content.readline()
            body = {"type": "t", "destination": "nobody"}
            async with http.post(f"{url}/v1/messages?access_token={SECRET}", json=body) as r:
                assert r.status == 401
            async with http.post(f"{url}/v1/messages?wait=x", json=body, headers=good) as r:
                assert r.status == 400
            for malformed in (  # aiohttp's parse errors quote the bad line
                f"GET /?access_token={SECRET} HTTP/1.1\r\nAuthorization Bearer {SECRET}\r\n\r\n",
                f"GET /?access_token={SECRET} HTTP/9.Z\r\n\r\n",
                f"G\x01T /?access_token={SECRET} HTTP/1.1\r\n\r\n",
            ):
                async with await _hostile.connect(url) as raw:
                    await raw.send(malformed.encode())
                    assert (await _hostile.status_of(raw))[0] == 400
    assert refusal in caplog.text  # the capture holds the refusal (without the token)
    leaked = [r for r in caplog.records if SECRET in r.getMessage() or SECRET in str(r.args)]
    assert leaked == []
    assert SECRET not in caplog.text
