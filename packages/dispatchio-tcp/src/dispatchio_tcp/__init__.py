"""dispatchio-tcp: the ``tcp://`` transport for dispatchio (see `TcpTransport`).

The names are loaded on first use, so the entry point (`dispatchio_tcp._plugin`) can
import this package without importing the transport.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dispatchio_tcp._transport import TcpOptions, TcpTransport

__all__ = ["TcpOptions", "TcpTransport"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        value = getattr(importlib.import_module("dispatchio_tcp._transport"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
