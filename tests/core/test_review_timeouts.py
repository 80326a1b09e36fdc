"""Regression: one bad per-call timeout must not disable every other timeout."""

from __future__ import annotations

import contextlib
import math

import anyio
import pytest

from dispatchio import DEFERRED, Message, MessageDispatcher, ReplyTimeoutError
from tests.core._helpers import listener


@pytest.mark.anyio
async def test_nan_reply_timeout_does_not_stop_other_requests_timing_out(
    dispatcher: MessageDispatcher,
) -> None:
    listener(dispatcher, "slow", callback=lambda message: DEFERRED)  # never answers
    with anyio.fail_after(5):
        async with dispatcher:
            with contextlib.suppress(ValueError):  # refusing a NaN timeout is fine too
                await dispatcher.send(
                    Message("a", destination="slow", response_required=True),
                    reply_timeout=math.nan,
                )
            with pytest.raises(ReplyTimeoutError, match=r"within 0\.05 s"):
                await dispatcher.request(Message("b", destination="slow"), timeout=0.05)
