"""Entry point of the ``dispatchio`` group: registers the ``tcp`` scheme lazily.

Importing this module must stay cheap: the transport module is named, not imported.
"""

from __future__ import annotations

import dispatchio
from dispatchio.hookspecs import RegisterTransport


@dispatchio.hookimpl
def dispatchio_register_transports(register: RegisterTransport) -> None:
    """Register `TcpTransport` for ``tcp://`` URLs."""
    register("tcp", "dispatchio_tcp._transport:TcpTransport")
