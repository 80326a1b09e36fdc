"""A link that goes silent without closing, for longer than the failure detector's bound.

The test process runs dispatcher ``a``; node ``b`` (another OS process) reaches it only
through a `FaultProxy`, which then swallows every byte both ways while keeping the TCP
connection open: no FIN, no RST, only silence, which only the heartbeats can notice.

Through a broker (Kafka) the proxy carries every connection of ``b`` to the broker, and
``a`` reaches the broker directly: b is cut off from the broker, not from a link. Each
side then holds the other dormant, so letters sent both ways in the silence are stored,
and must arrive, in order, once the network heals.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import anyio
import pytest

from dispatchio import (
    DEFERRED,
    BasicMessageListener,
    Message,
    MessageDispatcher,
    PeerLostError,
)
from tests.faults._harness import TransportCase, fault_link, open_nodes, transport_options
from tests.faults.conftest import Figures

pytestmark = pytest.mark.anyio

Cut = Literal["both", "to_target", "to_client"]  # FaultProxy's directions

INTERVAL, TOLERANCE = 0.2, 3
#: Silence after which a peer is declared dead.
LIMIT = INTERVAL * TOLERANCE
#: Beyond LIMIT: the last frame may be heard up to one interval before the silence
#: starts and the detector looks every half interval; the rest is for a loaded machine.
SLACK = 1.0
PENDING = 20  # requests and letters left waiting each way when the link goes silent
STORED = 20  # through a broker: letters each way while each side holds the other dormant
SETTINGS: dict[str, Any] = {
    "heartbeat_interval": INTERVAL,
    "heartbeat_tolerance": TOLERANCE,
    "reply_timeout": 30.0,  # far beyond the detector: only peer loss may end the waits
}


@pytest.mark.parametrize("cut", ["both", "to_target", "to_client"])
async def test_blackhole_fails_pending_work_within_the_bound_then_heals(
    cut: Cut, transport: TransportCase, anyio_backend: str, tmp_path: Path, figures: Figures
) -> None:
    """``cut``: which way the bytes are swallowed. Cut one way, one side still hears the
    other; it learns of the loss when the other side, having declared it dead, closes the
    link (the FIN goes the way that still passes). Through a broker, ``to_client`` lets
    b's records reach the broker (and a) while b hears nothing."""
    if transport.broker and cut == "to_target":
        # Kafka is request and response, client first: with the client's bytes
        # swallowed the broker has nothing to answer, which is the "both" case.
        pytest.skip("through a broker, a cut towards it is the cut both ways")
    a = MessageDispatcher("a", listen=[transport.listen], **transport_kw(transport), **SETTINGS)
    held: list[Message] = []
    held_changed = anyio.Event()
    back: list[Message] = []
    back_changed = anyio.Event()

    def keep(message: Message) -> object:
        nonlocal held_changed
        held.append(message)
        held_changed.set()
        held_changed = anyio.Event()
        return DEFERRED

    def returned(message: Message) -> None:
        nonlocal back_changed
        back.append(message)
        back_changed.set()
        back_changed = anyio.Event()

    recorded: list[Message] = []
    recorded_changed = anyio.Event()

    def record(message: Message) -> None:
        nonlocal recorded_changed
        recorded.append(message)
        recorded_changed.set()
        recorded_changed = anyio.Event()

    actions = {"hold-a": keep, "src-a": returned, "echo-a": lambda m: m.content, "rec-a": record}
    for lid, action in actions.items():
        listener = BasicMessageListener(lid)
        listener.add_rule(callback=action)
        a.register(listener)

    with anyio.fail_after(90):
        async with (
            a,
            fault_link(transport, a.listen_urls[0]) as link,
            open_nodes(tmp_path, anyio_backend) as nodes,
        ):
            proxy = link.proxy
            b = await nodes.spawn("b", **link.reach, **SETTINGS)
            for lid, behaviour in (("hold-b", "hold"), ("echo-b", "echo"), ("rec-b", "record")):
                await b.call("add", listener=lid, behaviour=behaviour)
            # Each registration is its own directory change: wait for every one used below.
            for lid in ("hold-b", "echo-b"):
                await a.wait_for_listener(lid)
            await b.call("wait_listener", listener="hold-a")
            reply = await a.request(Message("ask", "before", destination="echo-b"), timeout=5)
            assert reply.content == "before"

            # Work left waiting both ways: requests from a, letters with
            # response_required from a, requests from b.
            outcomes_a: list[tuple[str, float]] = []
            outcomes_b: list[tuple[str, float]] = []
            start = [0.0]
            letter_ids: list[object] = []

            async def request_from_a(n: int) -> None:
                try:
                    await a.request(Message("ask", n, destination="hold-b"))
                except PeerLostError:
                    outcomes_a.append(("PeerLostError", anyio.current_time() - start[0]))
                else:
                    outcomes_a.append(("reply", anyio.current_time() - start[0]))

            async def request_from_b(n: int) -> None:
                answer = await b.call("request", to={"destination": "hold-a"}, content=n)
                outcomes_b.append((answer["outcome"], anyio.current_time() - start[0]))

            async with anyio.create_task_group() as tg:
                for n in range(PENDING):
                    tg.start_soon(request_from_a, n)
                    tg.start_soon(request_from_b, n)
                    letter = Message(
                        "letter", n, source="src-a", destination="hold-b", response_required=True
                    )
                    await a.send(letter)
                    letter_ids.append(letter.id)
                # Everything reached the far side before the silence starts.
                while len(held) < PENDING:
                    await held_changed.wait()
                await b.call("records", listener="hold-b", count=2 * PENDING)
                assert a.debug_counts()["awaiting_remote"] == 2 * PENDING

                proxy.blackhole(cut)
                start[0] = anyio.current_time()
                while len(back) < PENDING:
                    await back_changed.wait()
                letters_back = anyio.current_time() - start[0]

            silence = proxy.stats()
            swallowed = {d for d in ("to_target", "to_client") if silence[f"dropped_{d}"]}
            cut_ways = {"to_target", "to_client"} if cut == "both" else {cut}
            if transport.broker:
                # A client talks first: the broker may have had nothing to send back.
                assert "to_target" in swallowed or swallowed == {"to_client"} == cut_ways
                assert swallowed <= cut_ways
            else:
                assert swallowed == cut_ways
            assert sorted(kind for kind, _ in outcomes_a) == ["PeerLostError"] * PENDING
            assert sorted(kind for kind, _ in outcomes_b) == ["PeerLostError"] * PENDING
            # Each letter came back exactly once, as peer_lost.
            assert sorted(m.id for m in back) == sorted(letter_ids)  # type: ignore[type-var]
            assert {str(m.error).partition(":")[0] for m in back} == {"peer_lost"}
            detected_a = max(t for _, t in outcomes_a)
            detected_b = max(t for _, t in outcomes_b)
            assert detected_a <= LIMIT + SLACK
            assert detected_b <= LIMIT + SLACK
            counts = a.debug_counts()
            assert counts["pending"] == counts["awaiting_remote"] == 0
            figures(
                detector_limit_s=LIMIT,
                pending_each_way=PENDING,
                peer_lost_after_s_a=round(detected_a, 3),
                peer_lost_after_s_b=round(detected_b, 3),
                letters_back_after_s=round(letters_back, 3),
            )

            stored = 0
            if transport.broker:
                # Each side now holds the other dormant: letters both ways are stored,
                # for delivery once the link heals.
                stored = STORED
                for n in range(STORED):
                    await a.send(Message("letter", n, destination="rec-b"))
                    await b.call("send", to={"destination": "rec-a"}, content=n)

            # The network heals: the same processes find each other again.
            accepted = proxy.stats()["accepted"]
            proxy.pass_through()
            healed = anyio.current_time()
            # Bound: a dial begun in the silence may wait out its handshake timeout (5 s)
            # and the redial backoff (at most 2 s) first; a Kafka client that connected in
            # the silence waits out its connection setup timeout (10 s) when the proxy
            # swallowed the answer to its CONNECT.
            await a.wait_for_peer("b", timeout=30)
            await a.wait_for_listener("echo-b", timeout=5)
            reconnected = anyio.current_time() - healed
            reply = await a.request(Message("ask", "after", destination="echo-b"), timeout=5)
            assert reply.content == "after"
            answer = await b.call(
                "request", to={"destination": "echo-a"}, content="after", timeout=5
            )
            assert (answer["outcome"], answer["content"]) == ("ok", "after")
            # A new connection, through the proxy (the old ones lost bytes).
            assert proxy.stats()["accepted"] > (accepted if transport.broker else 1)
            if transport.broker:
                while len(recorded) < STORED:
                    await recorded_changed.wait()
                delivered_b = await b.call("records", listener="rec-b", count=STORED)
                assert [r["content"] for r in delivered_b] == list(range(STORED))
                assert [m.content for m in recorded] == list(range(STORED))

    figures(reconnected_after_heal_s=round(reconnected, 3), stored_letters_delivered=2 * stored)


def transport_kw(transport: TransportCase) -> dict[str, Any]:
    options = transport_options(transport)
    return {} if options is None else {"transport_options": options}
