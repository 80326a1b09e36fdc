"""Running handlers: the queue, the leader and its followers, and what handlers answer.

How the asynchronous side runs (the "why" behind the shape of this module):

* ``send`` only appends to one FIFO queue; nothing per message spawns a task, opens a
  cancel scope or creates an anyio Event (each costs microseconds).
* One worker task, the *leader*, drains the queue and starts every handler by hand
  (``coro.send(None)``). A handler that finishes without suspending (every sync
  callback, most async ones) costs no task. A handler that does suspend keeps the
  worker that started it (see `dispatchio._backend.resume`); that worker hands the
  queue to an idle worker, or spawns one, and carries on with the handler. So handlers
  start in queue order, and a handler that awaits never stalls anyone else.
* A request to an ``async def`` handler that may suspend, made when nothing is queued,
  starts in the requester's call on asyncio (`Scheduler.start_eager`), as the task of a
  parked worker: an answer before any suspension costs no task switch, and a handler
  that suspends is carried on by that worker as if it had started it.
* What a handler returns is settled here (`Scheduler.settle`): a reply goes to
  `Replies` for a sender in this process or to the mesh for another one.

The dispatcher builds one `Scheduler` and calls it; the scheduler builds the `Holds`
and `Replies` it needs, handing them ``requeue`` and ``enqueue`` as the way back.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import types
from collections.abc import Iterable
from contextvars import Context, copy_context
from typing import TYPE_CHECKING, Any, Final, cast

import anyio
import anyio.lowlevel

from dispatchio._backend import Backend, Future, resume, resume_in, resume_next
from dispatchio._basic import (
    ASYNC_CALLBACK,
    CALLBACK,
    NEVER_SUSPENDS,
    QUEUE,
    find_rule,
    is_rule_table,
    never_suspends,
)
from dispatchio._blocking import Holds
from dispatchio._errors import (
    DispatchError,
    HandlerError,
    UndeliverableError,
    error_from_message,
    format_error,
)
from dispatchio._message import (
    DEFERRED,
    UNHANDLED,
    DeferredType,
    ListenerId,
    Message,
    response_to,
)
from dispatchio._replies import Replies

if TYPE_CHECKING:
    from dispatchio._mesh import Mesh
    from dispatchio._message import MessageIds
    from dispatchio._observers import Observers
    from dispatchio._registry import Registry

logger = logging.getLogger("dispatchio")

_MAX_IDLE_WORKERS: Final = 8
_LEADER_BATCH: Final = 512  # messages the leader handles before letting other tasks run
_CoroutineType: Final = types.CoroutineType
# asyncio's own way of saying which task runs (what Python 3.12's eager tasks use); a
# Python without them never starts a handler eagerly (see `Scheduler.start_eager`).
_current_task: Final = asyncio.current_task
_enter_task: Final = getattr(asyncio.tasks, "_enter_task", None)
_leave_task: Final = getattr(asyncio.tasks, "_leave_task", None)


class Scheduler:
    """The queue of one dispatcher and the workers that run its handlers."""

    __slots__ = (
        "backend",
        "drained",
        "held_dest",
        "held_group",
        "holds",
        "idle",
        "listeners",
        "loop",
        "members",
        "mesh",
        "observers",
        "orphans",
        "process_id",
        "queue",
        "replies",
        "running",
        "task_group",
        "wake",
        "wake_task",
    )

    def __init__(
        self, process_id: ListenerId, registry: Registry, observers: Observers, ids: MessageIds
    ) -> None:
        self.process_id = process_id
        self.listeners = registry.listeners
        self.members = registry.members
        self.observers = observers
        self.holds = Holds(self.requeue)
        self.held_dest = self.holds.by_dest
        self.held_group = self.holds.by_group
        self.replies = Replies(process_id, registry.listeners, observers, self.enqueue, ids)
        self.mesh: Mesh | None = None
        self.backend: Backend | None = None
        self.task_group: anyio.abc.TaskGroup | None = None
        self.queue: collections.deque[Message] = collections.deque()
        self.wake: Future | None = None  # the parked leader's future
        # On asyncio (for `start_eager`): the loop, and the task of the parked leader.
        self.loop: asyncio.AbstractEventLoop | None = None
        self.wake_task: asyncio.Task[Any] | None = None
        # Handlers `start_eager` began as a worker whose wait was cancelled meanwhile.
        self.orphans: dict[Future, tuple[Any, Any, Message, Context]] = {}
        self.idle: list[tuple[Future, asyncio.Task[Any] | None]] = []  # parked followers
        self.drained: Future | None = None  # resolved when the leader runs out of work
        # Handlers that suspended and have not finished (coroutine -> its message), so
        # shutdown can wait for them and name the ones it cancels.
        self.running: dict[Any, Message] = {}

    # ------------------------------------------------------------------ lifecycle

    def start(self, backend: Backend, task_group: anyio.abc.TaskGroup) -> None:
        """Start the leader in ``task_group``."""
        self.backend = backend
        self.task_group = task_group
        if backend.name == "asyncio" and _enter_task is not None and _leave_task is not None:
            self.loop = asyncio.get_running_loop()
        task_group.start_soon(self.worker, True, name="dispatchio worker")

    async def drain(self, timeout: float) -> None:
        """Deliver everything already accepted and let running handlers finish.

        Returns when the queue is empty, the leader idle and no handler runs (a handler
        finishing may queue more: that is delivered too), or after ``timeout`` seconds.
        """
        backend = self.backend
        assert backend is not None
        with anyio.move_on_after(timeout):
            while self.queue or self.wake is None or self.running:
                waiter = self.drained = backend.new_future()
                await waiter

    def _drain_step(self) -> None:
        drained = self.drained
        if drained is not None:
            self.drained = None
            if not drained.done():
                drained.set_result(None)

    def close(self) -> tuple[int, list[Message]]:
        """Stop waking workers (they are about to be cancelled).

        Returns how many messages were never started, and the messages of the handlers
        still running (about to be cancelled).
        """
        self.wake = self.drained = None
        self.idle.clear()
        return len(self.queue) + self.holds.held_count(), list(self.running.values())

    def stopped(self) -> None:
        """The workers are gone: forget whatever they left behind."""
        self.backend = None
        self.task_group = None
        self.queue.clear()
        self.holds.clear()
        self.idle.clear()
        self.running.clear()
        self.wake = None
        self.wake_task = None
        self.loop = None
        self.orphans.clear()

    # ------------------------------------------------------------------ the queue

    def enqueue(self, message: Message) -> None:
        self.queue.append(message)
        wake = self.wake
        if wake is not None:
            self.wake = None
            if not wake.done():  # done: cancelled with an enclosing cancel scope (asyncio)
                wake.set_result(None)

    def requeue(self, messages: Iterable[Message]) -> None:
        """Put messages back at the front of the queue (``messages`` in reverse order)."""
        self.queue.extendleft(messages)
        wake = self.wake
        if wake is not None:
            self.wake = None
            if not wake.done():
                wake.set_result(None)

    # ------------------------------------------------------------------ workers

    async def worker(self, lead: bool) -> None:
        """A worker: leads the queue, or is captured by a suspended handler, or idles.

        The leader's loop is written out here rather than in a coroutine of its own:
        the leader parks and wakes once per message on a quiet queue, and every wake
        resumes one frame less.
        """
        queue = self.queue
        backend = self.backend
        assert backend is not None
        me = None if self.loop is None else _current_task()
        while True:
            captured: tuple[Any, Any, Message, Context | None] | None = None
            thrown: BaseException | None = None
            if not lead:
                if len(self.idle) >= _MAX_IDLE_WORKERS:
                    return
                parked = backend.new_future()
                self.idle.append((parked, me))
                # None: lead. A handler: `start_eager` began it as this task and it
                # suspended; the leader leads on meanwhile.
                try:
                    captured = await parked
                except BaseException as exc:
                    captured, thrown = self._handed(parked, exc), exc
            if captured is None:
                # Lead: start queued messages in order until one's handler suspends.
                while captured is None:
                    batch = _LEADER_BATCH
                    while queue and batch:
                        batch -= 1
                        captured = self.process(queue.popleft())
                        if captured is not None:
                            break
                    else:
                        if queue:
                            await anyio.lowlevel.checkpoint()
                            continue
                        wake = self.wake = backend.new_future()
                        self.wake_task = me
                        if self.drained is not None:
                            self._drain_step()
                        # None: more work queued. A handler: as for ``parked`` above.
                        try:
                            captured = await wake
                        except BaseException as exc:
                            captured, thrown = self._handed(wake, exc), exc
                # This worker stays with the handler; another leads meanwhile.
                self._hand_off()
            coro, yielded, message, context = captured
            running = self.running
            running[coro] = message
            try:
                if context is None:
                    result = await resume(coro, yielded)
                elif yielded is None or thrown is not None:
                    # Handed over by `start_eager`: waking up here was a trip through
                    # the event loop, all that a bare yield (``sleep(0)``) asks for.
                    result = await resume_next(context, coro, thrown)
                else:
                    result = await resume_in(context, coro, yielded)
            except Exception as exc:
                self.handler_raised(message, exc)
            else:
                self.settle(message, result)
            del running[coro]
            if not running and self.drained is not None:
                self._drain_step()
            lead = False

    def _handed(
        self, future: Future, exc: BaseException
    ) -> tuple[Any, Any, Message, Context | None]:
        """A parked worker was cancelled: the handler `start_eager` had handed it (which
        gets the cancellation, as if it had been running here), or else re-raise."""
        if self.loop is None:
            raise exc
        captured = self.orphans.pop(future, None)
        if captured is not None:
            return captured
        handed = cast("asyncio.Future[Any]", future)
        if not handed.done() or handed.cancelled() or handed.result() is None:
            raise exc
        return handed.result()  # type: ignore[no-any-return]

    def _hand_off(self) -> None:
        while self.idle:
            parked = self.idle.pop()[0]
            if not parked.done():  # done: cancelled with an enclosing cancel scope (asyncio)
                parked.set_result(None)
                return
        assert self.task_group is not None
        self.task_group.start_soon(self.worker, True, name="dispatchio worker")

    def process(self, message: Message) -> tuple[Any, Any, Message, None] | None:
        """Start handling one queued message. Returns the handler if it suspended."""
        dest = message.destination
        if dest is None:
            self.fan_out(message)
            return None
        held = self.held_dest
        if held and dest in held:
            held[dest].append(message)
            return None
        listener: Any = self.listeners.get(dest)
        if listener is None:
            self.vanished(message)
            return None
        if message.blocking and message.group is None and not message.is_response:
            self.holds.hold_destination(message, dest)
        if self.observers.observed:
            self.observers.delivered(message, listener)
        coro: Any = None
        result: Any = None
        try:
            handler, rule = find_rule(listener, message)
            if rule is None:
                if is_rule_table(handler):
                    handler.unmatched_count += 1
                    result = UNHANDLED
                else:
                    coro = handler.handle_message(message)
            else:
                action = rule.action
                if action is CALLBACK:
                    result = rule.target(message)
                    if result.__class__ is _CoroutineType:
                        coro = result
                elif action is QUEUE:
                    rule.put(message)  # type: ignore[misc]  # set for every QUEUE rule
                    result = DEFERRED
                else:
                    coro = rule.target(message)
            if coro is not None:
                try:
                    yielded = coro.send(None)
                except StopIteration as stop:
                    result = stop.value
                else:
                    return coro, yielded, message, None
        except Exception as exc:
            self.handler_raised(message, exc)
            return None
        self.settle(message, result)
        return None

    def fan_out(self, message: Message) -> None:
        """Turn a group message into one copy per subscriber, queued in its place."""
        group = message.group
        assert group is not None
        held = self.held_group
        if held and group in held:
            held[group].append(message)
            return
        members = self.members.get(group)
        if message.process != self.process_id and self.mesh is not None:
            # Tell the sender how many replies to expect from here, before any copy runs.
            self.mesh.tell_fanout(message, len(members or ()))
            if not members:
                return
        if not members:
            self.vanished(message)
            return
        pending = self.replies.pending.get(message.id) if message.response_required else None  # type: ignore[arg-type]
        if pending is not None and pending.message is message:
            pending.outstanding += len(members)
        hold = None
        if message.blocking:
            hold = self.holds.hold_group(group, len(members))
        copies = []
        for lid, _ in members:
            copy = Message(
                message.type,
                message.content,
                id=message.id,
                source=message.source,
                destination=lid,
                group=group,
                process=message.process,
                response_required=message.response_required,
                blocking=message.blocking,
            )
            if hold is not None:
                copy._hold = hold
            copies.append(copy)
        copies.reverse()
        self.queue.extendleft(copies)

    # ------------------------------------------------------------------ shortcuts

    def answer_inline(self, message: Message) -> Message | DeferredType | None:
        """Answer a request at once when its handler is a callback rule and nothing waits.

        Called by the dispatcher only when the queue is empty and the leader parked: no
        earlier message can still be due to this destination, so running the callback
        here keeps the order of handling and saves the two task switches of a round
        trip through the leader. An ``async def`` callback whose code has no ``await``
        (`never_suspends`) is run to its end here too; one that might suspend is
        started here as a parked worker's task (`start_eager`) on asyncio, and takes the
        queue on trio.

        Returns the response; DEFERRED when the callback ran but will answer later (it
        returned DEFERRED, or it suspended and carries on in a worker); or None, having
        done nothing, when the request must take the queue.

        Raises:
            HandlerError: the callback raised.
            UndeliverableError: the listener declined the message.
            DispatchError: the callback answered with an error through `reply` (such as
                `dispatchio.UNHANDLED`) before it suspended.
        """
        dest = message.destination
        if dest is None or message.blocking or (self.held_dest and dest in self.held_dest):
            return None
        listener = self.listeners[dest]
        eager = False
        try:
            rule = find_rule(listener, message)[1]
            if rule is None:
                return None
            if not rule.inline:
                if rule.action is not ASYNC_CALLBACK or self.loop is None:
                    return None
                if self.observers.observed:
                    self.observers.delivered(message, listener)
                result = rule.target(message)
                eager = True
            else:
                if self.observers.observed:
                    self.observers.delivered(message, listener)
                result = rule.target(message)
                if result.__class__ is _CoroutineType:
                    code = result.cr_code
                    never = NEVER_SUSPENDS.get(code)
                    if never is None:
                        never = never_suspends(code)
                    if never:
                        try:
                            result.send(None)
                        except StopIteration as stop:
                            result = stop.value
                        else:  # pragma: no cover  # no yield opcode in its code: cannot happen
                            result.close()
                            raise RuntimeError(f"{code.co_name} suspended without a yield opcode")
                    elif self.loop is not None:
                        eager = True
                    else:
                        # It may suspend, and a coroutine must stay in the task that
                        # started it (cancel scopes and trio's parking belong to the
                        # task), so on trio it gets a task of its own from the start.
                        assert self.task_group is not None
                        self.running[result] = message
                        self.task_group.start_soon(self._await_handler, message, result)
                        return DEFERRED
        except Exception as exc:
            self.handler_raised(message, exc, respond=False)
            raise HandlerError(f"{type(exc).__name__}: {exc}", message=message) from exc
        if eager:
            return self.start_eager(message, listener, result)
        if result is UNHANDLED:
            self.observers.unmatched(message, listener)
            raise declined(message)
        deferred: bool = result is DEFERRED  # (a bool: ``is`` would narrow DEFERRED to Any)
        if deferred:
            return DEFERRED
        return response_to(message, result, dest, self.process_id, None)

    def start_eager(self, message: Message, listener: Any, coro: Any) -> Message | DeferredType:
        """Run the first step of a handler that might suspend here, in the requester's
        call, as if in a parked worker's task (asyncio only).

        Most ``async def`` handlers that can suspend answer without suspending (a cache
        hit, an uncontended lock); run this way, such an answer costs no task switch,
        no queue hop and no wait for a reply. For the length of the step, asyncio's
        current task is an idle worker, or else the parked leader (as for one of Python
        3.12's eager tasks), so whatever the handler ties to its task before suspending
        (an anyio cancel scope, ``asyncio.timeout``, ``current_task()``) belongs to the
        task that carries on with it: a handler that suspends is handed to that worker,
        which continues it exactly as if it had started it from the queue (when it is
        the leader, another worker leads meanwhile). Every step runs in a copy of the
        requester's context (as a task the requester spawned would), so what the handler
        sets there stays its own. The caller has checked what `answer_inline` checks.

        Returns the response, or DEFERRED when the handler suspended (the requester
        waits for its reply) or returned DEFERRED.

        Raises:
            HandlerError: the handler raised before suspending.
            UndeliverableError: the handler returned `UNHANDLED`.
            DispatchError: the handler answered with an error through `reply`.
        """
        loop = self.loop
        assert loop is not None
        assert _enter_task is not None
        assert _leave_task is not None
        # The worker to carry on with the handler should it suspend: an idle one, or
        # else the leader, whose wake is then claimed for the step (what the handler
        # sends meanwhile queues behind it, and is led once the step is over).
        idle = self.idle
        while idle:
            worker, task = idle.pop()
            if not worker.done():  # done: cancelled with an enclosing cancel scope
                claimed = False
                break
        else:
            worker = self.wake  # type: ignore[assignment]
            task = self.wake_task
            claimed = True
        requester = _current_task(loop)
        if worker is None or worker.done() or requester is None:  # pragma: no cover
            # Being cancelled, or a coroutine driven outside any task: a task of its own.
            if not claimed:
                idle.append((worker, task))
            assert self.task_group is not None
            self.running[coro] = message
            self.task_group.start_soon(self._await_handler, message, coro)
            return DEFERRED
        if claimed:
            self.wake = None
        assert task is not None
        replies = self.replies
        replies.eager_id = message.id
        context = copy_context()
        suspended = False
        try:
            _leave_task(loop, requester)
            _enter_task(loop, task)
            try:
                yielded = context.run(coro.send, None)
            finally:
                _leave_task(loop, task)
                _enter_task(loop, requester)
        except StopIteration as stop:
            result = stop.value
        except Exception as exc:
            self.handler_raised(message, exc, respond=False)
            raise HandlerError(f"{type(exc).__name__}: {exc}", message=message) from exc
        else:
            suspended = True
            self.running[coro] = message
            if worker.done():
                # Its task was cancelled during the step (the handler cancelled it, say):
                # the worker wakes with the cancellation and throws it into the handler.
                self.orphans[worker] = (coro, yielded, message, context)
            else:
                worker.set_result((coro, yielded, message, context))
            result = DEFERRED
        finally:
            replies.eager_id = None
            if not suspended and not worker.done():
                if not claimed:
                    idle.append((worker, task))
                elif self.queue:
                    worker.set_result(None)
                else:
                    self.wake = worker
        early = replies.early
        if early is not None:
            # It answered through `reply` before its pending entry existed (the requester
            # enters it only if no answer comes from here).
            replies.early = None
            response, cause = early
            if not suspended and result is not DEFERRED:
                self.observers.stats.late_replies += 1  # what a second answer would count
            if response.error is None:
                return response
            error = error_from_message(response)
            assert error is not None
            raise error from cause
        if result is UNHANDLED:
            self.observers.unmatched(message, listener)
            raise declined(message)
        deferred: bool = result is DEFERRED
        if deferred:
            return DEFERRED
        return response_to(message, result, message.destination, self.process_id, None)

    def deliver_incoming(self, messages: list[Message]) -> None:
        """Take a run of messages (no responses) that arrived from another process, in order.

        A callback rule (an ``async def`` one whose code has no ``await`` included)
        runs at once, as soon as its frame is decoded, when that cannot change the order
        of handling (nothing queued, the leader parked, no hold on the destination);
        from the first message that cannot, the rest of the run takes the queue like a
        local send. One call per run: the checks are made per message, the lookups
        they need once.
        """
        queue = self.queue
        listeners = self.listeners
        held_dest = self.held_dest
        observers = self.observers
        rest = iter(messages)
        for message in rest:
            dest = message.destination
            if (
                self.wake is None
                or queue
                or dest is None
                or message.blocking
                or (held_dest and dest in held_dest)
            ):
                break
            listener = listeners.get(dest)
            if listener is None:
                break
            try:
                rule = find_rule(listener, message)[1]
            except Exception:
                break  # the leader reports the failure in the usual way
            if rule is None or not rule.inline:
                break
            if observers.observed:
                observers.delivered(message, listener)
            try:
                result = rule.target(message)
                if result.__class__ is _CoroutineType:
                    code = result.cr_code
                    never = NEVER_SUSPENDS.get(code)
                    if never is None:
                        never = never_suspends(code)
                    if not never:  # a task of its own from the start: see `answer_inline`
                        assert self.task_group is not None
                        self.running[result] = message
                        self.task_group.start_soon(self._await_handler, message, result)
                        continue
                    try:
                        result.send(None)
                    except StopIteration as stop:
                        result = stop.value
                    else:  # pragma: no cover  # no yield opcode in its code: cannot happen
                        result.close()
                        raise RuntimeError(f"{code.co_name} suspended without a yield opcode")
            except Exception as exc:
                self.handler_raised(message, exc)
                continue
            # A letter whose handler returned None leaves nothing to settle (an incoming
            # message holds nothing yet: `_hold` is set only by the queue).
            if result is not None or message.response_required:
                try:
                    self.settle(message, result)
                except Exception:  # one message's failure must not lose the rest of the run
                    logger.exception("could not settle message %r from another process", message)
        else:
            return
        self.enqueue(message)
        queue.extend(rest)

    async def _await_handler(self, message: Message, coro: Any) -> None:
        """Run a not-yet-started handler coroutine in a task of its own, then settle it."""
        try:
            result = await coro
        except Exception as exc:
            self.handler_raised(message, exc)
        else:
            self.settle(message, result)
        running = self.running
        del running[coro]
        if not running and self.drained is not None:
            self._drain_step()

    # ------------------------------------------------------------------ outcomes

    def settle(self, message: Message, result: Any) -> None:
        """Act on what a handler returned (or what `reply` was given)."""
        if result is DEFERRED:
            return
        if message._hold is not None:
            self.holds.release(message)
        if result is UNHANDLED:
            listener = self.listeners.get(message.destination)  # type: ignore[arg-type]
            self.observers.unmatched(message, listener)
            if message.response_required and not message.is_response:
                error = declined(message)
                self.respond(message, message.content, format_error(error.code, str(error)))
            return
        if message.is_response:
            return
        if message.response_required:
            self.respond(message, result, None)
            return
        if result is None:
            return
        # A value returned by the handler of a plain letter goes back to its source
        # listener. When that cannot be (no source listener here, and the ID names no
        # wait, present or past), count it dropped as `Replies.route_response` would,
        # without building the response: a letter from outside any listener is common.
        replies = self.replies
        origin = message.process
        if (
            message.source not in self.listeners
            and (origin == self.process_id or self.mesh is None or origin is None)
            and message.id not in replies.pending
            and message.id not in replies.expired
        ):
            self.observers.stats.dropped_replies += 1
            return
        self.respond(message, result, None)

    def handler_raised(self, message: Message, exc: Exception, *, respond: bool = True) -> None:
        """A handler raised ``exc``: count and report it, and answer a waiting sender."""
        listener = self.listeners.get(message.destination)  # type: ignore[arg-type]
        self.observers.handler_failed(message, listener, exc)
        if message._hold is not None:
            self.holds.release(message)
        if respond and message.response_required and not message.is_response:
            error = format_error(HandlerError.code, f"{type(exc).__name__}: {exc}")
            self.respond(message, None, error, cause=exc)

    def respond(
        self,
        message: Message,
        content: Any,
        error: str | None,
        cause: BaseException | None = None,
    ) -> None:
        """Send the answer to ``message`` to whoever waits for it, here or elsewhere."""
        response = response_to(message, content, message.destination, self.process_id, error)
        origin = message.process
        if origin != self.process_id and self.mesh is not None and origin is not None:
            self.mesh.respond(response, origin)
            return
        self.replies.route_response(response, cause)

    def vanished(self, message: Message) -> None:
        """A queued message whose destination (or whole group) went away before delivery."""
        if message.is_response:
            self.observers.stats.dropped_replies += 1
            return
        if message._hold is not None:
            self.holds.release(message)
        error = nobody(message)
        remote_origin = message.process != self.process_id and self.mesh is not None
        if remote_origin or (message.response_required and message.id in self.replies.pending):
            self.respond(
                message, message.content, format_error(UndeliverableError.code, str(error))
            )
        else:
            self.replies.return_letter(message, error)


def nobody(message: Message) -> DispatchError:
    """The error for a message that no listener anywhere can receive."""
    if message.group is None:
        return UndeliverableError(
            f"no listener {message.destination!r} for {message.type!r}", message=message
        )
    return UndeliverableError(
        f"group {message.group!r} has no subscribers for {message.type!r}", message=message
    )


def declined(message: Message) -> UndeliverableError:
    """The error for a message its destination's rules did not match."""
    return UndeliverableError(
        f"listener {message.destination!r} has no rule for {message.type!r}", message=message
    )
