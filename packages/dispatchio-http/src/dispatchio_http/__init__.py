"""dispatchio-http: the ``http://`` transport and gateway for dispatchio (see `HttpTransport`).

The names are loaded on first use, so the entry point (`dispatchio_http._plugin`) can
import this package without importing aiohttp.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dispatchio_http._options import HttpOptions
    from dispatchio_http._transport import HttpsTransport, HttpTransport

__all__ = ["HttpOptions", "HttpTransport", "HttpsTransport"]

_WHERE = {
    "HttpOptions": "dispatchio_http._options",
    "HttpTransport": "dispatchio_http._transport",
    "HttpsTransport": "dispatchio_http._transport",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is not None:
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
