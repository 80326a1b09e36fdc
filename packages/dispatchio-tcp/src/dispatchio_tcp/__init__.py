"""dispatchio-tcp: the ``tcp://`` transport for dispatchio (see `TcpTransport`).

The names are loaded on first use, so the entry point (`dispatchio_tcp._plugin`) can
import this package without importing the transport.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dispatchio_tcp._options import TcpOptions
    from dispatchio_tcp._transport import TcpTransport

__all__ = ["TcpOptions", "TcpTransport"]

_MODULES = {"TcpOptions": "dispatchio_tcp._options", "TcpTransport": "dispatchio_tcp._transport"}


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        value = getattr(importlib.import_module(_MODULES[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
