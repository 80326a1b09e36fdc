"""The gateway as the transport serves it: on each listen URL's own server, behind its guard.

The gateway's behaviour is tested in test_gateway.py; this checks the seam: the routes are
there under the URL's prefix, the guard's token, body cap, origin check and CORS apply to
them, /v1/health needs no token, and peers still link on the same server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import anyio
import pytest

from dispatchio import BasicMessageListener, Message, MessageDispatcher
from tests.http import _hostile
from tests.http._gateway_support import next_event
from tests.http._http_support import tls_contexts

pytestmark = pytest.mark.anyio
TOKEN = "seam-token"
ALLOWED = "https://app.example"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@asynccontextmanager
async def serving(**options: Any) -> AsyncIterator[tuple[MessageDispatcher, str]]:
    """Dispatcher "a" on ``http://127.0.0.1:0/mesh`` with an echo listener; its URL."""
    options = {"token": TOKEN, "cors_origins": (ALLOWED,), "max_body_size": 4096, **options}
    dispatcher = MessageDispatcher(
        "a", listen=["http://127.0.0.1:0/mesh"], transport_options={"http": options}
    )
    echo = BasicMessageListener("echo")
    echo.add_rule(callback=lambda message: message.content)
    dispatcher.register(echo)
    async with dispatcher:
        yield dispatcher, dispatcher.listen_urls[0]


async def test_the_gateway_answers_under_the_prefix_with_the_token() -> None:
    message = {"type": "ping", "destination": "echo", "content": [1, "two"]}
    with anyio.fail_after(10):
        async with serving() as (_, url), aiohttp.ClientSession() as http:
            async with http.post(url + "/v1/messages?wait=5", json=message) as refused:
                refused_body = await refused.json(content_type="application/problem+json")
            async with http.post(
                url + "/v1/messages?wait=5", json=message, headers=AUTH
            ) as answered:
                reply = await answered.json()
            async with http.get(url + "/v1/health") as health:
                health_status = health.status
            async with http.get(f"{url}/v1/directory?access_token={TOKEN}") as directory:
                directory_status = directory.status
    assert (refused.status, refused_body["code"]) == (401, "unauthorized")
    assert (answered.status, reply["content"], reply["source"]) == (200, [1, "two"], "echo")
    assert (health_status, directory_status) == (200, 200)


async def test_gateway_bodies_over_the_cap_are_413_before_they_are_read() -> None:
    with anyio.fail_after(10):
        async with serving() as (_, url):
            stream = await _hostile.connect(url)
            async with stream:
                await stream.send(
                    b"POST /mesh/v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    + f"Authorization: Bearer {TOKEN}\r\n".encode()
                    + b"Content-Type: application/json\r\nContent-Length: 1000000\r\n\r\n"
                )
                status, data = await _hostile.status_of(stream)
    assert status == 413
    assert b"urn:dispatchio:problem:too_large" in data


async def test_gateway_routes_get_cors_for_allowed_origins_and_403_for_others() -> None:
    with anyio.fail_after(10):
        async with serving() as (_, url), aiohttp.ClientSession() as http:
            async with http.get(url + "/v1/health", headers={"Origin": ALLOWED}) as allowed:
                cors = allowed.headers.get("Access-Control-Allow-Origin")
            async with http.get(
                url + "/v1/health", headers={"Origin": "https://evil.example"}
            ) as other:
                other_status = other.status
    assert (allowed.status, cors, other_status) == (200, ALLOWED, 403)


async def test_peers_link_on_the_server_that_carries_the_gateway() -> None:
    with anyio.fail_after(10):
        async with (
            serving() as (_, url),
            MessageDispatcher(
                "b", connect=[url], transport_options={"http": {"token": TOKEN}}
            ) as b,
        ):
            await b.wait_for_listener("echo", timeout=5)
            reply = await b.request(Message("ping", "via the same port", destination="echo"))
    assert reply.content == "via the same port"


async def test_with_the_gateway_off_its_routes_are_404_and_health_too() -> None:
    with anyio.fail_after(10):
        async with serving(gateway=False) as (_, url), aiohttp.ClientSession() as http:
            async with http.post(url + "/v1/messages", json={"type": "x"}, headers=AUTH) as post:
                post_status = post.status
            async with http.get(url + "/v1/health") as health:
                health_status = health.status
    assert (post_status, health_status) == (404, 404)


async def test_over_https_the_gateway_and_its_event_stream_work_with_the_token() -> None:
    server_tls, client_tls = tls_contexts()
    options = {"token": TOKEN, "ssl_context": server_tls, "ssl_client_context": client_tls}
    dispatcher = MessageDispatcher(
        "a", listen=["https://127.0.0.1:0"], transport_options={"https": options}
    )
    echo = BasicMessageListener("echo")
    echo.add_rule(callback=lambda message: message.content)
    dispatcher.register(echo)
    connector = aiohttp.TCPConnector(ssl=client_tls)
    with anyio.fail_after(10):
        async with dispatcher, aiohttp.ClientSession(connector=connector) as http:
            url = dispatcher.listen_urls[0]
            assert url.startswith("https://127.0.0.1:")
            message = {"type": "ping", "destination": "echo", "content": "tls"}
            async with http.post(url + "/v1/messages?wait=5", json=message, headers=AUTH) as r:
                reply = await r.json()
            async with http.get(f"{url}/v1/events?listener=web&access_token={TOKEN}") as stream:
                ready = await next_event(stream)
                await dispatcher.send(Message("note", "over tls", destination="web"))
                delivered = (await next_event(stream)).json()
    assert (r.status, reply["content"]) == (200, "tls")
    assert ready.event == "ready"
    assert delivered["content"] == "over tls"
