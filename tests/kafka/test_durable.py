"""Durable inboxes: a process killed and restarted finds the letters sent while it was down.

Three processes that never connect to each other (only the broker's address is shared):
the test process "a" and two children, "b" and "c" (``_durable_child.py``).
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream
from anyio.streams.memory import MemoryObjectSendStream

from dispatchio import (
    BasicMessageListener,
    DeliveryError,
    Message,
    MessageDispatcher,
    PeerLostError,
    UndeliverableError,
)

CHILD = Path(__file__).with_name("_durable_child.py")
HEARTBEAT_INTERVAL = 0.2
HEARTBEAT_TOLERANCE = 3
TIMEOUT = 60.0
#: How soon a death must have been noticed: the detector's bound plus the broker's trips.
DETECTED = HEARTBEAT_INTERVAL * HEARTBEAT_TOLERANCE + 2.0
LETTERS = 100


class Child:
    """A child process and the JSON lines it printed."""

    def __init__(self, process: anyio.abc.Process) -> None:
        self.process = process
        send, self.lines = anyio.create_memory_object_stream[dict[str, Any]](math.inf)
        self._send: MemoryObjectSendStream[dict[str, Any]] = send

    async def read(self) -> None:
        assert self.process.stdout is not None
        lines = BufferedByteReceiveStream(self.process.stdout)
        with self._send:
            while True:
                try:
                    line = await lines.receive_until(b"\n", 1 << 20)
                except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError):
                    return
                self._send.send_nowait(json.loads(line))

    async def next(self, key: str) -> Any:
        """The value of the next line holding ``key`` (earlier other lines are skipped)."""
        async for line in self.lines:
            if key in line:
                return line[key]
        raise AssertionError(f"the child exited before printing {key!r}")

    async def stop(self) -> int:
        assert self.process.stdin is not None
        await self.process.stdin.send(b"stop\n")
        return await self.process.wait()


@asynccontextmanager
async def children(url: str, backend: str, directory: Path) -> AsyncIterator[Any]:
    """``spawn(process_id)`` starts a child; every child is SIGKILLed on exit if alive."""
    started: list[Child] = []
    async with anyio.create_task_group() as task_group:

        async def spawn(process_id: str) -> Child:
            stderr = directory / f"{process_id}-{len(started)}.stderr"
            with stderr.open("wb") as errors:
                process = await anyio.open_process(
                    [sys.executable, str(CHILD), backend, url, process_id], stderr=errors
                )
            child = Child(process)
            started.append(child)
            task_group.start_soon(child.read)
            await child.next("ready")
            return child

        try:
            yield spawn
        finally:
            with anyio.CancelScope(shield=True):
                for child in started:
                    child.lines.close()
                    if child.process.returncode is None:
                        child.process.kill()
                    await child.process.wait()
                    await child.process.aclose()
            task_group.cancel_scope.cancel()


async def _letters(child: Child, count: int) -> list[Any]:
    return [await child.next("letter") for _ in range(count)]


@pytest.mark.anyio
async def test_letters_to_a_killed_process_wait_for_its_return_in_order(
    kafka_url: str, anyio_backend: str, tmp_path: Path
) -> None:
    half = LETTERS // 2
    with anyio.fail_after(TIMEOUT):
        async with (
            MessageDispatcher(
                "a",
                listen=[kafka_url],
                heartbeat_interval=HEARTBEAT_INTERVAL,
                heartbeat_tolerance=HEARTBEAT_TOLERANCE,
            ) as a,
            children(kafka_url, anyio_backend, tmp_path) as spawn,
        ):
            b = await spawn("b")
            c = await spawn("c")
            await a.wait_for_subscribers("news", 2, timeout=TIMEOUT)
            for lid in ("echo-b", "echo-c", "sink-b"):
                await a.wait_for_listener(lid, timeout=TIMEOUT)
            # Requests and group messages across the three.
            answers = [
                (await a.request(Message("ping", n, destination=f"echo-{p}"))).content
                for n, p in enumerate("bc")
            ]
            await a.send(Message("headline", "first", group="news"))
            news = [await b.next("news"), await c.next("news")]
            # Letters while b runs, then b dies without a word.
            for n in range(half):
                await a.send(Message("letter", n, destination="sink-b"))
            before = await _letters(b, half)
            b.process.kill()
            with anyio.fail_after(DETECTED), pytest.raises((PeerLostError, UndeliverableError)):
                await a.request(Message("ping", "anyone?", destination="echo-b"))
            # b is dormant now: what needs an answer fails at once; its listeners stay.
            with (
                anyio.fail_after(1.0),
                pytest.raises(UndeliverableError, match="stopped answering"),
            ):
                await a.request(Message("ping", "now?", destination="echo-b"))
            for n in range(half, LETTERS):
                await a.send(Message("letter", n, destination="sink-b"))
            alive = (await a.request(Message("ping", "c?", destination="echo-c"))).content
            # b comes back as the same process ID and reads its inbox where it stopped.
            b2 = await spawn("b")
            after = [await b2.next("letter")]
            while after[-1] != LETTERS - 1:
                after.append(await b2.next("letter"))
            await a.wait_for_peer("b", timeout=TIMEOUT)  # its new incarnation
            back = (await a.request(Message("ping", "back?", destination="echo-b"))).content
            await a.send(Message("headline", "second", group="news"))
            news += [await b2.next("news"), await c.next("news")]
            codes = [await b2.stop(), await c.stop()]
    assert answers == [["b", 0], ["c", 1]]
    assert before == list(range(half))
    # At least once: b2 may see again the last letters b handled before its last commit.
    assert after[0] <= half
    assert after == list(range(after[0], LETTERS))
    assert (alive, back) == (["c", "c?"], ["b", "back?"])
    assert news == ["first", "first", "second", "second"]
    assert codes == [0, 0]


def test_delivery_errors_are_the_ones_named() -> None:
    assert issubclass(PeerLostError, DeliveryError)
    assert issubclass(UndeliverableError, DeliveryError)


@pytest.mark.anyio
async def test_a_process_with_durable_for_0_is_forgotten_as_soon_as_it_is_lost(
    kafka_url: str, anyio_backend: str, tmp_path: Path
) -> None:
    """``durable_for=0`` (advertised by b through its URL): once the detector declares b
    lost, its listeners leave the directory at once, and letters to them come back
    ``undeliverable`` instead of waiting in its inbox for its return."""
    back: list[Message] = []
    back_changed = anyio.Event()

    def returned(message: Message) -> None:
        nonlocal back_changed
        back.append(message)
        back_changed.set()
        back_changed = anyio.Event()

    async def returned_count(count: int) -> None:
        while len(back) < count:
            await back_changed.wait()

    a = MessageDispatcher(
        "a",
        listen=[kafka_url],
        heartbeat_interval=HEARTBEAT_INTERVAL,
        heartbeat_tolerance=HEARTBEAT_TOLERANCE,
    )
    src = BasicMessageListener("src-a")
    src.add_rule(callback=returned)
    a.register(src)
    with anyio.fail_after(TIMEOUT):
        async with a, children(f"{kafka_url}?durable_for=0", anyio_backend, tmp_path) as spawn:
            b = await spawn("b")
            for lid in ("echo-b", "sink-b"):
                await a.wait_for_listener(lid, timeout=TIMEOUT)
            for n in range(10):
                await a.send(Message("letter", f"before-{n}", source="src-a", destination="sink-b"))
            before = await _letters(b, 10)
            b.process.kill()
            killed = anyio.current_time()
            # Sent before anyone knows: a letter awaiting its response, and a request.
            waiting = Message(
                "ping", "waiting", source="src-a", destination="echo-b", response_required=True
            )
            await a.send(waiting, reply_timeout=TIMEOUT)
            with anyio.fail_after(DETECTED), pytest.raises(PeerLostError):
                await a.request(Message("ping", "anyone?", destination="echo-b"))
            lost_after = anyio.current_time() - killed
            await returned_count(1)
            # Forgotten, not dormant: nothing of b is left, nothing is stored for it.
            peers = sorted(map(str, a.peers))
            listed = {str(lid) for e in a.directory()["processes"] for lid in e["listeners"]}
            for n in range(5):
                await a.send(Message("letter", f"down-{n}", source="src-a", destination="sink-b"))
            with pytest.raises(UndeliverableError, match="no listener"):
                await a.request(Message("ping", "now?", destination="echo-b"))
            await returned_count(6)
            # b comes back (the same process ID, still durable_for=0): what was sent while
            # it was forgotten is not in its inbox; what it read before may come again.
            b2 = await spawn("b")
            await a.wait_for_listener("sink-b", timeout=TIMEOUT)
            await a.send(Message("letter", "after", source="src-a", destination="sink-b"))
            again = [await b2.next("letter")]
            while again[-1] != "after":
                again.append(await b2.next("letter"))
            code = await b2.stop()
            late = a.stats.late_replies
    print(f"durable_for=0: b lost {lost_after:.3f} s after its SIGKILL")
    assert before == [f"before-{n}" for n in range(10)]
    assert lost_after < DETECTED
    assert (peers, listed & {"echo-b", "sink-b"}) == ([], set())
    codes = [(m.id, str(m.error).partition(":")[0]) for m in back]
    assert codes[0] == (waiting.id, "peer_lost")
    assert [code for _, code in codes[1:]] == ["undeliverable"] * 5
    assert [m.content for m in back[1:]] == [f"down-{n}" for n in range(5)]
    assert set(again[:-1]) <= set(before)
    assert code == 0
    # b2 found the waiting letter and the request in its inbox (both sent before b was
    # declared lost) and answered them: too late, so counted and dropped, never handed
    # to src-a.
    assert len(back) == 6
    assert late <= 2
