"""`dispatcher.in_thread()`: driving a dispatcher from plain synchronous code.

No test here is async: the dispatcher runs in its own thread, and every wait in the test
thread is bounded (``queue.Queue.get(timeout=5)``, ``Thread.join(timeout=5)``).
"""

from __future__ import annotations

import queue
import threading

import pytest

from dispatchio import (
    DispatcherNotRunningError,
    Message,
    MessageDispatcher,
    UndeliverableError,
)
from tests.core._helpers import listener

WAIT = 5.0


def test_remote_request_returns_the_reply(dispatcher: MessageDispatcher) -> None:
    listener(dispatcher, "b", callback=lambda m: f"hello {m.content}")
    with dispatcher.in_thread() as remote:
        response = remote.request(Message("greet", "ann", destination="b"))
    assert response.content == "hello ann"
    assert response.is_response is True


def test_remote_send_to_queue_rule_consumed_in_this_thread_and_answered_with_reply(
    dispatcher: MessageDispatcher,
) -> None:
    jobs: queue.Queue[Message] = queue.Queue()
    replies: queue.Queue[Message] = queue.Queue()
    listener(dispatcher, "worker", queue=jobs)
    listener(dispatcher, "client", queue=replies)
    with dispatcher.in_thread() as remote:
        remote.send(Message("job", 21, source="client", destination="worker"))
        job = jobs.get(timeout=WAIT)
        remote.reply(job, job.content * 2)
        reply = replies.get(timeout=WAIT)
    assert (reply.id, reply.source, reply.content, reply.is_response) == (
        job.id,
        "worker",
        42,
        True,
    )


def test_remote_request_from_another_thread_is_answered_from_this_thread(
    dispatcher: MessageDispatcher,
) -> None:
    jobs: queue.Queue[Message] = queue.Queue()
    listener(dispatcher, "worker", queue=jobs)
    answers: queue.Queue[Message] = queue.Queue()
    with dispatcher.in_thread() as remote:
        requester = threading.Thread(
            target=lambda: answers.put(remote.request(Message("job", 21, destination="worker")))
        )
        requester.start()
        job = jobs.get(timeout=WAIT)  # this thread is the consumer, e.g. a game loop
        remote.reply(job, job.content * 2)
        answer = answers.get(timeout=WAIT)
        requester.join(timeout=WAIT)
    assert not requester.is_alive()
    assert answer.content == 42


def test_remote_gather_returns_every_reply(dispatcher: MessageDispatcher) -> None:
    for name in ("x", "y"):
        listener(dispatcher, name, callback=lambda m, name=name: name.upper())
        dispatcher.subscribe("g", name)
    with dispatcher.in_thread() as remote:
        replies = remote.gather(Message("poll", group="g"))
    assert sorted(r.content for r in replies) == ["X", "Y"]


def test_remote_send_sync_runs_the_handler_in_the_dispatcher_thread(
    dispatcher: MessageDispatcher,
) -> None:
    listener(dispatcher, "b", callback=lambda m: threading.get_ident())
    with dispatcher.in_thread() as remote:
        handler_thread = remote.send_sync(Message("where", destination="b"))
    assert isinstance(handler_thread, int)
    assert handler_thread != threading.get_ident()


def test_remote_request_after_stop_raises_not_running(dispatcher: MessageDispatcher) -> None:
    listener(dispatcher, "b", callback=lambda m: "hi")
    remote = dispatcher.in_thread().start()
    remote.stop()
    with pytest.raises(DispatcherNotRunningError):
        remote.request(Message("greet", destination="b"))


def test_remote_request_works_on_trio(dispatcher: MessageDispatcher) -> None:
    listener(dispatcher, "b", callback=lambda m: f"hello {m.content}")
    with dispatcher.in_thread(backend="trio") as remote:
        response = remote.request(Message("greet", "trio", destination="b"))
    assert response.content == "hello trio"


def test_dispatcher_is_stopped_after_the_thread_context_exits(
    dispatcher: MessageDispatcher,
) -> None:
    with dispatcher.in_thread():
        assert dispatcher.running
    assert not dispatcher.running


def test_remote_request_to_unknown_destination_raises_undeliverable(
    dispatcher: MessageDispatcher,
) -> None:
    with dispatcher.in_thread() as remote, pytest.raises(UndeliverableError, match="nobody"):
        remote.request(Message("greet", destination="nobody"))
