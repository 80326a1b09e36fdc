"""Kafka transport: processes that share only a broker meet in a namespace.

Features:
    * No direct links: every process has an inbox topic, ``dispatchio.<ns>.p.<process>``
      (one partition), and announces itself on ``dispatchio.<ns>.members``. A frame to a
      process is one record on its inbox, so frames from one sender arrive in order.
      The topics and the plain-JSON record values are described in
      `dispatchio_kafka._envelope` and the README, so a program with another Kafka client
      can talk to dispatchio listeners.
    * Durable inboxes: a process consumes its inbox from the offset it committed (group
      ID = the inbox topic name, ``assign()`` only, never a group join), and commits only
      frames the core has handled or queued. A process restarted with the same ID gets
      the letters sent to it while it was down.
    * kafka-python is blocking, so it runs in two worker threads per transport (one
      producer, one consumer); records cross to and from the event loop in batches,
      never one call per record, and nothing on the loop waits for the broker. A frame
      sent while the producer is idle skips the producer thread: the loop hands it to
      kafka-python itself, which cannot block then (`KafkaTransport._send_now`).
    * A bounded local outbox per peer: frames not yet acknowledged by the broker count
      against ``max_outbox_bytes``; beyond it `KafkaTransport.send` raises
      `OutboxFullError` (e.g. while the broker is down).
    * Hostile records (not JSON, truncated, wrong types, oversized) are dropped, logged on
      logger ``dispatchio.kafka`` and committed past, so they never block an inbox.
    * Identical message records (a producer's retry, a re-read after a restart within one
      run) are delivered once, within a window of ``dedup_window`` records per process.
    * Works on asyncio and trio.

URL format:
    ``kafka://host:port[,host:port...]/<namespace>``, the bootstrap brokers and a
    namespace of ``[A-Za-z0-9_-]``. ``listen=`` and ``connect=`` both mean "join this
    namespace"; query parameters are options (``kafka://127.0.0.1:9092/shop?durable_for=60``).

Options (`KafkaOptions`):
    ``durable_for``, ``acks``, ``fetch_max_wait_ms``, ``linger_ms``, ``commit_every``,
    ``commit_interval``, ``dedup_window``, ``max_block_ms``, ``delivery_timeout_ms``,
    ``request_timeout_ms``, ``client_id``, ``proxy_url``, kafka-python's security settings
    (``security_protocol``, ``ssl_*``, ``sasl_*``) passed through, and the common
    ``max_frame_size`` (the producer's ``max_request_size`` is set to carry it),
    ``max_outbox_bytes`` and ``close_timeout``.

Limitations:
    * One namespace per transport (per dispatcher).
    * Per-peer back-pressure does not exist: the broker absorbs what a slow or stopped
      peer does not read. Only the local outbox is bounded.
    * Latency is the broker's: a request costs two produce-and-fetch trips
      (``fetch_max_wait_ms`` bounds the fetch side).
    * A broker that lost its data (tansu's memory storage restarted) is noticed by its
      re-created topics (new topic IDs in the metadata, refreshed every few seconds and
      after any lost connection; no record is delivered before that refresh, so a read
      position kept from the old log never reads the new one from its middle): they are
      read from 0, this process is announced again, and a producer the broker no longer
      knows is rebuilt. Frames it had not acknowledged are sent again, in
      order (`KafkaTransport._produce_loop`).
"""

from __future__ import annotations

import collections
import logging
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

import anyio
import anyio.abc
import anyio.from_thread
import anyio.to_thread
from pydantic import Field

from dispatchio import (
    ListenerId,
    MessageTooLargeError,
    OutboxFullError,
    TransportConfigError,
    TransportError,
)
from dispatchio.transport import PeerHello, Transport, TransportHandler, TransportOptions
from dispatchio_kafka import _envelope
from dispatchio_kafka._envelope import EnvelopeError
from dispatchio_kafka._gaps import OffsetGaps

if TYPE_CHECKING:
    import kafka

__all__ = ["KafkaOptions", "KafkaTransport"]

logger = logging.getLogger("dispatchio.kafka")

#: Largest ``max_frame_size`` allowed (the producer's request must carry it).
MAX_FRAME_LIMIT = 64 << 20
#: A fetch answers as soon as one record is there (kafka-python's default, stated
#: because the benchmarks give their raw baseline the same).
FETCH_MIN_BYTES = 1
#: Records handed to the event loop in one call, at most.
_BATCH = 500
#: Seconds a worker thread waits in one poll, so it notices a stop request soon.
_POLL = 0.1
#: How old the consumer's metadata (and so the topic IDs it compares) may get.
_METADATA_AGE_MS = 3_000
#: Seconds the consumer waits for fresh metadata before it reads held-back records again.
_STALE_WAIT = 0.02
#: A consumer handed records past a missing offset reads again from it after this pause,
#: for at most `_GAP_PATIENCE` seconds (see `dispatchio_kafka._gaps`).
_GAP_WAIT = 0.005
_GAP_PATIENCE = 1.0
# The prefix of a message frame (kind 0): only those are de-duplicated and replayed
# from an earlier incarnation; control frames of an old incarnation mean nothing now.
_MESSAGE = b"[0,"
#: A frame handed to kafka-python: (topic, value, process, its future, resend deadline).
_Inflight = tuple[str, bytes, ListenerId, "kafka.producer.future.FutureRecordMetadata", float]


class KafkaOptions(TransportOptions):
    """Options of the Kafka transport (all optional)."""

    max_frame_size: int = Field(
        default=1 << 20,
        ge=1024,
        le=MAX_FRAME_LIMIT,
        description=(
            "Largest frame sent or accepted, in bytes; the producer's max_request_size is"
            " set to carry it with its envelope."
        ),
    )
    durable_for: float = Field(
        default=300.0,
        ge=0,
        allow_inf_nan=False,
        description=(
            "Seconds other processes keep this process's listeners after it stopped"
            " answering (letters to them wait in its inbox); 0: forget it at once."
        ),
    )
    acks: Literal[0, 1, "all"] = Field(
        default="all", description="Broker acknowledgements a produce waits for."
    )
    fetch_max_wait_ms: int = Field(
        default=5,
        ge=0,
        le=10_000,
        description="Longest wait of one fetch for new records (latency against broker load).",
    )
    linger_ms: int = Field(
        default=0,
        ge=0,
        le=1_000,
        description=(
            "kafka-python's linger_ms: how long a lone record waits for company before it"
            " is sent. Under load records batch anyway (one request in flight: those"
            " queued meanwhile leave together), so 0 sends at once when idle."
        ),
    )
    commit_every: int = Field(
        default=100, ge=1, description="Commit the inbox offset after this many records."
    )
    commit_interval: float = Field(
        default=0.5, gt=0, description="... or after this many seconds with records uncommitted."
    )
    dedup_window: int = Field(
        default=10_000,
        ge=0,
        description="Message records remembered per process to drop duplicates (0: none).",
    )
    max_block_ms: int = Field(
        default=5_000, ge=1, description="kafka-python's max_block_ms (in the worker thread)."
    )
    delivery_timeout_ms: int = Field(
        default=30_000, ge=1, description="Milliseconds a produced record may take to be acked."
    )
    request_timeout_ms: int = Field(
        default=10_000, ge=1, description="kafka-python's request_timeout_ms."
    )
    client_id: str | None = Field(default=None, description="Client ID shown to the broker.")
    proxy_url: str | None = Field(
        default=None,
        pattern=r"^(http|socks5h?)://([^/?#@]*@)?[^/?#@]+:[0-9]+$",
        repr=False,  # it may carry credentials
        description=(
            "kafka-python's proxy_url: every broker connection (bootstrap included) goes"
            " through this HTTP CONNECT (http://[user:password@]host:port) or SOCKS5"
            " (socks5://, socks5h://) proxy."
        ),
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    ssl_context: ssl.SSLContext | None = None
    ssl_check_hostname: bool = True
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_password: str | None = Field(default=None, repr=False)
    ssl_crlfile: str | None = None
    ssl_ciphers: str | None = None
    sasl_mechanism: (
        Literal["PLAIN", "GSSAPI", "OAUTHBEARER", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None
    ) = None
    sasl_plain_username: str | None = None
    sasl_plain_password: str | None = Field(default=None, repr=False)
    sasl_kerberos_service_name: str = "kafka"
    sasl_kerberos_domain_name: str | None = None
    sasl_oauth_token_provider: Any = None


_SECURITY = (
    "security_protocol",
    "ssl_context",
    "ssl_check_hostname",
    "ssl_cafile",
    "ssl_certfile",
    "ssl_keyfile",
    "ssl_password",
    "ssl_crlfile",
    "ssl_ciphers",
    "sasl_mechanism",
    "sasl_plain_username",
    "sasl_plain_password",
    "sasl_kerberos_service_name",
    "sasl_kerberos_domain_name",
    "sasl_oauth_token_provider",
)


def parse_url(url: str) -> tuple[tuple[str, ...], str]:
    """The bootstrap servers and the namespace of a ``kafka://`` URL.

    Raises:
        TransportConfigError: another scheme, no broker, a bad port or namespace.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != KafkaTransport.scheme:
        raise TransportConfigError(f"{url!r} is not a kafka:// URL")
    servers = []
    for server in parts.netloc.split(","):
        host, sep, port = server.rpartition(":")
        if not server or not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise TransportConfigError(f"{url!r}: a broker must be host:port, not {server!r}")
        servers.append(server)
    try:
        namespace = _envelope.check_namespace(parts.path.lstrip("/"))
    except ValueError as exc:
        raise TransportConfigError(f"{url!r}: {exc}") from None
    return tuple(servers), namespace


class _Joined:
    """Where this transport joined: brokers, namespace, and this process's names there."""

    def __init__(
        self, url: str, servers: tuple[str, ...], namespace: str, local: PeerHello
    ) -> None:
        self.url = url
        self.servers = servers
        self.namespace = namespace
        self.inbox = _envelope.inbox_topic(namespace, local.process)
        self.members = _envelope.members_topic(namespace)
        self.local = local
        self.prefix = _envelope.record_prefix(local.process, local.incarnation)
        self.key = _envelope.record_key(local.process)


class _Dedup:
    """The last ``size`` message records of one sender, to drop repeats."""

    __slots__ = ("order", "seen", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self.seen: set[int] = set()
        self.order: collections.deque[int] = collections.deque()

    def repeat(self, value: bytes) -> bool:
        digest = hash(value)
        if digest in self.seen:
            return True
        self.seen.add(digest)
        self.order.append(digest)
        if len(self.order) > self.size:
            self.seen.discard(self.order.popleft())
        return False


class KafkaTransport(Transport):
    """The ``kafka://`` transport (see the module documentation)."""

    scheme = "kafka"
    # A broker takes whatever a slow or stopped peer does not read.
    peer_backpressure = False
    Options = KafkaOptions
    options: KafkaOptions

    def __init__(self, options: TransportOptions | None = None, **kwargs: Any) -> None:
        super().__init__(options, **kwargs)
        self._url: str | None = None
        self._pending_join: tuple[str, tuple[str, ...], str] | None = None
        self._joined: _Joined | None = None
        self._handler: TransportHandler | None = None
        self._local: PeerHello | None = None
        self._closed = False
        self._stop = threading.Event()
        self._finished = anyio.Event()
        self._join_requested = anyio.Event()
        # Loop -> producer thread: (topic, value, process); the thread takes them in order.
        self._queue: collections.deque[tuple[str, bytes, ListenerId]] = collections.deque()
        self._wake = threading.Event()
        # Held by the producer thread while it works (not while it waits), and by the loop
        # while it sends a frame itself (`_send_now`): kafka-python sees frames in order.
        self._lock = threading.Lock()
        # The producer the loop may send to itself (None: not now), its errback, and the
        # frames it sent so, until the producer thread adopts them (both under `_lock`).
        self._idle_producer: kafka.KafkaProducer | None = None
        self._refused: Callable[[BaseException], None] | None = None
        self._direct: collections.deque[_Inflight] = collections.deque()
        self._inflight: collections.deque[_Inflight] = collections.deque()
        # Consumer thread -> producer thread: the broker lost the namespace's topics.
        self._rejoin = threading.Event()
        # Frames the broker refused, to send again first, in order (producer thread only):
        # (topic, value, process, deadline).
        self._retry: collections.deque[tuple[str, bytes, ListenerId, float]] = collections.deque()
        # Producer thread -> loop: (process, bytes) of records acknowledged or failed.
        self._settled: collections.deque[tuple[ListenerId, int]] = collections.deque()
        self._held: dict[ListenerId, int] = {}
        # Per destination: its inbox topic and the record prefix naming its incarnation.
        self._routes: dict[ListenerId, tuple[str, bytes]] = {}
        # The incarnation of each process as last announced (kept while it is dormant).
        self._incarnations: dict[ListenerId, int] = {}
        self._failures: collections.deque[tuple[ListenerId, str]] = collections.deque()
        # Membership as this transport told the core (peer_up), by process.
        self._up: dict[ListenerId, PeerHello] = {}
        self._seen: dict[ListenerId, set[int]] = {}
        # The last "up" record of each process in the members topic.
        self._members: dict[ListenerId, PeerHello] = {}
        self._dedup: dict[ListenerId, _Dedup] = {}
        self._limiter = anyio.CapacityLimiter(2)
        self._scope: anyio.CancelScope | None = None
        self.dropped_records = 0
        #: Responses and control frames read from the inbox that were meant for an
        #: earlier incarnation of this process (dropped).
        self.stale_records = 0

    # ------------------------------------------------------------------ configuration

    def _join(self, url: str) -> None:
        """Remember the brokers and namespace of ``url`` (its query options applied).

        Raises:
            TransportConfigError: a malformed URL, or a second namespace.
        """
        parts = urllib.parse.urlsplit(url)
        plain = parts._replace(query="", fragment="").geturl()
        servers, namespace = parse_url(plain)
        if self._url is not None:
            if self._url != plain:
                raise TransportConfigError(
                    f"{url!r}: this transport joined {self._url!r} already (one namespace each)"
                )
            return
        if parts.query:
            extra = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
            try:
                self.options = self.Options(**{**self.options.model_dump(), **extra})
            except ValueError as exc:
                raise TransportConfigError(f"{url!r}: {exc}") from exc
        self._url = plain
        if self._local is not None:
            self._joined = _Joined(plain, servers, namespace, self._local)
        else:
            self._pending_join = (plain, servers, namespace)

    def _wait_for_brokers(self) -> bool:
        """Block (in a worker thread) until a bootstrap broker accepts a TCP connection
        (with ``proxy_url``: until the proxy does).

        kafka-python's clients block for ``bootstrap_timeout_ms`` in their constructors
        while no broker answers, and leak their sockets when that fails, so they are
        built only once a broker is there. Returns False when the transport stops first.
        """
        assert self._joined is not None
        delay = 0.05
        warned = False
        servers = self._joined.servers
        if self.options.proxy_url is not None:  # the brokers may be reachable only through it
            servers = (urllib.parse.urlsplit(self.options.proxy_url).netloc.rpartition("@")[2],)
        while not self._stop.is_set():
            for server in servers:
                host, _, port = server.rpartition(":")
                try:
                    with socket.create_connection((host.strip("[]"), int(port)), timeout=1.0):
                        return True
                except OSError as exc:
                    failure = exc
            if not warned:
                warned = True
                logger.warning(
                    "no kafka broker of %s answers (%s); retrying",
                    ",".join(servers),
                    failure,
                )
            self._stop.wait(delay)
            delay = min(delay * 2, 1.0)
        return False

    def _client_config(self) -> dict[str, Any]:
        options = self.options
        config: dict[str, Any] = {
            name: getattr(options, name)
            for name in _SECURITY
            if getattr(options, name) != KafkaOptions.model_fields[name].default
            or name == "security_protocol"
        }
        assert self._joined is not None
        config["bootstrap_servers"] = list(self._joined.servers)
        config["request_timeout_ms"] = options.request_timeout_ms
        if options.client_id is not None:
            config["client_id"] = options.client_id
        if options.proxy_url is not None:
            config["proxy_url"] = options.proxy_url
        return config

    # ------------------------------------------------------------------ Transport

    async def serve(
        self,
        handler: TransportHandler,
        local: PeerHello,
        *,
        listen: Sequence[str],
        task_status: anyio.abc.TaskStatus[tuple[str, ...]],
    ) -> None:
        """Report the namespace URL at once, then join it in worker threads until closed.

        Nothing here waits for the broker: an unreachable broker delays traffic, never
        ``async with dispatcher``.

        Raises:
            TransportConfigError: before ``started()``, for a bad URL or two namespaces.
        """
        self._handler = handler
        self._local = local
        if self._pending_join is not None:
            self._joined = _Joined(*self._pending_join, local)
        for url in listen:
            self._join(url)
        urls = (self._url,) if self._url is not None else ()
        try:
            async with anyio.create_task_group() as task_group:
                self._scope = task_group.cancel_scope
                task_status.started(urls)
                if self._joined is None:
                    await self._join_requested.wait()
                if self._closed:
                    return
                task_group.start_soon(self._run_thread, self._produce, "producer")
                task_group.start_soon(self._run_thread, self._consume, "consumer")
        finally:
            self._stop.set()
            self._wake.set()
            self._finished.set()

    async def _run_thread(self, work: Callable[[], None], name: str) -> None:
        try:
            await anyio.to_thread.run_sync(work, abandon_on_cancel=True, limiter=self._limiter)
        except Exception:
            logger.exception("the kafka %s thread failed", name)
            raise

    async def connect(self, url: str) -> None:
        """Join the namespace of ``url`` (a no-op when it is the one joined already).

        Raises:
            TransportConfigError: a malformed URL, or another namespace than the one joined.
            TransportError: the transport is closed.
        """
        if self._closed:
            raise TransportError("the kafka transport is closed")
        self._join(url)
        self._join_requested.set()

    def send(self, process: ListenerId, frame: bytes) -> None:
        """Queue one frame for the inbox of ``process``, without blocking.

        Raises:
            MessageTooLargeError: the frame exceeds ``max_frame_size``.
            OutboxFullError: frames to ``process`` not yet acknowledged by the broker
                hold ``max_outbox_bytes`` already; nothing was queued.
            TransportError: the transport is closed or never joined a namespace.
        """
        joined = self._joined
        if self._closed or joined is None:
            raise TransportError(
                "the kafka transport is closed" if self._closed else "no kafka namespace joined"
            )
        size = len(frame)
        if size > self.options.max_frame_size:
            raise MessageTooLargeError(
                f"frame of {size} bytes exceeds max_frame_size {self.options.max_frame_size}"
            )
        settled = self._settled
        held = self._held
        while settled:
            peer, done = settled.popleft()
            held[peer] -= done
        route = self._routes.get(process)
        if route is None:
            route = self._routes[process] = (
                _envelope.inbox_topic(joined.namespace, process),
                _envelope.record_prefix(
                    joined.local.process, joined.local.incarnation, self._incarnations.get(process)
                ),
            )
        value = route[1] + frame + b"}"
        already = held.get(process, 0)
        if already and already + len(value) > self.options.max_outbox_bytes:
            raise OutboxFullError(
                f"{already} bytes for process {process!r} are not yet acknowledged by the"
                f" broker (max_outbox_bytes {self.options.max_outbox_bytes})"
            )
        held[process] = already + len(value)
        topic = route[0]
        if (
            self._idle_producer is not None
            and not self._queue
            and self._lock.acquire(blocking=False)
        ):
            try:
                if self._send_now(topic, value, process, joined.key):
                    return
            finally:
                self._lock.release()
        self._queue.append((topic, value, process))
        if not self._wake.is_set():
            self._wake.set()

    def _send_now(self, topic: str, value: bytes, process: ListenerId, key: bytes) -> bool:
        """Hand one frame to kafka-python from the loop, if the producer is idle (or False).

        Two thread hops less for a frame sent alone (a request, its reply): it leaves
        at once. Only when nothing is queued or unacknowledged, so under load frames keep
        going through the producer thread and the loop does not pay kafka-python's cost
        per record. Only for a topic the producer has metadata for, so ``send`` does not
        block. Runs with ``_lock`` held: the producer thread is waiting, and adopts the
        frame (a refusal, a resend) on its next pass.
        """
        from kafka.errors import KafkaError

        producer, refused = self._idle_producer, self._refused
        if producer is None or refused is None or self._retry or self._rejoin.is_set():
            return False
        # Idle: every frame sent is acknowledged (read off the futures here, since the
        # producer thread may sleep until its next frame).
        for pending in (self._inflight, self._direct):
            while pending and pending[0][3].is_done:
                _topic, sent, peer, future, _deadline = pending[0]
                if not future.succeeded():
                    return False  # refused: the producer thread resends it, and what follows
                pending.popleft()
                self._settled.append((peer, len(sent)))
            if pending:
                return False
        # kafka-python keeps metadata only there; send() would wait for it when missing.
        if producer._metadata.partitions_for_topic(topic) is None:
            return False
        try:
            future = producer.send(topic, value, key=key, partition=0)
        except (KafkaError, ValueError):
            # Refused before it was taken (the sender stopped; metadata that changed
            # since the check above): the producer thread sends it, in order.
            return False
        future.add_errback(refused)
        deadline = time.monotonic() + self.options.delivery_timeout_ms / 1000
        self._direct.append((topic, value, process, future, deadline))
        return True

    def disconnect(self, process: ListenerId, reason: str) -> None:
        """Forget that ``process`` is up, because the core declared it gone.

        There is no link to close: the next record from it (a paused process that
        resumes, a restart) announces it again with `TransportHandler.peer_up`. Unlike
        a socket transport, frames already queued for it are not dropped: they go to
        its inbox, which keeps them for its return (see ``durable_for``). Never raises.
        """
        if self._up.pop(process, None) is not None:
            logger.info("process %r is gone for the core: %s", process, reason)

    async def aclose(self) -> None:
        """Flush accepted frames (at most ``close_timeout``), announce the leave, stop.

        Idempotent. Cancelled, it stops the worker threads without waiting for them.
        """
        self._closed = True
        self._join_requested.set()
        self._stop.set()
        self._wake.set()
        if self._handler is not None:
            # The threads notice the stop within a poll; a client stuck in a call to a
            # broker that went away is abandoned after close_timeout.
            with anyio.move_on_after(self.options.close_timeout + 2 * _POLL):
                await self._finished.wait()
            if not self._finished.is_set() and self._scope is not None:
                self._scope.cancel()
                await self._finished.wait()

    # ------------------------------------------------------------------ producer thread

    def _produce(self) -> None:
        """The producer thread: (re)build the producer, announce this process, send frames.

        A producer the broker no longer knows (it lost its state: tansu's memory storage
        restarted) is rebuilt, and this process announced again, since the broker also
        lost the members topic. Frames it failed were reported by then.
        """
        from kafka.errors import KafkaError

        joined, local = self._joined, self._local
        assert joined is not None
        assert local is not None
        options = self.options
        while not self._stop.is_set() or self._queue or self._retry:
            producer = self._new_producer()
            if producer is None:
                return
            self._rejoin.clear()
            rebuilt = False
            try:
                member = _envelope.encode_member(
                    local.process,
                    local.incarnation,
                    up=True,
                    urls=(joined.url,),
                    durable_for=options.durable_for,
                )
                producer.send(joined.members, member, key=joined.key, partition=0)
                if not self._produce_loop(producer):
                    rebuilt = True
                    continue  # rebuilt; `finally` closed the old one
                leave = _envelope.encode_member(
                    local.process, local.incarnation, up=False, urls=(), durable_for=0.0
                )
                producer.send(joined.members, leave, key=joined.key, partition=0)
                producer.flush(options.close_timeout)
                return
            except KafkaError as exc:
                logger.warning("kafka producer: %s", exc)
                return
            finally:
                _close_producer(producer, 0 if rebuilt else options.close_timeout)

    def _new_producer(self) -> kafka.KafkaProducer | None:
        """A producer, once a broker answers (and the topics exist); None: stopped first."""
        from kafka import KafkaProducer
        from kafka.admin import KafkaAdminClient, NewTopic
        from kafka.errors import KafkaError, TopicAlreadyExistsError

        joined = self._joined
        assert joined is not None
        options = self.options
        config = self._client_config()
        while True:
            if not self._wait_for_brokers():
                return None
            try:
                admin = KafkaAdminClient(**config)
                try:
                    admin.create_topics(
                        [NewTopic(joined.inbox, 1, 1), NewTopic(joined.members, 1, 1)]
                    )
                except TopicAlreadyExistsError:
                    pass
                finally:
                    admin.close()
                return KafkaProducer(
                    **config,
                    acks=options.acks if options.acks != "all" else -1,
                    enable_idempotence=options.acks == "all",
                    linger_ms=options.linger_ms,
                    batch_size=256 << 10,
                    max_request_size=options.max_frame_size + _envelope.OVERHEAD + 1024,
                    max_block_ms=options.max_block_ms,
                    delivery_timeout_ms=options.delivery_timeout_ms,
                    # One request in flight: when the broker refuses a batch, nothing behind
                    # it has left yet, so resending from the refused frame keeps the order.
                    max_in_flight_requests_per_connection=1,
                    retry_backoff_ms=50,
                    # With one request in flight the connection is busy whenever a batch is
                    # out, and kafka-python then skips a metadata refresh and backs off,
                    # doubling up to reconnect_backoff_max_ms (30 s by default): a send that
                    # needs metadata (a peer's first frame) could wait seconds, holding
                    # every frame behind it. A bound of 1 s keeps that wait short.
                    reconnect_backoff_max_ms=1_000,
                )
            except KafkaError as exc:
                logger.warning("cannot reach the kafka brokers %s: %s", joined.servers, exc)
                if self._stop.wait(1.0):
                    return None

    def _produce_loop(self, producer: kafka.KafkaProducer) -> bool:
        """Send queued frames until stopped (True) or the producer must be rebuilt (False).

        Frames the broker refused (tansu after a restart answers ``UnknownError``), and
        every frame queued behind them, go back to ``_retry`` in their order, to be sent
        again by the rebuilt producer: the first refusal stops this producer's sender at
        once (one request in flight at a time), so nothing behind a refused frame reaches
        the broker before it. Per record, the only work here is kafka-python's ``send``
        and one errback; acknowledgements are read off the futures once per pass.
        """
        from kafka.errors import KafkaError

        queue, retry, wake, stop = self._queue, self._retry, self._wake, self._stop
        settled, lock, direct = self._settled, self._lock, self._direct
        inflight = self._inflight
        key = self._joined.key if self._joined is not None else b""
        refusals: list[BaseException] = []
        patience = self.options.delivery_timeout_ms / 1000
        closing_deadline: float | None = None

        def refused(error: BaseException) -> None:
            # In kafka-python's I/O thread, as the first refused batch fails: stop the
            # sender before it sends the next batch (the records behind this one).
            if not refusals:
                refusals.append(error)
                if self._idle_producer is producer:  # no more frames from the loop
                    self._idle_producer = None
                sender = getattr(producer, "_sender", None)
                if sender is not None:
                    sender.force_close()
                wake.set()

        def acknowledged() -> None:
            done: dict[ListenerId, int] = {}
            while inflight and inflight[0][3].is_done and inflight[0][3].succeeded():
                _topic, value, process, _future, _deadline = inflight.popleft()
                done[process] = done.get(process, 0) + len(value)
            settled.extend(done.items())

        lock.acquire()
        self._refused = refused
        self._idle_producer = producer
        try:
            while True:
                wake.clear()
                if direct:  # sent by the loop while this thread waited: after the rest
                    inflight.extend(direct)
                    direct.clear()
                if inflight:
                    acknowledged()
                if refusals or self._rejoin.is_set():
                    return False
                if not queue and not retry:
                    if stop.is_set() and (not inflight or _past(closing_deadline)):
                        return True
                    if stop.is_set() and closing_deadline is None:
                        closing_deadline = time.monotonic() + self.options.close_timeout
                    lock.release()
                    try:
                        wake.wait(_POLL if inflight else None)
                    finally:
                        lock.acquire()
                    continue
                if stop.is_set() and closing_deadline is None:
                    closing_deadline = time.monotonic() + self.options.close_timeout
                deadline = time.monotonic() + patience
                sent = 0
                while (retry or queue) and not refusals:
                    if retry:
                        topic, value, process, deadline = retry.popleft()
                    else:
                        topic, value, process = queue.popleft()
                    try:
                        future = producer.send(topic, value, key=key, partition=0)
                    except KafkaError as exc:
                        # Refused before it left (the sender stopped, a full buffer past
                        # max_block_ms): it and what follows are sent again, in order.
                        retry.appendleft((topic, value, process, deadline))
                        refused(exc)
                        break
                    future.add_errback(refused)
                    inflight.append((topic, value, process, future, deadline))
                    sent += 1
                    if sent % 256 == 0:
                        # Let the event loop's thread have the interpreter between records.
                        time.sleep(0)
                        acknowledged()
                    if _past(closing_deadline):
                        return True
        finally:
            self._idle_producer = None
            inflight.extend(direct)
            direct.clear()
            self._requeue(inflight)
            lock.release()

    def _requeue(self, inflight: collections.deque[_Inflight]) -> None:
        """Put the frames the broker did not acknowledge back in front, in order.

        Those past their deadline (``delivery_timeout_ms`` after their first send) and
        every frame behind them to the same process come back as failures instead
        (`TransportHandler.peer_down`): resending only the later ones would reorder.
        """
        now = time.monotonic()
        expired: set[ListenerId] = set()
        again: list[tuple[str, bytes, ListenerId, float]] = []
        for topic, value, process, future, deadline in inflight:
            if future.is_done and future.succeeded():
                self._settled.append((process, len(value)))
            elif process in expired or deadline < now or self._stop.is_set():
                expired.add(process)
                self._settled.append((process, len(value)))
                self._failures.append(
                    (process, _describe(future.exception) if future.is_done else "not sent")
                )
            else:
                again.append((topic, value, process, deadline))
        inflight.clear()
        if again or self._retry:
            kept = [entry for entry in self._retry if entry[2] not in expired]
            self._retry.clear()
            self._retry.extend(again)
            self._retry.extend(kept)
            if again:
                logger.warning(
                    "the broker did not take %d frames; sending them again, in order", len(again)
                )

    # ------------------------------------------------------------------ consumer thread

    def _consume(self) -> None:
        from kafka import KafkaConsumer, TopicPartition
        from kafka.errors import KafkaError
        from kafka.structs import OffsetAndMetadata

        joined = self._joined
        assert joined is not None
        options = self.options
        inbox = TopicPartition(joined.inbox, 0)
        members = TopicPartition(joined.members, 0)
        consumer: kafka.KafkaConsumer | None = None
        while consumer is None:
            if not self._wait_for_brokers():
                return
            try:
                consumer = KafkaConsumer(
                    **self._client_config(),
                    group_id=joined.inbox,
                    enable_auto_commit=False,
                    auto_offset_reset="earliest",
                    fetch_max_wait_ms=options.fetch_max_wait_ms,
                    fetch_min_bytes=FETCH_MIN_BYTES,
                    max_partition_fetch_bytes=max(1 << 20, options.max_frame_size + 4096),
                    fetch_max_bytes=max(50 << 20, 2 * options.max_frame_size),
                    # Fresh metadata every few seconds: topic IDs tell a re-created log.
                    metadata_max_age_ms=_METADATA_AGE_MS,
                )
            except KafkaError as exc:
                logger.warning("cannot reach the kafka brokers %s: %s", joined.servers, exc)
                if self._stop.wait(1.0):
                    return
        deliver = self._deliver
        committed = -1  # the offset last committed
        gaps = OffsetGaps(_GAP_PATIENCE)

        def commit(offset: int) -> bool:
            nonlocal committed
            try:
                consumer.commit({inbox: OffsetAndMetadata(offset, "", -1)})
            except KafkaError as exc:  # the broker is away: the next commit covers these
                logger.warning("cannot commit the inbox offset %d: %s", offset, exc)
                return False
            committed = offset
            return True

        try:
            consumer.assign([inbox, members])
            consumer.seek_to_beginning(members)
            # Membership first: a record in the inbox is understood once its sender's
            # membership is known (its end as tansu reports it is reached once its last
            # batch has been read).
            consumer.pause(inbox)
            members_end: int | None = None
            next_offset = -1
            last_commit = time.monotonic()
            cluster = consumer._client.cluster  # kafka-python keeps topic IDs only there
            ids = {inbox: cluster.topic_id(inbox.topic), members: cluster.topic_id(members.topic)}
            failing = holding = False
            while not self._stop.is_set():
                try:
                    for partition, known in ids.items():
                        now_id = cluster.topic_id(partition.topic)
                        if known is None or now_id is None or now_id == known:
                            ids[partition] = known or now_id
                            continue
                        # The broker lost the topic and made a new one (tansu's memory
                        # storage restarted): its offsets start again from 0, and it
                        # would never say a position past them is out of range.
                        logger.warning(
                            "topic %s was re-created; reading it from 0", partition.topic
                        )
                        ids[partition] = now_id
                        consumer.seek(partition, 0)
                        gaps.forget(partition)
                        if partition == inbox:
                            next_offset = committed = -1
                        self._rejoin.set()  # the members topic is gone too: announce again
                        self._wake.set()
                    if members_end is None:
                        members_end = consumer.end_offsets([members]).get(members, 0)
                    polled = consumer.poll(timeout_ms=int(_POLL * 1000), max_records=_BATCH)
                    if polled and not _current(cluster, ids):
                        # A connection closed since the metadata was read (kafka-python
                        # then asks for fresh metadata), or a topic is missing from it:
                        # the broker may have restarted and re-created these topics, and
                        # a position kept from the old log reads the new one from the
                        # middle. Read these records again once the metadata is fresh,
                        # which tells whether the topics were re-created (then from 0).
                        for partition, records in polled.items():
                            if records:
                                consumer.seek(partition, records[0].offset)
                        if not holding:
                            # INFO: this happens at every start (the bootstrap connection
                            # closes); a topic found re-created is the WARNING above.
                            logger.info(
                                "holding records until fresh metadata tells whether the"
                                " broker re-created the topics"
                            )
                        holding = True
                        cluster.request_update()
                        self._stop.wait(_STALE_WAIT)
                        continue
                    holding = False
                    batch: list[tuple[bool, Any]] = []
                    last = -1
                    gap = False
                    now = time.monotonic()
                    for partition, polled_records in polled.items():
                        records, back = gaps.take(partition, polled_records, now)
                        if back is not None:
                            consumer.seek(partition, back)  # read the missing one again
                            gap = True
                        is_inbox = partition == inbox
                        for record in records:
                            batch.append((is_inbox, record.value))
                        if is_inbox and records:
                            last = records[-1].offset
                    if batch or self._failures:
                        if not anyio.from_thread.run_sync(deliver, batch):
                            break  # closing: these stay uncommitted, for the next start
                        if last >= 0:
                            next_offset = last + 1
                    if (
                        members_end is not None
                        and consumer.paused()
                        and (consumer.position(members) >= members_end)
                    ):
                        consumer.resume(inbox)
                    now = time.monotonic()
                    if next_offset > committed and (
                        next_offset - max(committed, 0) >= options.commit_every
                        or now - last_commit >= options.commit_interval
                    ):
                        commit(next_offset)
                        last_commit = now
                    failing = False
                    if gap:
                        self._stop.wait(_GAP_WAIT)
                except KafkaError as exc:
                    if not failing:
                        logger.warning("kafka consumer: %s; retrying", exc)
                    failing = True
                    self._stop.wait(0.5)
            if next_offset > committed:
                commit(next_offset)
        except anyio.RunFinishedError:
            pass  # the event loop is gone
        finally:
            consumer.close(autocommit=False)

    # ------------------------------------------------------------------ on the event loop

    def _deliver(self, batch: list[tuple[bool, Any]]) -> bool:
        """Hand a batch of records to the core, in order (runs on the event loop).

        Returns False, delivering nothing, once the transport is closing.
        """
        handler = self._handler
        local = self._local
        if handler is None or local is None or self._closed:
            return False
        limit = self.options.max_frame_size
        for is_inbox, value in batch:
            if not is_inbox:
                self._member(handler, local, value)
                continue
            try:
                inbound = _envelope.decode_inbound(value, limit)
            except EnvelopeError as exc:
                self.dropped_records += 1
                logger.warning("dropped a record in this process's inbox: %s", exc)
                continue
            process, incarnation, frame, to = inbound
            if process == local.process:
                continue
            if to is not None and to != local.incarnation and not _envelope.is_letter(frame):
                # For an earlier incarnation of this process, read again from its inbox:
                # a letter was stored for its return, a response or a control frame was
                # for that incarnation only (its waits and its view ended with it).
                self.stale_records += 1
                continue
            is_message = frame.startswith(_MESSAGE)
            if is_message and self.options.dedup_window:
                dedup = self._dedup.get(process)
                if dedup is None:
                    dedup = self._dedup[process] = _Dedup(self.options.dedup_window)
                if dedup.repeat(frame):
                    continue
            current = self._up.get(process)
            if current is None or current.incarnation != incarnation:
                if current is not None and incarnation in self._seen.get(process, ()):
                    # From an earlier incarnation of a process that is back: its letters
                    # still count, its control frames do not.
                    if not is_message:
                        continue
                else:
                    known = self._members.get(process)
                    if known is None or known.incarnation != incarnation:
                        # Not in the members topic yet (or a foreign client): the record
                        # itself says who sent it.
                        known = PeerHello(process, incarnation, ())
                    self._announce(handler, known)
            handler.frame_received(process, frame)
        self._report_failures(handler)
        return True

    def _member(self, handler: TransportHandler, local: PeerHello, value: bytes | None) -> None:
        try:
            member = _envelope.decode_member(value)
        except EnvelopeError as exc:
            self.dropped_records += 1
            logger.warning("dropped a record in the members topic: %s", exc)
            return
        if member.process == local.process:
            return
        self._seen.setdefault(member.process, set()).add(member.incarnation)
        current = self._up.get(member.process)
        if member.up:
            hello = PeerHello(member.process, member.incarnation, member.urls, member.durable_for)
            self._members[member.process] = hello
            if current != hello:
                self._announce(handler, hello)
        elif current is not None and current.incarnation == member.incarnation:
            # A clean leave: nothing will be stored for it, so durable_for 0 first.
            handler.peer_up(current._replace(durable_for=0.0))
            del self._up[member.process]
            handler.peer_down(member.process, "it left the namespace")

    def _announce(self, handler: TransportHandler, hello: PeerHello) -> None:
        self._up[hello.process] = hello
        if self._incarnations.get(hello.process) != hello.incarnation:
            self._incarnations[hello.process] = hello.incarnation
            self._routes.pop(hello.process, None)  # records to it name the new one
        handler.peer_up(hello)

    def _report_failures(self, handler: TransportHandler) -> None:
        failures = self._failures
        reported: set[ListenerId] = set()
        while failures:
            process, reason = failures.popleft()
            if process not in reported:
                reported.add(process)
                logger.warning("frames to process %r were lost: %s", process, reason)
                if self._up.pop(process, None) is not None:
                    handler.peer_down(process, f"the broker did not take its frames: {reason}")


def _close_producer(producer: kafka.KafkaProducer, timeout: float) -> None:
    """Close ``producer``, abandoning what the broker did not take within ``timeout``."""
    from kafka.errors import KafkaError

    try:
        producer.close(timeout)
    except KafkaError:
        # kafka-python 3.0 raises from close() when its flush times out, before it stops
        # its sender thread (and __del__ tries again at exit): stop that thread here.
        sender = getattr(producer, "_sender", None)
        if sender is not None:
            sender.force_close()
        producer._closed = True


def _current(cluster: Any, ids: dict[Any, Any]) -> bool:
    """Whether ``cluster``'s metadata is fresh and still names the topics of ``ids``.

    ``ids`` maps the consumer's partitions to the topic IDs it is reading. False while a
    metadata update is pending (kafka-python requests one when a connection to a broker
    closes on an error) or a topic is unknown to the metadata or has another ID.
    """
    if cluster.need_update:
        return False
    return all(
        known is not None and cluster.topic_id(partition.topic) == known
        for partition, known in ids.items()
    )


def _past(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() > deadline


def _describe(error: BaseException | None) -> str:
    return (str(error) or type(error).__name__) if error is not None else "not sent"
