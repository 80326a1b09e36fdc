"""The gateway over a real aiohttp server, driven by a plain aiohttp client."""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import anyio
import pytest

from dispatchio import (
    DEFERRED,
    BasicMessageListener,
    Message,
    MessageDispatcher,
    SyncSendError,
    UndeliverableError,
)
from dispatchio_http import HttpOptions

from ._gateway_support import next_event, serve_gateway

pytestmark = pytest.mark.anyio
PROMPT = 5.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # aiohttp runs on asyncio only


@pytest.fixture
async def dispatcher() -> AsyncIterator[MessageDispatcher]:
    d = MessageDispatcher("gw", reply_timeout=30)
    echo = BasicMessageListener("echo")
    echo.add_rule(type="boom", callback=_boom)
    echo.add_rule(type="slow", callback=lambda m: DEFERRED)
    echo.add_rule(callback=lambda m: {"echo": m.content})
    d.register(echo)
    for name in ("left", "right"):
        member = BasicMessageListener(name)
        member.add_rule(callback=lambda m, name=name: name)
        d.register(member)
        d.subscribe("pair", member)
    async with d:
        yield d


def _boom(message: Message) -> None:
    raise RuntimeError("the handler broke")


@pytest.fixture
async def base(dispatcher: MessageDispatcher) -> AsyncIterator[str]:
    async with serve_gateway(dispatcher) as url:
        yield url


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def _post(
    client: aiohttp.ClientSession, url: str, body: Any, **kwargs: Any
) -> tuple[int, str, Any]:
    with anyio.fail_after(PROMPT):
        async with client.post(url, json=body, **kwargs) as response:
            text = await response.text()
            data = json.loads(text) if text and "json" in response.content_type else text
            return response.status, response.content_type, data


# ---------------------------------------------------------------------- sending


async def test_letter_is_accepted_with_its_id_as_a_string(
    base: str, client: aiohttp.ClientSession, dispatcher: MessageDispatcher
) -> None:
    send, receive = anyio.create_memory_object_stream[Message](10)
    inbox = BasicMessageListener("inbox")
    inbox.add_rule(queue=send)
    dispatcher.register(inbox)
    with send, receive:
        status, _, data = await _post(
            client,
            f"{base}/v1/messages",
            {"type": "note", "destination": "inbox", "content": [1, 2]},
        )
        assert status == 202
        with anyio.fail_after(PROMPT):
            got = await receive.receive()
    assert data == {"id": str(got.id)}
    assert got.content == [1, 2]


async def test_request_with_wait_returns_the_reply(
    base: str, client: aiohttp.ClientSession
) -> None:
    status, ctype, data = await _post(
        client, f"{base}/v1/messages?wait=2", {"type": "hi", "destination": "echo", "content": "x"}
    )
    assert (status, ctype) == (200, "application/json")
    assert data["content"] == {"echo": "x"}
    assert data["is_response"] is True
    assert data["source"] == "echo"
    assert isinstance(data["id"], str)


async def test_group_with_wait_gathers_every_reply(
    base: str, client: aiohttp.ClientSession
) -> None:
    status, _, data = await _post(
        client, f"{base}/v1/messages?wait=2", {"type": "q", "group": "pair"}
    )
    assert status == 200
    assert sorted(r["content"] for r in data) == ["left", "right"]


async def test_client_chosen_id_comes_back(base: str, client: aiohttp.ClientSession) -> None:
    big = (1 << 63) - 1
    body = {"type": "hi", "destination": "echo", "id": big}
    status, _, data = await _post(client, f"{base}/v1/messages?wait=2", body)
    assert status == 200
    assert data["id"] == str(big)  # exact, where a JavaScript number would round


@pytest.mark.parametrize("wait", ["", "?wait=1"])
@pytest.mark.parametrize("address", [{"destination": "nobody"}, {"group": "empty"}])
async def test_nobody_to_receive_it_is_404_undeliverable(
    base: str, client: aiohttp.ClientSession, wait: str, address: dict[str, str]
) -> None:
    status, ctype, data = await _post(client, f"{base}/v1/messages{wait}", {"type": "x", **address})
    assert (status, ctype) == (404, "application/problem+json")
    assert data["type"].endswith("undeliverable")
    assert data["status"] == 404


async def test_letter_with_a_registered_source_to_nobody_is_still_404(
    base: str, client: aiohttp.ClientSession
) -> None:
    body = {"type": "x", "destination": "nobody", "source": "echo"}
    status, _, data = await _post(client, f"{base}/v1/messages", body)
    assert status == 404
    assert data["code"] == "undeliverable"


async def test_no_reply_in_time_is_504_timeout(base: str, client: aiohttp.ClientSession) -> None:
    body = {"type": "slow", "destination": "echo"}
    status, _, data = await _post(client, f"{base}/v1/messages?wait=0.05", body)
    assert status == 504
    assert data["type"].endswith("timeout")


async def test_handler_error_is_502_with_its_text(base: str, client: aiohttp.ClientSession) -> None:
    status, _, data = await _post(
        client, f"{base}/v1/messages?wait=1", {"type": "boom", "destination": "echo"}
    )
    assert status == 502
    assert data["type"].endswith("handler_error")
    assert "the handler broke" in data["detail"]


# ---------------------------------------------------------------------- bad input


@pytest.mark.parametrize("wait", ["0", "-1", "abc", "nan", "inf", ""])
async def test_wait_that_is_not_a_positive_number_is_400(
    base: str, client: aiohttp.ClientSession, wait: str
) -> None:
    body = {"type": "hi", "destination": "echo"}
    status, _, data = await _post(client, f"{base}/v1/messages?wait={wait}", body)
    assert status == 400
    assert data["code"] == "invalid_wait"


async def test_body_that_is_not_json_is_400(base: str, client: aiohttp.ClientSession) -> None:
    with anyio.fail_after(PROMPT):
        async with client.post(
            f"{base}/v1/messages", data=b"{not json", headers={"Content-Type": "application/json"}
        ) as response:
            assert response.status == 400
            assert (await response.json(content_type=None))["code"] == "not_json"


async def test_deeply_nested_json_is_4xx(base: str, client: aiohttp.ClientSession) -> None:
    nested = "[" * 100_000 + "]" * 100_000
    body = '{"type": "x", "destination": "echo", "content": ' + nested + "}"
    with anyio.fail_after(PROMPT):
        async with client.post(
            f"{base}/v1/messages?wait=1",
            data=body.encode(),
            headers={"Content-Type": "application/json"},
        ) as response:
            assert response.status == 400


async def test_wrong_content_type_is_415(base: str, client: aiohttp.ClientSession) -> None:
    with anyio.fail_after(PROMPT):
        async with client.post(f"{base}/v1/messages", data=b"type=x") as response:
            assert response.status == 415
            assert response.content_type == "application/problem+json"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "x", "destination": "echo", "blocking": "yes"}, "blocking"),
        ({"destination": "echo"}, "type"),
        ({"type": "", "destination": "echo"}, "type"),
        ({"type": "x"}, "destination"),
        ({"type": "x", "destination": "echo", "group": "pair"}, "group"),
        ({"type": "x", "destination": 1.5}, "destination"),
        ({"type": "x", "destination": True}, "destination"),
        ({"type": "x", "destination": "echo", "id": 1 << 127}, "id"),
        ({"type": "x", "destination": "echo", "is_response": True}, "is_response"),
        ([1, 2], "message"),
    ],
)
async def test_invalid_message_is_422_naming_the_field(
    base: str, client: aiohttp.ClientSession, body: Any, field: str
) -> None:
    status, ctype, data = await _post(client, f"{base}/v1/messages", body)
    assert (status, ctype) == (422, "application/problem+json")
    assert data["field"] == field
    assert data["detail"].startswith(field)


async def test_declared_oversized_body_is_413_before_it_is_read(
    dispatcher: MessageDispatcher, client: aiohttp.ClientSession
) -> None:
    async with serve_gateway(dispatcher, max_body_size=4096) as base:
        reader, writer = await anyio_connect(base)
        head = (
            "POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Content-Length: 1000000000\r\n\r\n"
        )
        with anyio.fail_after(PROMPT):
            await writer.send(head.encode())  # and never a byte of the body
            answer = await _read_response(reader)
        await writer.aclose()
    assert answer.startswith(b"HTTP/1.1 413")
    assert b"too_large" in answer


async def test_chunked_body_over_the_cap_gets_a_readable_413(
    dispatcher: MessageDispatcher, client: aiohttp.ClientSession
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"type": "x", "destination": "echo", "content": "'
        for _ in range(64):
            yield b"a" * 1024
        yield b'"}'

    async with serve_gateway(dispatcher, max_body_size=4096) as base:
        with anyio.fail_after(PROMPT):
            async with client.post(
                f"{base}/v1/messages", data=chunks(), headers={"Content-Type": "application/json"}
            ) as response:
                assert response.status == 413
                assert (await response.json(content_type=None))["code"] == "too_large"
            # ... and the server keeps serving.
            status, _, _ = await _post(
                client, f"{base}/v1/messages", {"type": "x", "destination": "echo"}
            )
    assert status == 202


@pytest.mark.parametrize("framing", ["Content-Length: 200\r\n", "Transfer-Encoding: chunked\r\n"])
async def test_a_body_trickled_after_its_headers_is_408_after_body_timeout_and_delays_no_one(
    dispatcher: MessageDispatcher, client: aiohttp.ClientSession, framing: str
) -> None:
    timeout = 0.5
    async with serve_gateway(dispatcher, body_timeout=timeout) as base:
        stream, _ = await anyio_connect(base)
        head = (
            "POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"{framing}\r\n"
        )
        first = b'{"type": "x"' if framing.startswith("Content") else b'c\r\n{"type": "x"\r\n'
        answered = anyio.Event()
        answer: list[bytes] = []

        async def slow() -> None:
            await stream.send(head.encode() + first)  # then nothing more
            answer.append(await _read_response(stream))
            answered.set()

        with anyio.fail_after(PROMPT):
            start = anyio.current_time()
            async with anyio.create_task_group() as tg:
                tg.start_soon(slow)
                for n in range(10):  # others are served while the slow body is awaited
                    body = {"type": "x", "destination": "echo", "content": n}
                    assert (await _post(client, f"{base}/v1/messages?wait=2", body))[0] == 200
                await answered.wait()
            elapsed = anyio.current_time() - start
            closed = await _read_response(stream)  # the server closed the connection after it
        await stream.aclose()
    (data,) = answer
    assert data.startswith(b"HTTP/1.1 408")
    assert b"body_timeout" in data
    assert closed == b""
    assert elapsed >= timeout


async def anyio_connect(base: str) -> tuple[Any, Any]:
    from urllib.parse import urlsplit

    parts = urlsplit(base)
    stream = await anyio.connect_tcp(parts.hostname or "127.0.0.1", parts.port or 80)
    return stream, stream


async def _read_response(stream: Any) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
        try:
            chunk = await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            break
        data += chunk
    return data


# ---------------------------------------------------------------------- auth, health, off


async def test_token_is_required_everywhere_but_health(
    dispatcher: MessageDispatcher, client: aiohttp.ClientSession
) -> None:
    async with serve_gateway(dispatcher, token="s3cret") as base:
        with anyio.fail_after(PROMPT):
            for path in ("/v1/directory", "/v1/openapi.json", "/", "/v1/events?listener=x"):
                async with client.get(base + path) as response:
                    assert response.status == 401, path
            async with client.get(base + "/v1/directory?access_token=wrong") as response:
                assert response.status == 401
            async with client.get(base + "/v1/health") as response:
                assert response.status == 200
                assert await response.json() == {"status": "ok"}
            good = {"Authorization": "Bearer s3cret"}
            async with client.get(base + "/v1/directory", headers=good) as response:
                assert response.status == 200
            async with client.get(base + "/v1/directory?access_token=s3cret") as response:
                assert response.status == 200
        body = {"type": "hi", "destination": "echo"}
        status, _, data = await _post(client, f"{base}/v1/messages?wait=1", body)
        assert status == 401
        assert data["type"].endswith("unauthorized")
        # A query token is for GET requests only (EventSource cannot set headers).
        status, _, _ = await _post(client, f"{base}/v1/messages?access_token=s3cret", body)
        assert status == 401
        status, _, _ = await _post(client, f"{base}/v1/messages?wait=1", body, headers=good)
        assert status == 200


async def test_gateway_off_answers_404(
    dispatcher: MessageDispatcher, client: aiohttp.ClientSession
) -> None:
    async with serve_gateway(dispatcher, gateway=False) as base:
        with anyio.fail_after(PROMPT):
            for path in ("/v1/health", "/v1/directory", "/v1/openapi.json", "/"):
                async with client.get(base + path) as response:
                    assert response.status == 404, path
        status, _, _ = await _post(
            client, f"{base}/v1/messages", {"type": "x", "destination": "echo"}
        )
        assert status == 404


async def test_directory_lists_this_process_its_listeners_and_groups(
    base: str, client: aiohttp.ClientSession
) -> None:
    with anyio.fail_after(PROMPT):
        async with client.get(f"{base}/v1/directory") as response:
            data = await response.json()
    assert data["process"] == "gw"
    (me,) = data["processes"]
    assert me["local"] is True
    assert set(me["listeners"]) == {"echo", "left", "right"}
    assert me["groups"] == [{"group": "pair", "members": ["left", "right"]}]


async def test_prefix_puts_every_route_under_it(
    dispatcher: MessageDispatcher, client: aiohttp.ClientSession
) -> None:
    async with serve_gateway(dispatcher, prefix="/mesh") as base:
        assert base.endswith("/mesh")
        with anyio.fail_after(PROMPT):
            async with client.get(f"{base}/v1/health") as response:
                assert response.status == 200
            async with client.get(f"{base}/") as response:
                assert response.status == 200
                assert "dispatchio process" in await response.text()
            async with client.get(base.removesuffix("/mesh") + "/v1/health") as response:
                assert response.status == 404


# ---------------------------------------------------------------------- caps


async def test_requests_over_the_concurrency_cap_get_503(
    dispatcher: MessageDispatcher, client: aiohttp.ClientSession
) -> None:
    async with serve_gateway(dispatcher, max_concurrent_requests=1) as base:
        url = f"{base}/v1/messages?wait=30"
        async with anyio.create_task_group() as tg:
            held = anyio.Event()
            seen: list[int] = []

            async def slow() -> None:
                status, _, _ = await _post(client, url, {"type": "slow", "destination": "echo"})
                seen.append(status)

            holder = _Holder(dispatcher, held)
            dispatcher.register(holder)
            tg.start_soon(
                _post_and_record, client, url, {"type": "x", "destination": "holder"}, seen
            )
            with anyio.fail_after(PROMPT):
                await held.wait()
            status, _, data = await _post(client, url, {"type": "x", "destination": "echo"})
            assert status == 503
            assert data["code"] == "busy"
            await holder.release()
        assert seen == [200]
        # Once the slot is free, requests are served again.
        status, _, _ = await _post(client, url, {"type": "x", "destination": "echo"})
        assert status == 200


#: A request held open by `_Holder`, its body counted against the budget meanwhile.
_BIG = {"type": "x", "destination": "holder", "content": "x" * 3000}
_BIG_SIZE = len(json.dumps(_BIG).encode())  # what aiohttp's json= sends
#: A body budget with room for `_BIG` and a small body, not for a second large one.
_BUDGET: dict[str, Any] = {"max_body_size": 4096, "max_pending_body_bytes": 4096}


@asynccontextmanager
async def _holding_a_big_body(
    dispatcher: MessageDispatcher, client: aiohttp.ClientSession, base: str
) -> AsyncIterator[None]:
    """Hold `_BIG` open on the gateway at ``base`` while the body runs; then answer it,
    which must make it a 200."""
    seen: list[int] = []
    async with anyio.create_task_group() as tg:
        held = anyio.Event()
        holder = _Holder(dispatcher, held)
        dispatcher.register(holder)
        tg.start_soon(_post_and_record, client, f"{base}/v1/messages?wait=30", _BIG, seen)
        with anyio.fail_after(PROMPT):
            await held.wait()  # its body is held while it waits for the reply
        yield
        await holder.release()
    assert seen == [200]


async def test_request_bodies_held_at_once_are_capped_across_connections(
    dispatcher: MessageDispatcher, client: aiohttp.ClientSession
) -> None:
    other = {"type": "x", "destination": "echo", "content": "y" * 2000}
    async with serve_gateway(dispatcher, **_BUDGET) as base:
        url = f"{base}/v1/messages?wait=30"
        async with _holding_a_big_body(dispatcher, client, base):
            gateway = await _status(client, base)
            assert gateway["body_bytes_held"] == _BIG_SIZE
            assert gateway["max_pending_body_bytes"] == 4096
            # A body that would pass the budget is refused before it is read ...
            with anyio.fail_after(PROMPT):
                async with client.post(url, json=other) as response:
                    assert response.status == 503
                    assert response.headers["Retry-After"] == "1"
                    assert response.headers["Connection"] == "close"
                    data = await response.json(content_type=None)
            assert data["code"] == "busy"
            assert "max_pending_body_bytes" in data["detail"]
            # ... while one that fits is served.
            status, _, data = await _post(client, url, {"type": "x", "destination": "echo"})
            assert (status, data["content"]) == (200, {"echo": None})
            gateway = await _status(client, base)
            assert gateway["refused_busy"] == 1
            assert gateway["body_bytes_held"] == _BIG_SIZE  # the served one gave its bytes back
        status, _, _ = await _post(client, url, other)  # room again
        assert status == 200
        assert (await _status(client, base))["body_bytes_held"] == 0


async def test_a_chunked_body_passing_the_budget_is_503_and_its_connection_closed(
    dispatcher: MessageDispatcher, client: aiohttp.ClientSession
) -> None:
    async with serve_gateway(dispatcher, **_BUDGET) as base:
        async with _holding_a_big_body(dispatcher, client, base):
            stream, _ = await anyio_connect(base)
            chunk = b"[" + b"1," * 999 + b"1"  # 2000 bytes, and the body never ends
            head = (
                "POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                "Transfer-Encoding: chunked\r\n\r\n"
            )
            with anyio.fail_after(PROMPT):
                await stream.send(head.encode() + b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                answer = await _read_response(stream)
                closed = await _read_response(stream)
            await stream.aclose()
            assert answer.startswith(b"HTTP/1.1 503")
            assert b"max_pending_body_bytes" in answer
            assert closed == b""
            assert (await _status(client, base))["body_bytes_held"] == _BIG_SIZE
        assert (await _status(client, base))["body_bytes_held"] == 0


def test_the_body_budget_defaults_to_64_bodies_and_may_not_be_below_one() -> None:
    assert HttpOptions().pending_body_limit == 64 * HttpOptions().max_frame_size
    assert HttpOptions(max_body_size=4096).pending_body_limit == 64 * 4096
    with pytest.raises(ValueError, match="max_pending_body_bytes must not be below the body cap"):
        HttpOptions(max_body_size=4096, max_pending_body_bytes=2048)


async def _status(client: aiohttp.ClientSession, base: str) -> dict[str, Any]:
    with anyio.fail_after(PROMPT):
        async with client.get(f"{base}/v1/status") as response:
            assert response.status == 200
            gateway: dict[str, Any] = (await response.json())["gateway"]
            return gateway


class _Holder(BasicMessageListener):
    """Keeps the first message until `release`, to hold a request open."""

    def __init__(self, dispatcher: MessageDispatcher, held: anyio.Event) -> None:
        super().__init__("holder")
        self.dispatcher = dispatcher
        self.kept: list[Message] = []
        self.add_rule(callback=self._keep)
        self._held = held

    def _keep(self, message: Message) -> Any:
        self.kept.append(message)
        self._held.set()
        return DEFERRED

    async def release(self) -> None:
        for message in self.kept:
            await self.dispatcher.reply(message, "done")


async def _post_and_record(
    client: aiohttp.ClientSession, url: str, body: Any, seen: list[int]
) -> None:
    status, _, _ = await _post(client, url, body)
    seen.append(status)


async def test_streams_over_the_cap_get_429(
    dispatcher: MessageDispatcher, client: aiohttp.ClientSession
) -> None:
    async with serve_gateway(dispatcher, max_streams=1) as base:
        with anyio.fail_after(PROMPT):
            async with client.get(f"{base}/v1/events?listener=one") as first:
                assert (await next_event(first)).event == "ready"
                async with client.get(f"{base}/v1/events?listener=two") as second:
                    assert second.status == 429
                    assert (await second.json(content_type=None))["code"] == "too_many_streams"


# ---------------------------------------------------------------------- event streams


async def test_stream_receives_a_request_and_its_reply_answers_it(
    base: str, client: aiohttp.ClientSession, dispatcher: MessageDispatcher
) -> None:
    with anyio.fail_after(PROMPT):
        async with client.get(f"{base}/v1/events?listener=browser&group=room") as stream:
            assert stream.status == 200
            assert stream.content_type == "text/event-stream"
            ready = await next_event(stream)
            assert ready.event == "ready"
            assert ready.json() == {"listener": "browser", "groups": ["room"]}
            assert dispatcher.subscribers("room") == ["browser"]
            async with anyio.create_task_group() as tg:
                answers: list[Message] = []

                async def ask() -> None:
                    answers.append(
                        await dispatcher.request(
                            Message("question", {"n": 1}, destination="browser", source="echo"),
                            timeout=PROMPT,
                        )
                    )

                tg.start_soon(ask)
                event = await next_event(stream)
                assert event.event == "message"
                data = event.json()
                assert event.id == data["id"]
                assert data["content"] == {"n": 1}
                assert data["response_required"] is True
                status, _, _ = await _post(
                    client, f"{base}/v1/messages/{event.id}/reply", {"content": "yes"}
                )
                assert status == 204
            (answer,) = answers
            assert answer.content == "yes"
            assert answer.source == "browser"
            # Answered once: a second reply finds nothing.
            status, _, data = await _post(
                client, f"{base}/v1/messages/{event.id}/reply", {"content": "again"}
            )
            assert status == 404


async def test_reply_to_an_unknown_message_is_404(base: str, client: aiohttp.ClientSession) -> None:
    status, _, data = await _post(client, f"{base}/v1/messages/12345/reply", {"content": 1})
    assert status == 404
    assert data["code"] == "unknown_message"


async def test_group_copy_on_two_streams_needs_the_listener_named(
    base: str, client: aiohttp.ClientSession, dispatcher: MessageDispatcher
) -> None:
    with anyio.fail_after(PROMPT):
        async with (
            client.get(f"{base}/v1/events?listener=s1&group=g") as one,
            client.get(f"{base}/v1/events?listener=s2&group=g") as two,
        ):
            await next_event(one)
            await next_event(two)
            async with anyio.create_task_group() as tg:
                got: list[list[Message]] = []

                async def gather() -> None:
                    got.append(await dispatcher.gather(Message("poll", group="g"), timeout=PROMPT))

                tg.start_soon(gather)
                event = await next_event(one)
                await next_event(two)
                url = f"{base}/v1/messages/{event.id}/reply"
                status, _, data = await _post(client, url, {"content": 1})
                assert status == 409
                assert data["listeners"] == ["s1", "s2"]
                assert (await _post(client, url, {"content": 1, "listener": "s1"}))[0] == 204
                assert (await _post(client, url, {"content": 2, "listener": "s2"}))[0] == 204
            assert sorted(r.content for r in got[0]) == [1, 2]


async def test_letter_with_source_reaches_the_stream_and_can_be_answered(
    base: str, client: aiohttp.ClientSession, dispatcher: MessageDispatcher
) -> None:
    send, receive = anyio.create_memory_object_stream[Message](10)
    inbox = BasicMessageListener("py")
    inbox.add_rule(queue=send)
    dispatcher.register(inbox)
    with send, receive, anyio.fail_after(PROMPT):
        async with client.get(f"{base}/v1/events?listener=web") as stream:
            await next_event(stream)
            await dispatcher.send(Message("note", "hello", destination="web", source="py"))
            event = await next_event(stream)
            assert event.json()["source"] == "py"
            status, _, _ = await _post(
                client, f"{base}/v1/messages/{event.id}/reply", {"content": "hi"}
            )
            assert status == 204
            reply = await receive.receive()
    assert (reply.content, reply.is_response, reply.source) == ("hi", True, "web")


async def test_taken_listener_id_is_409(base: str, client: aiohttp.ClientSession) -> None:
    with anyio.fail_after(PROMPT):
        async with client.get(f"{base}/v1/events?listener=echo") as response:
            assert response.status == 409
            assert (await response.json(content_type=None))["code"] == "listener_taken"
        async with client.get(f"{base}/v1/events?listener=dup") as first:
            await next_event(first)
            async with client.get(f"{base}/v1/events?listener=dup") as second:
                assert second.status == 409


@pytest.mark.parametrize("query", ["", "?listener=", "?group=", "?listener=a&listener=b"])
async def test_stream_without_a_usable_id_is_400(
    base: str, client: aiohttp.ClientSession, query: str
) -> None:
    with anyio.fail_after(PROMPT):
        async with client.get(f"{base}/v1/events{query}") as response:
            assert response.status == 400


async def test_closing_the_stream_unregisters_and_fails_what_it_owed(
    base: str, client: aiohttp.ClientSession, dispatcher: MessageDispatcher
) -> None:
    failed = anyio.Event()
    outcome: list[BaseException] = []

    async def ask() -> None:
        try:
            await dispatcher.request(Message("q", destination="leaver"), timeout=60)
        except UndeliverableError as exc:
            outcome.append(exc)
            failed.set()

    async with anyio.create_task_group() as tg:
        with anyio.fail_after(PROMPT):
            async with client.get(f"{base}/v1/events?listener=leaver&group=g") as stream:
                await next_event(stream)
                tg.start_soon(ask)
                await next_event(stream)  # the request arrived, and stays unanswered
        # The client is gone: within a second, the request it owed fails (long before its
        # 60 s timeout) and the listener is unregistered, in the same step.
        with anyio.fail_after(1.0):
            await failed.wait()
    assert "leaver" not in dispatcher.listeners
    assert dispatcher.subscribers("g") == []
    assert len(outcome) == 1


async def test_sse_ids_are_exact_for_64_bit_message_ids(
    base: str, client: aiohttp.ClientSession, dispatcher: MessageDispatcher
) -> None:
    big = (1 << 63) - 5
    message = Message("q", id=big, destination="b")
    with anyio.fail_after(PROMPT):
        async with client.get(f"{base}/v1/events?listener=b") as stream:
            await next_event(stream)
            async with anyio.create_task_group() as tg:
                tg.start_soon(functools.partial(dispatcher.request, timeout=PROMPT), message)
                event = await next_event(stream)
                assert event.id == str(big)
                assert event.json()["id"] == str(big)
                status, _, _ = await _post(client, f"{base}/v1/messages/{big}/reply", {})
                assert status == 204


# ---------------------------------------------------------------------- documents


async def test_openapi_document_is_3_1_and_names_every_route(
    base: str, client: aiohttp.ClientSession
) -> None:
    with anyio.fail_after(PROMPT):
        async with client.get(f"{base}/v1/openapi.json") as response:
            doc = await response.json()
    assert doc["openapi"].startswith("3.1")
    assert set(doc["paths"]) == {
        "/v1/messages",
        "/v1/messages/{id}/reply",
        "/v1/events",
        "/v1/directory",
        "/v1/status",
        "/v1/health",
        "/v1/openapi.json",
    }


async def test_status_page_shows_process_listeners_and_counters_escaped(
    base: str, client: aiohttp.ClientSession, dispatcher: MessageDispatcher
) -> None:
    with anyio.fail_after(PROMPT):
        async with client.get(f"{base}/v1/events?listener=%3Cscript%3Ex") as stream:
            await next_event(stream)
            async with client.get(f"{base}/") as response:
                assert response.content_type == "text/html"
                page = await response.text()
    assert "gw" in page
    assert "echo" in page
    assert "pair (2)" in page
    assert "late_replies" in page
    assert "&lt;script&gt;x" in page
    assert "<script>x" not in page
    assert "http://" not in page.replace("http://127.0.0.1", "")  # nothing from elsewhere
    # Readable without JavaScript frameworks: one inline script, nothing loaded by URL.
    assert page.count("<script") == 1
    assert "<script>" in page
    assert " src=" not in page
    assert "<link" not in page
    assert "@import" not in page


async def test_group_only_stream_gets_a_generated_listener_id(
    base: str, client: aiohttp.ClientSession, dispatcher: MessageDispatcher
) -> None:
    with anyio.fail_after(PROMPT):
        async with client.get(f"{base}/v1/events?group=news&group=news") as stream:
            ready = (await next_event(stream)).json()
            assert ready["groups"] == ["news"]
            assert ready["listener"].startswith("http-")
            assert dispatcher.subscribers("news") == [ready["listener"]]
            replies = await dispatcher.gather(Message("headline", group="news"), timeout=0.05)
            assert replies == []  # it got the copy, and did not answer in time
            event = await next_event(stream)
            assert event.json()["group"] == "news"


async def test_server_shutdown_ends_open_streams(
    dispatcher: MessageDispatcher, client: aiohttp.ClientSession
) -> None:
    with anyio.fail_after(PROMPT):
        async with serve_gateway(dispatcher) as base:
            stream = await client.get(f"{base}/v1/events?listener=late")
            await next_event(stream)
        # The server closed with the stream open: the client sees its end, the listener is gone.
        with pytest.raises((EOFError, aiohttp.ClientPayloadError)):
            await next_event(stream)
        stream.release()
    assert "late" not in dispatcher.listeners


async def test_content_is_passed_through_unchanged(
    base: str, client: aiohttp.ClientSession
) -> None:
    content = {"big": (1 << 60) + 1, "nested": [{"x": None}, 1.5, "s"]}
    body = {"type": "hi", "destination": "echo", "content": content}
    status, _, data = await _post(client, f"{base}/v1/messages?wait=2", body)
    assert status == 200
    assert data["content"] == {"echo": content}  # IDs are made safe, never content


async def test_directory_writes_unsafe_int_ids_as_strings(
    base: str, client: aiohttp.ClientSession, dispatcher: MessageDispatcher
) -> None:
    dispatcher.register(BasicMessageListener((1 << 60) + 1))
    dispatcher.register(BasicMessageListener(7))
    with anyio.fail_after(PROMPT):
        async with client.get(f"{base}/v1/directory") as response:
            (me,) = (await response.json())["processes"]
    assert str((1 << 60) + 1) in me["listeners"]
    assert 7 in me["listeners"]  # a safe int stays an int


async def test_gateways_of_two_urls_share_streams_and_caps(
    dispatcher: MessageDispatcher, client: aiohttp.ClientSession
) -> None:
    async with (
        serve_gateway(dispatcher, max_streams=1) as one,
        serve_gateway(dispatcher, max_streams=1) as two,
    ):
        with anyio.fail_after(PROMPT):
            async with client.get(f"{one}/v1/events?listener=multi") as stream:
                await next_event(stream)
                async with client.get(f"{two}/v1/events?listener=other") as refused:
                    assert refused.status == 429  # the cap counts both URLs' streams
                async with anyio.create_task_group() as tg:
                    answers: list[Message] = []

                    async def ask() -> None:
                        request = Message("q", destination="multi")
                        answers.append(await dispatcher.request(request, timeout=PROMPT))

                    tg.start_soon(ask)
                    event = await next_event(stream)
                    url = f"{two}/v1/messages/{event.id}/reply"  # answered through the other URL
                    assert (await _post(client, url, {"content": "via two"}))[0] == 204
        assert answers[0].content == "via two"


async def test_send_sync_to_a_stream_listener_raises(
    base: str, client: aiohttp.ClientSession, dispatcher: MessageDispatcher
) -> None:
    with anyio.fail_after(PROMPT):
        async with client.get(f"{base}/v1/events?listener=async-only") as stream:
            await next_event(stream)
            with pytest.raises(SyncSendError):
                dispatcher.send_sync(Message("q", destination="async-only"))


async def test_blocking_message_holds_the_stream_until_its_reply(
    base: str, client: aiohttp.ClientSession, dispatcher: MessageDispatcher
) -> None:
    from dispatchio_http._sse import StreamListener

    marker, seen = anyio.create_memory_object_stream[Message](1)
    after = BasicMessageListener("after")
    after.add_rule(queue=marker)
    dispatcher.register(after)
    with marker, seen, anyio.fail_after(PROMPT):
        async with client.get(f"{base}/v1/events?listener=careful") as stream:
            await next_event(stream)
            listener = dispatcher.listeners["careful"]
            assert isinstance(listener, StreamListener)
            await dispatcher.send(Message("first", destination="careful", blocking=True))
            await dispatcher.send(Message("second", destination="careful"))
            await dispatcher.send(Message("marker", destination="after"))
            first = await next_event(stream)
            assert first.json()["type"] == "first"
            await seen.receive()  # handled after "second" was taken from the queue ...
            assert listener.delivered == 1  # ... which waits behind the unanswered "first"
            status, _, _ = await _post(client, f"{base}/v1/messages/{first.id}/reply", {})
            assert status == 204
            second = await next_event(stream)
            assert second.json()["type"] == "second"
            assert listener.delivered == 2


async def test_a_stream_owing_too_many_replies_declines_the_oldest(
    base: str,
    client: aiohttp.ClientSession,
    dispatcher: MessageDispatcher,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import dispatchio_http._sse

    monkeypatch.setattr(dispatchio_http._sse, "BACKLOG", 2)
    failed = anyio.Event()
    answers: dict[int, Any] = {}

    async def ask(n: int) -> None:
        try:
            reply = await dispatcher.request(Message("q", n, destination="forgetful"), timeout=60)
            answers[n] = reply.content
        except UndeliverableError:
            answers[n] = "declined"
            failed.set()

    with anyio.fail_after(PROMPT):
        async with client.get(f"{base}/v1/events?listener=forgetful") as stream:
            await next_event(stream)
            async with anyio.create_task_group() as tg:
                events = []
                for n in range(3):
                    tg.start_soon(ask, n)
                    events.append(await next_event(stream))
                await failed.wait()
                assert answers == {0: "declined"}  # the oldest, not the newest
                for event in events[1:]:
                    url = f"{base}/v1/messages/{event.id}/reply"
                    assert (await _post(client, url, {"content": "ok"}))[0] == 204
    assert answers == {0: "declined", 1: "ok", 2: "ok"}
