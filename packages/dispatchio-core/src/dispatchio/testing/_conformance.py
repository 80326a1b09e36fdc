"""`TransportConformance`: the properties every transport must have, one test each."""

from __future__ import annotations

import math
import signal
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.streams.memory import MemoryObjectReceiveStream

from dispatchio import (
    BasicMessageListener,
    DeliveryError,
    HandlerError,
    InvalidMessageError,
    Message,
    MessageDispatcher,
    MessageTooLargeError,
    OutboxFullError,
    PeerLostError,
    ReplyTimeoutError,
    SyncSendError,
    UndeliverableError,
    default_plugin_manager,
)
from dispatchio._wire import encode_message
from dispatchio.testing._peers import Peer, Peers, open_peers
from dispatchio.transport import resolve_transport


class _Card:
    """Something that is not JSON data."""


@contextmanager
def _inbox(dispatcher: MessageDispatcher, lid: str) -> Iterator[MemoryObjectReceiveStream[Message]]:
    """Register listener ``lid``; every message it receives lands on the stream yielded."""
    send, receive = anyio.create_memory_object_stream[Message](math.inf)
    with send, receive:
        listener = BasicMessageListener(lid)
        listener.add_rule(queue=send)
        dispatcher.register(listener)
        yield receive


def _echo(dispatcher: MessageDispatcher, lid: str) -> None:
    listener = BasicMessageListener(lid)
    listener.add_rule(callback=lambda message: message.content)
    dispatcher.register(listener)


class TransportConformance:
    """The conformance suite: subclass it in a transport's tests, give it a URL, run pytest.

    The subclass provides the fixture ``transport_url``: the URL every process of a test
    listens on (``"tcp://127.0.0.1:0"``: port 0, each process reports the port it bound),
    and `send_hostile_input`, the malformed input of its own wire format (or sets
    `no_hostile_input` to a reason, and that property is reported as skipped). Optionally
    it overrides ``transport_options`` (per scheme, JSON data, as `MessageDispatcher`'s
    ``transport_options``), ``anyio_backend``, and the timing attributes below.

    The test process itself is peer ``"a"``; peers ``"b"`` and ``"c"`` are real OS
    processes (``python -m dispatchio.testing._child``), killed when each test ends.
    Every test is bounded by ``test_timeout``.
    """

    pytestmark = pytest.mark.anyio

    #: Heartbeat settings of every process in a test.
    heartbeat_interval: float = 0.2
    heartbeat_tolerance: int = 3
    #: Extra seconds, beyond interval x tolerance, for a death to be noticed and reported
    #: (and for a thawed peer to be linked again).
    detector_slack: float = 1.5
    #: The bound on a whole test, process starts included.
    test_timeout: float = 30.0
    #: The bound on an answer that must come "at once" (never after a timeout).
    prompt: float = 2.0
    #: ``max_message_size`` of every process in the size tests (keep it at most the
    #: transport's ``max_frame_size``).
    size_limit: int = 64 * 1024
    #: Messages in the FIFO test.
    fifo_count: int = 10_000
    #: Largest number of messages the outbox test sends before it expects OutboxFullError.
    flood_limit: int = 2000
    #: A reason why this transport supplies no malformed input (`send_hostile_input`):
    #: the malformed-input property is then reported as skipped with it. None: required.
    no_hostile_input: str | None = None

    @property
    def detector_bound(self) -> float:
        """How soon after a peer dies its pending requests must have failed."""
        return self.heartbeat_interval * self.heartbeat_tolerance + self.detector_slack

    # ------------------------------------------------------------------ fixtures

    @pytest.fixture
    def transport_url(self) -> str:
        """The URL every process listens on; a subclass must override this fixture."""
        raise NotImplementedError(
            f"{type(self).__name__} must define the fixture transport_url,"
            ' e.g. returning "tcp://127.0.0.1:0"'
        )

    @pytest.fixture
    def transport_options(self) -> Mapping[str, Mapping[str, Any]]:
        """Options per scheme for every process (JSON data: children receive them as JSON)."""
        return {}

    @pytest.fixture
    async def peers(
        self,
        transport_url: str,
        transport_options: Mapping[str, Mapping[str, Any]],
        anyio_backend: str,
        tmp_path: Path,
    ) -> AsyncIterator[Peers]:
        """The test's processes: ``peers.dispatcher()`` is "a", ``peers.spawn(id)`` a child."""
        async with open_peers(
            url=transport_url,
            transport_options=transport_options,
            backend=anyio_backend,
            directory=tmp_path,
            heartbeat_interval=self.heartbeat_interval,
            heartbeat_tolerance=self.heartbeat_tolerance,
            # Far beyond every test's bound: an answer that waited for it fails the test.
            reply_timeout=self.test_timeout * 4,
        ) as peers:
            yield peers

    # ------------------------------------------------------------------ hooks

    async def send_hostile_input(self, url: str) -> None:
        """Feed malformed input, in this transport's own wire format, to ``url``.

        ``url`` is one the process under test bound. Whatever a hostile or broken peer
        could send: random bytes, a bad handshake, an oversized length, a truncated
        frame, data after the end of a stream (a socket transport opens connections of
        its own; a broker transport writes bad records to that process's inbox).
        Return once the input is delivered and the receiver had the chance to react.
        Every subclass overrides this, or sets `no_hostile_input`.
        """
        raise NotImplementedError

    # ------------------------------------------------------------------ helpers

    @asynccontextmanager
    async def running(self, peers: Peers, **overrides: Any) -> AsyncIterator[MessageDispatcher]:
        """The test process's dispatcher "a", running; the whole block is bounded by
        ``test_timeout``."""
        with anyio.fail_after(self.test_timeout):
            async with peers.dispatcher(**overrides) as a:
                yield a

    async def spawn_serving(
        self,
        peers: Peers,
        a: MessageDispatcher,
        process_id: str,
        listener: str,
        behaviour: str,
        *,
        groups: Sequence[str] = (),
        **spawn: Any,
    ) -> Peer:
        """Start child ``process_id`` with a ``listener`` that does ``behaviour`` (see
        ``_child.BEHAVIOURS``); return once ``a`` knows that listener (or, with
        ``groups``, once it is registered there)."""
        peer = await peers.spawn(process_id, **spawn)
        await peer.call("listener", listener=listener, behaviour=behaviour, groups=list(groups))
        if not groups:
            await a.wait_for_listener(listener, timeout=self.test_timeout)
        return peer

    # ------------------------------------------------------------------ between two processes

    async def test_request_reply(self, peers: Peers) -> None:
        async with self.running(peers) as a:
            await self.spawn_serving(peers, a, "b", "echo", "echo")
            reply = await a.request(Message("ping", {"n": [1, 2.5, "x"]}, destination="echo"))
        assert (reply.content, reply.source, reply.process) == ({"n": [1, 2.5, "x"]}, "echo", "b")

    async def test_request_reply_from_child_to_parent(self, peers: Peers) -> None:
        async with self.running(peers) as a:
            _echo(a, "echo-a")
            b = await peers.spawn("b")
            await b.call("wait_listener", listener="echo-a")
            reply = await b.call(
                "request", message={"type": "ping", "content": "hi", "destination": "echo-a"}
            )
        assert (reply["content"], reply["process"]) == ("hi", "a")

    async def test_letter_reply_goes_to_source_listener(self, peers: Peers) -> None:
        async with self.running(peers) as a:
            await self.spawn_serving(peers, a, "b", "echo", "echo")
            with _inbox(a, "inbox") as inbox:
                letter = Message("ping", "hello", destination="echo", source="inbox")
                await a.send(letter)
                reply = await inbox.receive()
        assert (reply.is_response, reply.id, reply.content, reply.error) == (
            True,
            letter.id,
            "hello",
            None,
        )

    async def test_deferred_reply(self, peers: Peers) -> None:
        replies: list[Message] = []
        async with self.running(peers) as a:
            b = await self.spawn_serving(peers, a, "b", "later", "defer")

            async def ask() -> None:
                replies.append(await a.request(Message("question", 1, destination="later")))

            async with anyio.create_task_group() as task_group:
                task_group.start_soon(ask)
                await b.event("deferred")
                assert replies == []  # the handler kept it: no reply yet
                await b.call("release", listener="later", content="answer")
        assert [reply.content for reply in replies] == ["answer"]

    async def test_handler_error_crosses(self, peers: Peers) -> None:
        async with self.running(peers) as a:
            await self.spawn_serving(peers, a, "b", "faulty", "raise")
            with pytest.raises(HandlerError, match="raised on purpose"):
                await a.request(Message("ping", destination="faulty"))

    async def test_reply_timeout(self, peers: Peers) -> None:
        async with self.running(peers) as a:
            await self.spawn_serving(peers, a, "b", "silent", "defer")
            with pytest.raises(ReplyTimeoutError):
                await a.request(Message("ping", destination="silent"), timeout=0.5)

    async def test_request_to_unknown_destination_is_undeliverable_at_once(
        self, peers: Peers
    ) -> None:
        async with self.running(peers) as a:
            await self.spawn_serving(peers, a, "b", "echo", "echo")
            with anyio.fail_after(self.prompt), pytest.raises(UndeliverableError):
                await a.request(Message("ping", destination="nobody"))

    async def test_letter_to_unknown_destination_comes_back_at_once(self, peers: Peers) -> None:
        async with self.running(peers) as a:
            await self.spawn_serving(peers, a, "b", "echo", "echo")
            with _inbox(a, "inbox") as inbox, anyio.fail_after(self.prompt):
                await a.send(Message("ping", "lost", destination="nobody", source="inbox"))
                returned = await inbox.receive()
        assert returned.content == "lost"
        assert (returned.error or "").startswith("undeliverable: ")

    async def test_send_sync_to_remote_listener_raises(self, peers: Peers) -> None:
        async with self.running(peers) as a:
            await self.spawn_serving(peers, a, "b", "echo", "echo")
            with pytest.raises(SyncSendError):
                a.send_sync(Message("ping", destination="echo"))

    async def test_blocking_message_holds_remote_destination(self, peers: Peers) -> None:
        async with self.running(peers) as a:
            b = await self.spawn_serving(peers, a, "b", "worker", "blocking_record")
            for n, blocking in [(1, True), (2, False), (3, True), (4, False)]:
                await a.send(Message("job", n, destination="worker", blocking=blocking))
            records = await b.call("records", listener="worker", count=8)
        assert records == [f"{edge} {n}" for n in (1, 2, 3, 4) for edge in ("start", "end")]

    async def test_fifo_order_from_one_sender_to_one_destination(self, peers: Peers) -> None:
        count = self.fifo_count
        async with self.running(peers) as a:
            received, complete = _collecting_sink(a, count)
            b = await peers.spawn("b")
            await b.call("wait_listener", listener="sink")
            await b.call("send_many", destination="sink", n=count)
            await complete.wait()
        assert received == list(range(count))

    async def test_message_at_size_limit_passes(self, peers: Peers) -> None:
        async with self.running(peers, max_message_size=self.size_limit) as a:
            await self.spawn_serving(
                peers, a, "b", "measure", "len", max_message_size=self.size_limit
            )
            message = self._sized(a, "measure", self.size_limit)
            reply = await a.request(message)
        assert reply.content == len(message.content)

    async def test_message_over_size_limit_rejected_by_sender(self, peers: Peers) -> None:
        async with self.running(peers, max_message_size=self.size_limit) as a:
            await self.spawn_serving(
                peers, a, "b", "measure", "len", max_message_size=self.size_limit
            )
            message = self._sized(a, "measure", self.size_limit + 1)
            with anyio.fail_after(self.prompt), pytest.raises(MessageTooLargeError):
                await a.request(message)

    @staticmethod
    def _sized(dispatcher: MessageDispatcher, destination: str, size: int) -> Message:
        """A request whose encoded form is exactly ``size`` bytes (id and process preset)."""
        message = Message(
            "sized",
            "",
            id=f"sized-{size}",
            destination=destination,
            process=dispatcher.process_id,
            response_required=True,
        )
        message.content = "x" * (size - len(encode_message(message)))
        assert len(encode_message(message)) == size
        return message

    @pytest.mark.parametrize(
        ("content", "named"),
        [({"hand": [1, {2, 3}]}, r"content\['hand'\]\[1\]"), ({"card": _Card()}, r"'card'")],
        ids=["set", "object"],
    )
    async def test_content_that_cannot_cross_is_rejected_naming_the_field(
        self, peers: Peers, content: Any, named: str
    ) -> None:
        async with self.running(peers) as a:
            await self.spawn_serving(peers, a, "b", "echo", "echo")
            with pytest.raises(InvalidMessageError, match=named):
                await a.send(Message("deal", content, destination="echo"))

    async def test_directory_follows_unregister(self, peers: Peers) -> None:
        async with self.running(peers) as a:
            _echo(a, "echo-a")
            b = await self.spawn_serving(peers, a, "b", "echo", "echo")
            # That a knows b's listener does not tell that b knows a's yet (through a
            # broker, a's directory reaches b on its own way).
            await b.call("wait_listener", listener="echo-a")
            await b.call("unregister", listener="echo")
            # A round trip from b after the change: links are FIFO, so a knows by now.
            await b.call("request", message={"type": "ping", "content": 1, "destination": "echo-a"})
            with anyio.fail_after(self.prompt), pytest.raises(UndeliverableError):
                await a.request(Message("ping", destination="echo"))

    # ------------------------------------------------------------------ three processes

    async def test_group_send_reaches_every_process(self, peers: Peers) -> None:
        async with self.running(peers) as a:
            children = [
                await self.spawn_serving(peers, a, p, f"rec-{p}", "record", groups=["news"])
                for p in ("b", "c")
            ]
            await a.wait_for_subscribers("news", 2, timeout=self.test_timeout)
            await a.send(Message("headline", "extra", group="news"))
            seen = [
                await p.call("records", listener=f"rec-{p.process_id}", count=1) for p in children
            ]
        assert seen == [["extra"], ["extra"]]

    async def test_gather_across_three_processes(self, peers: Peers) -> None:
        async with self.running(peers) as a:
            _echo(a, "echo-a")
            a.subscribe("poll", "echo-a")
            for p in ("b", "c"):
                await self.spawn_serving(peers, a, p, f"echo-{p}", "echo", groups=["poll"])
            await a.wait_for_subscribers("poll", 3, timeout=self.test_timeout)
            # Returns once all three answered: the reply timeout is far beyond the bound.
            replies = await a.gather(Message("vote", "yes?", group="poll"))
        assert sorted((r.source, r.process, r.content) for r in replies) == [
            ("echo-a", "a", "yes?"),
            ("echo-b", "b", "yes?"),
            ("echo-c", "c", "yes?"),
        ]

    async def test_joining_one_member_reaches_all(self, peers: Peers) -> None:
        async with self.running(peers) as a:
            b = await peers.spawn("b")
            # c knows only b.
            await self.spawn_serving(peers, a, "c", "echo-c", "echo", connect=b.urls)
            reply = await a.request(Message("ping", "via b", destination="echo-c"))
        assert (reply.content, reply.process) == ("via b", "c")

    # ------------------------------------------------------------------ failures

    async def test_peer_killed_pending_requests_fail_within_detector_bound(
        self, peers: Peers
    ) -> None:
        count = 5
        outcomes: list[type[BaseException]] = []
        all_failed = anyio.Event()
        async with self.running(peers) as a:
            b = await self.spawn_serving(peers, a, "b", "hold", "defer")

            async def ask(n: int) -> None:
                try:
                    await a.request(Message("question", n, destination="hold"))
                except DeliveryError as exc:
                    outcomes.append(type(exc))
                if len(outcomes) == count:
                    all_failed.set()

            async with anyio.create_task_group() as task_group:
                for n in range(count):
                    task_group.start_soon(ask, n)
                for _ in range(count):
                    await b.event("deferred")
                b.kill()
                with anyio.fail_after(self.detector_bound):
                    await all_failed.wait()
        assert outcomes == [PeerLostError] * count

    async def test_peer_killed_letters_come_back(self, peers: Peers) -> None:
        async with self.running(peers) as a:
            b = await self.spawn_serving(peers, a, "b", "hold", "defer")
            with _inbox(a, "inbox") as inbox:
                letter = Message(
                    "question", 1, destination="hold", source="inbox", response_required=True
                )
                await a.send(letter)
                await b.event("deferred")
                b.kill()
                with anyio.fail_after(self.detector_bound):
                    returned = await inbox.receive()
        assert returned.id == letter.id
        assert (returned.error or "").startswith("peer_lost: ")

    async def test_peer_restarted_traffic_resumes(self, peers: Peers) -> None:
        async with self.running(peers) as a:
            b = await self.spawn_serving(peers, a, "b", "hold", "defer")
            await _lose_a_request(a, b, "hold", b.kill, within=self.test_timeout)
            # a has seen b die; b comes back on the same URL, as the same process ID.
            await self.spawn_serving(peers, a, "b", "echo", "echo", listen=b.urls)
            reply = await a.request(Message("ping", "again", destination="echo"))
        assert (reply.content, reply.process) == ("again", "b")

    async def test_graceful_shutdown_delivers_accepted_messages(self, peers: Peers) -> None:
        count = 1000
        async with self.running(peers) as a:
            received, complete = _collecting_sink(a, count)
            b = await peers.spawn("b")
            await b.call("wait_listener", listener="sink")
            await b.call("send_many", destination="sink", n=count)
            await b.call("stop")  # at once: the sends were accepted, not yet delivered
            await complete.wait()
            returncode = await b.process.wait()
        assert (received, returncode) == (list(range(count)), 0)

    async def test_malformed_input_never_crashes_the_receiver(self, peers: Peers) -> None:
        if self.no_hostile_input is not None:
            pytest.skip(
                f"{type(self).__name__} supplies no malformed input: {self.no_hostile_input}"
            )
        if type(self).send_hostile_input is TransportConformance.send_hostile_input:
            pytest.fail(
                f"{type(self).__name__} must override send_hostile_input(url) with malformed"
                " input in its transport's wire format, or set no_hostile_input to the reason"
                " it has none (the test is then reported as skipped)",
                pytrace=False,
            )
        async with self.running(peers) as a:
            _echo(a, "echo-a")
            b = await self.spawn_serving(peers, a, "b", "echo-b", "echo")
            await b.call("wait_listener", listener="echo-a")
            for url in b.urls:
                await self.send_hostile_input(url)
            # b is alive and still serves its other peer, both ways.
            reply = await a.request(Message("ping", "still there?", destination="echo-b"))
            back = await b.call(
                "request", message={"type": "ping", "content": "yes", "destination": "echo-a"}
            )
            alive = b.alive
        assert (reply.content, back["content"], alive) == ("still there?", "yes", True)

    async def test_peer_frozen_pending_requests_fail_within_detector_bound(
        self, peers: Peers
    ) -> None:
        async with self.running(peers) as a:
            b = await self.spawn_serving(peers, a, "b", "hold", "defer")
            try:
                # Alive but silent, its sockets open: only the heartbeats can tell.
                await _lose_a_request(a, b, "hold", _freezer(b), within=self.detector_bound)
            finally:
                b.process.send_signal(signal.SIGCONT)

    async def test_frozen_peer_that_thaws_is_served_again(self, peers: Peers) -> None:
        async with self.running(peers) as a:
            _echo(a, "echo-a")
            b = await self.spawn_serving(peers, a, "b", "hold", "defer")
            await b.call("listener", listener="echo-b", behaviour="echo")
            await b.call("wait_listener", listener="echo-a")
            try:
                # Frozen until a has declared it gone (longer than the detector's bound).
                await _lose_a_request(a, b, "hold", _freezer(b), within=self.detector_bound)
            finally:
                b.process.send_signal(signal.SIGCONT)
            # Back within about one heartbeat bound, both ways, as after a restart.
            with anyio.fail_after(self.detector_bound):
                # Up again, not only listed: a durable transport keeps a silent peer's
                # listeners in the directory (dormant) while it is away.
                await a.wait_for_peer("b", timeout=self.test_timeout)
                await a.wait_for_listener("echo-b", timeout=self.test_timeout)
                await b.call("wait_listener", listener="echo-a")
            reply = await a.request(Message("ping", "thawed", destination="echo-b"))
            back = await b.call(
                "request", message={"type": "ping", "content": "yes", "destination": "echo-a"}
            )
        assert (reply.content, back["content"]) == ("thawed", "yes")

    async def test_outbox_overflow_is_an_error_at_the_sender(
        self, peers: Peers, transport_url: str
    ) -> None:
        transport = resolve_transport(transport_url, default_plugin_manager())
        if not transport.peer_backpressure:
            pytest.skip(
                f"per-peer back-pressure does not apply to {type(transport).__name__}:"
                " something in between (a broker) takes what a frozen peer does not read"
            )
        # Heartbeats slow enough that the frozen peer is not declared dead meanwhile.
        slow: dict[str, Any] = {"heartbeat_interval": self.test_timeout, "heartbeat_tolerance": 3}
        payload = "x" * (self.size_limit - 256)
        async with self.running(peers, max_message_size=self.size_limit, **slow) as a:
            b = await self.spawn_serving(
                peers, a, "b", "sink", "record", max_message_size=self.size_limit, **slow
            )

            async def flood() -> None:
                for _ in range(self.flood_limit):
                    await a.send(Message("flood", payload, destination="sink"))

            b.process.send_signal(signal.SIGSTOP)  # it reads nothing more
            try:
                with pytest.raises(OutboxFullError):
                    await flood()
            finally:
                b.process.send_signal(signal.SIGCONT)


def _freezer(peer: Peer) -> Callable[[], None]:
    """SIGSTOP ``peer``: alive, its sockets open, silent."""
    return lambda: peer.process.send_signal(signal.SIGSTOP)


async def _lose_a_request(
    dispatcher: MessageDispatcher,
    peer: Peer,
    holder: str,
    stop: Callable[[], None],
    *,
    within: float,
) -> None:
    """Request ``holder`` (a "defer" listener of ``peer``) and ``stop`` the peer once it
    holds the request; return once the request failed with `PeerLostError`, which must
    happen ``within`` seconds of the stop."""
    lost = anyio.Event()
    async with anyio.create_task_group() as task_group:

        async def ask() -> None:
            with pytest.raises(PeerLostError):
                await dispatcher.request(Message("question", destination=holder))
            lost.set()

        task_group.start_soon(ask)
        await peer.event("deferred")
        stop()
        with anyio.fail_after(within):
            await lost.wait()


def _collecting_sink(dispatcher: MessageDispatcher, count: int) -> tuple[list[Any], anyio.Event]:
    """Register listener "sink" on ``dispatcher``: it keeps every content it receives.

    Returns the list it fills and an event set once ``count`` contents arrived.
    """
    received: list[Any] = []
    complete = anyio.Event()

    def sink(message: Message) -> None:
        received.append(message.content)
        if len(received) == count:
            complete.set()

    listener = BasicMessageListener("sink")
    listener.add_rule(callback=sink)
    dispatcher.register(listener)
    return received, complete
