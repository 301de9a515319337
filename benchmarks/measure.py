"""Timing loops: throughput over rounds (median) and per-operation latency.

Every timing uses ``time.perf_counter`` (``perf_counter_ns`` per operation);
the loops are as bare as possible so that the harness costs the same on
every row: one call per operation, awaited only when the client is async.
"""

from __future__ import annotations

import asyncio
import random
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from time import perf_counter, perf_counter_ns
from typing import Any

__all__ = ["Throughput", "latency", "percentile", "run_concurrently", "sample", "throughput"]


@dataclass(frozen=True)
class Throughput:
    """Operations per second of each round; ``median`` is what is reported."""

    rounds: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.rounds)


def sample(keys: Sequence[str], count: int, rng: random.Random) -> list[str]:
    """``count`` keys drawn at random (with repeats) from ``keys``."""
    return rng.choices(keys, k=count)


def _in_plain_thread(op: Callable[[str], Any]) -> bool:
    # A blocking client that declares it is timed on a thread with no event
    # loop, as a script calls it; the harness's own loop would change its path.
    return bool(getattr(getattr(op, "__self__", None), "plain_thread", False))


def _sync_loop(op: Callable[[str], Any], keys: Sequence[str]) -> float:
    start = perf_counter()
    for key in keys:
        op(key)
    return perf_counter() - start


async def _loop(op: Callable[[str], Any], is_async: bool, keys: Sequence[str]) -> float:
    if is_async:
        start = perf_counter()
        for key in keys:
            await op(key)
        return perf_counter() - start
    if _in_plain_thread(op):
        return await asyncio.to_thread(_sync_loop, op, keys)
    return _sync_loop(op, keys)


async def throughput(
    op: Callable[[str], Any], is_async: bool, keys: Sequence[str], *, rounds: int, ops: int, warmup: int, seed: int
) -> Throughput:
    """Run ``op`` on random keys: ``warmup`` untimed, then ``rounds`` timed rounds of ``ops``."""
    rng = random.Random(seed)
    if warmup:
        await _loop(op, is_async, sample(keys, warmup, rng))
    results = []
    for _ in range(rounds):
        batch = sample(keys, ops, rng)
        elapsed = await _loop(op, is_async, batch)
        results.append(len(batch) / elapsed)
    return Throughput(tuple(results))


async def latency(op: Callable[[str], Any], is_async: bool, keys: Sequence[str], *, count: int, seed: int) -> list[int]:
    """Nanoseconds of each of ``count`` operations on random keys."""
    batch = sample(keys, count, random.Random(seed))
    out: list[int] = []
    append = out.append
    if is_async:
        for key in batch:
            start = perf_counter_ns()
            await op(key)
            append(perf_counter_ns() - start)
        return out

    def timed() -> None:
        for key in batch:
            start = perf_counter_ns()
            op(key)
            append(perf_counter_ns() - start)

    if _in_plain_thread(op):
        await asyncio.to_thread(timed)
    else:
        timed()
    return out


def percentile(samples_ns: Sequence[int], pct: float) -> float:
    """The ``pct`` percentile (nearest rank) of nanosecond samples, in microseconds."""
    if not samples_ns:
        return float("nan")
    ordered = sorted(samples_ns)
    rank = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank] / 1000


async def run_concurrently(op: Callable[[str], Any], keys: Sequence[str], tasks: int) -> float:
    """Seconds for ``tasks`` asyncio tasks to run ``op`` over ``keys`` (split evenly) together."""
    shares = [keys[i::tasks] for i in range(tasks)]
    gate = asyncio.Event()

    async def worker(share: Sequence[str]) -> None:
        await gate.wait()
        for key in share:
            await op(key)

    running = [asyncio.create_task(worker(share)) for share in shares]
    await asyncio.sleep(0)  # every task is now waiting at the gate
    start = perf_counter()
    gate.set()
    await asyncio.gather(*running)
    return perf_counter() - start
