"""dispatchio-kafka: the ``kafka://`` transport for dispatchio (see `KafkaTransport`).

The names are loaded on first use, so the entry point (`dispatchio_kafka._plugin`) can
import this package without importing kafka-python.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dispatchio_kafka._broker import LocalBroker, local_broker
    from dispatchio_kafka._transport import KafkaOptions, KafkaTransport

__all__ = ["KafkaOptions", "KafkaTransport", "LocalBroker", "local_broker"]

_HOMES = {
    "KafkaOptions": "dispatchio_kafka._transport",
    "KafkaTransport": "dispatchio_kafka._transport",
    "LocalBroker": "dispatchio_kafka._broker",
    "local_broker": "dispatchio_kafka._broker",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is not None:
        value = getattr(importlib.import_module(home), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
