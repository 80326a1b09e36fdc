"""Timing, statistics and table printing shared by the benchmark modules.

Methodology
-----------
* Micro-benchmarks are timeit-style: a ``loop(n)`` callable performs the
  operation ``n`` times and is timed as a whole with ``time.perf_counter_ns``.
  The per-operation figure is ``elapsed / n`` (loop overhead included, the
  same for every contender).  ``n`` is calibrated once so that one repeat
  takes roughly ``Config.target_ns``.
* Every measurement does ``warmup`` untimed runs, then ``repeats`` timed
  runs, and reports the MEDIAN (min and max are kept for the spread).
* The garbage collector is disabled during timed micro-benchmark runs (as
  ``timeit`` does) and collected in between; async round-trip benchmarks run
  with the collector enabled, as a real application would.
* Comparisons whose target is a ratio between two dispatchio set-ups are
  measured interleaved (A, B, A, B, ...) so that drift hits both sides alike.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal

LoopFn = Callable[[int], object]
AsyncLoopFn = Callable[[int], Awaitable[object]]


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


def bench_interleaved(
    loops: dict[str, LoopFn], cfg: Config, *, number: int | None = None
) -> dict[str, Stats]:
    """Time several variants, interleaving them each repeat (rotating the order)."""
    names = list(loops)
    counts = {
        k: number if number is not None else calibrate(loops[k], cfg.target_ns) for k in names
    }
    for _ in range(cfg.warmup):
        for k in names:
            loops[k](counts[k])
    samples: dict[str, list[float]] = {k: [] for k in names}
    for r in range(cfg.repeats):
        order = names[r % len(names) :] + names[: r % len(names)]
        for k in order:
            samples[k].append(_timed(loops[k], counts[k]) / counts[k])
    return {k: Stats(tuple(v)) for k, v in samples.items()}


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

    ``kind`` says how the ratio ``value / peer`` is judged against ``target``:
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

    @property
    def ratio(self) -> float | None:
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
        out.append(
            [
                r.label,
                "ERROR" if r.error is not None else fmt_value(r.value, r.unit),
                _fmt_spread(r.spread),
                r.peer_label,
                fmt_value(r.peer, r.unit),
                "-" if ratio is None else f"{ratio:.3f}x",
                target,
                verdict,
            ]
        )
    table = render_table(
        [
            "dispatchio benchmark",
            "dispatchio",
            "spread",
            "peer (same run)",
            "peer",
            "ratio",
            "target",
            "result",
        ],
        out,
    )
    notes = [f"  {r.label.strip()}: {r.error}" for r in rows if r.error is not None]
    notes += [f"  {r.label.strip()}: skipped, {r.skipped}" for r in rows if r.skipped is not None]
    return "\n".join([table, *notes])
