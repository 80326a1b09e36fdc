"""`MessageDispatcher.request` and `gather`: replies, failures, timeouts and groups."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest
from anyio.streams.memory import MemoryObjectReceiveStream

from dispatchio import (
    DEFERRED,
    UNHANDLED,
    DispatcherNotRunningError,
    HandlerError,
    InvalidMessageError,
    Message,
    MessageDispatcher,
    ReplyTimeoutError,
    UndeliverableError,
)
from tests.core._helpers import Streams, listener


@pytest.fixture
def jobs(streams: Streams) -> Streams:
    """A memory stream for queue rules: the test takes deferred messages off it."""
    return streams


def echo(message: Message) -> Any:
    return message.content


def fail(message: Message) -> Any:
    raise ValueError(f"bad {message.content}")


async def async_fail(message: Message) -> Any:
    await anyio.sleep(0)
    raise ValueError(f"bad {message.content}")


async def handler_error_of(
    dispatcher: MessageDispatcher, message: Message, match: str, **request: Any
) -> HandlerError:
    """Run the dispatcher and request ``message``: the HandlerError (matching ``match``) raised."""
    async with dispatcher:
        with pytest.raises(HandlerError, match=match) as caught:
            await dispatcher.request(message, **request)
    return caught.value


async def assert_request_raises_handler_error_caused_by(
    dispatcher: MessageDispatcher, callback: Callable[[Message], Any]
) -> None:
    """A request to listener "b" whose ``callback`` raises ``ValueError("bad 1")`` raises a
    HandlerError caused by that very error."""
    listener(dispatcher, "b", callback=callback)
    with anyio.fail_after(5):
        error = await handler_error_of(
            dispatcher, Message("greet", 1, destination="b"), "ValueError: bad 1"
        )
    assert isinstance(error.__cause__, ValueError)
    assert str(error.__cause__) == "bad 1"


async def assert_undeliverable_at_once(
    dispatcher: MessageDispatcher,
    ask: Callable[..., Awaitable[Any]],
    message: Message,
    match: str | None = None,
) -> None:
    """Run the dispatcher: ``ask(message, timeout=30)`` raises UndeliverableError (matching
    ``match``) long before its timeout."""
    with anyio.fail_after(2):
        async with dispatcher:
            with pytest.raises(UndeliverableError, match=match):
                await ask(message, timeout=30)


async def assert_group_request_raises_handler_error(
    dispatcher: MessageDispatcher, members: tuple[str, str]
) -> None:
    """Register and subscribe to group "g", in the order of ``members``, listener "raiser" (whose
    callback raises) and "decliner" (no rule matches): a group request raises HandlerError."""
    rules: dict[str, dict[str, Any]] = {
        "raiser": {"callback": fail},
        "decliner": {"type": "other", "callback": echo},
    }
    for name in members:
        listener(dispatcher, name, **rules[name])
    for name in members:
        dispatcher.subscribe("g", name)
    with anyio.fail_after(2):
        error = await handler_error_of(
            dispatcher, Message("poll", 1, group="g"), "ValueError", timeout=30
        )
    assert isinstance(error.__cause__, ValueError)


# ------------------------------------------------------------------ single destination


@pytest.mark.anyio
async def test_request_returns_the_reply(dispatcher: MessageDispatcher) -> None:
    listener(dispatcher, "b", callback=lambda m: f"hello {m.content}")
    with anyio.fail_after(5):
        async with dispatcher:
            response = await dispatcher.request(Message("greet", "ann", destination="b"))
    assert response.content == "hello ann"


@pytest.mark.anyio
async def test_request_to_unknown_destination_raises_undeliverable_at_once(
    dispatcher: MessageDispatcher,
) -> None:
    await assert_undeliverable_at_once(
        dispatcher, dispatcher.request, Message("greet", destination="nobody"), "nobody"
    )


@pytest.mark.anyio
async def test_request_no_rule_matches_raises_undeliverable_at_once(
    dispatcher: MessageDispatcher,
) -> None:
    listener(dispatcher, "b", type="other", callback=echo)
    await assert_undeliverable_at_once(
        dispatcher, dispatcher.request, Message("greet", destination="b"), "no rule"
    )


@pytest.mark.anyio
async def test_request_deferred_and_never_answered_raises_reply_timeout(
    dispatcher: MessageDispatcher, jobs: Streams
) -> None:
    listener(dispatcher, "b", queue=jobs[0])
    with anyio.fail_after(5):
        async with dispatcher:
            with pytest.raises(ReplyTimeoutError, match="no reply"):
                await dispatcher.request(Message("greet", destination="b"), timeout=0.05)
    assert dispatcher.stats.timeouts == 1


@pytest.mark.anyio
async def test_late_reply_after_timeout_is_dropped_and_counted(
    dispatcher: MessageDispatcher, jobs: Streams, inbox: MemoryObjectReceiveStream[Message]
) -> None:
    listener(dispatcher, "b", queue=jobs[0])
    listener(dispatcher, "echo", callback=echo)
    later: list[Message] = []

    async def second_request() -> None:
        later.append(
            await dispatcher.request(Message("greet", 2, source="sender", destination="b"))
        )

    with anyio.fail_after(5):
        async with dispatcher, anyio.create_task_group() as tg:
            first = Message("greet", 1, source="sender", destination="b")
            with pytest.raises(ReplyTimeoutError):
                await dispatcher.request(first, timeout=0.05)
            stale = await jobs[1].receive()
            tg.start_soon(second_request)
            fresh = await jobs[1].receive()
            assert fresh.id != stale.id
            await dispatcher.reply(stale, "late")  # the first request has given up
            await dispatcher.reply(fresh, "fresh")
            # Barrier: a late reply sent to the source listener would arrive before this.
            await dispatcher.send(Message("barrier", 0, source="sender", destination="echo"))
            arrived = await inbox.receive()
    assert [response.content for response in later] == ["fresh"]
    assert arrived.type == "barrier"
    assert dispatcher.stats.late_replies == 1


# ------------------------------------------------------------------ handler errors


@pytest.mark.anyio
async def test_request_to_raising_callback_raises_handler_error_caused_by_it(
    dispatcher: MessageDispatcher,
) -> None:
    await assert_request_raises_handler_error_caused_by(dispatcher, fail)


@pytest.mark.anyio
async def test_request_to_raising_callback_behind_queued_message_raises_handler_error(
    dispatcher: MessageDispatcher,
) -> None:
    # A letter queued first makes the request take the worker's path, not the inline one.
    listener(dispatcher, "b", type="greet", callback=fail)
    listener(dispatcher, "c", callback=echo)
    with anyio.fail_after(5):
        async with dispatcher:
            await dispatcher.send(Message("first", destination="c"))
            with pytest.raises(HandlerError, match="ValueError: bad 1") as caught:
                await dispatcher.request(Message("greet", 1, destination="b"))
    assert isinstance(caught.value.__cause__, ValueError)


@pytest.mark.anyio
async def test_request_to_raising_async_callback_raises_handler_error_caused_by_it(
    dispatcher: MessageDispatcher,
) -> None:
    await assert_request_raises_handler_error_caused_by(dispatcher, async_fail)


@pytest.mark.anyio
async def test_handler_exception_does_not_stop_the_dispatcher(
    dispatcher: MessageDispatcher,
) -> None:
    listener(dispatcher, "b", type="boom", callback=async_fail)
    dispatcher.listeners["b"].add_rule(callback=echo)  # type: ignore[attr-defined]
    with anyio.fail_after(5):
        async with dispatcher:
            with pytest.raises(HandlerError):
                await dispatcher.request(Message("boom", destination="b"))
            response = await dispatcher.request(Message("fine", "still here", destination="b"))
    assert response.content == "still here"


@pytest.mark.anyio
async def test_handler_exception_is_logged(
    dispatcher: MessageDispatcher, caplog: pytest.LogCaptureFixture
) -> None:
    listener(dispatcher, "b", callback=async_fail)
    caplog.set_level(logging.ERROR, logger="dispatchio")
    with anyio.fail_after(5):
        async with dispatcher:
            with pytest.raises(HandlerError):
                await dispatcher.request(Message("greet", 1, destination="b"))
    records = [r for r in caplog.records if r.name == "dispatchio"]
    assert len(records) == 1
    assert records[0].levelno == logging.ERROR
    assert records[0].exc_info is not None
    assert isinstance(records[0].exc_info[1], ValueError)


# ------------------------------------------------------------------ groups


@pytest.mark.anyio
async def test_group_request_returns_the_first_reply(
    dispatcher: MessageDispatcher, jobs: Streams
) -> None:
    listener(dispatcher, "slow", queue=jobs[0])
    listener(dispatcher, "fast", callback=lambda m: "fast")
    dispatcher.subscribe("g", "slow")
    dispatcher.subscribe("g", "fast")
    with anyio.fail_after(5):
        async with dispatcher:
            response = await dispatcher.request(Message("poll", group="g"))
            slow_copy = await jobs[1].receive()
            await dispatcher.reply(slow_copy, "slow")  # too late: the request has its answer
    assert (response.source, response.content) == ("fast", "fast")
    assert dispatcher.stats.late_replies == 1


@pytest.mark.anyio
async def test_group_request_succeeds_when_one_subscriber_declines(
    dispatcher: MessageDispatcher,
) -> None:
    listener(dispatcher, "picky", type="other", callback=echo)
    listener(dispatcher, "willing", callback=lambda m: "yes")
    dispatcher.subscribe("g", "picky")
    dispatcher.subscribe("g", "willing")
    with anyio.fail_after(5):
        async with dispatcher:
            response = await dispatcher.request(Message("poll", group="g"))
    assert (response.source, response.content) == ("willing", "yes")


@pytest.mark.anyio
async def test_group_request_raises_undeliverable_when_every_subscriber_declines(
    dispatcher: MessageDispatcher,
) -> None:
    listener(dispatcher, "x", type="other", callback=echo)
    listener(dispatcher, "y")
    dispatcher.subscribe("g", "x")
    dispatcher.subscribe("g", "y")
    await assert_undeliverable_at_once(dispatcher, dispatcher.request, Message("poll", group="g"))


@pytest.mark.anyio
async def test_group_request_raises_handler_error_when_one_raises_and_the_other_declines(
    dispatcher: MessageDispatcher,
) -> None:
    await assert_group_request_raises_handler_error(dispatcher, ("raiser", "decliner"))


@pytest.mark.anyio
async def test_group_request_raises_handler_error_when_one_declines_and_the_other_raises(
    dispatcher: MessageDispatcher,
) -> None:
    await assert_group_request_raises_handler_error(dispatcher, ("decliner", "raiser"))


@pytest.mark.anyio
async def test_gather_returns_every_reply_as_soon_as_all_answered(
    dispatcher: MessageDispatcher,
) -> None:
    for name in ("x", "y", "z"):
        listener(dispatcher, name, callback=lambda m, name=name: name.upper())
        dispatcher.subscribe("g", name)
    with anyio.fail_after(2):
        async with dispatcher:
            replies = await dispatcher.gather(Message("poll", group="g"), timeout=30)
    assert sorted((r.source, r.content) for r in replies) == [("x", "X"), ("y", "Y"), ("z", "Z")]


@pytest.mark.anyio
async def test_gather_returns_replies_so_far_at_the_timeout(
    dispatcher: MessageDispatcher, jobs: Streams
) -> None:
    listener(dispatcher, "x", callback=lambda m: "X")
    listener(dispatcher, "never", queue=jobs[0])
    listener(dispatcher, "z", callback=lambda m: "Z")
    for name in ("x", "never", "z"):
        dispatcher.subscribe("g", name)
    with anyio.fail_after(5):
        async with dispatcher:
            replies = await dispatcher.gather(Message("poll", group="g"), timeout=0.1)
    assert sorted((r.source, r.content) for r in replies) == [("x", "X"), ("z", "Z")]


@pytest.mark.anyio
async def test_gather_to_unknown_group_raises_undeliverable(
    dispatcher: MessageDispatcher,
) -> None:
    await assert_undeliverable_at_once(
        dispatcher, dispatcher.gather, Message("poll", group="nobody"), "no subscribers"
    )


# ------------------------------------------------------------------ misc


@pytest.mark.anyio
async def test_request_outside_running_dispatcher_raises_not_running(
    dispatcher: MessageDispatcher,
) -> None:
    listener(dispatcher, "b", callback=echo)
    with anyio.fail_after(5), pytest.raises(DispatcherNotRunningError):
        await dispatcher.request(Message("greet", destination="b"))


@pytest.mark.anyio
async def test_handler_can_await_a_nested_request(dispatcher: MessageDispatcher) -> None:
    async def relay(message: Message) -> Any:
        inner = await dispatcher.request(Message("inner", message.content, destination="c"))
        return f"relayed {inner.content}"

    listener(dispatcher, "b", callback=relay)
    listener(dispatcher, "c", callback=lambda m: m.content * 2)
    with anyio.fail_after(5):
        async with dispatcher:
            response = await dispatcher.request(Message("outer", 21, destination="b"))
    assert response.content == "relayed 42"


@pytest.mark.anyio
async def test_request_to_handler_returning_none_replies_with_content_none(
    dispatcher: MessageDispatcher,
) -> None:
    listener(dispatcher, "b", callback=lambda m: None)
    with anyio.fail_after(5):
        async with dispatcher:
            response = await dispatcher.request(Message("greet", "x", destination="b"))
    assert response.is_response is True
    assert response.content is None
    assert response.error is None


@pytest.mark.anyio
async def test_request_sets_response_required(dispatcher: MessageDispatcher) -> None:
    seen: list[bool] = []
    listener(dispatcher, "b", callback=lambda m: seen.append(m.response_required))
    message = Message("greet", destination="b")
    with anyio.fail_after(5):
        async with dispatcher:
            await dispatcher.request(message)
    assert message.response_required is True
    assert seen == [True]


@pytest.mark.anyio
async def test_concurrent_requests_from_two_tasks_get_their_own_replies(
    dispatcher: MessageDispatcher,
) -> None:
    both_in = anyio.Event()
    arrived: list[Any] = []

    async def wait_for_both(message: Message) -> Any:
        arrived.append(message.content)
        if len(arrived) == 2:
            both_in.set()
        await both_in.wait()  # both requests are in flight at once
        return f"re: {message.content}"

    listener(dispatcher, "b", callback=wait_for_both)
    results: dict[str, Any] = {}

    async def ask(name: str) -> None:
        results[name] = (await dispatcher.request(Message("greet", name, destination="b"))).content

    with anyio.fail_after(5):
        async with dispatcher, anyio.create_task_group() as tg:
            tg.start_soon(ask, "one")
            tg.start_soon(ask, "two")
    assert results == {"one": "re: one", "two": "re: two"}


@pytest.mark.anyio
async def test_short_timeout_fires_while_a_longer_one_is_pending(
    dispatcher: MessageDispatcher, jobs: Streams
) -> None:
    listener(dispatcher, "b", queue=jobs[0])

    async def long_wait() -> None:
        with pytest.raises(ReplyTimeoutError):
            await dispatcher.request(Message("slow", destination="b"), timeout=30)

    with anyio.fail_after(2):
        async with dispatcher, anyio.create_task_group() as tg:
            tg.start_soon(long_wait)
            await jobs[1].receive()  # the 30 s timer is armed
            with pytest.raises(ReplyTimeoutError):
                await dispatcher.request(Message("quick", destination="b"), timeout=0.05)
            tg.cancel_scope.cancel()


@pytest.mark.anyio
@pytest.mark.parametrize("method", ["send", "request", "gather"])
async def test_nan_timeout_is_refused_and_other_requests_still_time_out(
    dispatcher: MessageDispatcher, method: str
) -> None:
    """One bad per-call timeout must not disable every other timeout (NaN breaks a heap)."""
    listener(dispatcher, "slow", callback=lambda message: DEFERRED)  # never answers
    calls: dict[str, Callable[[Message], Awaitable[Any]]] = {
        "send": lambda m: dispatcher.send(m, reply_timeout=math.nan),
        "request": lambda m: dispatcher.request(m, timeout=math.nan),
        "gather": lambda m: dispatcher.gather(m, timeout=math.nan),
    }
    with anyio.fail_after(5):
        async with dispatcher:
            bad = Message("a", destination="slow", response_required=True)
            with pytest.raises(ValueError, match=r"must be > 0 seconds .* got nan"):
                await calls[method](bad)
            with pytest.raises(ReplyTimeoutError, match=r"within 0\.05 s"):
                await dispatcher.request(Message("b", destination="slow"), timeout=0.05)


@pytest.mark.anyio
async def test_gather_includes_the_error_response_of_a_raising_subscriber(
    dispatcher: MessageDispatcher,
) -> None:
    listener(dispatcher, "ok", callback=lambda m: "fine")
    listener(dispatcher, "raiser", callback=fail)
    dispatcher.subscribe("g", "ok")
    dispatcher.subscribe("g", "raiser")
    with anyio.fail_after(2):
        async with dispatcher:
            replies = await dispatcher.gather(Message("poll", 1, group="g"), timeout=30)
    by_source = {r.source: r for r in replies}
    assert sorted(str(source) for source in by_source) == ["ok", "raiser"]
    assert by_source["ok"].content == "fine"
    assert by_source["raiser"].error is not None
    assert by_source["raiser"].error.startswith("handler_error")


@pytest.mark.anyio
async def test_cancelled_request_drops_its_late_reply(
    dispatcher: MessageDispatcher, jobs: Streams, inbox: MemoryObjectReceiveStream[Message]
) -> None:
    listener(dispatcher, "b", queue=jobs[0])

    async def ask() -> None:
        await dispatcher.request(Message("ask", source="sender", destination="b"))

    with anyio.fail_after(5):
        async with dispatcher:
            async with anyio.create_task_group() as tg:
                tg.start_soon(ask)
                job = await jobs[1].receive()
                tg.cancel_scope.cancel()  # the requester stops waiting
            await dispatcher.reply(job, "nobody waits")
    assert dispatcher.stats.late_replies == 1
    with pytest.raises(anyio.WouldBlock):
        inbox.receive_nowait()


@pytest.mark.anyio
async def test_async_handler_can_use_its_own_cancel_scope(dispatcher: MessageDispatcher) -> None:
    async def impatient(message: Message) -> Any:
        with anyio.move_on_after(0.01) as scope:
            await anyio.Event().wait()  # never set: only the handler's own deadline ends it
        return "gave up" if scope.cancelled_caught else "impossible"

    listener(dispatcher, "b", callback=impatient)
    with anyio.fail_after(5):
        async with dispatcher:
            first = await dispatcher.request(Message("ask", destination="b"))
            second = await dispatcher.request(Message("ask", destination="b"))
    assert (first.content, second.content) == ("gave up", "gave up")


@pytest.mark.anyio
async def test_request_to_plain_callback_returning_a_coroutine_awaits_it(
    dispatcher: MessageDispatcher,
) -> None:
    async def later(content: Any) -> Any:
        await anyio.sleep(0)
        return f"awaited {content}"

    listener(dispatcher, "b", callback=lambda m: later(m.content))
    with anyio.fail_after(5):
        async with dispatcher:
            response = await dispatcher.request(Message("ask", 1, destination="b"))
    assert response.content == "awaited 1"


@pytest.mark.anyio
@pytest.mark.parametrize("method", ["send", "request", "gather"])
async def test_a_timeout_that_is_not_a_number_raises_type_error_naming_it(
    dispatcher: MessageDispatcher, method: str
) -> None:
    listener(dispatcher, "b", callback=echo)
    calls: dict[str, Callable[[Message], Awaitable[Any]]] = {
        "send": lambda m: dispatcher.send(m, reply_timeout="1"),  # type: ignore[arg-type]
        "request": lambda m: dispatcher.request(m, timeout="1"),  # type: ignore[arg-type]
        "gather": lambda m: dispatcher.gather(m, timeout="1"),  # type: ignore[arg-type]
    }
    name = "reply_timeout" if method == "send" else "timeout"
    with anyio.fail_after(5):
        async with dispatcher:
            with pytest.raises(TypeError, match=f"^{name} must be a number of seconds.*'1'"):
                await calls[method](Message("a", destination="b", response_required=True))


@pytest.mark.anyio
@pytest.mark.parametrize("method", ["send", "request", "gather"])
async def test_a_message_with_neither_destination_nor_group_raises_invalid_message_error(
    dispatcher: MessageDispatcher, inbox: MemoryObjectReceiveStream[Message], method: str
) -> None:
    calls: dict[str, Callable[[Message], Awaitable[Any]]] = {
        "send": dispatcher.send,
        "request": dispatcher.request,
        "gather": dispatcher.gather,
    }
    with anyio.fail_after(5):
        async with dispatcher:
            with pytest.raises(InvalidMessageError, match="has neither a destination nor a group"):
                await calls[method](Message("ok", source="sender"))
    with pytest.raises(anyio.WouldBlock):  # raised, not returned as a letter
        inbox.receive_nowait()


# ------------------------------------------------------------------ answered inline
# The first request after ``async with`` goes through the queue; once its reply is in,
# the leader is parked and the next request to a plain callback is answered inline,
# without a task switch. Such a request must fail exactly as a queued one does.


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


# ------------------------------------------------------------------ async def handlers inline
# An ``async def`` callback whose code has no ``await`` cannot suspend, so a request to it
# is run to its end in the requesting task, like a plain callback. One that can suspend
# must run in one task from start to end (cancel scopes and trio's parking belong to a
# task): it takes the queue on trio, and on asyncio is started as a parked worker's task
# (see the next section); either way it keeps the leader's order of handling.


def task_id() -> int:
    return anyio.get_current_task().id


async def task_of(message: Message) -> Any:
    return task_id()


async def fail_at_once(message: Message) -> Any:
    raise ValueError(f"bad {message.content}")


@pytest.mark.anyio
async def test_request_to_async_callback_without_await_runs_in_the_requesting_task(
    dispatcher: MessageDispatcher,
) -> None:
    listener(dispatcher, "x", callback=task_of)
    with anyio.fail_after(5):
        async with dispatcher:
            first = await dispatcher.request(Message("warm", destination="x"))
            second = await dispatcher.request(Message("again", destination="x"))
    assert first.content != task_id()  # the first request finds the leader not yet parked
    assert second.content == task_id()
    assert second.is_response
    assert second.source == "x"


@pytest.mark.anyio
async def test_request_to_async_callback_that_awaits_runs_in_one_task_of_its_own(
    dispatcher: MessageDispatcher,
) -> None:
    async def scoped(message: Message) -> Any:
        before = task_id()
        with anyio.fail_after(5):  # a cancel scope open across the await
            await anyio.sleep(0)
        return before, task_id()

    listener(dispatcher, "x", type="warm", callback=echo)
    dispatcher.listeners["x"].add_rule(type="scoped", callback=scoped)  # type: ignore[attr-defined]
    with anyio.fail_after(5):
        async with dispatcher:
            await dispatcher.request(Message("warm", destination="x"))  # leader now parked
            reply = await dispatcher.request(Message("scoped", destination="x"))
    before, after = reply.content
    assert before == after != task_id()


@pytest.mark.anyio
async def test_suspended_async_handler_lets_a_later_request_to_its_listener_run_first(
    dispatcher: MessageDispatcher,
) -> None:
    log: list[str] = []
    started, release = anyio.Event(), anyio.Event()

    async def slow(message: Message) -> Any:
        log.append("slow start")
        started.set()
        await release.wait()
        log.append("slow end")
        return "slow"

    async def fast(message: Message) -> Any:
        log.append("fast")
        return "fast"

    target = listener(dispatcher, "x", type="slow", callback=slow)
    target.add_rule(type="fast", callback=fast)
    replies: list[Any] = []

    async def request_slow() -> None:
        replies.append((await dispatcher.request(Message("slow", destination="x"))).content)

    with anyio.fail_after(5):
        async with dispatcher, anyio.create_task_group() as tg:
            tg.start_soon(request_slow)
            await started.wait()
            replies.append((await dispatcher.request(Message("fast", destination="x"))).content)
            release.set()
    # As on the queued path: a handler that awaits never stalls later messages.
    assert log == ["slow start", "fast", "slow end"]
    assert replies == ["fast", "slow"]


@pytest.mark.anyio
async def test_request_behind_a_queued_message_waits_its_turn_even_without_await(
    dispatcher: MessageDispatcher,
) -> None:
    log: list[Any] = []

    async def record(message: Message) -> Any:
        log.append((message.type, task_id()))
        return message.type

    listener(dispatcher, "x", callback=record)
    with anyio.fail_after(5):
        async with dispatcher:
            await dispatcher.request(Message("warm", destination="x"))  # leader now parked
            await dispatcher.send(Message("letter", destination="x"))
            reply = await dispatcher.request(Message("request", destination="x"))
    assert reply.content == "request"
    assert [kind for kind, _ in log] == ["warm", "letter", "request"]
    assert log[2][1] != task_id()  # run by the leader, after the letter


@pytest.mark.anyio
@pytest.mark.parametrize("callback", [fail_at_once, async_fail], ids=["before", "after"])
async def test_async_callback_raising_before_or_after_suspending_raises_handler_error(
    dispatcher: MessageDispatcher, callback: Callable[[Message], Any]
) -> None:
    listener(dispatcher, "x", type="warm", callback=echo)
    dispatcher.listeners["x"].add_rule(type="boom", callback=callback)  # type: ignore[attr-defined]
    with anyio.fail_after(5):
        async with dispatcher:
            await dispatcher.request(Message("warm", destination="x"))  # leader now parked
            with pytest.raises(HandlerError, match="ValueError: bad 1") as caught:
                await dispatcher.request(Message("boom", 1, destination="x"))
            still = await dispatcher.request(Message("warm", "alive", destination="x"))
    assert isinstance(caught.value.__cause__, ValueError)
    assert still.content == "alive"
    assert dispatcher.stats.handler_errors == 1


@pytest.mark.anyio
async def test_blocking_request_to_async_callback_without_await_takes_the_queue(
    dispatcher: MessageDispatcher,
) -> None:
    listener(dispatcher, "x", callback=task_of)
    with anyio.fail_after(5):
        async with dispatcher:
            await dispatcher.request(Message("warm", destination="x"))  # leader now parked
            reply = await dispatcher.request(Message("blocking", destination="x", blocking=True))
            after = await dispatcher.request(Message("after", destination="x"))
    assert reply.content != task_id()  # the leader ran it, holding "x" meanwhile
    assert after.content == task_id()  # the hold is released: inline again


@pytest.mark.anyio
async def test_request_to_a_held_destination_waits_for_the_blocking_message(
    dispatcher: MessageDispatcher,
) -> None:
    log: list[str] = []
    started, release = anyio.Event(), anyio.Event()

    async def hold(message: Message) -> Any:
        log.append("blocking start")
        started.set()
        await release.wait()
        log.append("blocking end")

    async def quick(message: Message) -> Any:
        log.append("quick")
        return "quick"

    target = listener(dispatcher, "x", type="hold", callback=hold)
    target.add_rule(type="quick", callback=quick)
    replies: list[Any] = []

    async def request_quick() -> None:
        replies.append((await dispatcher.request(Message("quick", destination="x"))).content)

    with anyio.fail_after(5):
        async with dispatcher, anyio.create_task_group() as tg:
            await dispatcher.send(Message("hold", destination="x", blocking=True))
            await started.wait()
            tg.start_soon(request_quick)
            await anyio.wait_all_tasks_blocked()
            assert log == ["blocking start"]  # the request waits behind the hold
            release.set()
    assert log == ["blocking start", "blocking end", "quick"]
    assert replies == ["quick"]


# ---------------------------------------------------------- async def handlers that can suspend
# A request to an ``async def`` callback that might suspend, made when nothing is queued,
# is started in the requester's call on asyncio, as the task of a parked worker, and
# carries on in that worker if it suspends (on trio it takes the queue). Either way the
# handler must see one task, one context and one cancel scope from start to end, and
# the request must end as it would on the queue.

_var: contextvars.ContextVar[str] = contextvars.ContextVar("_var", default="unset")


async def _maybe_sleep(message: Message) -> None:
    if message.content == "suspend":
        await anyio.sleep(0)


async def _warm(dispatcher: MessageDispatcher, lid: str = "x") -> None:
    """A first request, so that the leader is parked when the test's own begins."""
    await dispatcher.request(Message("warm", destination=lid))


def async_listener(dispatcher: MessageDispatcher, callback: Callable[[Message], Any]) -> None:
    """Listener "x": ``warm`` answered inline, anything else by ``callback``."""
    target = listener(dispatcher, "x", type="warm", callback=echo)
    target.add_rule(callback=callback)


@pytest.mark.anyio
@pytest.mark.parametrize("content", ["no suspension", "suspend"])
async def test_async_handler_that_can_suspend_runs_in_one_worker_task_whether_it_does_or_not(
    dispatcher: MessageDispatcher, content: str
) -> None:
    async def tasks(message: Message) -> Any:
        before = task_id()
        await _maybe_sleep(message)
        return before, task_id()

    async_listener(dispatcher, tasks)
    with anyio.fail_after(5):
        async with dispatcher:
            await _warm(dispatcher)
            reply = await dispatcher.request(Message("ask", content, destination="x"))
    before, after = reply.content
    assert before == after != task_id()


@pytest.mark.anyio
async def test_async_handler_keeps_the_context_it_sets_across_its_await_and_to_itself(
    dispatcher: MessageDispatcher,
) -> None:
    async def contextual(message: Message) -> Any:
        seen = _var.get()
        _var.set("handler")
        await anyio.sleep(0)
        return seen, _var.get()

    async_listener(dispatcher, contextual)
    token = _var.set("requester")
    try:
        with anyio.fail_after(5):
            async with dispatcher:
                await _warm(dispatcher)
                reply = await dispatcher.request(Message("ask", destination="x"))
                after = _var.get()
    finally:
        _var.reset(token)
    assert reply.content == ("requester", "handler")
    assert after == "requester"  # what the handler set stayed its own


@pytest.mark.anyio
async def test_cancel_scope_a_handler_opens_before_suspending_cancels_it_at_its_await(
    dispatcher: MessageDispatcher,
) -> None:
    async def bounded(message: Message) -> Any:
        with anyio.move_on_after(0.01) as scope:
            await anyio.sleep(10)
        return scope.cancelled_caught

    async_listener(dispatcher, bounded)
    with anyio.fail_after(5):
        async with dispatcher:
            await _warm(dispatcher)
            reply = await dispatcher.request(Message("ask", destination="x"))
            again = await dispatcher.request(Message("ask", destination="x"))
    assert (reply.content, again.content) == (True, True)


@pytest.mark.anyio
async def test_handler_replying_before_it_suspends_answers_the_request(
    dispatcher: MessageDispatcher,
) -> None:
    async def early(message: Message) -> Any:
        await dispatcher.reply(message, f"early {message.content}")
        return DEFERRED

    async_listener(dispatcher, early)
    with anyio.fail_after(5):
        async with dispatcher:
            await _warm(dispatcher)
            reply = await dispatcher.request(Message("ask", 1, destination="x"))
    assert reply.content == "early 1"
    assert dispatcher.stats.late_replies == 0


@pytest.mark.anyio
@pytest.mark.parametrize("content", ["no suspension", "suspend"])
async def test_handler_replying_and_then_returning_a_value_counts_the_second_answer_late(
    dispatcher: MessageDispatcher, content: str
) -> None:
    done = anyio.Event()

    async def twice(message: Message) -> Any:
        await dispatcher.reply(message, "first")
        await _maybe_sleep(message)
        done.set()
        return "second"

    async_listener(dispatcher, twice)
    with anyio.fail_after(5):
        async with dispatcher:
            await _warm(dispatcher)
            reply = await dispatcher.request(Message("ask", content, destination="x"))
            await done.wait()
    assert reply.content == "first"
    assert dispatcher.stats.late_replies == 1


@pytest.mark.anyio
async def test_handler_declining_before_it_suspends_fails_the_request_as_undeliverable(
    dispatcher: MessageDispatcher,
) -> None:
    async def decline(message: Message) -> Any:
        await _maybe_sleep(message)
        return UNHANDLED

    async_listener(dispatcher, decline)
    with anyio.fail_after(5):
        async with dispatcher:
            await _warm(dispatcher)
            with pytest.raises(UndeliverableError, match="has no rule for 'ask'"):
                await dispatcher.request(Message("ask", destination="x"))
    assert dispatcher.stats.unmatched == 1


@pytest.mark.anyio
@pytest.mark.parametrize("content", ["no suspension", "suspend"])
async def test_handler_that_can_suspend_raising_raises_handler_error_and_serving_goes_on(
    dispatcher: MessageDispatcher, content: str
) -> None:
    async def boom(message: Message) -> Any:
        await _maybe_sleep(message)
        raise ValueError(f"bad {message.content}")

    listener(dispatcher, "x", type="warm", callback=echo)
    dispatcher.listeners["x"].add_rule(type="boom", callback=boom)  # type: ignore[attr-defined]
    with anyio.fail_after(5):
        async with dispatcher:
            await _warm(dispatcher)
            with pytest.raises(HandlerError, match=f"ValueError: bad {content}") as caught:
                await dispatcher.request(Message("boom", content, destination="x"))
            still = await dispatcher.request(Message("warm", "alive", destination="x"))
    assert isinstance(caught.value.__cause__, ValueError)
    assert still.content == "alive"
    assert dispatcher.stats.handler_errors == 1


@pytest.mark.anyio
async def test_request_cancelled_while_its_handler_awaits_leaves_the_handler_running(
    dispatcher: MessageDispatcher,
) -> None:
    started, release, finished = anyio.Event(), anyio.Event(), anyio.Event()

    async def slow(message: Message) -> Any:
        started.set()
        await release.wait()
        finished.set()
        return "too late"

    async_listener(dispatcher, slow)
    with anyio.fail_after(5):
        async with dispatcher:
            await _warm(dispatcher)
            with anyio.CancelScope() as scope:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(dispatcher.request, Message("ask", destination="x"))
                    await started.wait()
                    scope.cancel()
            release.set()
            await finished.wait()
            after = await dispatcher.request(Message("warm", "alive", destination="x"))
    assert after.content == "alive"
    assert dispatcher.stats.late_replies == 1


@pytest.mark.anyio
async def test_messages_a_handler_sends_before_suspending_are_delivered_after_it_starts(
    dispatcher: MessageDispatcher,
) -> None:
    log: list[str] = []

    async def sender(message: Message) -> Any:
        log.append("handler start")
        await dispatcher.send(Message("letter", destination="y"))
        nested = await dispatcher.request(Message("nested", destination="y"))
        log.append(f"nested {nested.content}")
        return "done"

    def record(message: Message) -> str:
        log.append(message.type)
        return message.type

    async_listener(dispatcher, sender)
    listener(dispatcher, "y", callback=record)
    with anyio.fail_after(5):
        async with dispatcher:
            await _warm(dispatcher)
            reply = await dispatcher.request(Message("ask", destination="x"))
    assert reply.content == "done"
    assert log == ["handler start", "letter", "nested", "nested nested"]


@pytest.mark.anyio
async def test_concurrent_requests_to_handlers_that_suspend_all_get_their_own_answer(
    dispatcher: MessageDispatcher,
) -> None:
    async def work(message: Message) -> Any:
        for _ in range(message.content % 3):
            await anyio.sleep(0)
        return message.content * 2

    async_listener(dispatcher, work)
    answers: dict[int, Any] = {}

    async def ask(i: int) -> None:
        for j in range(5):
            n = i * 10 + j
            answers[n] = (await dispatcher.request(Message("ask", n, destination="x"))).content

    with anyio.fail_after(5):
        async with dispatcher:
            await _warm(dispatcher)
            async with anyio.create_task_group() as tg:
                for i in range(20):
                    tg.start_soon(ask, i)
    assert answers == {n: n * 2 for n in range(200) if n % 10 < 5}
    assert dispatcher.debug_counts()["pending"] == 0


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_handler_cancelling_its_own_task_before_suspending_gets_the_cancellation(
    dispatcher: MessageDispatcher,
) -> None:
    async def self_cancelling(message: Message) -> Any:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            return "caught"
        return "not cancelled"

    async_listener(dispatcher, self_cancelling)
    with anyio.fail_after(5):
        async with dispatcher:
            await _warm(dispatcher)
            first = await dispatcher.request(Message("ask", destination="x"))
            second = await dispatcher.request(Message("ask", destination="x"))
    assert (first.content, second.content) == ("caught", "caught")


@pytest.mark.anyio
async def test_timed_out_requests_leave_no_garbage_cycles(
    dispatcher: MessageDispatcher, jobs: Streams
) -> None:
    # Found by the fault suite: each timed-out request left a cycle (traceback -> frame
    # -> future -> error) that only the full collection freed, which stalled the loop
    # under a flood of timeouts.
    listener(dispatcher, "b", queue=jobs[0])
    timed_out = 0
    with anyio.fail_after(5):
        async with dispatcher:
            gc.collect()
            gc.disable()
            try:
                for _ in range(20):
                    try:
                        await dispatcher.request(Message("slow", destination="b"), timeout=0.001)
                    except ReplyTimeoutError:
                        timed_out += 1
                cycles = gc.collect()
            finally:
                gc.enable()
    assert timed_out == 20
    assert cycles == 0
