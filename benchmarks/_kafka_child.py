"""The receiving process of the Kafka one-way benchmarks (see bench_kafka.py).

``python _kafka_child.py raw BOOTSTRAP TOPIC N``: a raw kafka-python consumer of TOPIC.
``python _kafka_child.py dispatchio URL N``: a dispatcher "bench-b" with listener "sink".
Each prints ``ready`` once it consumes, then ``done <seconds> <in order>`` when N
records or messages arrived (seconds from the first one to the last).
"""

from __future__ import annotations

import sys
import time
import warnings
from typing import Any


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def raw(bootstrap: str, topic: str, n: int) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import kafka
    consumer = kafka.KafkaConsumer(
        bootstrap_servers=bootstrap, fetch_max_wait_ms=5, enable_auto_commit=False
    )
    partition = kafka.TopicPartition(topic, 0)
    consumer.assign([partition])
    consumer.seek(partition, 1)  # past the warm-up record
    consumer.poll(timeout_ms=100)
    say("ready")
    got, first = 0, 0.0
    while got < n:
        for records in consumer.poll(timeout_ms=200, max_records=500).values():
            if not got:
                first = time.perf_counter()
            got += len(records)
    say(f"done {time.perf_counter() - first} 1")
    consumer.close()


async def sink(url: str, n: int) -> None:
    import anyio

    from dispatchio import BasicMessageListener, Message, MessageDispatcher

    received: list[int] = []
    complete = anyio.Event()
    first = 0.0

    def record(message: Message) -> None:
        nonlocal first
        if not received:
            first = time.perf_counter()
        received.append(message.content[0])
        if len(received) == n:
            complete.set()

    listener = BasicMessageListener("sink")
    listener.add_rule(callback=record)
    options: dict[str, Any] = {"kafka": {"fetch_max_wait_ms": 5, "durable_for": 0}}
    dispatcher = MessageDispatcher("bench-b", listen=[url], transport_options=options)
    dispatcher.register(listener)
    async with dispatcher:
        await dispatcher.wait_for_peer("bench-a", timeout=30)
        say("ready")
        await complete.wait()
        say(f"done {time.perf_counter() - first} {int(received == list(range(n)))}")


if __name__ == "__main__":
    if sys.argv[1] == "raw":
        raw(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        import anyio

        anyio.run(sink, sys.argv[2], int(sys.argv[3]))
