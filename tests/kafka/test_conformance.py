"""The transport conformance suite, run against dispatchio-kafka on the real test broker."""

from __future__ import annotations

import os
from functools import partial

import anyio.to_thread
import pytest
from kafka import KafkaProducer

from dispatchio.testing import TransportConformance
from dispatchio_kafka import LocalBroker
from dispatchio_kafka._envelope import inbox_topic
from dispatchio_kafka._transport import parse_url


def hostile_values(process: str, max_frame_size: int) -> list[bytes | None]:
    """Records no dispatchio process wrote: each must be dropped and committed past."""
    envelope = (
        b'{"v":1,"process":"mallory","incarnation":7,'
        b'"frame":[0,"ping",1,"m-1",null,"echo-b",null,"mallory",0,null]}'
    )
    return [
        os.urandom(512),
        envelope[: len(envelope) // 2],  # truncated JSON
        b'{"v":1,"process":["x"],"incarnation":"seven","frame":{}}',  # wrong types
        b'{"v":2,"process":"mallory","incarnation":7,"frame":[5]}',  # unknown version
        # A well-formed envelope around a short message frame: the core drops that one.
        b'{"v":1,"process":"mallory","incarnation":7,"frame":[0,"ping"]}',
        b"[1,2,3]",
        None,  # no value at all
        b'{"v":1,"process":"mallory","incarnation":7,"frame":[0,"' + b"x" * max_frame_size + b'"]}',
    ]


def produce(bootstrap: str, topic: str, values: list[bytes | None]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, max_request_size=4 << 20)
    try:
        for value in values:
            producer.send(topic, value, key=b"mallory", partition=0)
        producer.flush(10)
    finally:
        producer.close()


class TestKafkaConformance(TransportConformance):
    """Every property of `TransportConformance`, over ``kafka://`` through tansu."""

    # Three fetch round trips through the broker instead of one socket write: a little
    # more slack for a death to be noticed and reported.
    detector_slack = 2.0

    @pytest.fixture
    def transport_url(self, kafka_url: str) -> str:
        return kafka_url

    async def send_hostile_input(self, url: str) -> None:
        """Produce hostile records onto the inbox of the process at ``url`` ("b")."""
        servers, namespace = parse_url(url)
        topic = inbox_topic(namespace, "b")
        values = hostile_values("b", 1 << 20)
        await anyio.to_thread.run_sync(partial(produce, ",".join(servers), topic, values))


def test_broker_fixture_is_the_one_in_use(broker: LocalBroker, kafka_url: str) -> None:
    assert kafka_url.startswith(f"kafka://{broker.bootstrap}/")
