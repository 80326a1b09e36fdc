"""Instructions per message of the TCP one-way path, counted by callgrind (valgrind).

Usage: ``python benchmarks/instructions.py [--messages N]`` (``nox -s instructions``).

A rate measured on a shared machine moves by a factor of two from one hour to the next
(pyzmq PUSH/PULL read 320,000 to 750,000 msg/s on the 2-core development machine in one
week). The number of instructions a process executes for the same work does not:
callgrind counts them whatever else the machine does (the same total to within 1 %
from run to run). So this script is the yardstick for a change to the hot paths of
bench_tcp's row T3; the rate stays the target.

Each figure is the difference between two runs, one of ``N / 10`` messages and one of
``N + N / 10``, divided by ``N``: start-up, imports and connecting cancel out. Both runs
go at once, one per core. Only user-space instructions are counted: the kernel's part
(socket writes and reads, about 5 % of the sender's CPU time in the bench) is not in it.

Rows, for dispatchio (a dispatcher on asyncio sending ``Message("data", i,
destination="sink")`` to the ``dio`` child of ``_tcp_child.py``, as T3 does) and for
pyzmq PUSH/PULL (the ``zmq`` child, 100-byte messages, as T3b's peer), in the same run:

* sender: this side under callgrind, the child running normally;
* receiver: the child under callgrind, the sender running normally (dispatchio's backs
  off when its outbox is full; pyzmq's blocks at its high-water mark).

Every run checks that the receiver got every message, in order.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import re
import shutil
import struct
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any, cast

CHILD = Path(__file__).with_name("_tcp_child.py")
HERE = Path(__file__).resolve()
REPORT = struct.Struct(">QQ")
SEQ = struct.Struct(">Q")
FILLER = b"x" * 92  # with the sequence number: the 100-byte payload of bench_tcp's peers
_COLLECTED = re.compile(r"Collected : (\d+)")


# --------------------------------------------------------------------------- the senders


def _start_child(mode: Sequence[str], *, under: Sequence[str] = ()) -> tuple[Any, dict[str, Any]]:
    """Start ``_tcp_child.py mode`` (prefixed by ``under``, e.g. valgrind); its ready line."""
    proc = subprocess.Popen(
        [*under, sys.executable, str(CHILD), *mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE if under else None,
        text=True,
    )
    line = cast("IO[str]", proc.stdout).readline()
    if not line:
        raise RuntimeError(f"the child {' '.join(mode)} exited with code {proc.wait()}")
    return proc, json.loads(line)


def _stop_child(proc: Any) -> str:
    """Close the child's stdin (its stop signal); return its stderr (valgrind's report)."""
    cast("IO[str]", proc.stdin).close()
    err = proc.stderr.read() if proc.stderr is not None else ""
    proc.wait(600)
    return str(err)


def send_dio(url: str, n: int) -> None:
    """Send ``n`` one-way messages to the sink at ``url``, then the fence; check it."""
    import anyio

    from dispatchio import Message, MessageDispatcher, OutboxFullError

    async def main() -> None:
        # A child under callgrind runs some 50 times slower: its heartbeats come late.
        dispatcher = MessageDispatcher(
            "instructions", connect=[url], reply_timeout=900.0, heartbeat_interval=30.0
        )
        async with dispatcher:
            await dispatcher.wait_for_listener("sink", timeout=300)
            send = dispatcher.send
            for i in range(n):
                while True:
                    try:
                        await send(Message("data", i, destination="sink"))
                        break
                    except OutboxFullError:  # the receiver runs under callgrind
                        await anyio.sleep(0.005)
            reply = await dispatcher.request(Message("done", None, destination="sink"))
            if reply.content["count"] != n or not reply.content["in_order"]:
                raise RuntimeError(f"the sink reports {reply.content}, {n} were sent")

    anyio.run(main)


def send_zmq(ports: dict[str, int], n: int) -> None:
    """Push ``n`` messages to the zmq child's PULL socket, then the fence; check it."""
    import zmq

    ctx = zmq.Context()
    try:
        push = ctx.socket(zmq.PUSH)
        ack = ctx.socket(zmq.PULL)
        push.connect(f"tcp://127.0.0.1:{ports['pull']}")
        ack.connect(f"tcp://127.0.0.1:{ports['ack']}")
        send = push.send
        pack = SEQ.pack
        for i in range(n):
            send(pack(i) + FILLER)
        send(b"")
        count, in_order = REPORT.unpack(ack.recv())
        if count != n or not in_order:
            raise RuntimeError(f"the PULL side got {count} (in order: {bool(in_order)}) of {n}")
    finally:
        ctx.destroy(linger=0)


SENDERS: dict[str, tuple[tuple[str, ...], Callable[[Any, int], None]]] = {
    "dio": (("dio", "asyncio"), lambda info, n: send_dio(info["url"], n)),
    "zmq": (("zmq",), send_zmq),
}


def _sender_main(peer: str, n: int) -> None:
    """This process is the sender (the one under callgrind): start the child, send."""
    mode, send = SENDERS[peer]
    proc, info = _start_child(mode)
    try:
        send(info, n)
    finally:
        _stop_child(proc)


# --------------------------------------------------------------------------- counting


def _callgrind(out: Path) -> list[str]:
    return ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]


def _collected(report: str) -> int:
    found = _COLLECTED.search(report)
    if found is None:
        raise RuntimeError(f"no instruction count in valgrind's report:\n{report[-2000:]}")
    return int(found.group(1))


def count_sender(peer: str, n: int, *, tmp: Path) -> int:
    """Instructions of one whole sender process (under callgrind) sending ``n``."""
    out = tmp / f"sender-{peer}-{n}.out"
    done = subprocess.run(
        [*_callgrind(out), sys.executable, str(HERE), "--as-sender", peer, str(n)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise RuntimeError(f"the {peer} sender failed:\n{done.stderr[-3000:]}")
    return _collected(done.stderr)


def count_receiver(peer: str, n: int, *, tmp: Path) -> int:
    """Instructions of one whole receiving child (under callgrind) taking ``n``."""
    mode, send = SENDERS[peer]
    proc, info = _start_child(mode, under=_callgrind(tmp / f"receiver-{peer}-{n}.out"))
    try:
        send(info, n)
    finally:
        report = _stop_child(proc)
    return _collected(report)


def per_message(count: Callable[[int], int], n: int) -> float:
    """(count(n + n/10) - count(n/10)) / n, the two runs at once."""
    small = max(1, n // 10)
    with ThreadPoolExecutor(2) as pool:
        low, high = pool.map(count, (small, small + n))
    return (high - low) / n


@contextlib.contextmanager
def _scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="dispatchio-instructions-") as name:
        yield Path(name)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=20_000, help="N (default 20,000)")
    parser.add_argument("--as-sender", nargs=2, metavar=("PEER", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.as_sender:
        _sender_main(args.as_sender[0], int(args.as_sender[1]))
        return 0
    if shutil.which("valgrind") is None:
        print("instructions: valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    n = args.messages
    print(f"TCP one-way, user-space instructions per message (callgrind; N = {n:,})")
    rows: dict[str, dict[str, float]] = {}
    with _scratch() as tmp:
        for peer in SENDERS:
            rows[peer] = {
                "sender": per_message(functools.partial(count_sender, peer, tmp=tmp), n),
                "receiver": per_message(functools.partial(count_receiver, peer, tmp=tmp), n),
            }
            print(f"  .. {peer}: done", flush=True)
    dio, zmq = rows["dio"], rows["zmq"]
    print(f"{'':22}| {'dispatchio (T3)':>16} | {'pyzmq PUSH/PULL':>16} | ratio")
    for side in ("sender", "receiver"):
        print(
            f"{side:22}| {dio[side]:>16,.0f} | {zmq[side]:>16,.0f} | {dio[side] / zmq[side]:.2f}x"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
