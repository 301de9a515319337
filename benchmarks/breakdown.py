"""Where the time of one botmemory row goes: each layer timed on its own.

For a ``set``: key validation, the expiry computation, ``codec.encode``,
``backend.put`` (and for SQLite, inside it, the driver's own statements on
the writer's connection versus the hop to the writer thread and back), the
KVS glue that is left, and for ``open_sync`` rows the blocking facade's hop
to its loop thread. For a ``get``: validation, ``backend.get`` (the driver's
SELECT versus the rest), ``codec.decode`` and the glue. A cProfile of the
calling thread's functions comes with it (the writer thread's time shows
there only as waiting).
"""

from __future__ import annotations

import cProfile
import io
import pstats
import random
import statistics
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter_ns, time
from typing import Any

import botmemory
from botmemory.codec import decode, encode
from botmemory.expiry import expires_at
from botmemory.keys import validate_key

from .clients import KVClient, KVTarget
from .config import EXPIRY_SECONDS, NAMESPACE, VALUE, Config, make_keys
from .measure import sample

__all__ = ["Breakdown", "Layer", "profile_row"]


@dataclass(frozen=True)
class Layer:
    """One layer's share: microseconds per operation (``part_of`` names the layer it is inside)."""

    name: str
    us: float
    part_of: str | None = None


@dataclass
class Breakdown:
    """The layers of one row, plus the top functions of a cProfile run."""

    target: str
    label: str
    op: str
    n: int
    total_us: float
    layers: list[Layer] = field(default_factory=list)
    top_functions: list[tuple[str, int, float, float]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


_ROUNDS = 7


@dataclass(frozen=True)
class _Step:
    name: str
    fn: Callable[[str], Any]
    is_async: bool
    part_of: str | None = None


async def _interleaved(steps: Sequence[_Step], keys: Sequence[str]) -> dict[str, float]:
    """Median µs of one call of every step, rounds alternating between steps.

    Each call is timed on its own and the median taken, so that the rare
    stall (a WAL checkpoint's fsync, a GC pass) lands in no layer's share:
    this is where the time of a typical operation goes. The cost of the
    timing itself (an empty call, timed the same way) is subtracted.
    """
    samples: dict[str, list[int]] = {s.name: [] for s in steps}
    empty: list[int] = []
    chunk = max(1, len(keys) // _ROUNDS)
    for i in range(_ROUNDS):
        part = keys[i * chunk : (i + 1) * chunk]
        for key in part:
            start = perf_counter_ns()
            _nothing(key)
            empty.append(perf_counter_ns() - start)
        for step in steps:
            fn, out = step.fn, samples[step.name]
            if step.is_async:
                for key in part:
                    start = perf_counter_ns()
                    await fn(key)
                    out.append(perf_counter_ns() - start)
            else:
                for key in part:
                    start = perf_counter_ns()
                    fn(key)
                    out.append(perf_counter_ns() - start)
    overhead = statistics.median(empty)
    return {name: max(0.0, statistics.median(values) - overhead) / 1000 for name, values in samples.items()}


def _nothing(key: str) -> None:
    return None


def _sqlite_driver(backend: Any, op: str) -> Callable[[str], Any] | None:
    """The backend's own statements run directly on its connection, or None if its internals moved."""
    from botmemory.backends import sqlite as module

    writer = getattr(backend, "_writer", None)
    reader = getattr(backend, "_reader", None)
    put_sql = getattr(module, "_PUT", None)
    select_sql = getattr(module, "_SELECT_ROW", None)
    live = getattr(module, "_LIVE", None)
    if op == "set" and writer is not None and put_sql is not None:
        conn = writer.conn  # the writer thread is idle (nothing queued) while this runs
        data = encode(VALUE, botmemory.Limits())

        def put(key: str) -> None:
            # what the writer runs for a lone set: one upsert in autocommit
            now = time()
            conn.execute(put_sql, (NAMESPACE, key, bytearray(data), now + EXPIRY_SECONDS, now, 0)).fetchone()

        return put
    if op == "get" and reader is not None and select_sql is not None and live is not None:
        sql = select_sql + " AND " + live

        def get(key: str) -> None:
            reader.execute(sql, (NAMESPACE, key, time())).fetchone()

        return get
    return None


def _cprofile(fn: Callable[[str], Any], keys: Sequence[str], is_async: bool) -> Callable[[], Any]:
    """A coroutine factory that runs ``fn`` over ``keys`` under cProfile; returns the stats."""

    async def run() -> pstats.Stats:
        profiler = cProfile.Profile()
        profiler.enable()
        if is_async:
            for key in keys:
                await fn(key)
        else:
            for key in keys:
                fn(key)
        profiler.disable()
        return pstats.Stats(profiler, stream=io.StringIO())

    return run


def _top(stats: pstats.Stats, count: int, ops: int) -> list[tuple[str, int, float, float]]:
    """(function, calls per op ×1000, own µs per op, cumulative µs per op) of the heaviest functions."""
    rows = []
    for (filename, line, name), (_cc, ncalls, tottime, cumtime, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        short = filename.rsplit("/", 2)
        where = "/".join(short[-2:]) if filename.startswith(("/", ".")) else filename
        rows.append((f"{name} ({where}:{line})", ncalls, tottime * 1e6 / ops, cumtime * 1e6 / ops))
    rows.sort(key=lambda r: r[2], reverse=True)
    return rows[:count]


async def profile_row(spec: KVTarget, client_open: Callable[[Path], Any], op: str, n: int, config: Config) -> Breakdown:
    """Time each layer of ``op`` on the botmemory row ``spec`` at ``n`` keys."""
    assert spec.url is not None, "only botmemory rows have layers"
    keys = make_keys(n, config.seed)
    batch = sample(keys, max(_ROUNDS, min(config.ops, n)), random.Random(config.seed))
    limits = botmemory.Limits()
    data = encode(VALUE, limits)
    with (
        tempfile.TemporaryDirectory(prefix="botmemory-bench-") as tmp,
        tempfile.TemporaryDirectory(prefix="botmemory-bench-") as tmp_sync,
    ):
        store = await botmemory.open(spec.url(Path(tmp)))
        sync_client: KVClient | None = None
        try:
            kvs = store.bot(NAMESPACE).kvs
            backend = store.backend
            clock = store.clock
            await kvs.set_many(dict.fromkeys(keys, VALUE), expiry=EXPIRY_SECONDS)
            steps: list[_Step] = []
            if op == "set":
                total: Callable[[str], Any] = lambda k: kvs.set(k, VALUE, expiry=EXPIRY_SECONDS)  # noqa: E731

                def put(k: str) -> Any:
                    now = clock.now()
                    return backend.put(NAMESPACE, k, data, now + EXPIRY_SECONDS, now, None)

                steps += [
                    _Step("validate_key", lambda k: validate_key(k, 512), False),
                    _Step("expires_at + clock.now", lambda k: expires_at(EXPIRY_SECONDS, clock.now()), False),
                    _Step("codec.encode", lambda k: encode(VALUE, limits), False),
                    _Step("backend.put", put, True),
                ]
                driver = _sqlite_driver(backend, "set") if spec.family == "sqlite" else None
                if driver is not None:
                    steps.append(_Step("driver: upsert … RETURNING, autocommit", driver, False, "backend.put"))
                hop_name = "writer-thread hop + future wake-up"
            else:
                total = kvs.get
                steps += [
                    _Step("validate_key", lambda k: validate_key(k, None), False),
                    _Step("clock.now", lambda k: clock.now(), False),
                    _Step("backend.get", lambda k: backend.get(NAMESPACE, k, clock.now()), True),
                ]
                driver = _sqlite_driver(backend, "get") if spec.family == "sqlite" else None
                if driver is not None:
                    steps.append(_Step("driver: SELECT … fetchone", driver, False, "backend.get"))
                steps.append(_Step("codec.decode", lambda k: decode(data), False))
                hop_name = "Row + read plumbing"
            steps.append(_Step("async total", total, True))
            if spec.sync:
                sync_client = await client_open(Path(tmp_sync))
                await sync_client.fill(keys)
                steps.append(_Step("sync total", sync_client.set if op == "set" else sync_client.get, False))
            us = await _interleaved(steps, batch)
            profiled = (sync_client.set if op == "set" else sync_client.get) if sync_client is not None else total
            stats = await _cprofile(profiled, batch, sync_client is None)()
        finally:
            await store.close()
            if sync_client is not None:
                await sync_client.close()
    layers: list[Layer] = []
    for step in steps:
        if step.name in ("async total", "sync total"):
            continue
        layers.append(Layer(step.name, us[step.name], step.part_of))
        if step.part_of is not None:
            layers.append(Layer(hop_name, us[step.part_of] - us[step.name], step.part_of))
    accounted = sum(layer.us for layer in layers if layer.part_of is None)
    layers.append(Layer("KVS glue (calls, awaits, checks)", us["async total"] - accounted))
    total_us = us["async total"]
    notes = [
        "each layer timed alone over the same keys, rounds interleaved; medians of single calls, so rare stalls "
        "(WAL checkpoints) are in no layer; glue and hops are differences"
    ]
    if spec.sync:
        total_us = us["sync total"]
        layers.append(Layer("open_sync facade: hop to its loop thread and back", total_us - us["async total"]))
        notes.append("the facade layer is the open_sync row minus the same work on botmemory.open")
    return Breakdown(spec.id, spec.label, op, n, total_us, layers, _top(stats, 10, len(batch)), notes)
