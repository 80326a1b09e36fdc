"""The core's cross-process layer, over an in-memory transport (the transport is not the point)."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import anyio
import pytest

from dispatchio import (
    BasicMessageListener,
    HandlerError,
    InvalidMessageError,
    ListenerId,
    Message,
    MessageDispatcher,
    SyncSendError,
    UndeliverableError,
    make_plugin_manager,
)
from dispatchio._errors import MessageTooLargeError, PeerLostError
from tests.core._memory_transport import MemoryTransport

_names = itertools.count()


@asynccontextmanager
async def mesh(count: int, **options: object) -> AsyncIterator[list[MessageDispatcher]]:
    """``count`` running dispatchers "p0".."pN"; each joins p0 only (gossip does the rest)."""
    tag = next(_names)
    first_url = f"mem://{tag}-0"
    dispatchers = []
    transports = []
    for index in range(count):
        transport = MemoryTransport()
        transports.append(transport)
        dispatchers.append(
            MessageDispatcher(
                f"p{index}",
                plugins=make_plugin_manager(load_entrypoints=False),
                listen=[f"mem://{tag}-{index}"],
                connect=[] if index == 0 else [first_url],
                transports=[transport],
                reply_timeout=5.0,
                **options,  # type: ignore[arg-type]
            )
        )
    async with AsyncExitStack() as stack:
        for dispatcher in dispatchers:
            await stack.enter_async_context(dispatcher)
        for dispatcher in dispatchers:
            for other in dispatchers:
                if other is not dispatcher:
                    await dispatcher.wait_for_peer(other.process_id, timeout=5)
        yield dispatchers


def echo(dispatcher: MessageDispatcher, lid: ListenerId, group: ListenerId | None = None) -> None:
    listener = BasicMessageListener(lid)
    listener.add_rule(type="ping", callback=lambda m: f"{lid}:{m.content}")
    dispatcher.register(listener)
    if group is not None:
        dispatcher.subscribe(group, listener)


@pytest.mark.anyio
async def test_request_reaches_a_listener_in_another_process() -> None:
    with anyio.fail_after(5):
        async with mesh(2) as (a, b):
            echo(b, "bob")
            await a.wait_for_listener("bob", timeout=5)
            reply = await a.request(Message("ping", 1, destination="bob"))
    assert (reply.content, reply.source, reply.process) == ("bob:1", "bob", "p1")


@pytest.mark.anyio
async def test_joining_one_member_reaches_all_of_them() -> None:
    with anyio.fail_after(5):
        async with mesh(3) as (_, b, c):
            echo(c, "carol")
            await b.wait_for_listener("carol", timeout=5)
            reply = await b.request(Message("ping", 2, destination="carol"))
    assert reply.content == "carol:2"


@pytest.mark.anyio
async def test_letter_reply_comes_back_to_the_source_listener_across_processes() -> None:
    got = anyio.Event()
    seen: list[Message] = []
    with anyio.fail_after(5):
        async with mesh(2) as (a, b):
            echo(b, "bob")
            sender = BasicMessageListener("alice")

            def collect(message: Message) -> None:
                seen.append(message)
                got.set()

            sender.add_rule(callback=collect)
            a.register(sender)
            await a.wait_for_listener("bob", timeout=5)
            await a.send(Message("ping", 3, source="alice", destination="bob"))
            await got.wait()
    assert (seen[0].content, seen[0].is_response) == ("bob:3", True)


@pytest.mark.anyio
async def test_gather_collects_every_subscriber_across_three_processes() -> None:
    with anyio.fail_after(5):
        async with mesh(3) as (a, b, c):
            echo(a, "a1", "g")
            echo(b, "b1", "g")
            echo(b, "b2", "g")
            echo(c, "c1", "g")
            await a.wait_for_subscribers("g", 4, timeout=5)
            replies = await a.gather(Message("ping", 0, group="g"), timeout=5)
    assert sorted(r.content for r in replies) == ["a1:0", "b1:0", "b2:0", "c1:0"]


@pytest.mark.anyio
async def test_unknown_destination_is_undeliverable_at_once() -> None:
    with anyio.fail_after(2), pytest.raises(UndeliverableError):
        async with mesh(2) as (a, _):
            await a.request(Message("ping", destination="nobody"), timeout=30)


@pytest.mark.anyio
async def test_send_sync_to_a_listener_in_another_process_raises_sync_send_error() -> None:
    with anyio.fail_after(5):
        async with mesh(2) as (a, b):
            echo(b, "bob")
            await a.wait_for_listener("bob", timeout=5)
            with pytest.raises(SyncSendError, match="another process"):
                a.send_sync(Message("ping", destination="bob"))


@pytest.mark.anyio
async def test_content_that_cannot_cross_is_rejected_at_send_time_naming_the_field() -> None:
    with anyio.fail_after(5):
        async with mesh(2) as (a, b):
            echo(b, "bob")
            await a.wait_for_listener("bob", timeout=5)
            with pytest.raises(InvalidMessageError, match=r"Message\.content\['hand'\]\[1\]"):
                await a.send(Message("ping", {"hand": [1, {2}]}, destination="bob"))


@pytest.mark.anyio
async def test_a_tuple_in_content_is_rejected_at_send_time_naming_its_path() -> None:
    # JSON has no tuple: it would arrive as a list, unequal to what was sent.
    with anyio.fail_after(5):
        async with mesh(2) as (a, b):
            echo(b, "bob")
            await a.wait_for_listener("bob", timeout=5)
            with pytest.raises(InvalidMessageError, match=r"Message\.content\['pos'\] is a tuple"):
                await a.send(Message("ping", {"pos": (1, 2)}, destination="bob"))
            reply = await a.request(Message("ping", {"pos": [1, 2]}, destination="bob"))
    assert reply.content == "bob:{'pos': [1, 2]}"


@pytest.mark.anyio
async def test_a_tuple_in_content_stays_a_tuple_in_one_process(
    dispatcher: MessageDispatcher,
) -> None:
    listener = BasicMessageListener("here")
    listener.add_rule(callback=lambda m: m.content)
    dispatcher.register(listener)
    with anyio.fail_after(5):
        async with dispatcher:
            reply = await dispatcher.request(Message("ping", (1, 2), destination="here"))
    assert reply.content == (1, 2)


@pytest.mark.anyio
async def test_a_reply_holding_a_tuple_comes_back_as_a_handler_error_naming_it() -> None:
    with anyio.fail_after(5):
        async with mesh(2) as (a, b):
            pair = BasicMessageListener("pair")
            pair.add_rule(callback=lambda m: (1, 2))
            b.register(pair)
            await a.wait_for_listener("pair", timeout=5)
            with pytest.raises(HandlerError, match=r"cannot be sent.*is a tuple"):
                await a.request(Message("ping", destination="pair"))


@pytest.mark.anyio
async def test_message_over_the_size_limit_is_rejected_on_the_sender_side() -> None:
    with anyio.fail_after(5):
        async with mesh(2, max_message_size=2000) as (a, b):
            echo(b, "bob")
            await a.wait_for_listener("bob", timeout=5)
            reply = await a.request(Message("ping", "x" * 1800, destination="bob"))
            with pytest.raises(MessageTooLargeError, match="max_message_size"):
                await a.request(Message("ping", "x" * 2100, destination="bob"))
    assert reply.content == "bob:" + "x" * 1800


@pytest.mark.anyio
async def test_pending_request_fails_with_peer_lost_when_the_peer_dies() -> None:
    received = anyio.Event()
    with anyio.fail_after(5):
        async with mesh(2) as (a, b):
            mute = BasicMessageListener("mute")

            def keep(message: Message) -> object:
                received.set()
                from dispatchio import DEFERRED

                return DEFERRED

            mute.add_rule(callback=keep)
            b.register(mute)
            await a.wait_for_listener("mute", timeout=5)
            b_transport = b._mesh.transports["mem"]  # type: ignore[union-attr]

            async def kill_when_received() -> None:
                await received.wait()
                assert isinstance(b_transport, MemoryTransport)
                b_transport.crash()

            async with anyio.create_task_group() as tg:
                tg.start_soon(kill_when_received)
                with pytest.raises(PeerLostError, match="p1"):
                    await a.request(Message("ask", destination="mute"), timeout=30)
            assert "mute" not in a._mesh.remote_listener  # type: ignore[union-attr]


@pytest.mark.anyio
async def test_unregister_is_seen_by_other_processes() -> None:
    with anyio.fail_after(5):
        async with mesh(2) as (a, b):
            echo(b, "bob")
            await a.wait_for_listener("bob", timeout=5)
            b.unregister("bob")
            while "bob" in a._mesh.remote_listener:  # type: ignore[union-attr]
                await a._mesh.changed.wait()  # type: ignore[union-attr]  # the delta, not a clock
            with pytest.raises(UndeliverableError):
                await a.request(Message("ping", destination="bob"))


@pytest.mark.anyio
async def test_remote_requests_to_async_callbacks_with_and_without_await_are_answered() -> None:
    async def at_once(message: Message) -> str:
        return f"now:{message.content}"

    async def later(message: Message) -> str:
        await anyio.sleep(0)
        return f"later:{message.content}"

    with anyio.fail_after(5):
        async with mesh(2) as (a, b):
            target = BasicMessageListener("bob")
            target.add_rule(type="now", callback=at_once)
            target.add_rule(type="later", callback=later)
            b.register(target)
            await a.wait_for_listener("bob", timeout=5)
            replies = [
                (await a.request(Message(kind, i, destination="bob"))).content
                for i, kind in enumerate(["now", "later", "now", "later"])
            ]
    assert replies == ["now:0", "later:1", "now:2", "later:3"]


# ---------------------------------------------------------------- waiting, and what it says


@pytest.mark.anyio
async def test_wait_for_listener_timeout_names_the_listener_urls_and_what_is_connected() -> None:
    with anyio.fail_after(5):
        async with mesh(2) as (a, b):
            echo(a, "alice")
            await b.wait_for_listener("alice", timeout=5)
            with pytest.raises(TimeoutError) as caught:
                await b.wait_for_listener("greeter", timeout=0.05)
    text = str(caught.value)
    assert text.startswith(
        "no process has a listener 'greeter' within 0.05 s; connect= URLs: mem://"
    )
    assert "connected processes: 'p0'" in text
    assert "listeners in other processes: 'alice'" in text


@pytest.mark.anyio
async def test_wait_for_peer_and_subscribers_timeouts_say_what_is_missing() -> None:
    with anyio.fail_after(5):
        async with mesh(2) as (a, _):
            with pytest.raises(TimeoutError, match=r"^process 'p9' did not connect within 0\.05 s"):
                await a.wait_for_peer("p9", timeout=0.05)
            echo(a, "a1", "g")
            with pytest.raises(
                TimeoutError,
                match=r"^group 'g' did not reach 2 subscriber\(s\) \(it has 1\) within 0\.05 s; ",
            ):
                await a.wait_for_subscribers("g", 2, timeout=0.05)


@pytest.mark.anyio
async def test_wait_for_listener_without_a_transport_says_only_local_listeners_count(
    dispatcher: MessageDispatcher,
) -> None:
    with anyio.fail_after(5):
        async with dispatcher:
            with pytest.raises(TimeoutError, match=r"no transport .* only its own listeners count"):
                await dispatcher.wait_for_listener("greeter", timeout=0.05)


@pytest.mark.anyio
async def test_waits_without_a_transport_end_when_a_local_listener_arrives(
    dispatcher: MessageDispatcher,
) -> None:
    # The waits' timeouts outlast the test's bound: only the registration can end them.
    done: list[str] = []

    async def wait_listener() -> None:
        await dispatcher.wait_for_listener("late", timeout=60)
        done.append("listener")

    async def wait_group() -> None:
        await dispatcher.wait_for_subscribers("g", 2, timeout=60)
        done.append("group")

    with anyio.fail_after(5):
        async with dispatcher, anyio.create_task_group() as tg:
            tg.start_soon(wait_listener)
            tg.start_soon(wait_group)
            await anyio.wait_all_tasks_blocked()
            echo(dispatcher, "late", "g")
            await anyio.wait_all_tasks_blocked()
            assert done == ["listener"]  # one subscriber of two: still waiting
            echo(dispatcher, "other", "g")
    assert done == ["listener", "group"]


@pytest.mark.anyio
async def test_waits_with_a_transport_end_when_a_local_listener_arrives() -> None:
    with anyio.fail_after(5):
        async with mesh(1) as (a,), anyio.create_task_group() as tg:
            tg.start_soon(lambda: a.wait_for_listener("late", timeout=60))
            await anyio.wait_all_tasks_blocked()
            echo(a, "late")


@pytest.mark.anyio
async def test_directory_lists_every_connected_process_with_its_listeners_and_groups() -> None:
    import json

    with anyio.fail_after(5):
        async with mesh(3) as (a, b, c):
            echo(a, "a1", "g")
            echo(b, "b2", 5)
            echo(b, "b1", 5)
            echo(c, 9)
            await a.wait_for_listener(9, timeout=5)
            await a.wait_for_subscribers(5, 2, timeout=5)
            directory = a.directory()
            urls = [list(d.listen_urls) for d in (a, b, c)]
    assert all(urls)
    assert json.loads(json.dumps(directory)) == directory
    assert directory == {
        "process": "p0",
        "processes": [
            {
                "process": "p0",
                "local": True,
                "urls": urls[0],
                "listeners": ["a1"],
                "groups": [{"group": "g", "members": ["a1"]}],
            },
            {
                "process": "p1",
                "local": False,
                "urls": urls[1],
                "listeners": ["b1", "b2"],
                "groups": [{"group": 5, "members": ["b1", "b2"]}],
            },
            {"process": "p2", "local": False, "urls": urls[2], "listeners": [9], "groups": []},
        ],
    }


@pytest.mark.anyio
async def test_a_transports_handler_names_the_dispatcher_it_serves() -> None:
    with anyio.fail_after(5):
        async with mesh(2) as dispatchers:
            for dispatcher in dispatchers:
                transport = dispatcher._mesh.transports["mem"]  # type: ignore[union-attr]
                assert isinstance(transport, MemoryTransport)
                assert transport.handler is not None
                assert transport.handler.dispatcher is dispatcher
