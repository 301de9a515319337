"""Janitor backlog: purge 1,000,000 expired rows on SQLite while a writer keeps writing.

``python -m benchmarks.janitor_backlog [--rows 1000000] [--batch 1000] [--duty 0.25]
[--batch-time SECONDS|none] [--audit-group N] [--dir DIR]``

Measures a writer's latency (one ``bot.kvs.set`` at a time) while idle, then
while ``Janitor.run_once()`` works off the backlog (each purged row is also
audited, as in production), and prints the p50/p99/max of both, the p99
ratio against the goal (within 2x of idle: PASS or FAIL), the purge time
and rate, and the batch sizes the janitor chose. Not a test: nothing fails
on timing; the exit status is 0 either way.

With no options the janitor runs with its defaults: batches sized to about
``batch_time`` each (at most ``--batch`` rows), paused between so that the
purge keeps the writer thread busy at most ``max_duty`` of the time, audit
records written ``audit_group`` at a time alongside the next batch.
``--batch-time none --duty 1`` is the janitor before adaptive sizing
(fixed batches back to back).

The writer is a closed loop (the next write starts when the last one is
done), so a single long stall delays one write, not every write that would
have arrived during it: the max latency (and the share of writes slower
than 2x the idle p99, also printed) shows what the p99 alone hides.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import botmemory
from botmemory.backends.base import Purged
from botmemory.retention import Janitor
from botmemory.retention.janitor import DEFAULT_AUDIT_GROUP, DEFAULT_BATCH_TIME, DEFAULT_MAX_DUTY
from botmemory.testing import FakeClock

GOAL = 2.0


def _pct(samples: Sequence[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _writer(bot: botmemory.Bot, stop: asyncio.Event, samples: list[float]) -> None:
    i = 0
    while not stop.is_set():
        t = time.perf_counter()
        await bot.kvs.set(f"w/{i % 1000}", {"n": i, "text": "x" * 64})
        samples.append(time.perf_counter() - t)
        i += 1
        await asyncio.sleep(0)  # a writer that yields, like a server handling requests


async def _idle(store: botmemory.Store, samples: list[float], seconds: float) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(seconds, stop.set)
    await _writer(store.bot("writer"), stop, samples)


def _watch_purges(store: botmemory.Store, calls: list[tuple[int, int, float]]) -> None:
    """Record (limit asked, rows purged, seconds) of every ``purge_expired`` call."""
    backend = store.backend
    real = backend.purge_expired

    async def purge_expired(
        now: float, limit: int, ns: str | None = None, keep: Sequence[tuple[str, str]] = ()
    ) -> list[Purged]:
        t = time.perf_counter()
        batch = await real(now, limit, ns, keep)
        calls.append((limit, len(batch), time.perf_counter() - t))
        return batch

    backend.purge_expired = purge_expired  # type: ignore[method-assign]


async def run(
    rows: int,
    batch: int,
    directory: Path,
    duty: float = DEFAULT_MAX_DUTY,
    idle_seconds: float = 6.0,
    batch_time: float | None = DEFAULT_BATCH_TIME,
    audit_group: int = DEFAULT_AUDIT_GROUP,
) -> dict[str, Any]:
    clock = FakeClock(start=time.time())
    path = directory / "janitor-backlog.db"
    store = await botmemory.open(f"sqlite:///{path}", clock=clock)
    try:
        bot = store.bot("bench")
        t = time.perf_counter()
        chunk = 10_000
        value = {"cart": [1, 2, 3], "note": "expired soon"}
        for start in range(0, rows, chunk):
            n = min(chunk, rows - start)
            await bot.kvs.set_many({f"old/{start + i:08d}": value for i in range(n)}, expiry="1s")
        fill = time.perf_counter() - t
        clock.advance(2)  # the whole backlog is now expired

        # idle: the same writer for a few seconds with no janitor (enough samples
        # for a stable p99), before the purge and again after it, so that load
        # from elsewhere on a shared machine weighs on both sides alike
        idle: list[float] = []
        await _idle(store, idle, idle_seconds / 2)

        calls: list[tuple[int, int, float]] = []
        _watch_purges(store, calls)
        during: list[float] = []
        stop = asyncio.Event()
        writer = asyncio.create_task(_writer(store.bot("writer"), stop, during))
        janitor = Janitor(store, batch_size=batch, max_duty=duty, batch_time=batch_time, audit_group=audit_group)
        t = time.perf_counter()
        report = await janitor.run_once()
        purge = time.perf_counter() - t
        stop.set()
        await writer
        await _idle(store, idle, idle_seconds / 2)
        if report.purged != rows:
            raise RuntimeError(f"purged {report.purged} of {rows}: {report.as_dict()}")
        remaining = await store.backend.count("bench", clock.now())
        idle_p99 = _pct(idle, 0.99)
        full = [c for c in calls if c[1] == c[0]] or calls  # the last, short batch of each sweep aside
        limits = [c[0] for c in full]
        return {
            "rows": rows,
            "batch": batch,
            "duty": duty,
            "batch_time": batch_time,
            "audit_group": audit_group,
            "fill_s": fill,
            "idle_p50_ms": statistics.median(idle) * 1000,
            "idle_p99_ms": idle_p99 * 1000,
            "idle_max_ms": max(idle) * 1000,
            "purge_p50_ms": statistics.median(during) * 1000,
            "purge_p99_ms": _pct(during, 0.99) * 1000,
            "purge_max_ms": max(during) * 1000,
            "ratio_p99": _pct(during, 0.99) / idle_p99,
            "slow_share": sum(d > GOAL * idle_p99 for d in during) / len(during),
            "idle_slow_share": sum(d > GOAL * idle_p99 for d in idle) / len(idle),
            "purge_s": purge,
            "rows_per_s": rows / purge,
            "writes_during": len(during),
            "writes_idle": len(idle),
            "remaining": remaining,
            "errors": report.errors,
            "batches": len(calls),
            "audit_records": report.audit_records,
            "batch_min": min(limits),
            "batch_p50": statistics.median(limits),
            "batch_max": max(limits),
            "batch_ms_p50": statistics.median(c[2] for c in full) * 1000,
            "batch_ms_p99": _pct([c[2] for c in full], 0.99) * 1000,
        }
    finally:
        await store.close()


def format_result(result: dict[str, Any]) -> str:
    """The human-readable report of one run (also used for benchmarks/results/janitor_backlog.md)."""
    bt = result["batch_time"]
    sizing = "fixed batches" if bt is None else f"batch_time {bt * 1000:g} ms"
    verdict = "PASS" if result["ratio_p99"] <= GOAL else "FAIL"
    lines = [
        f"janitor backlog on SQLite: {result['rows']:,} expired rows, batch_size {result['batch']},"
        f" {sizing}, audit_group {result['audit_group']}, max_duty {result['duty']:g}",
        f"  fill                 {result['fill_s']:.1f} s",
        f"  writer idle          p50 {result['idle_p50_ms']:.3f} ms  p99 {result['idle_p99_ms']:.3f} ms"
        f"  max {result['idle_max_ms']:.1f} ms  ({result['writes_idle']:,} writes)",
        f"  writer during purge  p50 {result['purge_p50_ms']:.3f} ms  p99 {result['purge_p99_ms']:.3f} ms"
        f"  max {result['purge_max_ms']:.1f} ms  ({result['writes_during']:,} writes)",
        f"  p99 ratio            {result['ratio_p99']:.2f}x  (goal <= {GOAL:g}x: {verdict})",
        f"  writes > {GOAL:g}x idle p99  {result['slow_share']:.2%} during purge, {result['idle_slow_share']:.2%} idle",
        f"  purge                {result['purge_s']:.1f} s  ({result['rows_per_s']:,.0f} rows/s, audited,"
        f" {result['audit_records']:,} audit records)",
        f"  batches              {result['batches']:,}; full ones asked for {result['batch_min']}.."
        f"{result['batch_max']} rows (median {result['batch_p50']:g}), took p50 {result['batch_ms_p50']:.2f} ms"
        f" p99 {result['batch_ms_p99']:.2f} ms (call to reply)",
        f"  left over            {result['remaining']} rows, {result['errors']} errors",
    ]
    return "\n".join(lines)


def _batch_time(text: str) -> float | None:
    return None if text.lower() == "none" else float(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=1000, help="Janitor batch_size (the largest batch)")
    parser.add_argument(
        "--duty", type=float, default=DEFAULT_MAX_DUTY, help="Janitor max_duty (1.0: no pause between batches)"
    )
    parser.add_argument(
        "--batch-time",
        type=_batch_time,
        default=DEFAULT_BATCH_TIME,
        help="Janitor batch_time in seconds, or 'none' for fixed batches",
    )
    parser.add_argument("--audit-group", type=int, default=DEFAULT_AUDIT_GROUP, help="Janitor audit_group")
    parser.add_argument("--dir", type=Path, default=None, help="where to put the database (default: a temp dir)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        result = asyncio.run(
            run(
                args.rows,
                args.batch,
                args.dir or Path(tmp),
                args.duty,
                batch_time=args.batch_time,
                audit_group=args.audit_group,
            )
        )
    print(format_result(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
