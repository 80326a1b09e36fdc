"""A slow link: 50 ms +- 20 ms each way between the test process and a node process
(through a broker: between the node process and the broker, on every connection).

Requests whose timeout is shorter than any round trip time out; their replies arrive
later and must be counted as late and dropped, never handed to another request or to
the sender's listener; requests with room to spare succeed with their own reply.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from dispatchio import BasicMessageListener, Message, MessageDispatcher, ReplyTimeoutError
from tests.faults._harness import TransportCase, fault_link, open_nodes, percentile
from tests.faults.conftest import Figures
from tests.faults.test_blackhole import transport_kw

pytestmark = pytest.mark.anyio

DELAY, JITTER = 0.05, 0.02  # each way: a round trip takes at least 60 ms
SHORT, LONG = 0.02, 0.5
#: Room to spare through a broker: a request to b then crosses the slow link at least
#: four times (b's fetch and its answer; b's produce, whose acknowledgement the next
#: produce waits for, one request in flight), and 100 replies queue behind those
#: acknowledgements (measured on Kafka: round trip p50 about 260 ms, max 460 ms).
BROKER_LONG = 2.0
COUNT = 100  # requests of each kind


async def test_latency_times_out_short_waits_and_drops_late_replies(
    transport: TransportCase, anyio_backend: str, tmp_path: Path, figures: Figures
) -> None:
    a = MessageDispatcher("a", listen=[transport.listen], **transport_kw(transport))
    long_timeout = BROKER_LONG if transport.broker else LONG
    stray: list[Message] = []
    src = BasicMessageListener("src-a")
    src.add_rule(callback=stray.append)
    a.register(src)
    short: list[str] = []
    long: list[tuple[bool, float]] = []
    long_timeouts: list[float] = []

    async def ask(n: int, timeout: float) -> None:
        content = {"n": n, "timeout": timeout}
        message = Message("ask", content, source="src-a", destination="echo-b")
        start = anyio.current_time()
        try:
            reply = await a.request(message, timeout=timeout)
        except ReplyTimeoutError:
            if timeout == SHORT:
                short.append("timeout")
            else:
                long_timeouts.append(anyio.current_time() - start)
            return
        if timeout == SHORT:
            short.append("reply")
        else:
            long.append((reply.content == content, anyio.current_time() - start))

    with anyio.fail_after(60):
        async with (
            a,
            fault_link(transport, a.listen_urls[0], seed=9) as link,
            open_nodes(tmp_path, anyio_backend) as nodes,
        ):
            proxy = link.proxy
            b = await nodes.spawn("b", **link.reach)
            await b.call("add", listener="echo-b", behaviour="echo")
            await a.wait_for_listener("echo-b")
            proxy.set_latency(DELAY, jitter=JITTER)
            async with anyio.create_task_group() as tg:
                # Interleaved, so late replies to the short ones arrive while long ones wait.
                for n in range(COUNT):
                    tg.start_soon(ask, n, SHORT)
                    tg.start_soon(ask, n, long_timeout)
                    await anyio.sleep(0.002)  # spread the requests over ~0.2 s (the workload)
            # The link is FIFO and b answers in order: once this last reply is here,
            # every earlier reply has been handled by a.
            last = await a.request(Message("ask", "last", destination="echo-b"), timeout=5)
            assert last.content == "last"
            stats = a.stats.as_dict()
            counts = a.debug_counts()

    round_trips = [elapsed for _, elapsed in long]
    figures(
        latency_each_way=f"{DELAY * 1000:g}+-{JITTER * 1000:g} ms",
        long_timeout_s=long_timeout,
        short_timeouts=len(short),
        long_ok=len(long),
        long_timeouts=len(long_timeouts),
        late_replies=stats["late_replies"],
        rtt_p50_ms=round(percentile(round_trips, 0.5) * 1000, 1),
        rtt_max_ms=round(max(round_trips, default=0) * 1000, 1),
    )
    assert short == ["timeout"] * COUNT
    assert long_timeouts == []
    assert [matches for matches, _ in long] == [True] * COUNT
    # Every reply to a short request arrived late: counted, handed to nobody.
    assert stats["late_replies"] == COUNT + len(long_timeouts)
    assert stray == []
    assert stats["dropped_replies"] == 0
    assert counts["pending"] == counts["awaiting_remote"] == 0
    assert min(round_trips) >= 2 * (DELAY - JITTER)
