"""Timing, statistics and table printing shared by the benchmark modules.

Methodology
-----------
* Micro-benchmarks are timeit-style: a ``loop(n)`` callable performs the
  operation ``n`` times and is timed as a whole with ``time.perf_counter_ns``.
  The per-operation figure is ``elapsed / n`` (loop overhead included, the
  same for every contender).  ``n`` is calibrated once so that one repeat
  takes roughly ``Config.target_ns``.
* A row that compares dispatchio with a peer (or with another dispatchio set-up)
  measures both sides INTERLEAVED: after ``warmup`` untimed rounds, each of
  ``repeats`` rounds times one repeat of every side, A B, B A, A B, ... (the order
  rotates), so that a machine slowing down or speeding up hits both sides alike.
  The row's ratio is the MEDIAN of the per-round ratios (dispatchio's repeat over
  the peer's repeat of the same round), printed with the range of those ratios.
  Each side's own figure is the median of its repeats.
* Asynchronous sides run in an event loop of their own in a helper thread (an anyio
  blocking portal), which keeps their tasks and connections alive between repeats;
  only one side runs at a time, the others' threads sleep.
* The garbage collector is disabled during timed micro-benchmark runs (as
  ``timeit`` does) and collected in between; async round-trip benchmarks run
  with the collector enabled, as a real application would.
"""

from __future__ import annotations

import contextlib
import gc
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from anyio.from_thread import BlockingPortal

LoopFn = Callable[[int], object]
AsyncLoopFn = Callable[[int], Awaitable[object]]
Sampler = Callable[[], float]
"""One timed repeat of one side of a comparison: returns its figure."""


@dataclass(frozen=True)
class Config:
    """How hard to try: repeats, warm-up runs and the wall time per repeat."""

    repeats: int = 7
    warmup: int = 1
    target_ns: int = 60_000_000  # ~60 ms per timed repeat of a micro-benchmark
    async_scale: float = 1.0  # multiplier for async round-trip counts

    @classmethod
    def quick(cls) -> Config:
        return cls(repeats=3, warmup=1, target_ns=25_000_000, async_scale=0.35)

    @classmethod
    def smoke(cls) -> Config:
        """Just enough to see every benchmark run: the figures mean nothing."""
        return cls(repeats=1, warmup=0, target_ns=1_000_000, async_scale=0.01)


@dataclass(frozen=True)
class Stats:
    """Per-operation nanoseconds (or any unit) of every timed repeat."""

    samples: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def spread(self) -> float:
        """(max - min) / median, a rough noise indicator."""
        med = self.median
        return (max(self.samples) - min(self.samples)) / med if med else 0.0


def _timed(loop: LoopFn, n: int) -> int:
    gc.collect()
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        t0 = time.perf_counter_ns()
        loop(n)
        return time.perf_counter_ns() - t0
    finally:
        if gc_was_enabled:
            gc.enable()


def calibrate(loop: LoopFn, target_ns: int, *, start: int = 10, cap: int = 10_000_000) -> int:
    """Find an iteration count for which ``loop(n)`` takes about ``target_ns``."""
    n = start
    while True:
        elapsed = _timed(loop, n)
        if elapsed >= target_ns // 10 or n >= cap:
            break
        n *= 10
    per_op = max(elapsed / n, 1e-3)
    return max(1, min(cap, int(target_ns / per_op)))


def bench_ns(loop: LoopFn, cfg: Config, *, number: int | None = None) -> Stats:
    """Median-of-repeats per-op nanoseconds of ``loop``."""
    return bench_interleaved({"x": loop}, cfg, number=number)["x"]


def interleave(samplers: Mapping[str, Sampler], cfg: Config) -> dict[str, Stats]:
    """Time every side in turn, repeat after repeat (A B, B A, A B, ...).

    ``cfg.warmup`` untimed rounds first. Sample ``r`` of every side comes from round
    ``r``, so `paired` can divide the samples of one round by each other.
    """
    names = list(samplers)
    for _ in range(cfg.warmup):
        for k in names:
            samplers[k]()
    samples: dict[str, list[float]] = {k: [] for k in names}
    for r in range(cfg.repeats):
        order = names[r % len(names) :] + names[: r % len(names)]
        for k in order:
            samples[k].append(samplers[k]())
    return {k: Stats(tuple(v)) for k, v in samples.items()}


def bench_interleaved(
    loops: dict[str, LoopFn], cfg: Config, *, number: int | None = None
) -> dict[str, Stats]:
    """Per-op nanoseconds of several micro-benchmark loops, interleaved (see `interleave`)."""

    def sampler(loop: LoopFn) -> Sampler:
        n = number if number is not None else calibrate(loop, cfg.target_ns)
        return lambda: _timed(loop, n) / n

    return interleave({k: sampler(loop) for k, loop in loops.items()}, cfg)


@contextlib.contextmanager
def event_loop(backend: str) -> Iterator[BlockingPortal]:
    """An event loop running in a helper thread; `async_sampler` times work inside it."""
    from anyio.from_thread import start_blocking_portal

    with start_blocking_portal(backend) as portal:
        yield portal


async def _rate_of(op_loop: AsyncLoopFn, number: int) -> float:
    gc.collect()
    t0 = time.perf_counter_ns()
    await op_loop(number)
    return number * 1e9 / (time.perf_counter_ns() - t0)


def async_sampler(portal: BlockingPortal, op_loop: AsyncLoopFn, number: int) -> Sampler:
    """Operations per second of one ``await op_loop(number)`` in ``portal``'s loop (GC on)."""
    return lambda: portal.call(_rate_of, op_loop, number)


def sync_sampler(op_loop: LoopFn, number: int) -> Sampler:
    """Operations per second of one blocking ``op_loop(number)`` (GC on)."""

    def sample() -> float:
        gc.collect()
        t0 = time.perf_counter_ns()
        op_loop(number)
        return number * 1e9 / (time.perf_counter_ns() - t0)

    return sample


@dataclass(frozen=True)
class Ratio:
    """One side over the other, round by round of an interleaved measurement."""

    pairs: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.pairs)

    @property
    def low(self) -> float:
        return min(self.pairs)

    @property
    def high(self) -> float:
        return max(self.pairs)


def paired(value: Stats, peer: Stats) -> Ratio:
    """``value / peer`` for every round of an `interleave` (same number of samples)."""
    return Ratio(tuple(v / p for v, p in zip(value.samples, peer.samples, strict=True)))


async def bench_rate(op_loop: AsyncLoopFn, number: int, cfg: Config) -> Stats:
    """Operations per second of ``await op_loop(number)``: warm-up, then repeats.

    Backend-agnostic (works under asyncio and trio); GC stays enabled.
    """
    for _ in range(cfg.warmup):
        await op_loop(max(1, number // 4))
    samples: list[float] = []
    for _ in range(cfg.repeats):
        gc.collect()
        t0 = time.perf_counter_ns()
        await op_loop(number)
        samples.append(number * 1e9 / (time.perf_counter_ns() - t0))
    return Stats(tuple(samples))


def sync_rate(op_loop: LoopFn, number: int, cfg: Config) -> Stats:
    """Operations per second of a blocking ``op_loop(number)`` (GC enabled)."""
    for _ in range(cfg.warmup):
        op_loop(max(1, number // 4))
    samples: list[float] = []
    for _ in range(cfg.repeats):
        gc.collect()
        t0 = time.perf_counter_ns()
        op_loop(number)
        samples.append(number * 1e9 / (time.perf_counter_ns() - t0))
    return Stats(tuple(samples))


# --------------------------------------------------------------------------- results

Unit = Literal["ns", "ns/recipient", "rt/s", "B/listener", "x", "µs", "msg/s"]
Kind = Literal["max", "min", "info"]


@dataclass
class PeerResult:
    """One peer figure measured in this run."""

    key: str
    label: str
    value: float | None
    unit: Unit
    reference: float | None = None  # figure quoted for this machine, for sanity
    error: str | None = None
    spread: float | None = None
    note: str = ""


@dataclass
class Row:
    """One dispatchio figure set beside a peer figure.

    ``kind`` says how the ratio (`ratio`) is judged against ``target``:
    "max" -> ratio must be <= target, "min" -> ratio must be >= target,
    "info" -> reported only.
    """

    label: str
    value: float | None
    unit: Unit
    peer_label: str = ""
    peer: float | None = None
    kind: Kind = "info"
    target: float | None = None
    error: str | None = None
    spread: float | None = None
    skipped: str | None = None
    pairs: Ratio | None = None
    """The ratio round by round, when both sides were measured interleaved."""

    @property
    def ratio(self) -> float | None:
        """The median of the per-round ratios, else the ratio of the two medians."""
        if self.pairs is not None:
            return self.pairs.median
        if self.value is None or self.peer is None or self.peer == 0:
            return None
        return self.value / self.peer

    @property
    def gated(self) -> bool:
        return self.kind != "info" and self.target is not None

    @property
    def passed(self) -> bool | None:
        ratio = self.ratio
        if not self.gated or ratio is None or self.target is None:
            return None
        return ratio <= self.target if self.kind == "max" else ratio >= self.target


# --------------------------------------------------------------------------- printing


def fmt_value(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "x":
        return f"{value:.3f}x"
    if value >= 100:
        text = f"{value:,.0f}"
    elif value >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return f"{text} {unit}"


def _fmt_spread(spread: float | None) -> str:
    return "" if spread is None else f"±{spread * 50:.0f}%"


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    sep = "-+-".join("-" * w for w in widths)
    return "\n".join([line(headers), sep, *(line(r) for r in rows)])


def render_peers(peers: Sequence[PeerResult]) -> str:
    rows = []
    for p in peers:
        if p.error is not None:
            rows.append([p.label, "ERROR", "", fmt_value(p.reference, p.unit), p.error])
            continue
        rows.append(
            [
                p.label,
                fmt_value(p.value, p.unit),
                _fmt_spread(p.spread),
                fmt_value(p.reference, p.unit),
                p.note,
            ]
        )
    return render_table(["peer", "this run (median)", "spread", "reference", "note"], rows)


def _fmt_pairs(pairs: Ratio | None) -> str:
    if pairs is None:
        return ""
    return f"{pairs.low:.2f}-{pairs.high:.2f}x ({len(pairs.pairs)})"


def render_rows(rows: Sequence[Row]) -> str:
    out = []
    for r in rows:
        if r.error is not None:
            verdict = "ERROR"
        elif r.skipped is not None:
            verdict = "skipped"
        elif r.passed is None:
            verdict = "info"
        else:
            verdict = "PASS" if r.passed else "FAIL"
        target = ""
        if r.target is not None:
            target = f"{'<=' if r.kind == 'max' else '>='} {r.target:g}x"
        ratio = r.ratio
        value = "ERROR" if r.error is not None else fmt_value(r.value, r.unit)
        if r.error is None and r.value is not None and r.spread is not None:
            value = f"{value} {_fmt_spread(r.spread)}"
        out.append(
            [
                r.label,
                value,
                r.peer_label,
                fmt_value(r.peer, r.unit),
                "-" if ratio is None else f"{ratio:.3f}x",
                _fmt_pairs(r.pairs),
                target,
                verdict,
            ]
        )
    table = render_table(
        [
            "dispatchio benchmark",
            "dispatchio",
            "peer (same run)",
            "peer",
            "ratio",
            "rounds: range (n)",
            "target",
            "result",
        ],
        out,
    )
    notes = [f"  {r.label.strip()}: {r.error}" for r in rows if r.error is not None]
    notes += [f"  {r.label.strip()}: skipped, {r.skipped}" for r in rows if r.skipped is not None]
    return "\n".join([table, *notes])
