"""Helpers for the dispatchio-http transport tests: running nodes, watching logs."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any

from dispatchio.testing import RecordingHandler
from dispatchio_http import HttpOptions, HttpsTransport, HttpTransport
from tests._transport_support import LogWatcher, serving
from tests._transport_support import Node as _Node
from tests._transport_support import watching_logs as _watching_logs

Node = _Node[HttpTransport]


def running(
    process: str,
    *,
    listen: tuple[str, ...] = ("http://127.0.0.1:0",),
    handler: RecordingHandler | None = None,
    **options: Any,
) -> AbstractAsyncContextManager[Node]:
    """Serve an `HttpTransport` (https for https listen URLs) for the block, then close it.

    The gateway is off: a `RecordingHandler` has no dispatcher to give it.
    """
    opts = HttpOptions.model_validate({"gateway": False, **options})
    tls = any(url.startswith("https") for url in listen) or bool(
        opts.ssl_context or opts.ssl_client_context
    )
    transport = HttpsTransport(opts) if tls else HttpTransport(opts)
    return serving(transport, process, listen, handler)


def watching_logs(name: str = "dispatchio") -> AbstractAsyncContextManager[LogWatcher]:
    """Attach a `LogWatcher` to logger ``name`` (and so its children) for the block."""
    return _watching_logs(name)
