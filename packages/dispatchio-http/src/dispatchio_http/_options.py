"""Options of the HTTP transport and its gateway (`HttpOptions`)."""

from __future__ import annotations

import ssl

from pydantic import Field, field_validator, model_validator

from dispatchio.transport import TransportOptions

__all__ = ["HttpOptions"]


class HttpOptions(TransportOptions):
    """Options of the HTTP transport (all optional).

    Set them in ``transport_options={"http": {...}}`` or as URL query parameters, except
    ``token``, which never goes in a URL (URLs are gossiped to every peer).
    """

    token: str | None = Field(
        default=None,
        min_length=1,
        repr=False,
        description=(
            "Bearer token every peer and gateway client must present (compared in constant"
            " time, never logged). /v1/health never needs it. None: no authentication."
        ),
    )
    insecure: bool = Field(
        default=False,
        description=(
            "Allow listening beyond loopback with neither token nor TLS (https://) (any "
            "host that reaches the port can then join the mesh and use the gateway)."
        ),
    )
    gateway: bool = Field(
        default=True,
        description="Serve the gateway API for plain HTTP clients under {prefix}/v1/.",
    )
    max_body_size: int | None = Field(
        default=None,
        ge=1024,
        description="Largest request body accepted, in bytes (default: max_frame_size).",
    )
    max_pending_body_bytes: int | None = Field(
        default=None,
        ge=1024,
        description=(
            "Bytes of request bodies that gateway requests in flight hold at once, over"
            " every connection (from before a body is read until its response); a request"
            " whose body would pass it is answered 503 busy and its connection closed."
            " None: 64 x the body cap (max_body_size)."
        ),
    )
    max_streams: int = Field(
        default=256, ge=1, description="Event streams (GET /v1/events) open at once."
    )
    max_concurrent_requests: int = Field(
        default=1024,
        ge=1,
        description="Gateway requests handled at once; more are answered 503.",
    )
    header_timeout: float = Field(
        default=5.0,
        gt=0,
        description="Seconds a client has to send its request headers before it is dropped.",
    )
    body_timeout: float = Field(
        default=10.0,
        gt=0,
        description=(
            "Seconds a gateway request has, once its headers are in, to send its whole body"
            " (else 408 and the connection is closed)."
        ),
    )
    cors_origins: tuple[str, ...] = Field(
        default=(),
        description="Origins (scheme://host[:port]) whose pages may call the gateway (none).",
    )
    ssl_context: ssl.SSLContext | None = Field(
        default=None,
        description=(
            "TLS for https:// listen URLs (required there), and for dialing https:// peers"
            " too unless ssl_client_context is set."
        ),
    )
    ssl_client_context: ssl.SSLContext | None = Field(
        default=None,
        description=(
            "TLS for dialing https:// peers (default: ssl_context if it can dial, else the"
            " system's trusted CAs)."
        ),
    )
    max_receive_bytes: int | None = Field(
        default=None,
        ge=1024,
        description=(
            "Bytes of frames larger than one WebSocket message (256 KiB) being reassembled"
            " across all peer links at once; a link whose frame would pass it is dropped."
            " None: 64 x max_frame_size."
        ),
    )
    handshake_timeout: float = Field(
        default=5.0,
        gt=0,
        description="Seconds a dial has to connect and finish the peer handshake.",
    )
    reconnect_min: float = Field(
        default=0.05, gt=0, description="First delay, in seconds, before dialing a peer again."
    )
    reconnect_max: float = Field(
        default=2.0, gt=0, description="Longest delay, in seconds, between two dial attempts."
    )

    @field_validator("token")
    @classmethod
    def _printable(cls, token: str | None) -> str | None:
        # It goes in a header: visible ASCII only (RFC 6750's token charset is narrower).
        if token is not None and not all("!" <= char <= "~" for char in token):
            raise ValueError("the token may hold only visible ASCII characters, no spaces")
        return token

    @property
    def body_limit(self) -> int:
        """The effective request-body cap."""
        return self.max_frame_size if self.max_body_size is None else self.max_body_size

    @property
    def pending_body_limit(self) -> int:
        """The effective budget of request bodies held at once."""
        if self.max_pending_body_bytes is None:
            return 64 * self.body_limit
        return self.max_pending_body_bytes

    @model_validator(mode="after")
    def _check(self) -> HttpOptions:
        if self.reconnect_max < self.reconnect_min:
            raise ValueError("reconnect_max must not be below reconnect_min")
        if self.max_receive_bytes is not None and self.max_receive_bytes < self.max_frame_size:
            raise ValueError("max_receive_bytes must not be below max_frame_size")
        if self.pending_body_limit < self.body_limit:
            raise ValueError(
                "max_pending_body_bytes must not be below the body cap"
                f" ({self.body_limit} bytes: max_body_size, else max_frame_size)"
            )
        server, client = self.ssl_context, self.ssl_client_context
        if server is not None and server.protocol == ssl.PROTOCOL_TLS_CLIENT:
            raise ValueError(
                "ssl_context is a client-only context (PROTOCOL_TLS_CLIENT);"
                " set it as ssl_client_context"
            )
        if client is not None and client.protocol == ssl.PROTOCOL_TLS_SERVER:
            raise ValueError("ssl_client_context is a server-only context (PROTOCOL_TLS_SERVER)")
        for origin in self.cors_origins:
            if origin == "*" or "://" not in origin or origin.endswith("/"):
                raise ValueError(
                    f"cors_origins entry {origin!r} must be an origin like https://app.example"
                )
        return self
