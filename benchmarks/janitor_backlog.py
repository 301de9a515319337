"""Janitor backlog: purge 1,000,000 expired rows on SQLite while a writer keeps writing.

``python -m benchmarks.janitor_backlog [--rows 1000000] [--batch 1000] [--duty 1.0] [--dir DIR]``

Measures a writer's latency (one ``bot.kvs.set`` at a time) while idle, then
while ``Janitor.run_once()`` works off the backlog (each purged row is also
audited, as in production), and prints the p50/p99 of both, the p99 ratio
(goal: within 2x of idle) and the total purge time. Not a test: nothing
fails on timing.

With the default ``max_duty=1.0`` batches run back to back: a writer waits
for at most one batch (the spec's bound), but nearly every write meets one,
so its p99 is about one batch time. ``--duty 0.01`` pauses between batches
so that writes rarely meet one; the purge then takes about 100x longer.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import botmemory
from botmemory.retention import Janitor
from botmemory.testing import FakeClock


def _pct(samples: list[float], q: float) -> float:
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


async def run(rows: int, batch: int, directory: Path, duty: float = 1.0, idle_seconds: float = 3.0) -> dict[str, float]:
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

        # idle: the same writer for a few seconds with no janitor (enough samples for a stable p99)
        idle: list[float] = []
        idle_stop = asyncio.Event()
        asyncio.get_running_loop().call_later(idle_seconds, idle_stop.set)
        await _writer(store.bot("writer"), idle_stop, idle)

        during: list[float] = []
        stop = asyncio.Event()
        writer = asyncio.create_task(_writer(store.bot("writer"), stop, during))
        t = time.perf_counter()
        report = await Janitor(store, batch_size=batch, max_duty=duty).run_once()
        purge = time.perf_counter() - t
        stop.set()
        await writer
        assert report.purged == rows, report.as_dict()
        remaining = await store.backend.count("bench", clock.now())
        return {
            "rows": rows,
            "batch": batch,
            "duty": duty,
            "fill_s": fill,
            "idle_p50_ms": statistics.median(idle) * 1000,
            "idle_p99_ms": _pct(idle, 0.99) * 1000,
            "purge_p50_ms": statistics.median(during) * 1000,
            "purge_p99_ms": _pct(during, 0.99) * 1000,
            "purge_max_ms": max(during) * 1000,
            "ratio_p99": _pct(during, 0.99) / _pct(idle, 0.99),
            "purge_s": purge,
            "rows_per_s": rows / purge,
            "writes_during": len(during),
            "writes_idle": len(idle),
            "remaining": remaining,
            "errors": report.errors,
        }
    finally:
        await store.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--duty", type=float, default=1.0, help="Janitor max_duty (1.0: no pause between batches)")
    parser.add_argument("--dir", type=Path, default=None, help="where to put the database (default: a temp dir)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        result = asyncio.run(run(args.rows, args.batch, args.dir or Path(tmp), args.duty))
    print(
        f"janitor backlog on SQLite: {result['rows']:,} expired rows, batch {result['batch']},"
        f" max_duty {result['duty']:g}"
    )
    print(f"  fill                 {result['fill_s']:.1f} s")
    print(
        f"  writer idle          p50 {result['idle_p50_ms']:.3f} ms  p99 {result['idle_p99_ms']:.3f} ms"
        f"  ({result['writes_idle']:,} writes)"
    )
    print(
        f"  writer during purge  p50 {result['purge_p50_ms']:.3f} ms  p99 {result['purge_p99_ms']:.3f} ms"
        f"  max {result['purge_max_ms']:.1f} ms  ({result['writes_during']:,} writes)"
    )
    print(f"  p99 ratio            {result['ratio_p99']:.2f}x  (goal: <= 2x)")
    print(f"  purge                {result['purge_s']:.1f} s  ({result['rows_per_s']:,.0f} rows/s, audited)")
    print(f"  left over            {result['remaining']} rows, {result['errors']} errors")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
