"""The TCP transport's options (`TcpOptions`) and its URLs (``tcp://host:port``)."""

from __future__ import annotations

import ipaddress
import ssl
import textwrap
import urllib.parse

from pydantic import Field, model_validator

from dispatchio import TransportConfigError
from dispatchio.transport import TransportOptions
from dispatchio_tcp._framing import MAX_FRAME_LIMIT

__all__ = ["DEFAULT_HOST", "SCHEME", "TcpOptions", "format_url", "is_loopback", "parse_url"]

SCHEME = "tcp"
DEFAULT_HOST = "127.0.0.1"


class TcpOptions(TransportOptions):
    """Options of the TCP transport (all optional)."""

    max_frame_size: int = Field(
        default=1 << 20,
        ge=1024,
        le=MAX_FRAME_LIMIT,
        description="Largest frame accepted or sent, in bytes; checked before allocating.",
    )
    secret: str | None = Field(
        default=None,
        min_length=1,
        repr=False,
        description=(
            "Shared secret every peer must prove it knows (HMAC-SHA256 over fresh nonces; "
            "never sent). None: no authentication."
        ),
    )
    ssl_context: ssl.SSLContext | None = Field(
        default=None,
        description=(
            "TLS for accepted connections, and for dialing too unless ssl_client_context "
            "is set. None: plain TCP."
        ),
    )
    ssl_client_context: ssl.SSLContext | None = Field(
        default=None,
        description="TLS for connections this process dials (default: ssl_context).",
    )
    handshake_timeout: float = Field(
        default=5.0, gt=0, description="Seconds a new connection has to finish its handshake."
    )
    max_handshakes: int = Field(
        default=64,
        ge=1,
        description=(
            "Accepted connections at most still in their handshake at once; a new one over "
            "it closes the oldest (so silent connections cannot lock peers out)."
        ),
    )
    max_receive_bytes: int | None = Field(
        default=None,
        ge=1024,
        description=(
            "Bytes of incomplete large frames (past each link's usual receive buffer: 256 KiB, "
            "64 KiB on trio or TLS) held "
            "across all links at once; a link whose frame would pass it is dropped. "
            "None: 64 x max_frame_size."
        ),
    )
    insecure: bool = Field(
        default=False,
        description=(
            "Allow listening beyond loopback with neither secret nor ssl_context (any host "
            "that reaches the port can then join the mesh)."
        ),
    )
    reconnect_min: float = Field(
        default=0.05, gt=0, description="First delay, in seconds, before dialing a peer again."
    )
    reconnect_max: float = Field(
        default=2.0, gt=0, description="Longest delay, in seconds, between two dial attempts."
    )

    @model_validator(mode="after")
    def _check(self) -> TcpOptions:
        if self.max_receive_bytes is not None and self.max_receive_bytes < self.max_frame_size:
            raise ValueError("max_receive_bytes must not be below max_frame_size")
        if self.reconnect_max < self.reconnect_min:
            raise ValueError("reconnect_max must not be below reconnect_min")
        server, client = self.ssl_context, self.ssl_client_context or self.ssl_context
        if server is not None and server.protocol == ssl.PROTOCOL_TLS_CLIENT:
            raise ValueError("ssl_context is a client-only context (PROTOCOL_TLS_CLIENT)")
        if client is not None and client.protocol == ssl.PROTOCOL_TLS_SERVER:
            raise ValueError(
                "ssl_context is a server-only context; set ssl_client_context for dialing"
            )
        if self.ssl_client_context is not None and self.ssl_context is None:
            raise ValueError("ssl_client_context needs ssl_context (peers dial both ways)")
        return self


def _document(options: type[TransportOptions]) -> str:
    """The class docstring followed by every field: name, type, default, description.

    Generated from the fields, so ``help(TcpOptions)`` shows the options as they are.
    """
    lines = [(options.__doc__ or "").strip(), "", "Options (keyword arguments or URL query):"]
    for name, info in options.model_fields.items():
        kind = getattr(info.annotation, "__name__", None) or str(info.annotation)
        lines.append(f"    {name}: {kind} = {info.default!r}")
        lines.extend(
            textwrap.wrap(
                info.description or "", 80, initial_indent=" " * 8, subsequent_indent=" " * 8
            )
        )
    return "\n".join(lines) + "\n"


TcpOptions.__doc__ = _document(TcpOptions)


def parse_url(url: str, *, listening: bool) -> tuple[str, int]:
    """``(host, port)`` of a ``tcp://`` URL.

    Raises:
        TransportConfigError: another scheme, a path, or a missing or bad port.
    """
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TransportConfigError(f"{url!r}: {exc}") from exc
    if parts.scheme != SCHEME:
        raise TransportConfigError(f"{url!r} is not a tcp:// URL")
    if parts.path not in ("", "/"):
        raise TransportConfigError(f"{url!r}: a tcp:// URL has no path")
    if port is None:
        if not listening:
            raise TransportConfigError(f"{url!r}: missing port")
        port = 0
    return parts.hostname or DEFAULT_HOST, port


def format_url(host: str, port: int) -> str:
    """``tcp://host:port``, with an IPv6 host in brackets."""
    return f"tcp://[{host}]:{port}" if ":" in host else f"tcp://{host}:{port}"


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an IP address or ``localhost``) can be reached from this machine only.

    Any other name counts as reachable from elsewhere: what it resolves to may change.
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.partition("%")[0]).is_loopback
    except ValueError:
        return False
