"""A process that stalls itself must not blame its peers.

The test process's event loop is blocked (a long synchronous burst: `time.sleep` here
is the fault injected, not a wait) for longer than its failure detector's bound, while
its peer, a node process with a far longer bound, stays healthy and keeps sending
heartbeats. Those frames are waiting in the stalled process's socket when it resumes:
it must read them before judging, so the peer is still up and a request pending to it
still pending.
"""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import pytest

from dispatchio import DispatchError, Message, MessageDispatcher
from tests.faults._harness import TransportCase, open_nodes
from tests.faults.test_blackhole import transport_kw

pytestmark = pytest.mark.anyio

INTERVAL, TOLERANCE = 0.2, 5  # the test process's bound: 1 s
STALL = 1.3  # more than that bound
#: The peer's heartbeats: frequent, so that only a peer itself starved of the CPU for
#: the whole bound (1 s) could make its silence real, and a bound it never reaches.
PEER_INTERVAL, PEER_TOLERANCE = 0.05, 400
#: Stalls in a row. Which task runs first when the stall ends may be left to chance
#: (trio randomises the order of a batch), so one stall could pass by luck.
STALLS = 6


async def test_a_stalled_process_does_not_declare_its_healthy_peer_dead(
    transport: TransportCase, anyio_backend: str, tmp_path: Path
) -> None:
    a = MessageDispatcher(
        "a",
        listen=[transport.listen],
        heartbeat_interval=INTERVAL,
        heartbeat_tolerance=TOLERANCE,
        **transport_kw(transport),
    )
    outcome: list[str] = []

    async def ask() -> None:
        try:
            await a.request(Message("ask", 1, destination="hold-b"), timeout=30)
        except DispatchError as exc:
            outcome.append(f"{type(exc).__name__}: {exc}")
        else:
            outcome.append("reply")

    with anyio.fail_after(30):
        async with a, open_nodes(tmp_path, anyio_backend) as nodes:
            b = await nodes.spawn(
                "b",
                listen=list(transport.dialer_listen),
                connect=list(a.listen_urls),
                heartbeat_interval=PEER_INTERVAL,
                heartbeat_tolerance=PEER_TOLERANCE,
                transport_options=transport_kw(transport).get("transport_options"),
            )
            await b.call("add", listener="hold-b", behaviour="hold")
            await a.wait_for_listener("hold-b")
            async with anyio.create_task_group() as tg:
                tg.start_soon(ask)
                await b.call("records", listener="hold-b", count=1)
                survived = 0
                for _ in range(STALLS):
                    time.sleep(STALL)  # the fault: this process stops
                    # A negative: give the detector two of its periods to (wrongly) act.
                    await anyio.sleep(2 * INTERVAL)
                    peers = sorted(map(str, a.peers))
                    if peers != ["b"] or outcome:
                        break
                    survived += 1
                tg.cancel_scope.cancel()
    assert (survived, peers, outcome) == (STALLS, ["b"], [])
