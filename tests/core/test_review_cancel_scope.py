"""Regression: cancelling a scope that encloses ``async with dispatcher`` shuts it down cleanly.

An enclosing cancel scope cancels the dispatcher's own tasks too, and on asyncio that
cancels the native futures they park on. The dispatcher must never settle such a future
(``InvalidStateError``); trio's futures tolerate it, asyncio's do not.
"""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from dispatchio import Message, MessageDispatcher
from tests.core._helpers import listener


@pytest.mark.anyio
async def test_handler_cancelling_enclosing_scope_while_draining_exits_cleanly(
    dispatcher: MessageDispatcher,
) -> None:
    with anyio.fail_after(5):
        with anyio.CancelScope() as scope:
            listener(dispatcher, "app", type="quit", callback=lambda message: scope.cancel())
            async with dispatcher:
                await dispatcher.send(Message("quit", destination="app"))
        assert scope.cancelled_caught


@pytest.mark.anyio
async def test_handler_cancelling_enclosing_scope_before_a_handler_suspends_exits_cleanly(
    dispatcher: MessageDispatcher,
) -> None:
    warmed = anyio.Event()
    never = anyio.Event()

    async def warm(message: Message) -> None:
        await anyio.lowlevel.checkpoint()
        warmed.set()  # its worker goes idle right after this handler returns

    async def work(message: Message) -> None:
        await never.wait()

    with anyio.fail_after(5):
        with anyio.CancelScope() as scope:
            app = listener(dispatcher, "app", type="warm", callback=warm)
            app.add_rule(type="quit", callback=lambda message: scope.cancel())
            app.add_rule(type="work", callback=work)
            async with dispatcher:
                await dispatcher.send(Message("warm", destination="app"))
                await warmed.wait()
                await dispatcher.send(Message("quit", destination="app"))
                await dispatcher.send(Message("work", destination="app"))
        assert scope.cancelled_caught


@pytest.mark.anyio
async def test_send_from_outside_after_enclosing_scope_is_cancelled_does_not_raise(
    dispatcher: MessageDispatcher,
) -> None:
    listener(dispatcher, "app", callback=lambda message: None)
    started = anyio.Event()
    sent = anyio.Event()

    async def app(scope: anyio.CancelScope) -> None:
        with scope:
            async with dispatcher:
                started.set()
                await anyio.sleep_forever()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            scope = anyio.CancelScope()
            tg.start_soon(app, scope)
            await started.wait()
            scope.cancel()
            # The dispatcher has not begun to close yet, so it still accepts the message.
            await dispatcher.send(Message("bye", destination="app"))
            sent.set()
        assert sent.is_set()
