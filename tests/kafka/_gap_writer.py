"""A producer to another process's inbox, to be killed: ``python _gap_writer.py SERVERS TOPIC``.

It appends records as fast as it can (each one names the inbox's own process as its
sender, so the reader skips it without a log line), prints ``ready`` once the first is
acknowledged, and never stops: the test kills it mid-request, again and again.
"""

from __future__ import annotations

import sys
import time
import warnings


def main(servers: str, topic: str, process: str) -> None:
    with warnings.catch_warnings():  # kafka-python 3.0's import-time DeprecationWarning
        warnings.simplefilter("ignore", DeprecationWarning)
        from kafka import KafkaProducer

    producer = KafkaProducer(
        bootstrap_servers=servers,
        acks=-1,
        enable_idempotence=True,
        linger_ms=0,
        max_in_flight_requests_per_connection=1,
    )
    record = (
        b'{"v": 1, "process": "%s", "incarnation": 1, "frame": [0, "x", null, 1, null, null,'
        b' null, "%s", 0, "%s"]}' % (process.encode(), process.encode(), b"x" * 256)
    )
    producer.send(topic, record, partition=0).get(timeout=30)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    sent = 0
    while True:
        producer.send(topic, record, partition=0)
        sent += 1
        if sent % 5 == 0:
            time.sleep(0.001)  # many small requests: more of them cut off by the kill


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3])
