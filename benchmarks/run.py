"""Run the dispatchio benchmarks beside peer libraries measured in the same run.

Usage: ``python benchmarks/run.py [--quick | --smoke] [--section core|tcp|http|kafka]``
(``nox -s bench`` runs it; ``--smoke`` only checks that every benchmark runs, its
figures mean nothing).

Prints the environment, a table of peer figures (with reference figures quoted for
the project's reference machine, as a sanity check), then a table of dispatchio
figures, each beside a peer from this run, with the ratio, the target and PASS/FAIL.
A second section does the same between two OS processes over TCP on loopback
(raw asyncio streams and pyzmq beside dispatchio-tcp; see bench_tcp.py), a third over
HTTP (raw aiohttp beside dispatchio-http, and the gateway beside raw aiohttp; see
bench_http.py and bench_gateway.py).
Benchmarks report, they do not gate: the exit code is always 0.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager as ContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar

if TYPE_CHECKING:
    from anyio.from_thread import BlockingPortal

from _harness import (
    Config,
    Kind,
    PeerResult,
    Row,
    Sampler,
    Stats,
    Unit,
    async_sampler,
    bench_interleaved,
    bench_ns,
    event_loop,
    interleave,
    paired,
    render_peers,
    render_rows,
    sync_sampler,
)


def _log(text: str) -> None:
    print(f"  .. {text}", file=sys.stderr, flush=True)


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:200]


def _environment() -> str:
    return "\n".join(
        [
            f"python   : {sys.version.split()[0]} ({platform.python_implementation()}) "
            f"{sys.executable}",
            f"platform : {platform.platform()}",
            f"cpus     : {os.cpu_count()} (usable: {len(os.sched_getaffinity(0))})"
            if hasattr(os, "sched_getaffinity")
            else f"cpus     : {os.cpu_count()}",
        ]
    )


# --------------------------------------------------------------------------- peers


T = TypeVar("T")

NOTES = {
    "pykka": "cross-thread hand-off; ~6x faster when both threads share a core",
    "anyio": "unbuffered streams, awaited send/receive",
}

# How a peer is measured on its own, when no row measured it beside dispatchio.
Measure = Literal["ns", "ns/recipient", "rate", "async rate"]


@dataclass(frozen=True)
class PeerSpec:
    label: str
    unit: Unit
    reference: float
    setup: Callable[[], Any]
    measure: Measure
    number: int = 0  # round trips per repeat for the rates (scaled by Config.async_scale)


def peer_specs() -> dict[str, PeerSpec]:
    import bench_peers as peers

    return {
        "direct": PeerSpec("direct Python function call", "ns", 26, peers.direct_call, "ns"),
        "blinker": PeerSpec("blinker Signal.send, 1 receiver", "ns", 1_050, peers.blinker_send,
                            "ns"),
        "pypubsub": PeerSpec("PyPubSub sendMessage, 1 listener", "ns", 2_350,
                             peers.pypubsub_send, "ns"),
        "blinker_fan": PeerSpec("blinker fan-out to 1,000", "ns/recipient", 488,
                                peers.blinker_fanout, "ns/recipient"),
        "pypubsub_fan": PeerSpec("PyPubSub fan-out to 1,000", "ns/recipient", 340,
                                 peers.pypubsub_fanout, "ns/recipient"),
        "asyncio_raw": PeerSpec("raw asyncio future+Queue req/reply", "rt/s", 205_000,
                                peers.asyncio_raw, "async rate", peers.N_ASYNCIO_RT),
        "thespian": PeerSpec("Thespian simpleSystemBase ask", "rt/s", 108_000,
                             peers.thespian_ask, "rate", peers.N_THESPIAN_RT),
        "pykka": PeerSpec("Pykka ThreadingActor ask", "rt/s", 12_500, peers.pykka_ask, "rate",
                          peers.N_PYKKA_RT),
        "anyio": PeerSpec("anyio memory streams req/reply", "rt/s", 48_000, peers.anyio_streams,
                          "async rate", peers.N_ANYIO_RT),
    }  # fmt: skip


class PeerTable:
    """The peers' figures of this run, taken from the rows that measure them beside dispatchio.

    A peer whose set-up fails gets an ERROR entry and the row goes on without it.
    """

    def __init__(self, specs: dict[str, PeerSpec]) -> None:
        self.specs = specs
        self.results: dict[str, PeerResult] = {}

    def label(self, key: str) -> str:
        return self.specs[key].label

    def enter(self, stack: contextlib.ExitStack, key: str, cm: ContextManager[T]) -> T | None:
        """Enter a peer's set-up; on failure record the error and return None."""
        try:
            return stack.enter_context(cm)
        except Exception as exc:  # report, don't crash: a missing peer is not fatal
            self._error(key, exc)
            return None

    def _error(self, key: str, exc: BaseException) -> None:
        spec = self.specs[key]
        self.results[key] = PeerResult(
            key, spec.label, None, spec.unit, spec.reference, error=_error_text(exc)
        )

    def record(self, stats: dict[str, Stats]) -> None:
        """Keep the first figure measured for each peer in ``stats``."""
        for key, found in stats.items():
            if key in self.specs and key not in self.results:
                spec = self.specs[key]
                self.results[key] = PeerResult(
                    key, spec.label, found.median, spec.unit, spec.reference,
                    spread=found.spread, note=NOTES.get(key, ""),
                )  # fmt: skip

    def measure_the_rest(self, cfg: Config) -> None:
        """Measure on its own every peer that no row measured."""
        for key, spec in self.specs.items():
            if key in self.results:
                continue
            _log(f"peer: {spec.label}")
            try:
                self.record({key: _alone(spec, cfg)})
            except Exception as exc:
                self._error(key, exc)

    def ordered(self) -> list[PeerResult]:
        return [self.results[key] for key in self.specs if key in self.results]


def _alone(spec: PeerSpec, cfg: Config) -> Stats:
    number = max(100, int(spec.number * cfg.async_scale))
    if spec.measure == "async rate":
        with (
            event_loop("asyncio") as portal,
            portal.wrap_async_context_manager(spec.setup()) as loop,
        ):
            return interleave({"x": async_sampler(portal, loop, number)}, cfg)["x"]
    with spec.setup() as loop:
        if spec.measure == "rate":
            return interleave({"x": sync_sampler(loop, number)}, cfg)["x"]
        stats = bench_ns(loop, cfg)
    return per_recipient(stats) if spec.measure == "ns/recipient" else stats


def per_recipient(stats: Stats) -> Stats:
    import bench_peers as peers

    return Stats(tuple(s / peers.FANOUT for s in stats.samples))


# --------------------------------------------------------------------------- dispatchio

L1 = "1. Message + send_sync, callback rule"
L2 = "2. group send_sync to 1,000 subscribers"
L3 = "3. request round trips, asyncio"
L3C = "3c. request to async-def rule without await (inline), asyncio"
L3F = "3f. request to async-def rule that awaits, answering before it suspends, asyncio"
L4 = "4. send_sync, 100k listeners vs 10"
L5 = "5. send_sync, unimplemented-hook plugin"
N_TARGETS = 7
N_TCP_TARGETS = 3


def beside(
    label: str,
    stats: dict[str, Stats],
    side: str,
    peer: str,
    peer_label: str,
    unit: Unit,
    gate: tuple[Kind, float] | None = None,
) -> Row:
    """A row for ``stats[side]`` beside ``stats[peer]`` of the same interleaved run."""
    value, other = stats[side], stats.get(peer)
    kind: Kind = "info"
    target: float | None = None
    if gate is not None:
        kind, target = gate
    return Row(
        label, value.median, unit, peer_label, None if other is None else other.median,
        kind, target, spread=value.spread, pairs=None if other is None else paired(value, other),
    )  # fmt: skip


def tight(cfg: Config) -> Config:
    """Twice the rounds at half the length, for ratios gated within a few percent."""
    return dataclasses.replace(cfg, repeats=2 * cfg.repeats + 1, target_ns=cfg.target_ns // 2)


def measure_dispatchio(cfg: Config, table: PeerTable) -> list[Row]:
    import bench_dispatchio as core
    import bench_peers as peers

    rows: list[Row] = []
    have_trio = importlib.util.find_spec("trio") is not None
    no_trio = "trio is not installed (pip install trio)"
    label = table.label

    def attempt(
        label: str, fn: Callable[[], list[Row]], gate: tuple[Kind, float] | None = None
    ) -> None:
        """Run one benchmark; on failure add an ERROR row (still counted if gated)."""
        _log(f"dispatchio: {label}")
        try:
            rows.extend(fn())
        except Exception as exc:  # one broken benchmark must not hide the others
            traceback.print_exc(file=sys.stderr)
            kind: Kind = "info"
            target: float | None = None
            if gate is not None:
                kind, target = gate
            rows.append(Row(label, None, "ns", kind=kind, target=target, error=_error_text(exc)))

    def micro(loops: dict[str, Any], stack: contextlib.ExitStack, keys: Sequence[str]) -> None:
        """Add the peers ``keys`` (micro-benchmark loops) to ``loops``, those that set up."""
        for key in keys:
            loop = table.enter(stack, key, table.specs[key].setup())
            if loop is not None:
                loops[key] = loop

    # 1. Message + send_sync vs blinker Signal.send
    def one() -> list[Row]:
        with contextlib.ExitStack() as stack:
            loops: dict[str, Any] = {"dio": core.send_sync_one()}
            micro(loops, stack, ["blinker"])
            stats = bench_interleaved(loops, cfg)
        table.record(stats)
        m = bench_ns(core.message_only(), cfg)
        return [
            beside(L1, stats, "dio", "blinker", label("blinker"), "ns", ("max", 0.75)),
            Row("1b. of which Message(...) construction", m.median, "ns", spread=m.spread),
        ]

    # 2. group fan-out vs PyPubSub (target) and blinker (info)
    def two() -> list[Row]:
        with contextlib.ExitStack() as stack:
            loops: dict[str, Any] = {"dio": core.group_fanout()}
            micro(loops, stack, ["pypubsub_fan", "blinker_fan"])
            stats = {k: per_recipient(v) for k, v in bench_interleaved(loops, cfg).items()}
        table.record(stats)
        unit: Unit = "ns/recipient"
        return [
            beside(L2, stats, "dio", "pypubsub_fan", label("pypubsub_fan"), unit, ("max", 0.5)),
            beside("2b. (same, beside blinker)", stats, "dio", "blinker_fan",
                   label("blinker_fan"), unit),
        ]  # fmt: skip

    raw = label("asyncio_raw")

    def request_samplers(
        stack: contextlib.ExitStack[Any], loop: BlockingPortal
    ) -> dict[str, Sampler]:
        """Samplers of the dispatcher's request round trips (plain, async-def rule inline,
        and queued behind a letter) in ``loop``, their setups kept open by ``stack``."""
        n_dio = max(100, int(core.N_REQUEST_RT * cfg.async_scale))
        n_queued = max(100, int(core.N_QUEUED_RT * cfg.async_scale))
        sizes = {"dio": (core.requests, n_dio), "async": (core.async_requests, n_dio),
                 "awaiting": (core.awaiting_requests, n_dio),
                 "suspending": (core.suspending_requests, n_queued),
                 "queued": (core.queued_requests, n_queued)}  # fmt: skip
        return {
            key: async_sampler(
                loop, stack.enter_context(loop.wrap_async_context_manager(setup())), number
            )
            for key, (setup, number) in sizes.items()
        }

    def raw_variants(stack: contextlib.ExitStack[Any], loop: BlockingPortal) -> dict[str, Sampler]:
        """Samplers of raw asyncio doing what the suspending and letter + request rows
        do: a server that awaits the handler's one suspension, and a letter put before
        each request."""
        number = peers.scaled(peers.N_ASYNCIO_RT, cfg)
        setups = {"raw_suspending": peers.asyncio_raw_suspending,
                  "raw_letter": peers.asyncio_raw_letter_request}  # fmt: skip
        return {
            key: async_sampler(
                loop, stack.enter_context(loop.wrap_async_context_manager(setup())), number
            )
            for key, setup in setups.items()
        }

    suspending = "raw asyncio, server awaiting the same one suspension"
    letter = "raw asyncio, a letter + a request"

    # 3. async request round trips on asyncio: inline, through the scheduler and queued,
    # beside raw asyncio (target), anyio streams and Thespian, all interleaved in one run.
    def three() -> list[Row]:
        with contextlib.ExitStack() as stack:
            portal = stack.enter_context(event_loop("asyncio"))
            samplers = request_samplers(stack, portal)
            samplers.update(raw_variants(stack, portal))
            for key in ("asyncio_raw", "anyio", "thespian"):
                spec = table.specs[key]
                number = peers.scaled(spec.number, cfg)
                if spec.measure == "async rate":
                    loop = table.enter(stack, key, portal.wrap_async_context_manager(spec.setup()))
                    if loop is not None:
                        samplers[key] = async_sampler(portal, loop, number)
                else:
                    loop = table.enter(stack, key, spec.setup())
                    if loop is not None:
                        samplers[key] = sync_sampler(loop, number)
            stats = interleave(samplers, cfg)
        table.record(stats)
        return [
            beside(L3, stats, "dio", "asyncio_raw", raw, "rt/s", ("min", 0.8)),
            beside("3b. (same, beside anyio)", stats, "dio", "anyio", label("anyio"), "rt/s"),
            beside("3b. (same, beside Thespian)", stats, "dio", "thespian", label("thespian"),
                   "rt/s"),
            beside(L3C, stats, "async", "asyncio_raw", raw, "rt/s", ("min", 0.8)),
            beside(L3F, stats, "awaiting", "asyncio_raw", raw, "rt/s", ("min", 0.8)),
            beside("3h. request to async-def rule that suspends once, asyncio",
                   stats, "suspending", "raw_suspending", suspending, "rt/s"),
            beside("3i. letter + request to async-def rule behind it (queued), asyncio",
                   stats, "queued", "raw_letter", letter, "rt/s"),
        ]  # fmt: skip

    # 3d, 3e: the same on trio, interleaved with raw asyncio (in its own loop)
    trio_labels = (
        "3d. request round trips, trio",
        "3e. request to async-def rule without await (inline), trio",
        "3g. request to async-def rule that awaits, answering before it suspends, trio",
        "3j. request to async-def rule that suspends once, trio",
        "3k. letter + request to async-def rule behind it (queued), trio",
    )

    def three_trio() -> list[Row]:
        if not have_trio:
            return [Row(t, None, "rt/s", raw, skipped=no_trio) for t in trio_labels]
        with contextlib.ExitStack() as stack:
            samplers = request_samplers(stack, stack.enter_context(event_loop("trio")))
            asyncio_loop = stack.enter_context(event_loop("asyncio"))
            loop = table.enter(
                stack, "asyncio_raw", asyncio_loop.wrap_async_context_manager(peers.asyncio_raw())
            )
            if loop is not None:
                number = peers.scaled(peers.N_ASYNCIO_RT, cfg)
                samplers["asyncio_raw"] = async_sampler(asyncio_loop, loop, number)
            samplers.update(raw_variants(stack, asyncio_loop))
            stats = interleave(samplers, cfg)
        return [
            beside(trio_labels[0], stats, "dio", "asyncio_raw", raw, "rt/s"),
            beside(trio_labels[1], stats, "async", "asyncio_raw", raw, "rt/s"),
            beside(trio_labels[2], stats, "awaiting", "asyncio_raw", raw, "rt/s"),
            beside(trio_labels[3], stats, "suspending", "raw_suspending", suspending, "rt/s"),
            beside(trio_labels[4], stats, "queued", "raw_letter", letter, "rt/s"),
        ]

    # 4. 100k listeners vs 10 listeners, interleaved; memory per listener
    def four() -> list[Row]:
        few, many, per_listener = core.listener_scale()
        stats = bench_interleaved({"few": few, "many": many}, tight(cfg))
        return [
            beside(L4, stats, "many", "few", "dispatchio, 10 listeners", "ns", ("max", 1.1)),
            Row("4b. memory per registered listener", per_listener, "B/listener"),
        ]

    # 5. hooks, interleaved with the bare dispatcher
    def five() -> list[Row]:
        stats = bench_interleaved(core.hook_loops(), tight(cfg))
        bare = "dispatchio, no plugin"
        return [
            beside(L5, stats, "unimplemented", "bare", bare, "ns", ("max", 1.05)),
            beside("5b. send_sync, message_delivered observer", stats, "observer", "bare", bare,
                   "ns"),
        ]  # fmt: skip

    attempt(L1, one, ("max", 0.75))
    attempt(L2, two, ("max", 0.5))
    attempt(L3, three, ("min", 0.8))
    attempt("3d. request round trips, trio", three_trio)
    attempt(L4, four, ("max", 1.1))
    attempt(L5, five, ("max", 1.05))
    return rows


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    speed = parser.add_mutually_exclusive_group()
    speed.add_argument("--quick", action="store_true", help="fewer repeats, shorter runs")
    speed.add_argument(
        "--smoke",
        action="store_true",
        help="one tiny repeat of everything: checks the benchmarks run, figures mean nothing",
    )
    parser.add_argument(
        "--section",
        choices=["core", "tcp", "http", "kafka"],
        help="only the in-process, the TCP, the HTTP or the Kafka section",
    )
    args = parser.parse_args(argv)
    cfg = Config.smoke() if args.smoke else Config.quick() if args.quick else Config()

    started = time.perf_counter()
    print("dispatchio benchmarks")
    print(_environment())
    print(
        f"method   : {cfg.warmup} warm-up run(s), then {cfg.repeats} repeats; MEDIAN reported; "
        f"~{cfg.target_ns / 1e6:.0f} ms per micro-benchmark repeat (GC off, as timeit);"
    )
    print("           async figures are sequential round trips/s (GC on); spread = ±half range")
    print(
        "           each row times dispatchio and its peer in alternating rounds (A B, B A, ...);"
    )
    print("           ratio = median of the per-round ratios, with their range over the rounds")
    print()
    sys.stdout.flush()

    rows: list[Row] = []
    tcp_rows: list[Row] = []
    http_rows: list[Row] = []
    have_core = importlib.util.find_spec("dispatchio") is not None
    if args.section in (None, "core"):
        rows = measure_core(cfg)
    if args.section in (None, "tcp"):
        tcp_rows = measure_tcp(cfg, have_core=have_core)
    if args.section in (None, "http"):
        import bench_http

        http_rows = bench_http.section(cfg, _log, have_core=have_core, tcp_rows=tcp_rows)
    if args.section in (None, "kafka"):
        import bench_kafka  # its own section: a broker, dispatchio-kafka and raw kafka-python

        bench_kafka.report(repeats=max(1, cfg.repeats // 2), scale=cfg.async_scale, log=_log)

    # Every gated benchmark counts, including those that errored out.
    gated = [r for r in rows + tcp_rows + http_rows if r.gated]
    met = sum(1 for r in gated if r.passed)
    expected = 0
    if args.section in (None, "core"):
        expected += len([r for r in rows if r.gated]) if rows else N_TARGETS
    if args.section in (None, "tcp"):
        expected += len([r for r in tcp_rows if r.gated]) if tcp_rows else N_TCP_TARGETS
    if args.section in (None, "http"):
        expected += len([r for r in http_rows if r.gated]) or bench_http.N_HTTP_TARGETS
    print()
    print(f"total time: {time.perf_counter() - started:.1f} s")
    print(f"targets met: {met}/{expected}")
    return 0


def measure_core(cfg: Config) -> list[Row]:
    """The in-process section: the peers table, then dispatchio's rows beside them."""
    table = PeerTable(peer_specs())
    rows: list[Row] = []
    try:
        import bench_dispatchio as core

        dio = core.load()
        where = f"dispatchio {getattr(dio, '__version__', '?')} from {dio.__file__}"
    except Exception as exc:
        where = (
            f"dispatchio is NOT importable ({_error_text(exc)}); only peers were measured.\n"
            "Install it (pip install -e packages/dispatchio-core) or set PYTHONPATH."
        )
    else:
        rows = measure_dispatchio(cfg, table)
    table.measure_the_rest(cfg)
    print("Peers (measured in this run; 'reference' = figure quoted for the reference machine)")
    print(render_peers(table.ordered()))
    print()
    print(where)
    if rows:
        print(render_rows(rows))
    print()
    sys.stdout.flush()
    return rows


# --------------------------------------------------------------------------- over TCP


def measure_tcp(cfg: Config, *, have_core: bool) -> list[Row]:
    """The cross-process section: dispatchio-tcp interleaved with its peers over loopback."""
    import bench_tcp as tcp

    started = time.perf_counter()
    with tcp.pinned() as placement:
        print("Between two OS processes over TCP on 127.0.0.1 (peers measured in this run)")
        print(f"CPU placement: {placement}")
        sys.stdout.flush()
        found = tcp.measure(cfg, _log, with_dispatchio=have_core)
    print(render_peers(list(found.peers.values())))
    print()
    for note in found.notes:
        print(note)
    if found.rows:
        print(render_rows(found.rows))
    print(f"(TCP section: {time.perf_counter() - started:.1f} s)")
    return found.rows


if __name__ == "__main__":
    try:
        main()
    except Exception:  # benchmarks report, they never gate
        traceback.print_exc()
    sys.exit(0)
