"""Membership through the members topic: options of connect= URLs, a clean leave."""

from __future__ import annotations

from functools import partial
from typing import Any

import anyio
import anyio.to_thread
import pydantic_core
import pytest
from kafka import KafkaConsumer, TopicPartition

from dispatchio import BasicMessageListener, MessageDispatcher
from dispatchio_kafka import LocalBroker
from dispatchio_kafka._envelope import members_topic

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
