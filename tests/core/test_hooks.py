"""Observation hooks: which dispatcher events reach a plugin, with what, and when."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import anyio
import pytest

from dispatchio import (
    DEFERRED,
    BasicMessageListener,
    HandlerError,
    Message,
    MessageDispatcher,
    MessageListener,
    PluginManager,
    ReplyTimeoutError,
    UndeliverableError,
    hookimpl,
)
from tests.core._helpers import listener as one_rule_listener


class Observer:
    """A plugin implementing every observation hook; records each call's arguments."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def of(self, hook: str) -> list[dict[str, Any]]:
        """The arguments of every call of ``hook``, in order."""
        return [kwargs for name, kwargs in self.calls if name == hook]

    @hookimpl
    def dispatchio_message_sent(self, dispatcher: MessageDispatcher, message: Message) -> None:
        self.calls.append(("sent", {"dispatcher": dispatcher, "message": message}))

    @hookimpl
    def dispatchio_message_delivered(
        self, dispatcher: MessageDispatcher, message: Message, listener: MessageListener
    ) -> None:
        self.calls.append(
            ("delivered", {"dispatcher": dispatcher, "message": message, "listener": listener})
        )

    @hookimpl
    def dispatchio_message_returned(self, dispatcher: MessageDispatcher, message: Message) -> None:
        self.calls.append(("returned", {"dispatcher": dispatcher, "message": message}))

    @hookimpl
    def dispatchio_reply_timed_out(self, dispatcher: MessageDispatcher, message: Message) -> None:
        self.calls.append(("timed_out", {"dispatcher": dispatcher, "message": message}))

    @hookimpl
    def dispatchio_handler_failed(
        self,
        dispatcher: MessageDispatcher,
        message: Message,
        listener: MessageListener | None,
        error: Exception,
    ) -> None:
        kwargs = {"dispatcher": dispatcher, "message": message, "listener": listener}
        self.calls.append(("failed", {**kwargs, "error": error}))

    @hookimpl
    def dispatchio_message_unmatched(
        self, dispatcher: MessageDispatcher, message: Message, listener: MessageListener | None
    ) -> None:
        self.calls.append(
            ("unmatched", {"dispatcher": dispatcher, "message": message, "listener": listener})
        )


@pytest.fixture
def observer(plugins: PluginManager) -> Observer:
    """An `Observer` registered on the test's plugin manager."""
    obs = Observer()
    plugins.register(obs, name="observer")
    return obs


@pytest.fixture
def observed(plugins: PluginManager, observer: Observer) -> MessageDispatcher:
    """A dispatcher (not running) created after the observer was registered."""
    return MessageDispatcher("test-process", reply_timeout=5.0, plugins=plugins)


def echo_listener(lid: str) -> BasicMessageListener:
    """A registered-to-be listener that answers ``ping`` with the message's content."""
    listener = BasicMessageListener(lid)
    listener.add_rule(type="ping", callback=lambda m: m.content)
    return listener


async def request_failing(
    observed: MessageDispatcher, fail: Callable[[Message], Any]
) -> tuple[BasicMessageListener, Message]:
    """Register listener "failing" with callback ``fail`` (raising ``ValueError("boom")``), run
    ``observed`` and request it, expecting the HandlerError: the listener and the message."""
    listener = one_rule_listener(observed, "failing", callback=fail)
    message = Message("ping", destination="failing")
    async with observed:
        with pytest.raises(HandlerError, match="ValueError: boom"):
            await observed.request(message)
    return listener, message


# --------------------------------------------------------------------------- the switch


def test_without_observer_plugin_dispatcher_is_not_observed(dispatcher: MessageDispatcher) -> None:
    assert dispatcher._observers.observed is False


def test_transport_only_plugin_does_not_switch_observation_on(plugins: PluginManager) -> None:
    class TransportsOnly:
        @hookimpl
        def dispatchio_register_transports(self) -> None:
            pass

    plugins.register(TransportsOnly())
    assert MessageDispatcher("p", plugins=plugins)._observers.observed is False


def test_observer_plugin_switches_observation_on(observed: MessageDispatcher) -> None:
    assert observed._observers.observed is True


def test_refresh_hooks_switches_observation_off_after_unregistering(
    plugins: PluginManager, observer: Observer, observed: MessageDispatcher
) -> None:
    plugins.unregister(observer)
    observed.refresh_hooks()
    assert observed._observers.observed is False


# --------------------------------------------------------------------------- message_sent


def test_message_sent_fires_on_send_sync(observer: Observer, observed: MessageDispatcher) -> None:
    observed.register(echo_listener("echo"))
    message = Message("ping", 1, destination="echo")
    observed.send_sync(message)
    assert observer.of("sent") == [{"dispatcher": observed, "message": message}]


def test_message_sent_fires_after_id_and_process_are_stamped(
    plugins: PluginManager, observed: MessageDispatcher
) -> None:
    stamped: list[tuple[object, object]] = []

    class Stamps:
        @hookimpl
        def dispatchio_message_sent(self, message: Message) -> None:
            stamped.append((message.id, message.process))

    plugins.register(Stamps())
    observed.register(echo_listener("echo"))
    message = Message("ping", 1, destination="echo")
    observed.send_sync(message)
    assert stamped == [(message.id, "test-process")]
    assert message.id is not None


def test_message_sent_fires_before_the_handler_runs(
    observer: Observer, observed: MessageDispatcher
) -> None:
    seen_by_handler: list[int] = []
    one_rule_listener(
        observed, "echo", callback=lambda m: seen_by_handler.append(len(observer.of("sent")))
    )
    observed.send_sync(Message("ping", destination="echo"))
    assert seen_by_handler == [1]


@pytest.mark.anyio
async def test_message_sent_fires_on_send(observer: Observer, observed: MessageDispatcher) -> None:
    with anyio.fail_after(5):
        handled = anyio.Event()
        one_rule_listener(observed, "echo", type="ping", callback=lambda m: handled.set())
        message = Message("ping", 1, destination="echo")
        async with observed:
            await observed.send(message)
            await handled.wait()
        assert observer.of("sent") == [{"dispatcher": observed, "message": message}]


@pytest.mark.anyio
async def test_message_sent_fires_on_request(
    observer: Observer, observed: MessageDispatcher
) -> None:
    with anyio.fail_after(5):
        observed.register(echo_listener("echo"))
        message = Message("ping", 1, destination="echo")
        async with observed:
            await observed.request(message)
        assert observer.of("sent") == [{"dispatcher": observed, "message": message}]


# --------------------------------------------------------------------------- message_delivered


@pytest.mark.anyio
async def test_message_delivered_fires_once_per_group_subscriber(
    observer: Observer, observed: MessageDispatcher
) -> None:
    with anyio.fail_after(5):
        handled: list[str] = []
        both = anyio.Event()

        def handle(message: Message) -> None:
            handled.append(str(message.destination))
            if len(handled) == 2:
                both.set()

        first, second = BasicMessageListener("a"), BasicMessageListener("b")
        for listener in (first, second):
            listener.add_rule(type="ping", callback=handle)
            observed.register(listener)
            observed.subscribe("players", listener)
        async with observed:
            await observed.send(Message("ping", group="players"))
            await both.wait()
        delivered = observer.of("delivered")
        assert [d["listener"] for d in delivered] == [first, second]
        assert [d["message"].destination for d in delivered] == ["a", "b"]


def test_message_delivered_fires_once_per_group_subscriber_on_send_sync(
    observer: Observer, observed: MessageDispatcher
) -> None:
    first, second = echo_listener("a"), echo_listener("b")
    for listener in (first, second):
        observed.register(listener)
        observed.subscribe("players", listener)
    assert observed.send_sync(Message("ping", 7, group="players")) == [7, 7]
    assert [d["listener"] for d in observer.of("delivered")] == [first, second]


@pytest.mark.anyio
async def test_message_delivered_fires_before_the_handler_runs(
    observer: Observer, observed: MessageDispatcher
) -> None:
    with anyio.fail_after(5):
        one_rule_listener(observed, "echo", callback=lambda m: len(observer.of("delivered")))
        async with observed:
            reply = await observed.request(Message("ping", destination="echo"))
        assert reply.content == 1


# --------------------------------------------------------------------------- message_returned


@pytest.mark.anyio
async def test_message_returned_fires_for_send_to_nobody(
    observer: Observer, observed: MessageDispatcher
) -> None:
    with anyio.fail_after(5):
        got_back = anyio.Event()
        one_rule_listener(observed, "sender", callback=lambda m: got_back.set())
        message = Message("ping", "hello", source="sender", destination="nobody")
        async with observed:
            await observed.send(message)
            await got_back.wait()
        [returned] = observer.of("returned")
        letter = returned["message"]
        assert returned["dispatcher"] is observed
        assert letter.is_response is True
        assert letter.id == message.id
        assert letter.content == "hello"
        assert letter.error is not None
        assert letter.error.startswith("undeliverable: ")


@pytest.mark.anyio
async def test_message_returned_fires_for_a_handler_error_of_a_letter(
    observer: Observer, observed: MessageDispatcher
) -> None:
    with anyio.fail_after(5):
        got_back = anyio.Event()
        one_rule_listener(observed, "sender", callback=lambda m: got_back.set())

        def fail(message: Message) -> None:
            raise ValueError("boom")

        one_rule_listener(observed, "failing", callback=fail)
        message = Message("ping", source="sender", destination="failing", response_required=True)
        async with observed:
            await observed.send(message)
            await got_back.wait()
        [returned] = observer.of("returned")
        assert returned["message"].error.startswith("handler_error: ValueError: boom")


# --------------------------------------------------------------------------- reply_timed_out


@pytest.mark.anyio
async def test_reply_timed_out_fires_when_a_request_times_out(
    observer: Observer, observed: MessageDispatcher
) -> None:
    with anyio.fail_after(5):
        one_rule_listener(observed, "slow", callback=lambda m: DEFERRED)
        message = Message("ping", destination="slow")
        async with observed:
            with pytest.raises(ReplyTimeoutError):
                await observed.request(message, timeout=0.05)
        assert observer.of("timed_out") == [{"dispatcher": observed, "message": message}]


@pytest.mark.anyio
async def test_reply_timed_out_does_not_fire_when_a_gather_ends(
    observer: Observer, observed: MessageDispatcher
) -> None:
    with anyio.fail_after(5):
        listener = one_rule_listener(observed, "slow", callback=lambda m: DEFERRED)
        observed.subscribe("all", listener)
        async with observed:
            assert await observed.gather(Message("ping", group="all"), timeout=0.05) == []
        assert observer.of("timed_out") == []


# --------------------------------------------------------------------------- handler_failed


@pytest.mark.anyio
async def test_handler_failed_receives_the_error_of_an_async_handler(
    observer: Observer, observed: MessageDispatcher
) -> None:
    with anyio.fail_after(5):
        raised: list[ValueError] = []

        async def fail(message: Message) -> None:
            raised.append(ValueError("boom"))
            raise raised[0]

        listener, message = await request_failing(observed, fail)
        assert observer.of("failed") == [
            {"dispatcher": observed, "message": message, "listener": listener, "error": raised[0]}
        ]


@pytest.mark.anyio
async def test_handler_failed_fires_for_a_handler_raising_after_suspending(
    observer: Observer, observed: MessageDispatcher
) -> None:
    with anyio.fail_after(5):
        raised: list[ValueError] = []

        async def fail(message: Message) -> None:
            await anyio.sleep(0)
            raised.append(ValueError("boom"))
            raise raised[0]

        listener, _ = await request_failing(observed, fail)
        [failed] = observer.of("failed")
        assert failed["error"] is raised[0]
        assert failed["listener"] is listener


@pytest.mark.anyio
async def test_delivered_and_failed_fire_once_for_a_handler_started_in_the_requesters_call(
    observer: Observer, observed: MessageDispatcher
) -> None:
    # After a first request the leader is parked: a request to an async def rule that
    # could suspend is then started in the requester's call (on asyncio).
    with anyio.fail_after(5):
        raised: list[ValueError] = []

        async def fail(message: Message) -> None:
            if message.content == "suspend":
                await anyio.sleep(0)
            raised.append(ValueError("boom"))
            raise raised[0]

        listener = one_rule_listener(observed, "failing", type="warm", callback=lambda m: 1)
        listener.add_rule(type="ping", callback=fail)
        message = Message("ping", destination="failing")
        async with observed:
            await observed.request(Message("warm", destination="failing"))
            with pytest.raises(HandlerError, match="ValueError: boom"):
                await observed.request(message)
        assert [d["message"] for d in observer.of("delivered")][1:] == [message]
        assert observer.of("failed") == [
            {"dispatcher": observed, "message": message, "listener": listener, "error": raised[0]}
        ]


@pytest.mark.anyio
async def test_handler_failed_fires_for_a_plain_callback_answering_a_request(
    observer: Observer, observed: MessageDispatcher
) -> None:
    with anyio.fail_after(5):
        raised: list[ValueError] = []

        def fail(message: Message) -> None:
            raised.append(ValueError("boom"))
            raise raised[0]

        await request_failing(observed, fail)
        [failed] = observer.of("failed")
        assert failed["error"] is raised[0]


def test_handler_failed_does_not_fire_for_send_sync(
    observer: Observer, observed: MessageDispatcher
) -> None:
    def fail(message: Message) -> None:
        raise ValueError("boom")

    one_rule_listener(observed, "failing", callback=fail)
    with pytest.raises(ValueError, match="boom"):
        observed.send_sync(Message("ping", destination="failing"))
    assert observer.of("failed") == []


# --------------------------------------------------------------------------- message_unmatched


@pytest.mark.anyio
async def test_message_unmatched_fires_when_no_rule_matches(
    observer: Observer, observed: MessageDispatcher
) -> None:
    with anyio.fail_after(5):
        listener = echo_listener("echo")
        observed.register(listener)
        message = Message("pong", destination="echo")
        async with observed:
            with pytest.raises(UndeliverableError, match="no rule for 'pong'"):
                await observed.request(message)
        assert observer.of("unmatched") == [
            {"dispatcher": observed, "message": message, "listener": listener}
        ]


def test_message_unmatched_fires_on_send_sync(
    observer: Observer, observed: MessageDispatcher
) -> None:
    listener = echo_listener("echo")
    observed.register(listener)
    message = Message("pong", destination="echo")
    with pytest.raises(UndeliverableError, match="no rule for 'pong'"):
        observed.send_sync(message)
    assert observer.of("unmatched") == [
        {"dispatcher": observed, "message": message, "listener": listener}
    ]


# --------------------------------------------------------------------------- implementations


def test_hook_implementation_may_accept_a_subset_of_parameters(plugins: PluginManager) -> None:
    types_seen: list[str] = []

    class MessageOnly:
        @hookimpl
        def dispatchio_message_sent(self, message: Message) -> None:
            types_seen.append(message.type)

    plugins.register(MessageOnly())
    dispatcher = MessageDispatcher("p", plugins=plugins)
    dispatcher.register(echo_listener("echo"))
    dispatcher.send_sync(Message("ping", destination="echo"))
    assert types_seen == ["ping"]


def test_raising_hook_is_logged_and_does_not_break_delivery(
    plugins: PluginManager, caplog: pytest.LogCaptureFixture
) -> None:
    class Raises:
        @hookimpl
        def dispatchio_message_delivered(self) -> None:
            raise RuntimeError("observer bug")

    plugins.register(Raises())
    dispatcher = MessageDispatcher("p", plugins=plugins)
    dispatcher.register(echo_listener("echo"))
    with caplog.at_level(logging.ERROR, logger="dispatchio"):
        assert dispatcher.send_sync(Message("ping", 42, destination="echo")) == 42
    [record] = caplog.records
    assert record.getMessage() == "a dispatchio_message_delivered hook implementation raised"
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], RuntimeError)


@pytest.mark.anyio
async def test_raising_hook_does_not_break_async_delivery(
    plugins: PluginManager, caplog: pytest.LogCaptureFixture
) -> None:
    class Raises:
        @hookimpl
        def dispatchio_message_sent(self) -> None:
            raise RuntimeError("observer bug")

    plugins.register(Raises())
    dispatcher = MessageDispatcher("p", plugins=plugins)
    dispatcher.register(echo_listener("echo"))
    with anyio.fail_after(5), caplog.at_level(logging.ERROR, logger="dispatchio"):
        async with dispatcher:
            reply = await dispatcher.request(Message("ping", 42, destination="echo"))
    assert reply.content == 42
    assert [r.getMessage() for r in caplog.records] == [
        "a dispatchio_message_sent hook implementation raised"
    ]


# --------------------------------------------------------------------------- refresh_hooks


def test_observer_registered_later_is_not_called_until_refresh_hooks(
    plugins: PluginManager, dispatcher: MessageDispatcher
) -> None:
    dispatcher.register(echo_listener("echo"))
    observer = Observer()
    plugins.register(observer)
    dispatcher.send_sync(Message("ping", destination="echo"))
    assert observer.calls == []
    dispatcher.refresh_hooks()
    dispatcher.send_sync(Message("ping", destination="echo"))
    assert [name for name, _ in observer.calls] == ["sent", "delivered"]


@pytest.mark.anyio
async def test_observer_registered_later_is_called_once_the_dispatcher_starts(
    plugins: PluginManager, dispatcher: MessageDispatcher
) -> None:
    dispatcher.register(echo_listener("echo"))
    observer = Observer()
    plugins.register(observer)
    assert dispatcher._observers.observed is False
    with anyio.fail_after(5):
        async with dispatcher:
            await dispatcher.request(Message("ping", destination="echo"))
    assert [name for name, _ in observer.calls] == ["sent", "delivered"]
