"""The peer-link handshake, done in the WebSocket upgrade and the link's first message.

The dialer sends ``GET {prefix}/v1/peer`` with ``X-Dispatchio-Hello: <JSON>`` (and, with
a token, ``Authorization: Bearer <token>``, which the server's middleware checks as for
every route). The server refuses with a problem document and ``X-Dispatchio-Refused:
<code>``, or answers ``101`` and sends its own hello as the link's first (text)
message, so frames can follow it at once::

    hello = {"v": 1, "process": id, "incarnation": int, "urls": [str], "nonce": hex32}
            + "proof": hex64 in the server's hello when a token is set

The server's proof is HMAC-SHA256(token, tag | the dialer's nonce | both process IDs):
the dialer drops a server that cannot show it knows the token, so a wrong URL cannot
feed it frames. Exactly one link joins a pair: the side whose ``str(process)`` is the
smaller arbitrates. A server that arbitrates refuses a duplicate before answering
``101``; a dialer that arbitrates sends the text ``"accept"`` as its first message, or
closes the new link. Everything here is pure.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any, NamedTuple

from dispatchio import ListenerId, TransportError

__all__ = [
    "ACCEPT",
    "HELLO_HEADER",
    "MAX_HELLO",
    "NONCE_SIZE",
    "REFUSED_HEADER",
    "VERSION",
    "HandshakeError",
    "Hello",
    "decode_hello",
    "encode_hello",
    "make_proof",
]

#: Protocol version; a peer with another one is refused.
VERSION = 1
HELLO_HEADER = "X-Dispatchio-Hello"
#: Why a server refused a dial (``duplicate``, ``self``, ``bad_hello``, ``closing``, ...).
REFUSED_HEADER = "X-Dispatchio-Refused"
#: The arbitrating dialer's verdict, its first message on an accepted link.
ACCEPT = "accept"
#: The largest hello header value accepted, in characters.
MAX_HELLO = 4096
NONCE_SIZE = 16
_TAG = b"dispatchio-http-v1"
_MAX_ID = 256
_MAX_URLS = 64


class HandshakeError(TransportError):
    """A hello is malformed, of another version, or the peer failed authentication."""


class Hello(NamedTuple):
    """One side's hello."""

    process: ListenerId
    incarnation: int
    urls: tuple[str, ...]
    nonce: bytes
    #: The server's proof that it knows the token (empty without a token, or from a dialer).
    proof: bytes = b""


def encode_hello(hello: Hello) -> str:
    """The header value of ``hello`` (ASCII JSON).

    Raises:
        HandshakeError: it would exceed `MAX_HELLO` (too many or too long URLs).
    """
    obj: dict[str, Any] = {
        "v": VERSION,
        "process": hello.process,
        "incarnation": hello.incarnation,
        "urls": list(hello.urls),
        "nonce": hello.nonce.hex(),
    }
    if hello.proof:
        obj["proof"] = hello.proof.hex()
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=True)
    if len(text) > MAX_HELLO:
        raise HandshakeError(f"hello of {len(text)} characters exceeds {MAX_HELLO}")
    return text


def _field(obj: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = obj.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise HandshakeError(f"hello field {name!r} is missing or malformed")
    return value


def _hex(obj: dict[str, Any], name: str, size: int) -> bytes:
    try:
        raw = bytes.fromhex(_field(obj, name, str))
    except ValueError:
        raw = b""
    if len(raw) != size:
        raise HandshakeError(f"hello field {name!r} must be {size} bytes in hex")
    return raw


def decode_hello(text: str | None) -> Hello:
    """Parse a hello header value.

    Raises:
        HandshakeError: missing, malformed, too long or of another version, named.
    """
    if text is None:
        raise HandshakeError(f"no {HELLO_HEADER} header: not a dispatchio peer")
    if len(text) > MAX_HELLO:
        raise HandshakeError(f"hello of {len(text)} characters exceeds {MAX_HELLO}")
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise HandshakeError(f"hello is not JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise HandshakeError("hello is not a JSON object")
    version = obj.get("v")
    if version != VERSION:
        raise HandshakeError(f"protocol version {version!r} is not supported (this is {VERSION})")
    process = _field(obj, "process", (str, int))
    if len(str(process)) > _MAX_ID or process == "":
        raise HandshakeError("hello field 'process' is empty or too long")
    incarnation = _field(obj, "incarnation", int)
    urls = _field(obj, "urls", list)
    if len(urls) > _MAX_URLS or not all(isinstance(url, str) for url in urls):
        raise HandshakeError(f"hello field 'urls' must be at most {_MAX_URLS} strings")
    nonce = _hex(obj, "nonce", NONCE_SIZE)
    proof = _hex(obj, "proof", hashlib.sha256().digest_size) if "proof" in obj else b""
    return Hello(process, incarnation, tuple(urls), nonce, proof)


def _part(value: ListenerId | bytes) -> bytes:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return len(raw).to_bytes(4, "big") + raw


def make_proof(token: str, dialer: Hello, server: ListenerId) -> bytes:
    """The server's proof that it knows ``token``, bound to this dialer's fresh nonce."""
    message = b"".join((_TAG, _part(dialer.nonce), _part(dialer.process), _part(server)))
    return hmac.new(token.encode(), message, hashlib.sha256).digest()
