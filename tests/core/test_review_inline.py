"""Regression: a request answered inline (leader parked, queue empty) fails like a queued one.

The first request after ``async with`` goes through the queue; once its reply is in, the
leader is parked and the next request to a plain callback is answered inline.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from dispatchio import UNHANDLED, HandlerError, Message, MessageDispatcher, UndeliverableError
from tests.core._helpers import listener


def broken_predicate(message: Message) -> bool:
    raise ZeroDivisionError("predicate")


def declined(message: Message) -> Any:
    return UNHANDLED


@pytest.mark.anyio
async def test_callback_returning_unhandled_fails_an_inline_request_as_undeliverable(
    dispatcher: MessageDispatcher,
) -> None:
    target = listener(dispatcher, "x", type="warm", callback=lambda message: "warm")
    target.add_rule(type="decline", callback=declined)
    with anyio.fail_after(5):
        async with dispatcher:
            await dispatcher.request(Message("warm", destination="x"))  # leader now parked
            with pytest.raises(UndeliverableError, match="has no rule for 'decline'"):
                await dispatcher.request(Message("decline", destination="x"))


@pytest.mark.anyio
async def test_raising_where_predicate_fails_an_inline_request_as_handler_error(
    dispatcher: MessageDispatcher,
) -> None:
    target = listener(dispatcher, "x", type="warm", callback=lambda message: "warm")
    target.add_rule(type="boom", where=broken_predicate, callback=lambda message: "never")
    with anyio.fail_after(5):
        async with dispatcher:
            await dispatcher.request(Message("warm", destination="x"))  # leader now parked
            with pytest.raises(HandlerError, match="ZeroDivisionError: predicate"):
                await dispatcher.request(Message("boom", destination="x"))
