"""Dispatchers over http:// (and tcp:// beside it), plugin resolution and the trio refusal."""

from __future__ import annotations

import sys
from typing import Any

import anyio
import pytest

import dispatchio
from dispatchio import (
    BasicMessageListener,
    Message,
    MessageDispatcher,
    TransportConfigError,
)
from dispatchio.transport import resolve_transport
from dispatchio_http import HttpOptions, HttpsTransport, HttpTransport

pytestmark = pytest.mark.anyio
OFF = {"http": {"gateway": False}}


def _echo(dispatcher: MessageDispatcher, lid: str) -> None:
    listener = BasicMessageListener(lid)
    listener.add_rule(callback=lambda message: [message.content, dispatcher.process_id])
    dispatcher.register(listener)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_request_reply_between_two_dispatchers_over_http() -> None:
    with anyio.fail_after(10):
        async with MessageDispatcher("a", listen=["http://:0"], transport_options=OFF) as a:
            _echo(a, "echo-a")
            async with MessageDispatcher("b", connect=a.listen_urls, transport_options=OFF) as b:
                await b.wait_for_listener("echo-a", timeout=5)
                reply = await b.request(Message("ping", "hi", destination="echo-a"))
    assert (reply.content, reply.process) == (["hi", "a"], "a")


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_one_process_uses_tcp_and_http_at_once() -> None:
    with anyio.fail_after(15):
        async with MessageDispatcher(
            "hub", listen=["tcp://127.0.0.1:0", "http://127.0.0.1:0"], transport_options=OFF
        ) as hub:
            _echo(hub, "echo-hub")
            tcp_url, http_url = hub.listen_urls
            assert tcp_url.startswith("tcp://")
            assert http_url.startswith("http://")
            async with (
                MessageDispatcher("via-tcp", connect=[tcp_url]) as by_tcp,
                MessageDispatcher("via-http", connect=[http_url], transport_options=OFF) as by_http,
            ):
                _echo(by_tcp, "echo-tcp")
                _echo(by_http, "echo-http")
                for client in (by_tcp, by_http):
                    await client.wait_for_listener("echo-hub", timeout=5)
                await hub.wait_for_listener("echo-tcp", timeout=5)
                await hub.wait_for_listener("echo-http", timeout=5)
                from_tcp = await by_tcp.request(Message("ping", 1, destination="echo-hub"))
                from_http = await by_http.request(Message("ping", 2, destination="echo-hub"))
                to_tcp = await hub.request(Message("ping", 3, destination="echo-tcp"))
                to_http = await hub.request(Message("ping", 4, destination="echo-http"))
    assert [from_tcp.content, from_http.content, to_tcp.content, to_http.content] == [
        [1, "hub"],
        [2, "hub"],
        [3, "via-tcp"],
        [4, "via-http"],
    ]


@pytest.mark.parametrize("anyio_backend", ["trio"])
@pytest.mark.parametrize(
    "urls",
    [{"listen": ["http://127.0.0.1:0"]}, {"connect": ["http://127.0.0.1:9"]}],
    ids=["listen", "connect"],
)
async def test_http_on_trio_is_a_clear_config_error_when_the_dispatcher_starts(
    urls: dict[str, Any],
) -> None:
    dispatcher = MessageDispatcher("a", **urls)  # building it is fine: no I/O yet
    with anyio.fail_after(5), pytest.raises(TransportConfigError, match="asyncio only"):
        async with dispatcher:
            pass


def test_the_plugin_resolves_http_and_https() -> None:
    plugins = dispatchio.make_plugin_manager()
    http = resolve_transport("http://127.0.0.1:0?max_streams=3", plugins)
    https = resolve_transport("https://127.0.0.1:0", plugins)
    assert type(http) is HttpTransport
    assert type(https) is HttpsTransport
    assert isinstance(http.options, HttpOptions)
    assert http.options.max_streams == 3


def test_a_token_in_a_url_is_refused_without_echoing_it() -> None:
    plugins = dispatchio.make_plugin_manager()
    with pytest.raises(TransportConfigError, match="never goes in a URL") as info:
        resolve_transport("http://127.0.0.1:0?token=hunter2", plugins)
    assert "hunter2" not in str(info.value)


def test_an_unknown_option_is_named() -> None:
    with pytest.raises(TransportConfigError, match="max_stream"):
        HttpTransport.from_url("http://127.0.0.1:0?max_stream=3")


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("tcp://127.0.0.1:1", "not an http:// or https:// URL"),
        ("http://127.0.0.1:1/a{b}", "path prefix may hold only"),
        ("http://127.0.0.1:99999", "Port out of range"),
    ],
)
def test_bad_urls_are_config_errors(url: str, match: str) -> None:
    from dispatchio_http._transport import parse_url

    with pytest.raises(TransportConfigError, match=match):
        parse_url(url, listening=False)


def test_connect_urls_default_to_the_scheme_port() -> None:
    from dispatchio_http._transport import parse_url

    assert parse_url("http://example.org", listening=False).port == 80
    assert parse_url("https://example.org/x/", listening=False).port == 443
    assert parse_url("https://example.org/x/", listening=False).prefix == "/x"


@pytest.mark.parametrize("token", ["with space", "caf\u00e9", "tab\there"])
def test_a_token_that_cannot_go_in_a_header_is_refused(token: str) -> None:
    with pytest.raises(TransportConfigError, match="visible ASCII"):
        HttpTransport(token=token)


@pytest.mark.parametrize("origin", ["*", "https://app.example/", "app.example"])
def test_cors_origins_must_be_origins(origin: str) -> None:
    with pytest.raises(TransportConfigError, match="cors_origins entry"):
        HttpTransport(cors_origins=(origin,))


def test_importing_the_package_imports_no_aiohttp() -> None:
    code = (
        "import sys, dispatchio_http, dispatchio_http._plugin;"
        " assert 'aiohttp' not in sys.modules, 'aiohttp imported'"
    )
    import subprocess

    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
