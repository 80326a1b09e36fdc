"""Hostile HTTP for a live dispatchio-http server: raw sockets, no HTTP client library.

Each function speaks to ``http://host:port[/prefix]`` and returns what the server did
(its status line, or that it closed the connection), so tests can assert the answer.
"""

from __future__ import annotations

import base64
import json
import os
import random
import secrets

import anyio
import anyio.abc

from dispatchio_http._transport import parse_url


async def connect(url: str) -> anyio.abc.SocketStream:
    """A plain TCP connection to the server of ``url``."""
    address = parse_url(url, listening=False)
    return await anyio.connect_tcp(address.host, address.port)


def prefix(url: str) -> str:
    return parse_url(url, listening=False).prefix


async def read_response(stream: anyio.abc.SocketStream) -> bytes:
    """Everything the server sends until it closes the connection (or stops, for a head)."""
    data = b""
    try:
        while True:
            data += await stream.receive()
            head, sep, body = data.partition(b"\r\n\r\n")
            if sep and b"content-length:" in head.lower():
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                if len(body) >= length:
                    return data
    except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionError):
        return data


async def status_of(stream: anyio.abc.SocketStream) -> tuple[int, bytes]:
    """The status code and the whole response (status 0: closed without answering)."""
    data = await read_response(stream)
    if not data.startswith((b"HTTP/1.1 ", b"HTTP/1.0 ")):
        return 0, data
    return int(data[9:12]), data


def _head(method: str, path: str, extra: str = "") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}".encode()


async def random_bytes(url: str, rng: random.Random) -> tuple[int, bytes]:
    """Bytes that are not HTTP at all."""
    async with await connect(url) as stream:
        await stream.send(rng.randbytes(4096))
        return await status_of(stream)


async def random_body(url: str, path: str, rng: random.Random) -> tuple[int, bytes]:
    """A POST whose body is random bytes, labelled JSON."""
    body = rng.randbytes(2048)
    async with await connect(url) as stream:
        await stream.send(
            _head(
                "POST",
                prefix(url) + path,
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n",
            )
            + body
        )
        return await status_of(stream)


async def huge_content_length(url: str, path: str) -> tuple[int, bytes]:
    """A Content-Length of a terabyte; only the head is sent, then the server must answer."""
    async with await connect(url) as stream:
        await stream.send(
            _head(
                "POST",
                prefix(url) + path,
                "Content-Type: application/json\r\nContent-Length: 1000000000000\r\n\r\n",
            )
            + b"{"
        )
        return await status_of(stream)


async def chunked_over_cap(url: str, path: str, cap: int) -> tuple[int, bytes]:
    """A chunked body that passes ``cap`` (sent until the server answers or closes)."""
    chunk = b"[" + b"1," * 4000
    async with await connect(url) as stream:
        await stream.send(
            _head(
                "POST",
                prefix(url) + path,
                "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
            )
        )
        sent = 0
        try:
            while sent <= 2 * cap:
                await stream.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
        except (anyio.BrokenResourceError, ConnectionError):
            pass
        return await status_of(stream)


async def cut_off_body(url: str, path: str) -> tuple[int, bytes]:
    """A body that stops half way, then the client hangs up."""
    async with await connect(url) as stream:
        await stream.send(
            _head(
                "POST",
                prefix(url) + path,
                "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n",
            )
            + b'{"type": "half'
        )
        await stream.send_eof()
        return await status_of(stream)


async def slowloris(url: str) -> tuple[int, bytes]:
    """Headers that never end: a few bytes, then a header line now and then, forever."""
    async with await connect(url) as stream:
        return await trickle(stream, _head("GET", prefix(url) + "/v1/health"))


async def trickle(stream: anyio.abc.SocketStream, start: bytes) -> tuple[int, bytes]:
    """Send ``start``, then a header line every 0.2 s, never ending the head.

    Returns the status of an answer (0 and nothing once the server closes without one).
    """
    await stream.send(start)
    try:
        while True:
            await stream.send(b"X-Slow: %d\r\n" % random.randrange(10**6))
            with anyio.move_on_after(0.2):
                data = await stream.receive()
                return (int(data[9:12]) if data.startswith(b"HTTP/1.1 ") else 0), data
    except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionError):
        return 0, b""


def _ws_key() -> str:
    return base64.b64encode(secrets.token_bytes(16)).decode()


def peer_hello(process: str) -> str:
    return json.dumps(
        {"v": 1, "process": process, "incarnation": 1, "urls": [], "nonce": "00" * 16}
    )


async def peer_upgrade(url: str, hello: str | None) -> tuple[int, bytes, anyio.abc.SocketStream]:
    """A WebSocket upgrade to the peer endpoint with ``hello`` (None: no hello header)."""
    stream = await connect(url)
    extra = (
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {_ws_key()}\r\nSec-WebSocket-Version: 13\r\n"
    )
    if hello is not None:
        extra += f"X-Dispatchio-Hello: {hello}\r\n"
    await stream.send(_head("GET", prefix(url) + "/v1/peer", extra + "\r\n"))
    data = b""
    while b"\r\n\r\n" not in data:
        try:
            data += await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            break
    status = int(data[9:12]) if data.startswith(b"HTTP/1.1 ") else 0
    return status, data, stream


def ws_frame(payload: bytes, opcode: int = 2, *, declared: int | None = None) -> bytes:
    """One masked client WebSocket frame (``declared`` overrides the length field)."""
    length = len(payload) if declared is None else declared
    if length < 126:
        head = bytes([0x80 | opcode, 0x80 | length])
    elif length < 65536:
        head = bytes([0x80 | opcode, 0x80 | 126]) + length.to_bytes(2, "big")
    else:
        head = bytes([0x80 | opcode, 0x80 | 127]) + length.to_bytes(8, "big")
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def hostile_peer(url: str, process: str, payload: bytes) -> None:
    """Link as a peer with a valid hello, send ``payload`` raw, wait to be dropped."""
    status, _, stream = await peer_upgrade(url, peer_hello(process))
    async with stream:
        if status != 101:
            return
        try:
            await stream.send(payload)
            while True:
                await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionError):
            return


async def send_hostile_http(url: str, *, max_frame_size: int, linger: float) -> None:
    """All of the above against ``url``, a slowloris running beside the rest."""
    rng = random.Random(7)
    async with anyio.create_task_group() as tg:
        tg.start_soon(slowloris, url)
        await random_bytes(url, rng)
        for path in ("/v1/messages", "/v1/peer", "/"):
            await random_body(url, path, rng)
            await huge_content_length(url, path)
            await cut_off_body(url, path)
        await chunked_over_cap(url, "/v1/messages", max_frame_size)
        await peer_upgrade_garbage(url, rng, max_frame_size)
        with anyio.move_on_after(linger):
            await anyio.sleep_forever()  # the slowloris gets its time to be dropped
        tg.cancel_scope.cancel()


async def peer_upgrade_garbage(url: str, rng: random.Random, max_frame_size: int) -> None:
    """Peer-link garbage: bad hellos, then bad frames on links with a good hello."""
    for hello in (None, "{not json", json.dumps({"v": 99}), "[]"):
        _, _, stream = await peer_upgrade(url, hello)
        await stream.aclose()
    bad_frames = [
        ws_frame(rng.randbytes(300)),  # no valid frame inside
        ws_frame((max_frame_size + 1).to_bytes(4, "big") + b"x" * 100),  # length over the cap
        ws_frame((1000).to_bytes(4, "big") + b"cut"),  # frame cut off by the message end
        ws_frame(b"hello", opcode=1),  # text on an established link
        ws_frame(b"", declared=1 << 40)[:14],  # a message declared far over the cap
        rng.randbytes(5000),  # not WebSocket at all
    ]
    for n, payload in enumerate(bad_frames):
        await hostile_peer(url, f"zz-hostile-{n}", payload)
