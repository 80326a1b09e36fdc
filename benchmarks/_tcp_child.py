"""The other process of the TCP benchmarks (started by bench_tcp.py, never by hand).

Usage: ``python _tcp_child.py raw | zmq | dio <asyncio|trio>``

The child binds 127.0.0.1 on free ports, prints ONE JSON line on stdout saying where
(``{"echo": port, ...}`` or ``{"url": ...}``), then serves until its stdin reaches EOF.
``dio`` also answers a ``report`` line on stdin with one JSON line of totals.

Wire format of the raw and zmq peers: a frame is a 4-byte big-endian length and a
payload; one-way payloads start with an 8-byte big-endian sequence number, which the
sink checks (nothing lost, in order). A zero-length frame (raw) or empty message (zmq)
is the fence: the sink answers with 16 bytes, ``count`` and ``in_order`` (two big-endian
u64), for the frames since the previous fence, and starts counting again.
"""

from __future__ import annotations

import asyncio
import os
import struct
import sys
import threading

from _dio_child import ready, serve_dispatcher

HEAD = struct.Struct(">I")
HEAD_SEQ = struct.Struct(">IQ")
REPORT = struct.Struct(">QQ")


# --------------------------------------------------------------------------- raw asyncio


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Echo length-prefixed frames back, one write per frame."""
    readexactly = reader.readexactly
    write = writer.write
    unpack = HEAD.unpack
    try:
        while True:
            head = await readexactly(4)
            body = await readexactly(unpack(head)[0])
            write(head + body)
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def _sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Count one-way frames and check their sequence numbers; answer each fence."""
    buf = bytearray()
    count = expected = 0
    in_order = True
    unpack_head = HEAD.unpack_from
    unpack_seq = HEAD_SEQ.unpack_from
    try:
        while True:
            chunk = await reader.read(1 << 18)
            if not chunk:
                break
            buf += chunk
            pos = 0
            end = len(buf)
            while True:
                if end - pos >= 12:
                    n, seq = unpack_seq(buf, pos)
                elif end - pos >= 4 and unpack_head(buf, pos)[0] == 0:
                    n = seq = 0
                else:
                    break
                if n == 0:  # the fence
                    pos += 4
                    writer.write(REPORT.pack(count, in_order))
                    count = expected = 0
                    in_order = True
                    continue
                if end - pos - 4 < n:
                    break
                if seq != expected:
                    in_order = False
                expected = seq + 1
                count += 1
                pos += 4 + n
            del buf[:pos]
    except ConnectionError:
        pass
    finally:
        writer.close()


async def _raw_main() -> None:
    echo = await asyncio.start_server(_echo, "127.0.0.1", 0)
    sink = await asyncio.start_server(_sink, "127.0.0.1", 0)
    ready({"echo": echo.sockets[0].getsockname()[1], "sink": sink.sockets[0].getsockname()[1]})
    loop = asyncio.get_running_loop()
    while await loop.run_in_executor(None, sys.stdin.readline):
        pass
    echo.close()
    sink.close()


# --------------------------------------------------------------------------- pyzmq


def _zmq_main() -> None:
    import zmq

    ctx = zmq.Context()
    rep = ctx.socket(zmq.REP)
    pull = ctx.socket(zmq.PULL)
    ack = ctx.socket(zmq.PUSH)
    ports = {
        name: sock.bind_to_random_port("tcp://127.0.0.1")
        for name, sock in (("rep", rep), ("pull", pull), ("ack", ack))
    }

    def serve_rep() -> None:
        while True:
            rep.send(rep.recv())

    def serve_pull() -> None:
        unpack = struct.Struct(">Q").unpack_from
        count = expected = 0
        in_order = True
        recv = pull.recv
        while True:
            msg = recv()
            if not msg:
                ack.send(REPORT.pack(count, in_order))
                count = expected = 0
                in_order = True
                continue
            seq = unpack(msg)[0]
            if seq != expected:
                in_order = False
            expected = seq + 1
            count += 1

    for target in (serve_rep, serve_pull):
        threading.Thread(target=target, daemon=True).start()
    ready(ports)
    while sys.stdin.readline():
        pass
    # The serving threads block inside libzmq; closing sockets under them is not safe,
    # and the process is done: leave without tearing the context down.
    sys.stdout.flush()
    os._exit(0)


def main(argv: list[str]) -> None:
    mode = argv[0] if argv else ""
    if mode == "raw":
        asyncio.run(_raw_main())
    elif mode == "zmq":
        _zmq_main()
    elif mode == "dio" and len(argv) == 2:
        serve_dispatcher("tcp://127.0.0.1:0", argv[1])
    else:
        raise SystemExit(f"usage: {sys.argv[0]} raw | zmq | dio <asyncio|trio>")


if __name__ == "__main__":
    main(sys.argv[1:])
