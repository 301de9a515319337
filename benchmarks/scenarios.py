"""The registry of scenarios: each one measures some rows and returns them.

A scenario is an async function ``(Config, log) -> list[Row]`` registered
with its table columns. Two are built in: ``kv`` (set/get throughput and
latency of every client at each N) and ``concurrent-writes`` (64 asyncio
tasks writing at once). A new one (runtime turns/s, say) is one decorated
function::

    @scenario("runtime", "Runtime turns/s", [Column("turns", "turns/s")])
    async def runtime_turns(config, log):
        ...
        return [Row("runtime", "bm-sqlite-async", "botmemory SQLite", "sqlite", None, {"turns": rate})]
"""

from __future__ import annotations

import gc
import random
import statistics
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter

from .clients import TARGETS, KVClient, KVTarget, missing_requirement
from .config import Config, make_keys
from .measure import latency, percentile, run_concurrently, sample, throughput

__all__ = ["SCENARIOS", "Column", "Row", "Scenario", "scenario"]

Log = Callable[[str], None]


@dataclass
class Row:
    """One measured (or skipped) row of a scenario's table.

    Attributes:
        scenario: the scenario's name.
        target: the client's id (``KVTarget.id``).
        label: what the table shows.
        family: the comparison group.
        n: keys in the store, when that applies.
        metrics: the scenario's columns, by key.
        skipped: why the row was not measured (a missing optional module).
        rounds: per-round values of some metrics, in the order the rounds
            ran; rows measured side by side share the round order, so goals
            compare round with round (see ``goals.evaluate``).
    """

    scenario: str
    target: str
    label: str
    family: str
    n: int | None
    metrics: dict[str, float] = field(default_factory=dict)
    skipped: str | None = None
    rounds: dict[str, list[float]] = field(default_factory=dict)


@dataclass(frozen=True)
class Column:
    """A metric column: its key in ``Row.metrics``, its header, and its unit kind."""

    key: str
    header: str
    kind: str = "rate"  # "rate" (ops/s), "us" (microseconds) or "count"


@dataclass(frozen=True)
class Scenario:
    """A registered scenario."""

    name: str
    title: str
    columns: tuple[Column, ...]
    run: Callable[[Config, Log], Awaitable[list[Row]]]


SCENARIOS: dict[str, Scenario] = {}


def scenario(
    name: str, title: str, columns: Sequence[Column]
) -> Callable[[Callable[[Config, Log], Awaitable[list[Row]]]], Callable[[Config, Log], Awaitable[list[Row]]]]:
    """Register the decorated ``async def (config, log) -> list[Row]`` under ``name``."""

    def add(fn: Callable[[Config, Log], Awaitable[list[Row]]]) -> Callable[[Config, Log], Awaitable[list[Row]]]:
        if name in SCENARIOS:
            raise ValueError(f"duplicate scenario {name!r}")
        SCENARIOS[name] = Scenario(name, title, tuple(columns), fn)
        return fn

    return add


def selected(config: Config, ids: Sequence[str] | None = None) -> list[KVTarget]:
    """The registered targets ``--only`` keeps (all of them, or those of ``ids``)."""
    specs = list(TARGETS.values()) if ids is None else [TARGETS[i] for i in ids if i in TARGETS]
    return [s for s in specs if config.wants(s.id, s.family)]


async def _open_all(specs: Sequence[KVTarget], stack: AsyncExitStack, keys: Sequence[str]) -> list[KVClient]:
    """Open and fill a fresh client of every spec, each in its own temporary directory."""
    clients = []
    for spec in specs:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="botmemory-bench-"))
        client = await spec.open(Path(tmp))
        stack.push_async_callback(client.close)
        await client.fill(keys)
        clients.append(client)
    return clients


async def _measure_kv(
    specs: Sequence[KVTarget], config: Config, n: int, log: Log
) -> list[tuple[dict[str, float], dict[str, list[float]]]]:
    """set/get rates and latencies of every spec at N keys, with their rounds interleaved.

    All clients are open at once and take turns round by round, so that
    whatever else the machine is doing slows each of them alike and the
    ratios of one run stay meaningful on a shared machine.
    """
    keys = make_keys(n, config.seed)
    ops = min(config.ops, n)
    metrics: list[dict[str, float]] = [{} for _ in specs]
    per_round: list[dict[str, list[float]]] = [{} for _ in specs]
    async with AsyncExitStack() as stack:
        clients = await _open_all(specs, stack, keys)
        for op_name in ("set", "get"):
            rates: list[list[float]] = [[] for _ in specs]
            for round_ in range(config.rounds + 1):  # round 0 is the warm-up
                for i, client in enumerate(clients):
                    op = client.set if op_name == "set" else client.get
                    count = min(config.warmup, n) if round_ == 0 else ops
                    gc.collect()
                    result = await throughput(
                        op, client.is_async, keys, rounds=1, ops=count, warmup=0, seed=config.seed + 100 * round_ + i
                    )
                    if round_:
                        rates[i].append(result.median)
            latencies: list[list[int]] = [[] for _ in specs]
            chunk = max(1, config.latency_ops // config.rounds)
            for round_ in range(config.rounds):
                for i, client in enumerate(clients):
                    op = client.set if op_name == "set" else client.get
                    latencies[i] += await latency(
                        op, client.is_async, keys, count=chunk, seed=config.seed + 1000 + round_
                    )
            for i in range(len(specs)):
                metrics[i][f"{op_name}_ops"] = statistics.median(rates[i])
                per_round[i][f"{op_name}_ops"] = rates[i]
                metrics[i][f"{op_name}_p50_us"] = percentile(latencies[i], 50)
                metrics[i][f"{op_name}_p99_us"] = percentile(latencies[i], 99)
    for spec, m in zip(specs, metrics, strict=True):
        log(f"  {spec.label:<34} N={n:>7,}  set {m['set_ops']:>10,.0f}/s  get {m['get_ops']:>10,.0f}/s")
    return list(zip(metrics, per_round, strict=True))


def _skipped(name: str, spec: KVTarget, n: int | None, module: str) -> Row:
    return Row(name, spec.id, spec.label, spec.family, n, skipped=f"{module} not installed")


@scenario(
    "kv",
    "Single task: set and get",
    [
        Column("set_ops", "set ops/s"),
        Column("set_p50_us", "set p50 µs", "us"),
        Column("set_p99_us", "set p99 µs", "us"),
        Column("get_ops", "get ops/s"),
        Column("get_p50_us", "get p50 µs", "us"),
        Column("get_p99_us", "get p99 µs", "us"),
    ],
)
async def kv_single_task(config: Config, log: Log) -> list[Row]:
    """Every client at every N: overwrite and read random existing keys, one at a time."""
    rows: list[Row] = []
    for n in config.sizes:
        runnable = []
        for spec in selected(config):
            module = missing_requirement(spec)
            if module is not None:
                rows.append(_skipped("kv", spec, n, module))
            else:
                runnable.append(spec)
        for family in dict.fromkeys(s.family for s in runnable):
            group = [s for s in runnable if s.family == family]
            for spec, (metrics, rounds) in zip(group, await _measure_kv(group, config, n, log), strict=True):
                rows.append(Row("kv", spec.id, spec.label, spec.family, n, metrics, rounds=rounds))
    return rows


#: Who takes part in the concurrent-writers scenario. Async clients run
#: ``tasks`` asyncio tasks; sync clients do the same writes one after another.
CONCURRENT_TARGETS = ["bm-sqlite-async", "raw-sqlite3", "raw-aiosqlite", "bm-sqlite-full-async", "raw-sqlite3-full"]


@scenario(
    "concurrent-writes", "Concurrent writers: set", [Column("set_ops", "set ops/s"), Column("tasks", "tasks", "count")]
)
async def concurrent_writes(config: Config, log: Log) -> list[Row]:
    """``tasks`` tasks overwrite random keys at once (sync clients: the same writes in one thread)."""
    rows: list[Row] = []
    n = config.concurrent_keys
    runnable = []
    for spec in selected(config, CONCURRENT_TARGETS):
        module = missing_requirement(spec)
        if module is not None:
            rows.append(_skipped("concurrent-writes", spec, n, module))
        else:
            runnable.append(spec)
    if not runnable:
        return rows
    keys = make_keys(n, config.seed)
    rng = random.Random(config.seed)
    rates: list[list[float]] = [[] for _ in runnable]
    async with AsyncExitStack() as stack:
        clients = await _open_all(runnable, stack, keys)
        for round_ in range(config.rounds + 1):  # round 0 is the warm-up
            batch = sample(keys, config.concurrent_writes, rng)
            for i, client in enumerate(clients):
                gc.collect()
                if client.is_async:
                    elapsed = await run_concurrently(client.set, batch, config.tasks)
                else:
                    elapsed = await _sync_writes(client, batch)
                if round_:
                    rates[i].append(len(batch) / elapsed)
    for spec, client, spec_rates in zip(runnable, clients, rates, strict=True):
        tasks = config.tasks if client.is_async else 1
        rate = statistics.median(spec_rates)
        log(f"  {spec.label:<34} tasks={tasks:<3} set {rate:>10,.0f}/s")
        rows.append(
            Row(
                "concurrent-writes",
                spec.id,
                spec.label,
                spec.family,
                n,
                {"set_ops": rate, "tasks": tasks},
                rounds={"set_ops": spec_rates},
            )
        )
    return rows


async def _sync_writes(client: KVClient, keys: Sequence[str]) -> float:
    op = client.set
    start = perf_counter()
    for key in keys:
        op(key)
    return perf_counter() - start
