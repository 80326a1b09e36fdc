"""Offsets a consumer reading at the end of a partition must not step over.

A partition's offsets are consecutive for the records dispatchio and plain producers
write. Still, a consumer at the end of a partition that several producers append to can
be handed a record before one below it is visible. Seen with tansu (in memory) while
another producer to the same partition was killed mid-request: a fetch answered
offsets ``n - 1, n + 1``, and ``n`` was in the log when read again later. Reading on from
``n + 1`` would lose ``n`` for good, a frame acknowledged to its sender. `OffsetGaps`
keeps, per partition, the offset expected next: the records of a poll are delivered up
to a gap, and the consumer seeks back to the missing offset and reads again, until the
record shows up or ``patience`` seconds have passed (offsets may legitimately be missing,
e.g. a transactional producer's control records, which the client does not return:
then the gap is logged and read past).
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Sequence
from typing import Protocol, TypeVar

__all__ = ["OffsetGaps"]

logger = logging.getLogger("dispatchio.kafka")


class _Record(Protocol):
    @property
    def offset(self) -> int: ...


R = TypeVar("R", bound=_Record)


class OffsetGaps:
    """The next offset expected on each partition, and the gap being waited out, if any.

    Used by the consumer thread only (not thread-safe).
    """

    __slots__ = ("_next", "_patience", "_waiting")

    def __init__(self, patience: float) -> None:
        self._patience = patience
        self._next: dict[Hashable, int] = {}
        #: partition -> (the missing offset, when it was first found missing)
        self._waiting: dict[Hashable, tuple[int, float]] = {}

    def take(
        self, partition: Hashable, records: Sequence[R], now: float
    ) -> tuple[Sequence[R], int | None]:
        """The records of one poll to deliver, and the offset to seek back to (or None).

        The records from a gap on are left out, with the gap's first offset to seek to,
        until the gap has lasted ``patience`` seconds: then it is logged and read past.
        Before the first record of a partition any offset is expected, and so after a
        record below the one expected: the client moved the position back (an offset
        reset), and what it reads from there is delivered (repeated messages are the
        dedup window's to drop).
        """
        want = self._next.get(partition)
        if want is not None and records and records[0].offset < want:
            self._waiting.pop(partition, None)
            want = None
        for index in range(len(records)):
            offset = records[index].offset
            if want is not None and offset > want:
                waiting = self._waiting.get(partition)
                if waiting is None or waiting[0] != want:
                    waiting = self._waiting[partition] = (want, now)
                    logger.info(
                        "offset %d of %s came before offset %d; reading again from %d",
                        offset,
                        partition,
                        want,
                        want,
                    )
                if now - waiting[1] < self._patience:
                    self._next[partition] = want
                    return records[:index], want
                del self._waiting[partition]
                logger.warning(
                    "offsets %d to %d of %s never appeared within %g s; reading on",
                    want,
                    offset - 1,
                    partition,
                    self._patience,
                )
            elif self._waiting.get(partition, (None,))[0] == offset:
                del self._waiting[partition]  # the missing record came
            want = offset + 1
        if want is not None:
            self._next[partition] = want
        return records, None

    def forget(self, partition: Hashable) -> None:
        """Expect any offset next on ``partition`` (after a seek to elsewhere)."""
        self._next.pop(partition, None)
        self._waiting.pop(partition, None)
