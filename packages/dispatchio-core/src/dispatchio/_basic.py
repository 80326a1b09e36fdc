"""BasicMessageListener: a listener with an ordered filtering table of rules."""

from __future__ import annotations

import enum
import functools
import inspect
import types
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, Protocol

from dispatchio._errors import SyncSendError
from dispatchio._listener import MessageListener
from dispatchio._message import DEFERRED, UNHANDLED, ListenerId, Message

_ABSENT: Final = object()


class Action(enum.Enum):
    """What a rule does with a message it matches."""

    CALLBACK = "callback"
    ASYNC_CALLBACK = "async callback"
    QUEUE = "queue"
    LISTENER = "listener"


# The members again, as module constants for the per-message paths: CPython 3.11 does
# not specialise attribute reads on an enum class, so ``Action.CALLBACK`` costs several
# times a global's read there.
CALLBACK: Final = Action.CALLBACK
ASYNC_CALLBACK: Final = Action.ASYNC_CALLBACK
QUEUE: Final = Action.QUEUE
LISTENER: Final = Action.LISTENER


class _PutNowait(Protocol):
    def put_nowait(self, item: Any, /) -> Any: ...


class _SendNowait(Protocol):
    def send_nowait(self, item: Any, /) -> Any: ...


#: A queue a rule can fill: `queue.Queue`, `asyncio.Queue`, or an anyio memory object
#: send stream (anything with ``put_nowait`` or ``send_nowait``).
MessageQueue = _PutNowait | _SendNowait
Callback = Callable[[Message], Any]
AsyncCallback = Callable[[Message], Awaitable[Any]]


class Rule:
    """One row of a `BasicMessageListener`'s filtering table; returned by ``add_rule``.

    Attributes are read-only by convention: to change a rule, remove it and add another.
    """

    __slots__ = (
        "action",
        "content",
        "destination",
        "group",
        "inline",
        "put",
        "source",
        "sync_call",
        "target",
        "test",
        "type",
        "where",
    )

    def __init__(
        self,
        *,
        type: str | None,
        source: ListenerId | None,
        destination: ListenerId | None,
        group: ListenerId | None,
        content: Mapping[str, Any] | None,
        where: Callable[[Message], bool] | None,
        action: Action,
        target: Any,
    ) -> None:
        self.type = type
        self.source = source
        self.destination = destination
        self.group = group
        self.content = dict(content) if content else None
        self.where = where
        self.action = action
        self.target = target
        # Everything but ``type`` folds into one predicate, None when there is nothing to test.
        self.test = _compile_test(source, destination, group, self.content, where)
        self.put: Callable[[Any], Any] | None = None
        if action is QUEUE:
            self.put = getattr(target, "put_nowait", None) or target.send_nowait
        # What send_sync calls: the callback itself when there is one, so the hot path is
        # one call.
        self.sync_call: Callable[[Message], Any] = self._sync_action()
        # Whether the dispatcher may run the callback in the sender's task, ahead of the
        # queue when nothing waits there: a plain callback, or an ``async def`` one that
        # cannot suspend (its coroutine is then run to its end at once).
        self.inline = action is CALLBACK or (action is ASYNC_CALLBACK and _never_suspending(target))

    def _sync_action(self) -> Callable[[Message], Any]:
        action = self.action
        if action is CALLBACK:
            return self.target  # type: ignore[no-any-return]
        if action is QUEUE:
            put = self.put
            assert put is not None

            def enqueue(message: Message) -> None:
                put(message)

            return enqueue
        if action is LISTENER:
            listener = self.target

            def chain(message: Message) -> Any:
                return listener.handle_message_sync(message)

            return chain
        name = getattr(self.target, "__qualname__", repr(self.target))

        def refuse(message: Message) -> Any:
            raise SyncSendError(
                f"async callback {name} cannot answer send_sync({message.type!r});"
                " use await send() or request()"
            )

        return refuse

    def __repr__(self) -> str:
        criteria = [
            f"{name}={getattr(self, name)!r}"
            for name in ("type", "source", "destination", "group", "content", "where")
            if getattr(self, name) is not None
        ]
        return f"Rule({', '.join(criteria) or 'any'} -> {self.action.value} {self.target!r})"


def _compile_test(
    source: ListenerId | None,
    destination: ListenerId | None,
    group: ListenerId | None,
    content: dict[str, Any] | None,
    where: Callable[[Message], bool] | None,
) -> Callable[[Message], bool] | None:
    checks: list[Callable[[Message], bool]] = []
    if source is not None:
        checks.append(lambda m: m.source == source)
    if destination is not None:
        checks.append(lambda m: m.destination == destination)
    if group is not None:
        checks.append(lambda m: m.group == group)
    if content:
        paths = [(path.split("."), value) for path, value in content.items()]
        checks.append(lambda m: all(_lookup(m.content, p) == v for p, v in paths))
    if where is not None:
        checks.append(where)
    if not checks:
        return None
    if len(checks) == 1:
        return checks[0]
    return lambda m: all(check(m) for check in checks)


def _check_content_criteria(content: object) -> None:
    if not isinstance(content, Mapping):
        raise TypeError(
            "content= takes a mapping of dotted paths inside the message content to the"
            f" values they must have, e.g. {{'card.suit': 'hearts'}}; got {content!r}"
            " (to match the whole content, use where=lambda m: m.content == ...)"
        )
    for path in content:
        if not isinstance(path, str) or not path:
            raise TypeError(
                f"content= paths are non-empty strings such as 'card.suit', got {path!r}"
            )


def _lookup(obj: Any, path: list[str]) -> Any:
    """Follow a dotted path through mapping keys or attributes; `_ABSENT` when it breaks."""
    for key in path:
        obj = obj.get(key, _ABSENT) if isinstance(obj, Mapping) else getattr(obj, key, _ABSENT)
        if obj is _ABSENT:
            return _ABSENT
    return obj


#: Code object -> whether a coroutine running it can never suspend (`never_suspends`).
NEVER_SUSPENDS: Final[dict[types.CodeType, bool]] = {}


def never_suspends(code: types.CodeType) -> bool:
    """Whether a coroutine running ``code`` always finishes in its first step.

    A coroutine suspends only at a yield opcode of its own code (every ``await``,
    ``async for`` and ``async with`` compiles to one; nested functions have code objects
    of their own), so one without any can be run to its end by whoever starts it, in
    the sender's task. One that might suspend cannot be started there and finished
    elsewhere: anyio's cancel scopes, trio's parking and ``asyncio.current_task`` belong
    to the task that was current when they began. Cached per code object.
    """
    import dis  # not at import time: only the first coroutine of each code gets here

    suspending = {dis.opmap[name] for name in ("YIELD_VALUE", "YIELD_FROM") if name in dis.opmap}
    never = not any(ins.opcode in suspending for ins in dis.get_instructions(code))
    NEVER_SUSPENDS[code] = never
    return never


def _never_suspending(target: Any) -> bool:
    """Whether ``target``'s coroutines can never suspend, as far as its code can be found
    (a function, a bound method, a `functools.partial` of one); False when it cannot."""
    while isinstance(target, functools.partial):
        target = target.func
    target = getattr(target, "__func__", target)
    code = getattr(target, "__code__", None)
    return isinstance(code, types.CodeType) and never_suspends(code)


def _is_async_callable(fn: Callable[..., Any]) -> bool:
    # An object whose __call__ is ``async def`` counts too.
    call = vars(fn.__class__).get("__call__") if not inspect.isroutine(fn) else None
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(call)


class BasicMessageListener(MessageListener):
    """A listener that routes each message by an ordered table of rules.

    Each rule has match criteria (all must hold) and exactly one action: call a callback
    (a plain function, or an ``async def`` one), put the message on a queue, or pass it to
    another listener. Rules are tried in order; the first match handles the message. A
    message no rule matches is declined with `dispatchio.UNHANDLED`, and the dispatcher
    counts it and tells a sender that waits for a reply.

    How each action answers (the specification's two tables):

    ===============  ==============================  ==================================
    action           `send_sync` (same process)      async `send` / `request`
    ===============  ==============================  ==================================
    callback         its return value, at once       its return value, sent back
    async callback   raises `SyncSendError`          its return value, sent back
    queue            message put on the queue        message put on the queue; the
                     (``send_sync`` returns None)    consumer answers with ``reply()``
    listener         that listener's sync handler    that listener's async handler
    ===============  ==============================  ==================================

    Args:
        id: The listener's unique ID, or None for a listener that is only chained to.
    """

    def __init__(self, id: ListenerId | None = None) -> None:
        self.id = id
        self._rules: tuple[Rule, ...] = ()
        #: How many messages no rule matched.
        self.unmatched_count = 0

    @property
    def rules(self) -> tuple[Rule, ...]:
        """The filtering table, in the order rules are tried."""
        return self._rules

    def add_rule(
        self,
        *,
        type: str | None = None,
        source: ListenerId | None = None,
        destination: ListenerId | None = None,
        group: ListenerId | None = None,
        content: Mapping[str, Any] | None = None,
        where: Callable[[Message], bool] | None = None,
        callback: Callback | AsyncCallback | None = None,
        queue: MessageQueue | None = None,
        listener: MessageListener | None = None,
        index: int | None = None,
    ) -> Rule:
        """Add a rule and return its handle (for `remove_rule`).

        Args:
            type, source, destination, group: Match messages whose field equals this
                value; None means "any".
            content: Maps dotted paths inside the message content (dict keys or
                attributes, e.g. ``"card.suit"``) to the values they must have.
            where: Any predicate on the message.
            callback: Call this with the message; its return value is the reply. An
                ``async def`` function is detected and awaited (the "async callback").
            queue: Put the message on this queue (`queue.Queue`, `asyncio.Queue`, or an
                anyio memory object send stream). The consumer replies with
                `MessageDispatcher.reply`.
            listener: Pass the message on to this listener.
            index: Insert at this position of the table instead of appending.

        Raises:
            ValueError: not exactly one of ``callback``, ``queue`` and ``listener``.
            TypeError: the action is not of a usable kind, or ``content`` is not a mapping
                of dotted paths (non-empty str) to values.
        """
        if content is not None:
            _check_content_criteria(content)
        actions = [a for a in (callback, queue, listener) if a is not None]
        if len(actions) != 1:
            raise ValueError("add_rule() needs exactly one of callback=, queue= or listener=")
        action: Action
        if callback is not None:
            if not callable(callback):
                raise TypeError(f"callback must be callable, got {callback!r}")
            action = ASYNC_CALLBACK if _is_async_callable(callback) else CALLBACK
        elif queue is not None:
            if not (hasattr(queue, "put_nowait") or hasattr(queue, "send_nowait")):
                raise TypeError(
                    f"queue must have put_nowait() or send_nowait(), got {queue.__class__.__name__}"
                )
            action = QUEUE
        else:
            if not isinstance(listener, MessageListener):
                raise TypeError(f"listener must be a MessageListener, got {listener!r}")
            if listener is self:
                raise ValueError("a listener cannot chain to itself")
            action = LISTENER
        rule = Rule(
            type=type,
            source=source,
            destination=destination,
            group=group,
            content=content,
            where=where,
            action=action,
            target=actions[0],
        )
        rules = list(self._rules)
        rules.insert(len(rules) if index is None else index, rule)
        # Replace, never mutate: a handler running now keeps iterating the old table.
        self._rules = tuple(rules)
        return rule

    def remove_rule(self, rule: Rule) -> None:
        """Remove a rule returned by `add_rule`.

        Raises:
            ValueError: the rule is not in this listener's table.
        """
        if rule not in self._rules:
            raise ValueError(f"{rule!r} is not a rule of {self!r}")
        self._rules = tuple(r for r in self._rules if r is not rule)

    def match(self, message: Message) -> Rule | None:
        """Return the first rule that matches ``message``, or None."""
        mtype = message.type
        for rule in self._rules:
            t = rule.type
            if (t is None or t == mtype) and (rule.test is None or rule.test(message)):
                return rule
        return None

    def handle_message_sync(self, message: Message) -> Any:
        """Run the first matching rule's synchronous pathway (see the class table)."""
        mtype = message.type
        for rule in self._rules:
            t = rule.type
            if (t is None or t == mtype) and (rule.test is None or rule.test(message)):
                return rule.sync_call(message)
        self.unmatched_count += 1
        return UNHANDLED

    async def handle_message(self, message: Message) -> Any:
        """Run the first matching rule's asynchronous pathway (see the class table)."""
        rule = self.match(message)
        if rule is None:
            self.unmatched_count += 1
            return UNHANDLED
        action = rule.action
        if action is CALLBACK:
            result = rule.target(message)
            if result.__class__ is types.CoroutineType:
                # A plain function that returned a coroutine: await it rather than reply
                # with a coroutine object.
                result = await result
            return result
        if action is ASYNC_CALLBACK:
            return await rule.target(message)
        if action is QUEUE:
            assert rule.put is not None
            rule.put(message)
            return DEFERRED
        return await rule.target.handle_message(message)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.id!r}, rules={len(self._rules)})"


_BASIC_HANDLE: Final = BasicMessageListener.handle_message


def is_rule_table(listener: MessageListener) -> bool:
    """Whether ``listener`` handles messages by its rules alone (does not override
    ``handle_message``), so the dispatcher may act on its rules directly."""
    return type(listener).handle_message is _BASIC_HANDLE


def find_rule(listener: Any, message: Message) -> tuple[Any, Rule | None]:
    """Walk a chain of rules: from ``listener``, follow matching ``listener=`` rules.

    Returns the listener that handles ``message`` and the rule of its that matched, not
    a ``listener=`` one. The rule is None when that listener's rules match nothing, or
    when it is not a rule table (`is_rule_table`): then its ``handle_message`` decides.
    This is what `BasicMessageListener.handle_message` does, without the coroutines,
    for the scheduler's fast paths; the match is inlined here (one call per message).

    Raises:
        Exception: whatever a rule's ``where`` predicate raised.
    """
    mtype = message.type
    while type(listener).handle_message is _BASIC_HANDLE:
        for rule in listener._rules:
            t = rule.type
            if (t is None or t == mtype) and (rule.test is None or rule.test(message)):
                break
        else:
            return listener, None
        if rule.action is not LISTENER:
            return listener, rule
        listener = rule.target
    return listener, None
