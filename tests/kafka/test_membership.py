"""Membership and offsets through the broker: connect= URL options, a clean leave, commits."""

from __future__ import annotations

from functools import partial
from typing import Any

import anyio
import anyio.to_thread
import pydantic_core
import pytest
from kafka import KafkaConsumer, TopicPartition

from dispatchio import BasicMessageListener, Message, MessageDispatcher
from dispatchio_kafka import LocalBroker
from dispatchio_kafka._envelope import inbox_topic, members_topic

TIMEOUT = 30.0


def _members(broker: LocalBroker, namespace: str) -> list[dict[str, Any]]:
    """Every record of the namespace's members topic, decoded, in order."""
    consumer = KafkaConsumer(
        bootstrap_servers=broker.bootstrap, fetch_max_wait_ms=5, enable_auto_commit=False
    )
    try:
        partition = TopicPartition(members_topic(namespace), 0)
        consumer.assign([partition])
        consumer.seek(partition, 0)
        found: list[dict[str, Any]] = []
        while polled := consumer.poll(timeout_ms=500):
            for records in polled.values():
                found += [pydantic_core.from_json(record.value) for record in records]
        return found
    finally:
        consumer.close()


@pytest.mark.anyio
async def test_query_options_of_a_connect_url_are_advertised(
    broker: LocalBroker, namespace: str, kafka_url: str
) -> None:
    with anyio.fail_after(TIMEOUT):
        async with (
            MessageDispatcher("a", listen=[kafka_url]) as a,
            MessageDispatcher("b", connect=[f"{kafka_url}?durable_for=7.5"]),
        ):
            await a.wait_for_peer("b", timeout=TIMEOUT)
            records = await anyio.to_thread.run_sync(partial(_members, broker, namespace))
    ups = {r["process"]: r["durable_for"] for r in records if r["state"] == "up"}
    assert ups == {"a": 300.0, "b": 7.5}


@pytest.mark.anyio
async def test_a_clean_shutdown_removes_the_process_from_the_directory_at_once(
    kafka_url: str,
) -> None:
    # The failure detector would take 10 s and durable_for keeps a silent process 300 s:
    # only the leave record can make it go sooner.
    settings: dict[str, Any] = {"heartbeat_interval": 1.0, "heartbeat_tolerance": 10}
    with anyio.fail_after(TIMEOUT):
        async with MessageDispatcher("a", listen=[kafka_url], **settings) as a:
            b = MessageDispatcher("b", listen=[kafka_url], **settings)
            b.register(BasicMessageListener("sink-b"))
            async with b:
                await a.wait_for_listener("sink-b", timeout=TIMEOUT)
            gone_by = anyio.current_time() + 3.0
            # The core has no event for a peer leaving: look at each checkpoint, bounded.
            while "b" in a.peers or any(
                "sink-b" in entry["listeners"] for entry in a.directory()["processes"]
            ):
                assert anyio.current_time() < gone_by, a.directory()
                await anyio.sleep(0.01)


def _committed(broker: LocalBroker, topic: str) -> int | None:
    consumer = KafkaConsumer(
        bootstrap_servers=broker.bootstrap, group_id=topic, enable_auto_commit=False
    )
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        offset: int | None = consumer.committed(partition)
        return offset
    finally:
        consumer.close()


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("options", "at_least"),
    [
        # By count alone (the interval never comes): at most 99 records uncommitted.
        ({"commit_every": 100, "commit_interval": 3600}, 250 - 99),
        # By time alone (the count never comes): whatever was handled.
        ({"commit_every": 10**9, "commit_interval": 0.2}, 250),
    ],
    ids=["every-100", "interval"],
)
async def test_the_inbox_offset_is_committed_while_the_process_runs(
    broker: LocalBroker, namespace: str, kafka_url: str, options: dict[str, Any], at_least: int
) -> None:
    # A crash re-delivers at most commit_every records or commit_interval seconds of
    # traffic (defaults 100 and 0.5 s): b commits as it runs, not only when it leaves.
    count = 250
    handled = anyio.Event()
    seen: list[int] = []

    def sink(message: Message) -> None:
        seen.append(message.content)
        if len(seen) == count:
            handled.set()

    with anyio.fail_after(TIMEOUT):
        async with (
            MessageDispatcher("a", listen=[kafka_url]) as a,
            MessageDispatcher("b", listen=[kafka_url], transport_options={"kafka": options}) as b,
        ):
            listener = BasicMessageListener("sink-b")
            listener.add_rule(callback=sink)
            b.register(listener)
            await a.wait_for_listener("sink-b", timeout=TIMEOUT)
            for n in range(count):
                await a.send(Message("letter", n, destination="sink-b"))
            await handled.wait()
            topic = inbox_topic(namespace, "b")
            # No event says "committed": ask the broker until it is (fail_after bounds it).
            while (
                await anyio.to_thread.run_sync(partial(_committed, broker, topic)) or 0
            ) < at_least:
                await anyio.sleep(0.05)
