"""The broker fixture itself: a real broker on loopback that kafka-python can use."""

from __future__ import annotations

import socket

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from dispatchio_kafka import LocalBroker, local_broker


def test_broker_round_trips_a_record(broker: LocalBroker, namespace: str) -> None:
    topic = f"raw.{namespace}"
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
    try:
        metadata = producer.send(topic, b"hello", key=b"k", partition=0).get(timeout=10)
    finally:
        producer.close()
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, fetch_max_wait_ms=5)
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        consumer.seek(partition, metadata.offset)
        values: list[bytes] = []
        while not values:
            for records in consumer.poll(timeout_ms=1000).values():
                values.extend(record.value for record in records)
    finally:
        consumer.close()
    assert values == [b"hello"]


def test_broker_listens_on_loopback_only_and_stops() -> None:
    with local_broker() as running:
        assert running.bootstrap.startswith("127.0.0.1:")
        socket.create_connection(("127.0.0.1", running.port), timeout=2).close()
    assert running.process.returncode is not None
    try:
        socket.create_connection(("127.0.0.1", running.port), timeout=2).close()
    except ConnectionRefusedError:
        refused = True
    else:
        refused = False
    assert refused
