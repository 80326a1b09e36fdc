"""Run the dispatchio benchmarks beside peer libraries measured in the same run.

Usage: ``python benchmarks/run.py [--quick]`` (``nox -s bench`` runs it).

Prints the environment, a table of peer figures (with reference figures quoted for
the project's reference machine, as a sanity check), then a table of dispatchio
figures, each beside a peer from this run, with the ratio, the target and PASS/FAIL.
A second section does the same between two OS processes over TCP on loopback
(raw asyncio streams and pyzmq beside dispatchio-tcp; see bench_tcp.py).
Benchmarks report, they do not gate: the exit code is always 0.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable, Sequence

from _harness import Config, Kind, PeerResult, Row, Stats, Unit, render_peers, render_rows


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


NOTES = {
    "pykka": "cross-thread hand-off; ~6x faster when both threads share a core",
    "anyio": "unbuffered streams, awaited send/receive",
}


def measure_peers(cfg: Config) -> dict[str, PeerResult]:
    import bench_peers as peers

    specs: list[tuple[str, str, Unit, float, Callable[[Config], Stats]]] = [
        ("direct", "direct Python function call", "ns", 26, peers.direct_call),
        ("blinker", "blinker Signal.send, 1 receiver", "ns", 1_050, peers.blinker_send),
        ("pypubsub", "PyPubSub sendMessage, 1 listener", "ns", 2_350, peers.pypubsub_send),
        ("blinker_fan", "blinker fan-out to 1,000", "ns/recipient", 488, peers.blinker_fanout),
        ("pypubsub_fan", "PyPubSub fan-out to 1,000", "ns/recipient", 340, peers.pypubsub_fanout),
        ("asyncio_raw", "raw asyncio future+Queue req/reply", "rt/s", 205_000,
         peers.asyncio_raw_rate),
        ("thespian", "Thespian simpleSystemBase ask", "rt/s", 108_000, peers.thespian_rate),
        ("pykka", "Pykka ThreadingActor ask", "rt/s", 12_500, peers.pykka_rate),
        ("anyio", "anyio memory streams req/reply", "rt/s", 48_000, peers.anyio_streams_rate),
    ]  # fmt: skip
    results: dict[str, PeerResult] = {}
    for key, label, unit, ref, fn in specs:
        _log(f"peer: {label}")
        try:
            stats = fn(cfg)
        except Exception as exc:  # report, don't crash: a missing peer is not fatal
            results[key] = PeerResult(key, label, None, unit, ref, error=_error_text(exc))
            continue
        note = NOTES.get(key, "")
        results[key] = PeerResult(
            key, label, stats.median, unit, ref, spread=stats.spread, note=note
        )
    return results


# --------------------------------------------------------------------------- dispatchio

L1 = "1. Message + send_sync, callback rule"
L2 = "2. group send_sync to 1,000 subscribers"
L3 = "3. request round trips, asyncio"
L4 = "4. send_sync, 100k listeners vs 10"
L5 = "5. send_sync, unimplemented-hook plugin"
N_TARGETS = 5
N_TCP_TARGETS = 3


def _peer(peers: dict[str, PeerResult], key: str) -> tuple[str, float | None]:
    p = peers.get(key)
    if p is None:
        return key, None
    return p.label, p.value


def measure_dispatchio(cfg: Config, peers: dict[str, PeerResult]) -> list[Row]:
    import bench_dispatchio as core

    rows: list[Row] = []
    have_trio = importlib.util.find_spec("trio") is not None
    no_trio = "trio is not installed (pip install trio)"

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

    # 1. Message + send_sync vs blinker Signal.send
    def one() -> list[Row]:
        s = core.send_sync_one(cfg)
        m = core.message_only(cfg)
        name, peer = _peer(peers, "blinker")
        return [
            Row(L1, s.median, "ns", name, peer, "max", 0.75, spread=s.spread),
            Row("1b. of which Message(...) construction", m.median, "ns", spread=m.spread),
        ]  # fmt: skip

    # 2. group fan-out vs PyPubSub (target) and blinker (info)
    def two() -> list[Row]:
        s = core.group_fanout(cfg)
        pname, pval = _peer(peers, "pypubsub_fan")
        bname, bval = _peer(peers, "blinker_fan")
        return [
            Row(L2, s.median, "ns/recipient", pname, pval, "max", 0.5, spread=s.spread),
            Row("2b. (same, beside blinker)", s.median, "ns/recipient", bname, bval),
        ]

    # 3. async request round trips: asyncio (target); trio and the queued path (info)
    raw_name, raw = _peer(peers, "asyncio_raw")

    def three() -> list[Row]:
        s = core.request_rate(cfg, "asyncio")
        out = [Row(L3, s.median, "rt/s", raw_name, raw, "min", 0.8, spread=s.spread)]
        for key in ("anyio", "thespian"):
            pname, pval = _peer(peers, key)
            out.append(Row(f"3b. (same, beside {pname.split()[0]})", s.median, "rt/s", pname, pval))
        return out

    def three_trio() -> list[Row]:
        label = "3c. request round trips, trio"
        if not have_trio:
            return [Row(label, None, "rt/s", raw_name, raw, skipped=no_trio)]
        s = core.request_rate(cfg, "trio")
        return [Row(label, s.median, "rt/s", raw_name, raw, spread=s.spread)]

    def three_queued() -> list[Row]:
        out = []
        for backend in ("asyncio", "trio"):
            label = f"3d. request to async-def rule (queued), {backend}"
            if backend == "trio" and not have_trio:
                out.append(Row(label, None, "rt/s", raw_name, raw, skipped=no_trio))
                continue
            s = core.queued_request_rate(cfg, backend)
            out.append(Row(label, s.median, "rt/s", raw_name, raw, spread=s.spread))
        return out

    # 4. 100k listeners vs 10 listeners; memory per listener
    def four() -> list[Row]:
        r = core.listener_scale(cfg)
        return [
            Row(L4, r.many.median, "ns", "dispatchio, 10 listeners", r.few.median, "max", 1.1,
                spread=r.many.spread),
            Row("4b. memory per registered listener", r.bytes_per_listener, "B/listener"),
        ]  # fmt: skip

    # 5. hooks
    def five() -> list[Row]:
        r = core.hook_cost(cfg)
        return [
            Row(L5, r.unimplemented.median, "ns", "dispatchio, no plugin", r.bare.median,
                "max", 1.05, spread=r.unimplemented.spread),
            Row("5b. send_sync, message_delivered observer", r.observer.median, "ns",
                "dispatchio, no plugin", r.bare.median, spread=r.observer.spread),
        ]  # fmt: skip

    attempt(L1, one, ("max", 0.75))
    attempt(L2, two, ("max", 0.5))
    attempt(L3, three, ("min", 0.8))
    attempt("3c. request round trips, trio", three_trio)
    attempt("3d. request to async-def rule (queued)", three_queued)
    attempt(L4, four, ("max", 1.1))
    attempt(L5, five, ("max", 1.05))
    return rows


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer repeats, shorter runs")
    args = parser.parse_args(argv)
    cfg = Config.quick() if args.quick else Config()

    started = time.perf_counter()
    print("dispatchio benchmarks")
    print(_environment())
    print(
        f"method   : {cfg.warmup} warm-up run(s), then {cfg.repeats} repeats; MEDIAN reported; "
        f"~{cfg.target_ns / 1e6:.0f} ms per micro-benchmark repeat (GC off, as timeit);"
    )
    print("           async figures are sequential round trips/s (GC on); spread = ±half range")
    print()
    sys.stdout.flush()

    peers = measure_peers(cfg)
    print("Peers (measured in this run; 'reference' = figure quoted for the reference machine)")
    print(render_peers(list(peers.values())))
    print()
    sys.stdout.flush()

    rows: list[Row] = []
    try:
        import bench_dispatchio as core

        dio = core.load()
        print(f"dispatchio {getattr(dio, '__version__', '?')} from {dio.__file__}")
    except Exception as exc:
        print(f"dispatchio is NOT importable ({_error_text(exc)}); only peers were measured.")
        print("Install it (pip install -e packages/dispatchio-core) or set PYTHONPATH.")
    else:
        rows = measure_dispatchio(cfg, peers)
        print(render_rows(rows))

    print()
    sys.stdout.flush()
    tcp_rows = measure_tcp(cfg, have_core=bool(rows))
    print()
    import bench_kafka  # its own section: a broker, dispatchio-kafka and raw kafka-python

    bench_kafka.report(repeats=max(1, cfg.repeats // 2), scale=cfg.async_scale, log=_log)

    # Every gated benchmark counts, including those that errored out.
    gated = [r for r in rows + tcp_rows if r.gated]
    met = sum(1 for r in gated if r.passed)
    expected = (len([r for r in rows if r.gated]) if rows else N_TARGETS) + (
        len([r for r in tcp_rows if r.gated]) if tcp_rows else N_TCP_TARGETS
    )
    print()
    print(f"total time: {time.perf_counter() - started:.1f} s")
    print(f"targets met: {met}/{expected}")
    return 0


# --------------------------------------------------------------------------- over TCP


def measure_tcp(cfg: Config, *, have_core: bool) -> list[Row]:
    """The cross-process section: peers over loopback, then dispatchio-tcp beside them."""
    import bench_tcp as tcp

    started = time.perf_counter()
    rows: list[Row] = []
    with tcp.pinned() as placement:
        print("Between two OS processes over TCP on 127.0.0.1 (peers measured in this run)")
        print(f"CPU placement: {placement}")
        peers = tcp.measure_peers(cfg, _log)
        print(render_peers(list(peers.values())))
        print()
        try:
            import dispatchio_tcp
        except Exception as exc:
            print(f"dispatchio-tcp is NOT importable ({_error_text(exc)}); only peers measured.")
            print("Install it (pip install -e packages/dispatchio-tcp).")
        else:
            if have_core:
                print(f"dispatchio-tcp from {dispatchio_tcp.__file__}")
                rows = tcp.measure_dispatchio(cfg, peers, _log)
                print(render_rows(rows))
    print(f"(TCP section: {time.perf_counter() - started:.1f} s)")
    return rows


if __name__ == "__main__":
    try:
        main()
    except Exception:  # benchmarks report, they never gate
        traceback.print_exc()
    sys.exit(0)
