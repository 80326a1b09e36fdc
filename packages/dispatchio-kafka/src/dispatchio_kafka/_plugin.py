"""Entry point of the ``dispatchio`` group: registers the ``kafka`` scheme lazily.

Importing this module must stay cheap: the transport module (and kafka-python) is
named, not imported.
"""

from __future__ import annotations

import dispatchio
from dispatchio.hookspecs import RegisterTransport


@dispatchio.hookimpl
def dispatchio_register_transports(register: RegisterTransport) -> None:
    """Register `KafkaTransport` for ``kafka://`` URLs."""
    register("kafka", "dispatchio_kafka._transport:KafkaTransport")
