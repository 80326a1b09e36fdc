"""The link handshake: who is on the other end, and (optionally) can it prove the secret.

Wire format, each side sending first and reading second (so neither waits for the
other)::

    hello   = b"DSPT" + u16 version + u16 length + JSON
              {"process", "incarnation", "urls", "nonce" (32 hex digits), "auth": bool}
    proof   = HMAC-SHA256(secret, parts)       32 bytes, only when both sides have "auth"
    verdict = 1 byte, sent by the *arbiter* only (`arbitrates`: the side whose
              str(process) is smaller): `ACCEPT` = this link is the one link between
              the pair, `REJECT` = a duplicate, closed (`verdict` decides)

The proof covers a fixed tag, the prover's role (dialer or listener), both nonces and
both process IDs, so it cannot be replayed on another connection nor reflected back;
the secret itself never goes on the wire. Everything here is pure, so it can be fuzzed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import struct
from typing import Any, NamedTuple

from dispatchio import ListenerId, TransportError

__all__ = [
    "ACCEPT",
    "MAGIC",
    "MAX_HELLO",
    "PREFIX",
    "PROOF_SIZE",
    "REJECT",
    "VERSION",
    "HandshakeError",
    "Hello",
    "arbitrates",
    "decode_body",
    "decode_hello",
    "decode_prefix",
    "encode_hello",
    "make_proof",
    "verdict",
]

MAGIC = b"DSPT"
#: Protocol version; a peer with another one is refused.
VERSION = 1
#: Magic, version and body length.
PREFIX = struct.Struct(">4sHH")
#: The largest hello (prefix included) a peer may send.
MAX_HELLO = 4096
PROOF_SIZE = hashlib.sha256().digest_size
NONCE_SIZE = 16
#: The arbiter's verdict on a new link.
ACCEPT = b"\x01"
REJECT = b"\x00"
_TAG = b"dispatchio-auth-v1"
_MAX_ID = 256


class HandshakeError(TransportError):
    """The peer's handshake is malformed, of another version, or fails authentication."""


class Hello(NamedTuple):
    """One side's hello."""

    process: ListenerId
    incarnation: int
    urls: tuple[str, ...]
    nonce: bytes
    auth: bool


def encode_hello(hello: Hello) -> bytes:
    """The bytes of ``hello`` on the wire.

    Raises:
        HandshakeError: it would exceed `MAX_HELLO` (too many or too long URLs).
    """
    body = json.dumps(
        {
            "process": hello.process,
            "incarnation": hello.incarnation,
            "urls": list(hello.urls),
            "nonce": hello.nonce.hex(),
            "auth": hello.auth,
        },
        separators=(",", ":"),
    ).encode()
    if PREFIX.size + len(body) > MAX_HELLO:
        raise HandshakeError(f"hello of {PREFIX.size + len(body)} bytes exceeds {MAX_HELLO}")
    return PREFIX.pack(MAGIC, VERSION, len(body)) + body


def decode_prefix(data: bytes) -> int:
    """Check the fixed prefix (`PREFIX.size` bytes); return the body length to read.

    Raises:
        HandshakeError: not a dispatchio peer, another protocol version, or too long.
    """
    if len(data) != PREFIX.size:
        raise HandshakeError(f"hello prefix must be {PREFIX.size} bytes, got {len(data)}")
    magic, version, length = PREFIX.unpack(data)
    if magic != MAGIC:
        raise HandshakeError(f"not a dispatchio tcp peer (magic {bytes(magic)!r})")
    if version != VERSION:
        raise HandshakeError(f"protocol version {version} is not supported (this is {VERSION})")
    if PREFIX.size + length > MAX_HELLO:
        raise HandshakeError(f"hello of {PREFIX.size + length} bytes exceeds {MAX_HELLO}")
    return int(length)


def _field(obj: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = obj.get(name)
    if not isinstance(value, kind) or isinstance(value, bool) is not (kind is bool):
        raise HandshakeError(f"hello field {name!r} is missing or malformed")
    return value


def decode_body(body: bytes) -> Hello:
    """Parse the JSON body of a hello.

    Raises:
        HandshakeError: anything malformed, named.
    """
    try:
        obj = json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise HandshakeError(f"hello is not JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise HandshakeError("hello is not a JSON object")
    process = _field(obj, "process", (str, int))
    if len(str(process)) > _MAX_ID or process == "":
        raise HandshakeError("hello field 'process' is empty or too long")
    incarnation = _field(obj, "incarnation", int)
    urls = _field(obj, "urls", list)
    if not all(isinstance(url, str) for url in urls):
        raise HandshakeError("hello field 'urls' must be a list of strings")
    nonce_hex = _field(obj, "nonce", str)
    try:
        nonce = bytes.fromhex(nonce_hex)
    except ValueError:
        nonce = b""
    if len(nonce) != NONCE_SIZE:
        raise HandshakeError(f"hello field 'nonce' must be {NONCE_SIZE} bytes in hex")
    auth = _field(obj, "auth", bool)
    return Hello(process, incarnation, tuple(urls), nonce, auth)


def decode_hello(data: bytes) -> Hello:
    """Parse a whole hello (prefix and body), as sent by `encode_hello`.

    Raises:
        HandshakeError: anything malformed, of another version, or of the wrong length.
    """
    length = decode_prefix(bytes(data[: PREFIX.size]))
    if len(data) != PREFIX.size + length:
        raise HandshakeError(f"hello body must be {length} bytes, got {len(data) - PREFIX.size}")
    return decode_body(bytes(data[PREFIX.size :]))


def _part(value: ListenerId | bytes) -> bytes:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return struct.pack(">I", len(raw)) + raw


def make_proof(secret: str, prover: Hello, verifier: Hello, *, prover_dialed: bool) -> bytes:
    """HMAC-SHA256 proving ``prover`` knows ``secret``, bound to this very connection."""
    message = b"".join(
        (
            _TAG,
            b"D" if prover_dialed else b"L",
            _part(prover.nonce),
            _part(verifier.nonce),
            _part(prover.process),
            _part(verifier.process),
        )
    )
    return hmac.new(secret.encode(), message, hashlib.sha256).digest()


def arbitrates(local: ListenerId, remote: ListenerId) -> bool:
    """Whether ``local`` decides which link of the pair stays: the smaller str(process)."""
    return str(local) < str(remote)


def verdict(existing: int | None, incoming: int) -> bytes:
    """The arbiter's verdict on a new link to a peer of incarnation ``incoming``.

    ``existing`` is the incarnation of the link it has to that process already (None:
    none). There is never more than one link per pair, so that frames to a peer never
    overtake each other: the link already there wins, unless the peer restarted (a new
    incarnation), whose new link replaces the old one.
    """
    return REJECT if existing == incoming else ACCEPT
