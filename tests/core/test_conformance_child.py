"""The conformance suite's child process, driven in JSON lines without any transport."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from dispatchio.testing._peers import ChildError, ChildGone, Peer, Peers, open_peers


@pytest.fixture
async def peers(anyio_backend: str, tmp_path: Path) -> AsyncIterator[Peers]:
    async with open_peers(
        url="unused://",
        transport_options={},
        backend=anyio_backend,
        directory=tmp_path,
        heartbeat_interval=1.0,
        heartbeat_tolerance=3,
        reply_timeout=5.0,
    ) as peers:
        yield peers


async def local_child(peers: Peers) -> Peer:
    """A child whose dispatcher has no transport: everything stays inside it."""
    return await peers.spawn("b", listen=[], connect=[])


@pytest.mark.anyio
async def test_child_answers_a_request_to_its_own_listener(peers: Peers) -> None:
    with anyio.fail_after(10):
        b = await local_child(peers)
        await b.call("listener", listener="echo", behaviour="echo")
        reply = await b.call(
            "request", message={"type": "ping", "content": [1, "x"], "destination": "echo"}
        )
    assert (reply["content"], reply["source"], reply["is_response"]) == ([1, "x"], "echo", True)


@pytest.mark.anyio
async def test_child_reports_the_exception_a_request_raised(peers: Peers) -> None:
    with anyio.fail_after(10):
        b = await local_child(peers)
        await b.call("listener", listener="faulty", behaviour="raise")
        with pytest.raises(ChildError, match=r"^HandlerError: ") as caught:
            await b.call("request", message={"type": "ping", "destination": "faulty"})
    assert caught.value.type == "HandlerError"


@pytest.mark.anyio
async def test_child_records_in_order_what_a_listener_received(peers: Peers) -> None:
    with anyio.fail_after(10):
        b = await local_child(peers)
        await b.call("listener", listener="rec", behaviour="record")
        await b.call("send_many", destination="rec", n=100)
        records = await b.call("records", listener="rec", count=100)
    assert records == list(range(100))


@pytest.mark.anyio
async def test_child_blocking_record_shows_blocking_holds(peers: Peers) -> None:
    with anyio.fail_after(10):
        b = await local_child(peers)
        await b.call("listener", listener="w", behaviour="blocking_record")
        for n, blocking in [(1, True), (2, False)]:
            await b.call(
                "send",
                message={"type": "job", "content": n, "destination": "w", "blocking": blocking},
            )
        records = await b.call("records", listener="w", count=4)
    assert records == ["start 1", "end 1", "start 2", "end 2"]


@pytest.mark.anyio
async def test_child_deferred_message_answered_on_release(peers: Peers) -> None:
    replies: list[dict[str, Any]] = []
    with anyio.fail_after(10):
        b = await local_child(peers)
        await b.call("listener", listener="later", behaviour="defer")

        async def ask() -> None:
            replies.append(
                await b.call("request", message={"type": "q", "content": 7, "destination": "later"})
            )

        async with anyio.create_task_group() as task_group:
            task_group.start_soon(ask)
            event = await b.event("deferred")
            await b.call("release", listener="later", content="done")
    assert (event["content"], [r["content"] for r in replies]) == (7, ["done"])


@pytest.mark.anyio
async def test_child_refuses_an_unknown_command(peers: Peers) -> None:
    with anyio.fail_after(10):
        b = await local_child(peers)
        with pytest.raises(ChildError, match="unknown command 'dance'"):
            await b.call("dance")


@pytest.mark.anyio
async def test_killed_child_answers_nothing_more(peers: Peers) -> None:
    with anyio.fail_after(10):
        b = await local_child(peers)
        b.kill()
        await b.process.wait()
        with pytest.raises(ChildGone):
            await b.call("listener", listener="echo", behaviour="echo")


@pytest.mark.anyio
async def test_stopped_child_exits_cleanly(peers: Peers) -> None:
    with anyio.fail_after(10):
        b = await local_child(peers)
        await b.call("stop")
        returncode = await b.process.wait()
    assert returncode == 0


def test_import_dispatchio_does_not_import_the_testing_package() -> None:
    code = (
        "import sys, dispatchio;"
        " print('dispatchio.testing' in sys.modules, 'pytest' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30
    )
    assert result.stdout.split() == ["False", "False"]
