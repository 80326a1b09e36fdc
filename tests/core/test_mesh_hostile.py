"""A peer that completes the handshake but lies: its frames are refused, others served.

Over the in-memory transport (the point is the core's frame handling): process p2 is the
liar; it injects raw frames into p0, which must drop and count each one, keep p2's real
directory, and keep serving p1.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dispatchio import DEFERRED, BasicMessageListener, Message, MessageDispatcher
from dispatchio import _mesh as mesh_module
from dispatchio._mesh import Mesh
from dispatchio._wire import DELTA, FANOUT, MEMBERS, MSG, SNAPSHOT
from tests.core._memory_transport import MemoryTransport
from tests.core.test_mesh import echo, mesh

pytestmark = pytest.mark.anyio

_IS_RESPONSE = 2


def _mesh_of(dispatcher: MessageDispatcher) -> Mesh:
    assert dispatcher._mesh is not None
    return dispatcher._mesh


def _inject(liar: MessageDispatcher, to: MessageDispatcher, fields: list[Any]) -> None:
    """Send a raw frame from ``liar``'s transport to ``to``, bypassing every check."""
    transport = _mesh_of(liar).transports["mem"]
    assert isinstance(transport, MemoryTransport)
    transport.send(to.process_id, json.dumps(fields).encode())


async def _still_served(a: MessageDispatcher, tag: str) -> None:
    """p0 answers p1 (and, FIFO per link, has handled every frame injected before)."""
    reply = await a.request(Message("ping", tag, destination="b-echo"))
    assert reply.content == f"b-echo:{tag}"


def _snapshot(seq: Any, listeners: Any, groups: Any = (), members: Any = ()) -> list[Any]:
    return [SNAPSHOT, 1, seq, listeners, list(groups), list(members)]


def _msg(content: Any = None, **fields: Any) -> list[Any]:
    f = {"type": "ping", "id": 1, "source": None, "destination": "a-echo", "group": None}
    f.update(process="p2", flags=0, error=None)
    f.update(fields)
    return [
        MSG,
        f["type"],
        content,
        f["id"],
        f["source"],
        f["destination"],
        f["group"],
        f["process"],
        f["flags"],
        f["error"],
    ]


@pytest.mark.parametrize(
    "fields",
    [
        # Directories with IDs of the wrong type, or of the wrong shape.
        _snapshot(5, [["a", "list"]]),
        _snapshot(5, [{"a": 1}]),
        _snapshot(5, [1.5]),
        _snapshot(5, [True]),
        _snapshot(5, "c-echo"),
        _snapshot(5, [], [[["g"], ["x"]]]),
        _snapshot(5, [], [["g", [None]]]),
        _snapshot(5, [], [["g"]]),
        _snapshot(5, [], [], [[{"p": 1}, 1, ["mem://x"]]]),
        _snapshot(5, [], [], [["p9", "one", ["mem://x"]]]),
        _snapshot(5, [], [], [["p9", 1, [7]]]),
        _snapshot(1.5, []),
        [DELTA, 1, "r", [1, 2], None],
        [DELTA, 1, "r", 2.5, None],
        [DELTA, 1, "s", "c-new", {"g": 1}],
        [DELTA, 1, "zz", "c-new", None],
        [DELTA, True, "r", "c-new", None],
        [MEMBERS, [["p9", 1, "mem://not-a-list"]]],
        [MEMBERS, {"p9": 1}],
        [FANOUT, [1], 2],
        [FANOUT, 1, 2.5],
        [FANOUT, 1, -3],
        # Messages with IDs of the wrong type.
        _msg(destination=["a-echo"]),
        _msg(source={"x": 1}),
        _msg(id=1.25),
        _msg(id=True),
        _msg(process=[1]),
        _msg(group=2.0, destination=None),
        # Content nested far deeper than any decoder stack should go.
        _msg(),  # replaced below by a deeply nested frame
    ],
)
async def test_a_frame_of_the_wrong_shape_is_dropped_and_counted_and_others_served(
    fields: list[Any], caplog: pytest.LogCaptureFixture
) -> None:
    with anyio.fail_after(5):
        async with mesh(3) as (a, b, c):
            echo(a, "a-echo")
            echo(b, "b-echo")
            echo(c, "c-echo")
            await a.wait_for_listener("b-echo", timeout=5)
            await a.wait_for_listener("c-echo", timeout=5)
            before = _mesh_of(a).refused_frames
            directory = a.directory()
            with caplog.at_level(logging.WARNING, logger="dispatchio.mesh"):
                if fields == _msg():
                    depth = 100_000
                    transport = _mesh_of(c).transports["mem"]
                    assert isinstance(transport, MemoryTransport)
                    deep = b"[0," + b"[" * depth + b"]" * depth + b"]"
                    transport.send("p0", deep)
                else:
                    _inject(c, a, fields)
                await _still_served(a, "after")
            assert _mesh_of(a).refused_frames == before + 1
            assert a.directory() == directory
            assert "p2" in a.peers
            assert any("dropped a bad frame from process 'p2'" in m for m in caplog.messages)
            reply = await a.request(Message("ping", "x", destination="c-echo"))
            assert reply.content == "c-echo:x"


async def test_content_nested_to_the_decoders_limit_crosses_and_comes_back() -> None:
    nested: Any = "core"
    for _ in range(190):
        nested = [nested]
    with anyio.fail_after(5):
        async with mesh(2) as (a, b):
            listener = BasicMessageListener("mirror")
            listener.add_rule(callback=lambda m: m.content)
            b.register(listener)
            await a.wait_for_listener("mirror", timeout=5)
            reply = await a.request(Message("ping", nested, destination="mirror"))
    assert reply.content == nested


async def test_a_directory_claim_over_the_cap_is_refused_and_the_real_one_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(mesh_module, "MAX_PEER_ENTRIES", 10)
    with anyio.fail_after(5):
        async with mesh(3) as (a, b, c):
            echo(b, "b-echo")
            echo(c, "c-echo")
            await a.wait_for_listener("c-echo", timeout=5)
            peer = _mesh_of(a).peers["p2"]
            seq = peer.seq
            # A snapshot claiming 11 listeners, then one claiming 5 listeners and 6
            # group subscriptions: both over the cap.
            _inject(c, a, _snapshot(seq, [f"fake{i}" for i in range(11)]))
            _inject(c, a, _snapshot(seq, [f"f{i}" for i in range(5)], [["g", list(range(6))]]))
            await _still_served(a, "after snapshots")
            assert _mesh_of(a).refused_frames == 2
            assert peer.listeners == {"c-echo"}
            # Deltas: registering past the cap is refused (the sequence still advances,
            # so no snapshot is asked for in a loop).
            for i in range(12):
                _inject(c, a, [DELTA, seq + 1 + i, "r", f"d{i}", None])
            await _still_served(a, "after deltas")
            assert len(peer.listeners) == 10
            assert "d9" not in peer.listeners
            assert "d8" in peer.listeners
            assert _mesh_of(a).refused_frames == 2 + 3
            assert peer.seq == seq + 12


async def test_a_reply_from_a_process_the_request_was_not_sent_to_is_dropped() -> None:
    held: list[Message] = []
    arrived = anyio.Event()
    with anyio.fail_after(5):
        async with mesh(3) as (a, b, c):

            def keep(message: Message) -> object:
                held.append(message)
                arrived.set()
                return DEFERRED

            slow = BasicMessageListener("slow")
            slow.add_rule(callback=keep)
            b.register(slow)
            echo(b, "b-echo")
            await a.wait_for_listener("slow", timeout=5)
            result: list[Message] = []

            async def ask() -> None:
                result.append(await a.request(Message("ask", destination="slow")))

            async with anyio.create_task_group() as tg:
                tg.start_soon(ask)
                await arrived.wait()
                message_id = held[0].id
                # p2 answers (and fails) p0's request to p1, and claims 5 copies of it.
                forged = _msg("forged", id=message_id, destination=None, process="p0")
                forged[8] = _IS_RESPONSE
                _inject(c, a, forged)
                forged[9] = "peer_lost: made up"
                _inject(c, a, forged)
                _inject(c, a, [FANOUT, message_id, 5])
                await _still_served(a, "meanwhile")
                assert _mesh_of(a).refused_frames == 3
                assert result == []
                pending = _mesh_of(a).replies.pending[message_id]  # type: ignore[index]
                assert pending.outstanding == 1
                await b.reply(held[0], "genuine")
            assert [m.content for m in result] == ["genuine"]
            assert result[0].process == "p1"


# --------------------------------------------------------------------------- fuzz

_ids = st.one_of(st.integers(-5, 5), st.sampled_from(["a-echo", "b-echo", "c-echo", "g", "p0"]))
_json = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False),
        st.text(max_size=5),
        _ids,
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=12,
)
# Every kind but GOODBYE (which rightly ends the peer), plus unknown ones.
_kinds = st.sampled_from([0, 1, 2, 3, 4, 5, 7, 8, -1])
_frames = st.builds(lambda kind, rest: [kind, *rest], _kinds, st.lists(_json, max_size=10))


async def test_fuzz_frames_of_valid_json_and_the_wrong_shape_never_break_the_mesh() -> None:
    with anyio.fail_after(60):
        # The fuzz runs synchronously, holding the event loop: no detector verdicts then.
        async with mesh(3, heartbeat_interval=60.0) as (a, b, _c):
            echo(a, "a-echo")
            echo(b, "b-echo")
            await a.wait_for_listener("b-echo", timeout=5)
            handle = _mesh_of(a)

            @settings(
                max_examples=300,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow],
                database=None,
            )
            @given(st.lists(_frames, min_size=1, max_size=5))
            def feed(frames: list[list[Any]]) -> None:
                # Straight into the frame handler as one read's worth, as a transport
                # would hand them over; it must not raise, whatever the frames say.
                handle.frames_received("p2", [json.dumps(fields).encode() for fields in frames])
                assert "p2" in handle.peers
                for lid, process in handle.remote_listener.items():
                    assert lid.__class__ in (str, int)
                    assert process in handle.peers
                for group, _processes in handle.remote_groups.items():
                    assert group.__class__ in (str, int)
                for process, (incarnation, urls) in handle.members.items():
                    assert process.__class__ in (str, int)
                    assert incarnation.__class__ is int
                    assert all(url.__class__ is str for url in urls)

            logging.getLogger("dispatchio.mesh").disabled = True
            try:
                feed()
            finally:
                logging.getLogger("dispatchio.mesh").disabled = False
            await _still_served(a, "after the fuzz")


async def test_a_flood_of_bad_frames_is_counted_but_logged_once_per_second(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with anyio.fail_after(5):
        async with mesh(3) as (a, b, c):
            echo(b, "b-echo")
            await a.wait_for_listener("b-echo", timeout=5)
            with caplog.at_level(logging.DEBUG, logger="dispatchio.mesh"):
                for _ in range(1000):
                    _inject(c, a, [FANOUT, [1], 2])
                await _still_served(a, "after the flood")
            warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
            assert _mesh_of(a).refused_frames == 1000
            # All within one second here, unless the machine stalls for longer.
            assert 1 <= len(warnings) < 1000
            assert "dropped a bad frame from process 'p2'" in warnings[0].getMessage()
