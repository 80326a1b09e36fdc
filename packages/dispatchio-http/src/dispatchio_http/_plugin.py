"""Entry point of the ``dispatchio`` group: registers the ``http`` scheme lazily.

Importing this module must stay cheap: the transport module (and aiohttp) is named,
not imported.
"""

from __future__ import annotations

import dispatchio
from dispatchio.hookspecs import RegisterTransport


@dispatchio.hookimpl
def dispatchio_register_transports(register: RegisterTransport) -> None:
    """Register `HttpTransport` for ``http://`` URLs and `HttpsTransport` for ``https://``."""
    register("http", "dispatchio_http._transport:HttpTransport")
    register("https", "dispatchio_http._transport:HttpsTransport")
