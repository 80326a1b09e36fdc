"""Starting, stopping and restarting a dispatcher; what happens to messages in flight."""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from anyio.streams.memory import MemoryObjectReceiveStream

from dispatchio import (
    DEFERRED,
    DispatchError,
    Message,
    MessageDispatcher,
    PluginManager,
    UndeliverableError,
)
from tests.core._helpers import Streams, listener


@pytest.mark.anyio
async def test_entering_a_running_dispatcher_again_raises_dispatch_error(
    dispatcher: MessageDispatcher,
) -> None:
    running = anyio.Event()
    stop = anyio.Event()

    async def run() -> None:
        async with dispatcher:
            running.set()
            await stop.wait()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            await running.wait()
            with pytest.raises(DispatchError, match="already running"):
                async with dispatcher:
                    pass
            assert dispatcher.running
            stop.set()
    assert not dispatcher.running


@pytest.mark.anyio
async def test_exit_delivers_every_message_already_accepted(
    dispatcher: MessageDispatcher,
) -> None:
    handled: list[int] = []
    listener(dispatcher, "b", callback=lambda m: handled.append(m.content))
    with anyio.fail_after(5):
        async with dispatcher:
            for n in range(100):
                await dispatcher.send(Message("n", n, destination="b"))
    assert handled == list(range(100))
    assert dispatcher.stats.discarded == 0


@pytest.mark.anyio
@pytest.mark.parametrize("to", ["destination", "group"])
async def test_messages_held_behind_an_unfinished_blocking_one_at_exit_are_counted_discarded(
    dispatcher: MessageDispatcher,
    streams: Streams,
    caplog: pytest.LogCaptureFixture,
    to: str,
) -> None:
    kept_in, kept = streams
    listener(dispatcher, "b", queue=kept_in)
    dispatcher.subscribe("g", "b")
    destination, group = ("b", None) if to == "destination" else (None, "g")
    with anyio.fail_after(5):
        async with dispatcher:
            for n in range(3):
                message = Message("n", n, destination=destination, group=group, blocking=n == 0)
                await dispatcher.send(message)
            await kept.receive()  # the blocking message: never replied to, so 1 and 2 wait
    assert dispatcher.stats.discarded == 2
    assert "closed with 2 message(s) never delivered" in caplog.text
    with pytest.raises(anyio.WouldBlock):
        kept.receive_nowait()


@pytest.mark.anyio
async def test_exit_delivers_replies_to_letters_already_accepted(
    dispatcher: MessageDispatcher, inbox: MemoryObjectReceiveStream[Message]
) -> None:
    listener(dispatcher, "b", callback=lambda m: m.content)
    with anyio.fail_after(5):
        async with dispatcher:
            for n in range(100):
                await dispatcher.send(Message("n", n, source="sender", destination="b"))
    replies = []
    while True:
        try:
            replies.append(inbox.receive_nowait().content)
        except anyio.WouldBlock:
            break
    assert replies == list(range(100))


@pytest.mark.anyio
async def test_request_pending_at_exit_fails_with_dispatch_error(
    dispatcher: MessageDispatcher,
) -> None:
    received = anyio.Event()

    def keep_forever(message: Message) -> Any:
        received.set()
        return DEFERRED

    listener(dispatcher, "b", callback=keep_forever)
    outcome: list[BaseException] = []

    async def requester() -> None:
        try:
            await dispatcher.request(Message("ask", destination="b"), timeout=30)
        except DispatchError as exc:
            outcome.append(exc)

    with anyio.fail_after(5):
        # The requester's task lives outside the dispatcher's scope, so it outlives the
        # dispatcher and sees what happens to its wait when the dispatcher closes.
        async with anyio.create_task_group() as tg, dispatcher:
            tg.start_soon(requester)
            await received.wait()  # the request is now waiting for its deferred reply
        # The dispatcher exits first; then the task group waits for the requester.
    assert len(outcome) == 1
    assert type(outcome[0]) is DispatchError
    assert "closed" in str(outcome[0])


@pytest.mark.anyio
async def test_dispatcher_can_be_restarted_after_exit(dispatcher: MessageDispatcher) -> None:
    listener(dispatcher, "b", callback=lambda m: f"run {m.content}")
    with anyio.fail_after(5):
        async with dispatcher:
            first = await dispatcher.request(Message("ask", 1, destination="b"))
        assert not dispatcher.running
        async with dispatcher:
            second = await dispatcher.request(Message("ask", 2, destination="b"))
            await dispatcher.send(Message("ask", 3, destination="b"))
    assert (first.content, second.content) == ("run 1", "run 2")


@pytest.mark.anyio
async def test_body_exception_propagates_and_stops_the_dispatcher(
    dispatcher: MessageDispatcher,
) -> None:
    with anyio.fail_after(5):
        with pytest.raises(KeyError, match="from the body"):
            async with dispatcher:
                raise KeyError("from the body")
        assert not dispatcher.running


@pytest.mark.anyio
async def test_unregister_returns_queued_messages_undeliverable_to_their_source(
    dispatcher: MessageDispatcher, inbox: MemoryObjectReceiveStream[Message]
) -> None:
    handled: list[Any] = []
    listener(dispatcher, "b", callback=lambda m: handled.append(m.content))
    with anyio.fail_after(5):
        async with dispatcher:
            # send() only queues the message: nothing runs before the next checkpoint.
            for n in range(3):
                await dispatcher.send(Message("n", n, source="sender", destination="b"))
            dispatcher.unregister("b")
            returned = [await inbox.receive() for _ in range(3)]
    assert handled == []
    assert [(m.content, m.is_response) for m in returned] == [(0, True), (1, True), (2, True)]
    assert all(m.error is not None and m.error.startswith("undeliverable") for m in returned)
    assert dispatcher.stats.returned == 3


@pytest.mark.anyio
async def test_unregister_returns_messages_held_behind_a_blocking_one_undeliverable(
    dispatcher: MessageDispatcher, inbox: MemoryObjectReceiveStream[Message], streams: Streams
) -> None:
    kept_in, kept = streams
    listener(dispatcher, "b", queue=kept_in)
    with anyio.fail_after(5):
        async with dispatcher:
            await dispatcher.send(Message("n", 0, destination="b", blocking=True))
            await dispatcher.send(Message("n", 1, source="sender", destination="b"))
            await dispatcher.send(Message("n", 2, source="sender", destination="b"))
            blocking = await kept.receive()
            dispatcher.unregister("b")
            await dispatcher.reply(blocking)  # releases the held messages: nobody to take them
            returned = [await inbox.receive() for _ in range(2)]
    assert [m.content for m in returned] == [1, 2]
    assert all(m.error is not None and m.error.startswith("undeliverable") for m in returned)
    assert dispatcher.stats.discarded == 0  # returned to their source, not discarded


@pytest.mark.anyio
async def test_unregister_fails_a_held_request_as_undeliverable(
    dispatcher: MessageDispatcher, streams: Streams
) -> None:
    kept_in, kept = streams
    listener(dispatcher, "b", queue=kept_in)
    listener(dispatcher, "c", callback=lambda m: "barrier")
    asking = anyio.Event()
    outcome: list[BaseException] = []

    async def requester() -> None:
        asking.set()  # the request below is queued before this task first suspends
        try:
            await dispatcher.request(Message("n", 1, destination="b"), timeout=30)
        except UndeliverableError as exc:
            outcome.append(exc)

    with anyio.fail_after(2):
        async with dispatcher, anyio.create_task_group() as tg:
            await dispatcher.send(Message("n", 0, destination="b", blocking=True))
            blocking = await kept.receive()
            tg.start_soon(requester)
            await asking.wait()
            await dispatcher.request(Message("barrier", destination="c"))  # request now held
            dispatcher.unregister("b")
            await dispatcher.reply(blocking)
    assert len(outcome) == 1
    assert "'b'" in str(outcome[0])


# ------------------------------------------------------------------ an enclosing cancel scope
# Cancelling a scope that encloses ``async with dispatcher`` cancels the dispatcher's own
# tasks too, and on asyncio that cancels the native futures they park on. The dispatcher
# must never settle such a future (``InvalidStateError``); trio's futures tolerate it,
# asyncio's do not.


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


# ---------------------------------------------------------------- shutdown grace


async def _work(steps: int = 50) -> None:
    """Work that suspends (``steps`` trips through the event loop) and then ends."""
    for _ in range(steps):
        await anyio.lowlevel.checkpoint()


@pytest.mark.anyio
async def test_exit_lets_a_handler_mid_await_finish_and_deliver_what_it_sends(
    dispatcher: MessageDispatcher,
) -> None:
    started = anyio.Event()
    saved: list[str] = []
    confirmed: list[str] = []

    async def save(message: Message) -> None:
        started.set()
        await _work()
        saved.append(message.content)
        await dispatcher.send(Message("saved", message.content, destination="log"))

    listener(dispatcher, "game", callback=save)
    listener(dispatcher, "log", callback=lambda m: confirmed.append(m.content))
    with anyio.fail_after(5):
        async with dispatcher:
            await dispatcher.send(Message("save", "slot 1", destination="game"))
            await started.wait()  # the handler is now mid-await
    assert (saved, confirmed) == (["slot 1"], ["slot 1"])
    assert dispatcher.stats.cancelled_handlers == 0


@pytest.mark.anyio
async def test_exit_lets_a_request_waiting_on_a_running_handler_get_its_reply(
    dispatcher: MessageDispatcher,
) -> None:
    started = anyio.Event()

    async def answer(message: Message) -> str:
        started.set()
        await _work()
        return f"done {message.content}"

    # A plain callback returning a coroutine: the request is answered from a task of its own.
    listener(dispatcher, "b", callback=lambda m: answer(m))
    replies: list[Any] = []

    async def requester() -> None:
        replies.append((await dispatcher.request(Message("ask", 1, destination="b"))).content)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg, dispatcher:
            tg.start_soon(requester)
            await started.wait()
    assert replies == ["done 1"]
    assert dispatcher.stats.cancelled_handlers == 0


@pytest.mark.anyio
async def test_exit_lets_a_handler_started_in_the_requesters_call_finish_and_reply(
    dispatcher: MessageDispatcher,
) -> None:
    # Once the leader is parked, a request to an async def rule is started in the
    # requester's call (on asyncio) and carries on in a worker when it suspends.
    started = anyio.Event()

    async def answer(message: Message) -> str:
        started.set()
        await _work()
        return f"done {message.content}"

    target = listener(dispatcher, "b", type="warm", callback=lambda m: "warm")
    target.add_rule(type="ask", callback=answer)
    replies: list[Any] = []

    async def requester() -> None:
        replies.append((await dispatcher.request(Message("ask", 1, destination="b"))).content)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg, dispatcher:
            await dispatcher.request(Message("warm", destination="b"))
            tg.start_soon(requester)
            await started.wait()
    assert replies == ["done 1"]
    assert dispatcher.stats.cancelled_handlers == 0


@pytest.mark.anyio
async def test_handler_started_in_the_requesters_call_still_running_after_the_grace_is_cancelled(
    plugins: PluginManager,
) -> None:
    dispatcher = MessageDispatcher("p", plugins=plugins, shutdown_grace=0.05)
    started, cancelled = anyio.Event(), anyio.Event()

    async def stuck(message: Message) -> None:
        started.set()
        try:
            await anyio.Event().wait()  # never set
        except anyio.get_cancelled_exc_class():
            cancelled.set()
            raise

    target = listener(dispatcher, "game", type="warm", callback=lambda m: "warm")
    target.add_rule(type="save", callback=stuck)
    failed: list[BaseException] = []

    async def requester() -> None:
        with pytest.raises(DispatchError, match="closed before a reply") as caught:
            await dispatcher.request(Message("save", destination="game"))
        failed.append(caught.value)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg, dispatcher:
            await dispatcher.request(Message("warm", destination="game"))
            tg.start_soon(requester)
            await started.wait()
    assert cancelled.is_set()  # the worker carrying it on was cancelled, and so was it
    assert len(failed) == 1
    assert dispatcher.stats.cancelled_handlers == 1


def _stuck_handler(started: anyio.Event) -> Callable[[Message], Awaitable[None]]:
    async def stuck(message: Message) -> None:
        started.set()
        await anyio.Event().wait()  # never set

    return stuck


@pytest.mark.anyio
async def test_handler_still_running_after_the_grace_is_cancelled_counted_and_logged(
    plugins: PluginManager, caplog: pytest.LogCaptureFixture
) -> None:
    dispatcher = MessageDispatcher("p", plugins=plugins, shutdown_grace=0.05)
    started = anyio.Event()
    listener(dispatcher, "game", callback=_stuck_handler(started))
    with anyio.fail_after(5), caplog.at_level(logging.WARNING, logger="dispatchio"):
        async with dispatcher:
            await dispatcher.send(Message("save", destination="game"))
            await started.wait()
    assert dispatcher.stats.cancelled_handlers == 1
    [record] = [r for r in caplog.records if "cancelled" in r.getMessage()]
    assert "after the 0.05 s shutdown grace" in record.getMessage()
    assert "'save' for 'game'" in record.getMessage()


@pytest.mark.anyio
async def test_exit_with_an_exception_cancels_running_handlers_without_waiting(
    plugins: PluginManager,
) -> None:
    dispatcher = MessageDispatcher("p", plugins=plugins, shutdown_grace=math.inf)
    started = anyio.Event()
    listener(dispatcher, "game", callback=_stuck_handler(started))

    async def run() -> None:
        async with dispatcher:
            await dispatcher.send(Message("save", destination="game"))
            await started.wait()
            raise KeyError("body")

    with anyio.fail_after(5), pytest.raises(KeyError, match="body"):
        await run()
    assert dispatcher.stats.cancelled_handlers == 1


@pytest.mark.parametrize("grace", [-1.0, math.nan])
def test_shutdown_grace_must_not_be_negative(plugins: PluginManager, grace: float) -> None:
    with pytest.raises(ValueError, match="shutdown_grace"):
        MessageDispatcher("p", plugins=plugins, shutdown_grace=grace)
