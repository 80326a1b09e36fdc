"""The Kafka transport against the real broker: what the conformance suite does not cover."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import anyio
import anyio.to_thread
import pydantic_core
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from dispatchio import BasicMessageListener, Message, MessageDispatcher
from dispatchio_kafka import KafkaTransport, LocalBroker
from dispatchio_kafka._envelope import inbox_topic
from tests.kafka.test_conformance import hostile_values

TIMEOUT = 30.0


def _echo(dispatcher: MessageDispatcher, lid: str) -> None:
    listener = BasicMessageListener(lid)
    listener.add_rule(callback=lambda message: message.content)
    dispatcher.register(listener)


@contextmanager
def _producer(broker: LocalBroker) -> Iterator[KafkaProducer]:
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, max_request_size=4 << 20)
    try:
        yield producer
    finally:
        producer.close()


def _foreign_request(broker: LocalBroker, namespace: str, before: list[bytes | None]) -> Any:
    """What a program with only a Kafka client does: one record out, the reply read back.

    It produces ``before`` (raw values) and then one envelope onto the inbox of process
    "a", addressed to its listener "echo", and reads its own inbox until the reply.
    """
    request = {
        "v": 1,
        "process": "js",
        "incarnation": 1,
        "frame": [0, "ping", {"n": 1}, "js-1", "js-inbox", "echo", None, "js", 1, None],
    }
    with _producer(broker) as producer:
        for value in before:
            producer.send(inbox_topic(namespace, "a"), value, key=b"mallory", partition=0)
        producer.send(
            inbox_topic(namespace, "a"),
            pydantic_core.to_json(request),
            key=b"js",
            partition=0,
        )
        producer.flush(10)
    consumer = KafkaConsumer(
        bootstrap_servers=broker.bootstrap, fetch_max_wait_ms=5, enable_auto_commit=False
    )
    try:
        partition = TopicPartition(inbox_topic(namespace, "js"), 0)
        consumer.assign([partition])
        consumer.seek(partition, 0)
        while True:
            for records in consumer.poll(timeout_ms=1000).values():
                for record in records:
                    envelope = pydantic_core.from_json(record.value)
                    frame = envelope["frame"]
                    # Other frames (the directory, heartbeats) are not for this client.
                    if frame[0] == 0 and frame[8] & 2 and frame[3] == "js-1":
                        return envelope
    finally:
        consumer.close()


@pytest.mark.anyio
async def test_a_foreign_kafka_client_sends_one_record_and_reads_the_reply(
    broker: LocalBroker, kafka_url: str, namespace: str
) -> None:
    with anyio.fail_after(TIMEOUT):
        async with MessageDispatcher("a", listen=[kafka_url]) as a:
            _echo(a, "echo")
            envelope = await anyio.to_thread.run_sync(
                partial(_foreign_request, broker, namespace, [])
            )
    assert (envelope["process"], envelope["v"]) == ("a", 1)
    _, mtype, content, mid, source, destination, _group, process, flags, error = envelope["frame"]
    assert (mtype, content, mid, source, destination, process, flags, error) == (
        "ping",
        {"n": 1},
        "js-1",
        "echo",
        "js-inbox",
        "a",
        2,
        None,
    )


def _committed(broker: LocalBroker, topic: str) -> tuple[int | None, int]:
    """The offset the inbox's group committed, and how many records the inbox holds."""
    consumer = KafkaConsumer(
        bootstrap_servers=broker.bootstrap, group_id=topic, enable_auto_commit=False
    )
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        committed = consumer.committed(partition)
        consumer.seek(partition, 0)
        count = 0
        while True:
            polled = consumer.poll(timeout_ms=500)
            if not polled:
                return committed, count
            count += sum(len(records) for records in polled.values())
    finally:
        consumer.close()


@pytest.mark.anyio
async def test_hostile_records_are_dropped_logged_and_committed_past(
    broker: LocalBroker, kafka_url: str, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    transport = KafkaTransport()
    hostile = hostile_values("a", transport.options.max_frame_size)
    with anyio.fail_after(TIMEOUT), caplog.at_level(logging.WARNING, "dispatchio"):
        async with MessageDispatcher("a", listen=[kafka_url], transports=[transport]) as a:
            _echo(a, "echo")
            # The reply to the record after them proves the inbox went on past them.
            envelope = await anyio.to_thread.run_sync(
                partial(_foreign_request, broker, namespace, hostile)
            )
            dropped = transport.dropped_records
    committed, count = await anyio.to_thread.run_sync(
        partial(_committed, broker, inbox_topic(namespace, "a"))
    )
    assert envelope["frame"][2] == {"n": 1}
    # Seven are not envelopes; the eighth is one, around a frame the core refuses.
    assert dropped == len(hostile) - 1
    logged = [r.message for r in caplog.records if r.message.startswith("dropped a ")]
    assert len(logged) == len(hostile)
    assert (committed, count) == (len(hostile) + 1, len(hostile) + 1)


@pytest.mark.anyio
async def test_a_message_at_the_default_frame_cap_crosses(kafka_url: str) -> None:
    with anyio.fail_after(TIMEOUT):
        async with (
            MessageDispatcher("a", listen=[kafka_url]) as a,
            MessageDispatcher("b", listen=[kafka_url]) as b,
        ):
            listener = BasicMessageListener("len")
            listener.add_rule(callback=lambda message: len(message.content))
            b.register(listener)
            await a.wait_for_listener("len", timeout=TIMEOUT)
            # The dispatcher's default max_message_size is the frame cap minus 64.
            content = "x" * ((1 << 20) - 64 - 100)
            reply = await a.request(Message("big", content, destination="len"))
    assert reply.content == len(content)


@pytest.mark.anyio
async def test_async_with_does_not_wait_for_an_unreachable_broker() -> None:
    # Nothing listens on port 1: kafka-python would block for seconds on the loop.
    with anyio.fail_after(2.0):
        async with MessageDispatcher("a", listen=["kafka://127.0.0.1:1/nowhere"]) as a:
            assert a.listen_urls == ("kafka://127.0.0.1:1/nowhere",)
