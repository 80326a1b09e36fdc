"""The gateway in a mesh: its stream listeners seen and used by another OS process.

The other process is the conformance suite's child, linked over ``http://``; the gateway
is the one this process's own ``http://`` listener serves, as users get it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest

from dispatchio.testing._peers import ChildError, Peers, open_peers

from ._gateway_support import next_event

pytestmark = pytest.mark.anyio
PROMPT = 10.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def peers(tmp_path: Path) -> AsyncIterator[Peers]:
    async with open_peers(
        url="http://127.0.0.1:0",
        transport_options={},
        backend="asyncio",
        directory=tmp_path,
        heartbeat_interval=0.2,
        heartbeat_tolerance=3,
        reply_timeout=60.0,
    ) as peers:
        yield peers


async def test_python_process_requests_a_stream_listener_and_gets_its_reply(
    peers: Peers,
) -> None:
    async with (
        peers.dispatcher("a") as a,
        aiohttp.ClientSession() as http,
    ):
        base = a.listen_urls[0]
        child = await peers.spawn("b")
        with anyio.fail_after(PROMPT):
            async with http.get(f"{base}/v1/events?listener=web") as stream:
                await next_event(stream)
                await child.call("wait_listener", listener="web")  # in b's directory
                async with anyio.create_task_group() as tg:
                    answers: list[dict[str, Any]] = []

                    async def ask() -> None:
                        message = {"type": "q", "content": 2, "destination": "web"}
                        answers.append(await child.call("request", message=message, timeout=5))

                    tg.start_soon(ask)
                    event = await next_event(stream)
                    assert event.json()["process"] == "b"
                    url = f"{base}/v1/messages/{event.id}/reply"
                    async with http.post(url, json={"content": 4}) as response:
                        assert response.status == 204
            assert answers[0]["content"] == 4
            assert answers[0]["source"] == "web"
            # Closed stream: unregistered, so b's next request is undeliverable at once
            # (refused by a, or by b itself once its directory has the change).
            gone = {"type": "q", "destination": "web"}
            with pytest.raises(ChildError) as caught:
                await child.call("request", message=gone, timeout=30)
            assert caught.value.type == "UndeliverableError"


async def test_listener_id_taken_in_another_process_is_409(peers: Peers) -> None:
    async with (
        peers.dispatcher("a") as a,
        aiohttp.ClientSession() as http,
    ):
        base = a.listen_urls[0]
        child = await peers.spawn("b")
        await child.call("listener", listener="elsewhere", behaviour="echo")
        with anyio.fail_after(PROMPT):
            await a.wait_for_listener("elsewhere")
            async with http.get(f"{base}/v1/events?listener=elsewhere") as response:
                assert response.status == 409
                problem = json.loads(await response.text())
            assert "'b'" in problem["detail"]
            async with http.get(f"{base}/v1/directory") as response:
                directory = await response.json()
        remote = [p for p in directory["processes"] if not p["local"]]
        assert [p["process"] for p in remote] == ["b"]
        assert "elsewhere" in remote[0]["listeners"]
        assert remote[0]["urls"][0].startswith("http://127.0.0.1:")


async def test_request_to_a_process_that_dies_is_503_peer_lost(peers: Peers) -> None:
    async with (
        peers.dispatcher("a") as a,
        aiohttp.ClientSession() as http,
    ):
        base = a.listen_urls[0]
        child = await peers.spawn("b")
        await child.call("listener", listener="keeper", behaviour="defer")
        with anyio.fail_after(PROMPT):
            await a.wait_for_listener("keeper")
            async with anyio.create_task_group() as tg:
                result: list[tuple[int, Any]] = []

                async def ask() -> None:
                    body = {"type": "q", "destination": "keeper"}
                    async with http.post(f"{base}/v1/messages?wait=30", json=body) as response:
                        result.append((response.status, await response.json(content_type=None)))

                tg.start_soon(ask)
                await child.event("deferred")
                child.kill()
        ((status, problem),) = result
        assert status == 503
        assert problem["type"].endswith("peer_lost")


async def test_a_closed_stream_fails_the_request_it_owed_another_process_at_once(
    peers: Peers,
) -> None:
    async with (
        peers.dispatcher("a") as a,
        aiohttp.ClientSession() as http,
    ):
        base = a.listen_urls[0]
        child = await peers.spawn("b")
        failure: list[ChildError] = []
        failed = anyio.Event()
        with anyio.fail_after(PROMPT):
            async with anyio.create_task_group() as tg:
                async with http.get(f"{base}/v1/events?listener=quitter") as stream:
                    await next_event(stream)
                    await child.call("wait_listener", listener="quitter")

                    async def ask() -> None:
                        message = {"type": "q", "destination": "quitter"}
                        with pytest.raises(ChildError) as caught:
                            await child.call("request", message=message, timeout=60)
                        failure.append(caught.value)
                        failed.set()

                    tg.start_soon(ask)
                    await next_event(stream)  # delivered, never answered: the client leaves
                # b's request (60 s timeout) fails within the unregister bound, not a hang.
                with anyio.fail_after(2.0):
                    await failed.wait()
        assert failure[0].type == "UndeliverableError"
