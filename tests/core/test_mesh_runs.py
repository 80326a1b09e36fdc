"""The frames of one read (`Mesh.frames_received`): each frame handled as if alone, in order.

The messages of a read reach the scheduler as one run; these tests pin down that a run
behaves exactly like the same frames one by one: a bad frame among them is dropped alone,
a message that must take the queue sends every later one of the run behind it, and a
goodbye drops what follows it. A long read is handed over in runs of at most `_RUN`.
"""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest

from dispatchio import BasicMessageListener, Message, MessageDispatcher
from dispatchio._mesh import _RUN, Mesh
from dispatchio._wire import GOODBYE, MSG, SNAPSHOT_REQUEST
from tests.core.test_mesh import mesh

pytestmark = pytest.mark.anyio

_BLOCKING = 4


def _mesh_of(dispatcher: MessageDispatcher) -> Mesh:
    assert dispatcher._mesh is not None
    return dispatcher._mesh


def _msg(seq: int, *, flags: int = 0) -> bytes:
    return json.dumps([MSG, "data", seq, 100 + seq, None, "sink", None, "p1", flags, None]).encode()


def _sink(dispatcher: MessageDispatcher, last: int = -1) -> tuple[list[Any], anyio.Event]:
    """A listener "sink" recording the contents it gets; the event is set on ``last``."""
    got: list[Any] = []
    done = anyio.Event()

    def record(message: Message) -> None:
        got.append(message.content)
        if message.content == last:
            done.set()

    sink = BasicMessageListener("sink")
    sink.add_rule(type="data", callback=record)
    dispatcher.register(sink)
    return got, done


async def test_a_bad_frame_in_a_read_is_dropped_alone_and_the_others_arrive_in_order() -> None:
    with anyio.fail_after(5):
        async with mesh(2) as (a, b):
            got, _ = _sink(a)
            await b.wait_for_listener("sink", timeout=5)
            handler = _mesh_of(a)
            before = handler.refused_frames
            frames = [
                _msg(0),
                b"not json",
                _msg(1),
                json.dumps([MSG, "data", 9, 1.5, None, "sink", None, "p1", 0, None]).encode(),
                json.dumps([SNAPSHOT_REQUEST]).encode(),
                _msg(2),
            ]
            handler.frames_received("p1", frames)
            assert got == [0, 1, 2]  # callbacks on a parked leader run as they are read
            assert handler.refused_frames == before + 2
            assert "p1" in a.peers


async def test_a_message_that_takes_the_queue_sends_the_rest_of_its_read_behind_it() -> None:
    with anyio.fail_after(5):
        async with mesh(2) as (a, b):
            got, done = _sink(a, last=3)
            await b.wait_for_listener("sink", timeout=5)
            frames = [_msg(0), _msg(1, flags=_BLOCKING), _msg(2), _msg(3)]
            _mesh_of(a).frames_received("p1", frames)
            assert got == [0]  # the blocking one is queued, and what follows it too
            await done.wait()
    assert got == [0, 1, 2, 3]


async def test_frames_after_a_goodbye_in_the_same_read_are_dropped() -> None:
    with anyio.fail_after(5):
        async with mesh(2) as (a, b):
            got, _ = _sink(a)
            await b.wait_for_listener("sink", timeout=5)
            goodbye = json.dumps([GOODBYE, "leaving"]).encode()
            _mesh_of(a).frames_received("p1", [_msg(0), goodbye, _msg(1)])
            assert got == [0]
            assert "p1" not in a.peers


async def test_a_long_read_reaches_the_scheduler_in_bounded_runs_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Bounded so that a large read never keeps thousands of decoded messages alive at
    # once (each counts towards a gen-0 garbage collection that traverses them all).
    with anyio.fail_after(5):
        async with mesh(2) as (a, b):
            got, _ = _sink(a)
            await b.wait_for_listener("sink", timeout=5)
            handler = _mesh_of(a)
            runs: list[int] = []
            deliver = handler.deliver

            def counting(run: list[Message]) -> None:
                runs.append(len(run))
                deliver(run)

            monkeypatch.setattr(handler, "deliver", counting)
            count = 2 * _RUN + 5
            handler.frames_received("p1", [_msg(i) for i in range(count)])
            assert runs == [_RUN, _RUN, 5]
            assert got == list(range(count))
