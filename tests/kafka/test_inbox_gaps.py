"""A reader at the end of its inbox misses no record, even when the broker shows a later
record before an earlier one (`dispatchio_kafka._gaps`).

With tansu, a producer to an inbox killed mid-request while another process writes to the
same inbox made a fetch skip an offset now and then: the record was in the log when read
again, but the reader had read past it, and a letter acknowledged to its sender was lost
(seen in the chaos soak: a letter, a request and a letter with ``response_required``
from one tick, all gone, while everything before and after arrived).

The first test runs that scenario through the transport and asserts nothing is lost. It
is not a reliable reproducer: without the fix it passed in six runs here (the chaos soak
and a plain kafka-python consumer did show the skip). The tests of `OffsetGaps` below pin
down the rule itself.
"""

from __future__ import annotations

import sys
from pathlib import Path

import anyio
import anyio.abc
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from dispatchio import BasicMessageListener, Message, MessageDispatcher
from dispatchio_kafka import LocalBroker
from dispatchio_kafka._envelope import inbox_topic
from dispatchio_kafka._gaps import OffsetGaps

pytestmark = pytest.mark.anyio
WRITER = Path(__file__).with_name("_gap_writer.py")
ROOT = Path(__file__).parents[2]
SECONDS = 10.0
LETTER_EVERY = 0.002
TIMEOUT = 60.0


async def test_letters_all_arrive_in_order_while_another_producer_to_the_inbox_is_killed(
    broker: LocalBroker, namespace: str, kafka_url: str
) -> None:
    got: list[int] = []
    everything = anyio.Event()
    sent = 0
    sink = BasicMessageListener("sink")

    def keep(message: Message) -> None:
        got.append(message.content)
        if len(got) == sent and sending_done.is_set():
            everything.set()

    sink.add_rule(callback=keep)
    sending_done = anyio.Event()
    receiver = MessageDispatcher("b", listen=[kafka_url])
    receiver.register(sink)
    sender = MessageDispatcher("a", connect=[kafka_url])
    kills = 0
    with anyio.fail_after(TIMEOUT):
        async with receiver, sender:
            await sender.wait_for_listener("sink", timeout=TIMEOUT)

            async def kill_writers() -> None:
                nonlocal kills
                command = [
                    sys.executable,
                    str(WRITER),
                    broker.bootstrap,
                    inbox_topic(namespace, "b"),
                    "b",
                ]
                while not sending_done.is_set():
                    async with await anyio.open_process(command, cwd=ROOT) as writer:
                        assert writer.stdout is not None
                        ready = await BufferedByteReceiveStream(writer.stdout).receive_until(
                            b"\n", 64
                        )
                        assert ready == b"ready"
                        # Killed mid-stream, at a moment that varies with the machine's
                        # pace: the writer sends without pause.
                        await anyio.sleep(0.2 + 0.1 * (kills % 4))
                        writer.kill()
                        await writer.wait()
                        kills += 1

            async with anyio.create_task_group() as tg:
                tg.start_soon(kill_writers)
                start = anyio.current_time()
                while anyio.current_time() - start < SECONDS:
                    await sender.send(Message("n", sent, destination="sink"))
                    sent += 1
                    await anyio.sleep(LETTER_EVERY)  # a steady pace, not a synchronisation
                sending_done.set()
                if len(got) == sent:
                    everything.set()
                await everything.wait()
    assert kills >= 5
    assert got == list(range(sent))


class _Record:
    def __init__(self, offset: int) -> None:
        self.offset = offset


def _records(*offsets: int) -> list[_Record]:
    return [_Record(offset) for offset in offsets]


def _offsets(records: object) -> list[int]:
    return [record.offset for record in records]  # type: ignore[attr-defined]


def test_consecutive_offsets_pass_through() -> None:
    gaps = OffsetGaps(patience=1.0)
    kept, back = gaps.take("p", _records(5, 6, 7), now=0.0)
    assert (_offsets(kept), back) == ([5, 6, 7], None)
    kept, back = gaps.take("p", _records(8, 9), now=0.1)
    assert (_offsets(kept), back) == ([8, 9], None)


def test_a_gap_cuts_the_records_and_asks_to_read_again_from_the_missing_offset() -> None:
    gaps = OffsetGaps(patience=1.0)
    gaps.take("p", _records(1, 2), now=0.0)
    kept, back = gaps.take("p", _records(3, 5, 6), now=0.1)
    assert (_offsets(kept), back) == ([3], 4)
    # Read again from 4: still missing, still within patience.
    kept, back = gaps.take("p", _records(5, 6), now=0.5)
    assert (_offsets(kept), back) == ([], 4)
    # Then it shows up: everything from it on is delivered, once.
    kept, back = gaps.take("p", _records(4, 5, 6, 7), now=0.6)
    assert (_offsets(kept), back) == ([4, 5, 6, 7], None)


def test_a_position_moved_back_is_followed() -> None:
    # kafka-python reset the offset (say to the start of a log the broker re-created):
    # what it reads from there is delivered, not taken for records seen already.
    gaps = OffsetGaps(patience=1.0)
    gaps.take("p", _records(1, 2, 3), now=0.0)
    assert gaps.take("p", _records(7), now=0.1)[1] == 4
    kept, back = gaps.take("p", _records(0, 1), now=0.2)
    assert (_offsets(kept), back) == ([0, 1], None)
    assert gaps.take("p", _records(3), now=0.3)[1] == 2


def test_a_gap_that_outlasts_patience_is_logged_and_read_past(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gaps = OffsetGaps(patience=1.0)
    gaps.take("p", _records(1), now=0.0)
    assert gaps.take("p", _records(3), now=10.0)[1] == 2
    assert gaps.take("p", _records(3), now=10.9)[1] == 2
    with caplog.at_level("WARNING", logger="dispatchio.kafka"):
        kept, back = gaps.take("p", _records(3, 4), now=11.0)
    assert (_offsets(kept), back) == ([3, 4], None)
    assert "offsets 2 to 2 of p never appeared within 1 s" in caplog.text
    # A later gap is waited for afresh.
    assert gaps.take("p", _records(6), now=11.1)[1] == 5


def test_partitions_are_followed_apart_and_forget_expects_any_offset() -> None:
    gaps = OffsetGaps(patience=1.0)
    gaps.take("inbox", _records(10), now=0.0)
    gaps.take("members", _records(0), now=0.0)
    assert gaps.take("members", _records(1), now=0.1)[1] is None
    assert gaps.take("inbox", _records(12), now=0.1)[1] == 11
    gaps.forget("inbox")  # the topic was re-created: read from 0
    kept, back = gaps.take("inbox", _records(0, 1), now=0.2)
    assert (_offsets(kept), back) == ([0, 1], None)
