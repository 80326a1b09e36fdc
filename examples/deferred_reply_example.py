"""Deferred replies: answering a message later, or never.

A handler does not have to answer at once. It can return `dispatchio.DEFERRED`, keep
the message, and answer whenever it is ready with ``await dispatcher.reply(message,
content)``. The sender simply waits (here with ``request``) and cannot tell the
difference, except in time.

* Part 1, a deferred callback: the expenses desk files a claim and answers only when
  the manager's approval (another message, sent later) arrives.
* Part 2, a queue rule: the kitchen puts orders on an anyio memory object stream; a
  cook task takes them off one by one and replies to each when the dish is ready.
* Part 3, a reply that never comes: a ``request`` to a black hole raises
  `dispatchio.ReplyTimeoutError`; a letter sent with ``response_required=True`` comes
  back to its sender's listener as a message whose ``error`` starts with "timeout".
  A reply that arrives after its sender gave up is dropped (and counted).

Machine-checkable lines start with ``REPLY``, ``TIMEOUT``, ``LETTER`` and ``STATS``.

Run::

    python examples/deferred_reply_example.py
"""

from __future__ import annotations

import anyio
from anyio.abc import ObjectReceiveStream

from dispatchio import (
    DEFERRED,
    BasicMessageListener,
    Message,
    MessageDispatcher,
    Reply,
    ReplyTimeoutError,
)


class ExpensesDesk(BasicMessageListener):
    """Files expense claims and answers each one when the manager approves it."""

    def __init__(self, dispatcher: MessageDispatcher) -> None:
        super().__init__("expenses")
        self.dispatcher = dispatcher
        self.claims: dict[str, Message] = {}  # item -> the claim message, kept unanswered
        self.filed = anyio.Event()
        self.add_rule(type="claim", callback=self.on_claim)
        self.add_rule(type="approve", source="manager", callback=self.on_approve)

    def on_claim(self, claim: Message) -> Reply:
        item = claim.content["item"]
        print(f"  expenses: filed {claim.source}'s claim for a {item}; waiting for the manager")
        self.claims[item] = claim
        self.filed.set()
        return DEFERRED  # "I'll get back to you": no reply now

    async def on_approve(self, approval: Message) -> None:
        item = approval.content["item"]
        print(f"  expenses: the manager approved the {item}; answering the claim now")
        claim = self.claims.pop(item)
        await self.dispatcher.reply(claim, f"{item} approved by {approval.source}")


class BlackHole(BasicMessageListener):
    """Keeps every message and answers none of them (until too late)."""

    def __init__(self) -> None:
        super().__init__("black-hole")
        self.kept: list[Message] = []
        self.add_rule(callback=self.swallow)

    def swallow(self, message: Message) -> Reply:
        print(f"  black-hole: swallowed {message.type!r} from {message.source}")
        self.kept.append(message)
        return DEFERRED


class Employee(BasicMessageListener):
    """Alice. Her listener receives the letters that come back to her."""

    def __init__(self) -> None:
        super().__init__("alice")
        self.returned = anyio.Event()
        self.add_rule(where=lambda m: m.error is not None, callback=self.on_returned)

    def on_returned(self, letter: Message) -> None:
        print(f"LETTER alice <- {letter.type!r} came back: {letter.error}")
        self.returned.set()


async def cook(dispatcher: MessageDispatcher, orders: ObjectReceiveStream[Message]) -> None:
    """Take orders off the kitchen's queue, one at a time, and reply when each is ready."""
    async with orders:
        async for order in orders:
            dish = order.content
            print(f"  cook: cooking {dish} for {order.source}")
            await anyio.sleep(0.02)
            await dispatcher.reply(order, f"{dish} is ready")


async def part_deferred_callback(dispatcher: MessageDispatcher, desk: ExpensesDesk) -> None:
    print("== 1. a deferred callback")

    async def claim() -> None:
        print("alice -> expenses: claim a laptop (request, waits for the reply)")
        reply = await dispatcher.request(
            Message("claim", {"item": "laptop"}, source="alice", destination="expenses"),
            timeout=1.0,
        )
        print(f"REPLY alice <- {reply.source}: {reply.content}")

    async with anyio.create_task_group() as tg:
        tg.start_soon(claim)
        await desk.filed.wait()  # the claim is filed, and nobody has answered it yet
        print("manager -> expenses: approve the laptop")
        await dispatcher.send(
            Message("approve", {"item": "laptop"}, source="manager", destination="expenses")
        )


async def part_queue(dispatcher: MessageDispatcher) -> None:
    print("== 2. a queue rule and a consumer task")

    async def order(table: str, dish: str) -> None:
        print(f"{table} -> kitchen: {dish}")
        reply = await dispatcher.request(
            Message("order", dish, source=table, destination="kitchen"), timeout=1.0
        )
        print(f"REPLY {table} <- {reply.source}: {reply.content}")

    async with anyio.create_task_group() as tg:
        for table, dish in [("table-1", "soup"), ("table-2", "pasta"), ("table-3", "cake")]:
            tg.start_soon(order, table, dish)


async def part_no_reply(dispatcher: MessageDispatcher, alice: Employee, hole: BlackHole) -> None:
    print("== 3. replies that never come")

    print("alice -> black-hole: are you there? (request, timeout 0.1 s)")
    try:
        await dispatcher.request(
            Message("ping", source="alice", destination="black-hole"), timeout=0.1
        )
    except ReplyTimeoutError as exc:
        print(f"TIMEOUT request: {exc}")

    print("alice -> black-hole: hello? (send, response_required, reply_timeout 0.2 s)")
    await dispatcher.send(
        Message("hello", source="alice", destination="black-hole", response_required=True),
        reply_timeout=0.2,
    )
    await alice.returned.wait()  # the timeout comes back to alice's listener

    # The black hole answers the first message at last: nobody waits any more.
    await dispatcher.reply(hole.kept[0], "sorry, I was busy")
    print("  black-hole: answered 'ping' at last (too late: the reply is dropped)")
    stats = dispatcher.stats
    print(f"STATS timeouts={stats.timeouts} late_replies={stats.late_replies}")


async def main_async() -> None:
    dispatcher = MessageDispatcher("office", reply_timeout=1.0)
    desk = ExpensesDesk(dispatcher)
    hole = BlackHole()
    alice = Employee()
    kitchen = BasicMessageListener("kitchen")
    # A queue rule: every "order" goes onto this stream; the cook replies later.
    to_cook, orders = anyio.create_memory_object_stream[Message](max_buffer_size=10)
    kitchen.add_rule(type="order", queue=to_cook)
    for listener in (desk, hole, alice, kitchen):
        dispatcher.register(listener)

    with anyio.fail_after(5.0):
        async with dispatcher, anyio.create_task_group() as kitchen_staff:
            kitchen_staff.start_soon(cook, dispatcher, orders)
            await part_deferred_callback(dispatcher, desk)
            await part_queue(dispatcher)
            await part_no_reply(dispatcher, alice, hole)
            to_cook.close()  # closing time: the cook's loop ends


def main() -> None:
    anyio.run(main_async)


if __name__ == "__main__":
    main()
