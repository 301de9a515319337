"""Scenario ``integrations``: botmemory as LangGraph's checkpointer and store, and as Bot Framework storage.

The same work on every row, next to the frameworks' own implementations:

- checkpointer ``step``: one graph super-step, ``aput_writes`` (one task
  write) then ``aput`` (a new checkpoint whose ``messages`` channel changed;
  a second channel unchanged), round-robin over 50 threads; ``get``: the
  latest checkpoint of a thread (``aget_tuple``, values and pending writes);
  ``list``: the 10 newest checkpoints of a thread. botmemory's
  ``BotMemorySaver`` on memory, SQLite, PostgreSQL and Redis; LangGraph's
  ``InMemorySaver``, ``SqliteSaver`` (sync), ``AsyncSqliteSaver`` and
  ``AsyncPostgresSaver``.
- store ``put`` (overwrite an item of ``("memories", user)``), ``get``, and
  ``search`` (the user's 10 items): ``BotMemoryStore`` against LangGraph's
  ``InMemoryStore``, ``SqliteStore``, ``AsyncSqliteStore`` and
  ``AsyncPostgresStore``.
- Bot Framework ``turn``: what ``BotState`` does in a turn, ``read`` the
  user's state and ``write`` it back with its eTag: ``BotMemoryStorage``
  against the SDK's ``MemoryStorage``.

Values are the harness's 200-byte JSON dict. LangGraph's SQLite rows use WAL
and ``synchronous=NORMAL``, as botmemory's SQLite backend does; PostgreSQL
rows run in a schema of their own, dropped at the end, Redis under a prefix
of its own. Clients of one table take turns round by round.
"""

from __future__ import annotations

import os
import sqlite3
import statistics
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from time import perf_counter_ns
from typing import Any

import botmemory

from .config import VALUE, Config
from .measure import percentile
from .scenarios import Column, Log, Row, scenario

__all__ = ["integrations"]

POSTGRES_URL = os.environ.get("BOTMEMORY_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("BOTMEMORY_TEST_REDIS", "redis://127.0.0.1:6379/0")
THREADS = 50
HISTORY = 10  # checkpoints per thread before timing
ITEMS = 10  # store items per user

Op = Callable[[int], Any]  # op(i) -> None or an awaitable


@dataclass
class _Client:
    """One implementation, opened, with its timed operations."""

    id: str
    label: str
    family: str
    ops: dict[str, Op]
    close: list[Callable[[], Awaitable[Any]]] = field(default_factory=list)


@dataclass(frozen=True)
class _Impl:
    id: str
    label: str
    family: str
    backend: str  # memory, sqlite, postgres, redis
    requires: tuple[str, ...]
    open: Callable[[Path, AsyncExitStack], Awaitable[dict[str, Op]]]


def _unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


async def _drop_schema(schema: str) -> None:
    import psycopg

    async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as conn:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


async def _open_botmemory(backend: str, tmp: Path, stack: AsyncExitStack) -> botmemory.Store:
    if backend == "memory":
        store = await botmemory.open("memory://")
    elif backend == "sqlite":
        store = await botmemory.open(f"sqlite:///{tmp / 'bm.db'}")
    elif backend == "postgres":
        schema = _unique("bench_int")
        stack.push_async_callback(_drop_schema, schema)
        store = await botmemory.open(POSTGRES_URL, schema=schema)
    else:
        store = await botmemory.open(REDIS_URL, prefix=f"bench-int:{uuid.uuid4().hex[:10]}:")
    stack.push_async_callback(store.close)
    if backend == "redis":  # callbacks run last in, first out: drop the keys, then close
        stack.push_async_callback(store.backend.drop_everything)  # type: ignore[attr-defined]
    return store


def _sqlite_conn(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


async def _aiosqlite_conn(path: Path, stack: AsyncExitStack) -> Any:
    import aiosqlite

    conn = await aiosqlite.connect(path, isolation_level=None)
    stack.push_async_callback(conn.close)
    await conn.execute("PRAGMA journal_mode = WAL")
    await conn.execute("PRAGMA synchronous = NORMAL")
    return conn


async def _pg_pool(stack: AsyncExitStack) -> Any:
    import psycopg
    from psycopg.rows import dict_row
    from psycopg_pool import AsyncConnectionPool

    schema = _unique("bench_lgi")
    async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as conn:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
    stack.push_async_callback(_drop_schema, schema)
    # LangGraph's from_conn_string settings, its tables in the run's schema, a pool as botmemory's
    pool = AsyncConnectionPool(
        POSTGRES_URL,
        min_size=1,
        max_size=10,
        open=False,
        kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row,
                "options": f"-c search_path={schema}"},
    )
    await pool.open(wait=True)
    stack.push_async_callback(pool.close)
    return pool


# -- the checkpointer work -----------------------------------------------------------------
class _SaverWork:
    """Super-steps on THREADS threads, each keeping its latest config and channel versions."""

    def __init__(self, saver: Any, is_async: bool) -> None:
        self.saver = saver
        self.is_async = is_async
        self.latest: dict[int, dict[str, Any]] = {}
        self.versions: dict[int, int] = {}

    def _step_args(self, t: int) -> tuple[Any, ...]:
        from langgraph.checkpoint.base.id import uuid6

        parent = self.latest.get(t) or {"configurable": {"thread_id": f"thread-{t}", "checkpoint_ns": ""}}
        version = self.versions.get(t, 0) + 1
        self.versions[t] = version
        checkpoint = {
            "v": 1,
            "id": str(uuid6(clock_seq=version)),
            "ts": datetime.now(UTC).isoformat(),
            "channel_values": {"messages": {**VALUE, "turn": version}, "user": "ada"},
            "channel_versions": {"messages": version, "user": 1},
            "versions_seen": {"agent": {"messages": version - 1}},
            "updated_channels": ["messages"],
        }
        metadata = {"source": "loop", "step": version, "parents": {}}
        new_versions = {"messages": version, "user": 1} if version == 1 else {"messages": version}
        return parent, checkpoint, metadata, new_versions

    async def step(self, i: int) -> None:
        t = i % THREADS
        parent, checkpoint, metadata, new_versions = self._step_args(t)
        writes = [("messages", VALUE)]
        if self.is_async:
            if t in self.latest:
                await self.saver.aput_writes(parent, writes, f"task-{i}")
            self.latest[t] = await self.saver.aput(parent, checkpoint, metadata, new_versions)
        else:
            if t in self.latest:
                self.saver.put_writes(parent, writes, f"task-{i}")
            self.latest[t] = self.saver.put(parent, checkpoint, metadata, new_versions)

    async def get(self, i: int) -> None:
        config = {"configurable": {"thread_id": f"thread-{i % THREADS}", "checkpoint_ns": ""}}
        found = await self.saver.aget_tuple(config) if self.is_async else self.saver.get_tuple(config)
        assert found is not None

    async def list(self, i: int) -> None:
        config = {"configurable": {"thread_id": f"thread-{i % THREADS}", "checkpoint_ns": ""}}
        if self.is_async:
            found = [t async for t in self.saver.alist(config, limit=HISTORY)]
        else:
            found = list(self.saver.list(config, limit=HISTORY))
        assert len(found) == HISTORY

    async def ops(self) -> dict[str, Op]:
        for i in range(THREADS * HISTORY):  # every thread starts with HISTORY checkpoints
            await self.step(i)
        return {"saver step": self.step, "saver get": self.get, "saver list": self.list}


async def _bm_saver(backend: str, tmp: Path, stack: AsyncExitStack) -> dict[str, Op]:
    from botmemory.integrations.langgraph import BotMemorySaver

    store = await _open_botmemory(backend, tmp, stack)
    return await _SaverWork(BotMemorySaver(store, bot_id="bench"), True).ops()


async def _lg_saver(kind: str, tmp: Path, stack: AsyncExitStack) -> dict[str, Op]:
    if kind == "memory":
        from langgraph.checkpoint.memory import InMemorySaver

        return await _SaverWork(InMemorySaver(), True).ops()
    if kind == "sqlite-sync":
        from langgraph.checkpoint.sqlite import SqliteSaver

        conn = _sqlite_conn(tmp / "lg.db")
        stack.callback(conn.close)
        saver = SqliteSaver(conn)
        saver.setup()
        return await _SaverWork(saver, False).ops()
    if kind == "sqlite-async":
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        saver = AsyncSqliteSaver(await _aiosqlite_conn(tmp / "lg.db", stack))
        await saver.setup()
        return await _SaverWork(saver, True).ops()
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

    saver = AsyncPostgresSaver(await _pg_pool(stack))
    await saver.setup()
    return await _SaverWork(saver, True).ops()


# -- the store work --------------------------------------------------------------------------
class _StoreWork:
    def __init__(self, store: Any, is_async: bool) -> None:
        self.store = store
        self.is_async = is_async

    @staticmethod
    def _where(i: int) -> tuple[tuple[str, ...], str]:
        return ("memories", f"user-{(i // ITEMS) % THREADS}"), f"fact-{i % ITEMS}"

    async def put(self, i: int) -> None:
        namespace, key = self._where(i)
        value = {**VALUE, "n": i}
        if self.is_async:
            await self.store.aput(namespace, key, value)
        else:
            self.store.put(namespace, key, value)

    async def get(self, i: int) -> None:
        namespace, key = self._where(i)
        found = await self.store.aget(namespace, key) if self.is_async else self.store.get(namespace, key)
        assert found is not None

    async def search(self, i: int) -> None:
        namespace, _ = self._where(i * ITEMS)
        if self.is_async:
            found = await self.store.asearch(namespace, limit=ITEMS)
        else:
            found = self.store.search(namespace, limit=ITEMS)
        assert len(found) == ITEMS

    async def ops(self) -> dict[str, Op]:
        for i in range(THREADS * ITEMS):
            await self.put(i)
        return {"store put": self.put, "store get": self.get, "store search": self.search}


async def _bm_store(backend: str, tmp: Path, stack: AsyncExitStack) -> dict[str, Op]:
    from botmemory.integrations.langgraph import BotMemoryStore

    store = await _open_botmemory(backend, tmp, stack)
    return await _StoreWork(BotMemoryStore(store, bot_id="bench", user_namespaces=[("memories",)]), True).ops()


async def _lg_store(kind: str, tmp: Path, stack: AsyncExitStack) -> dict[str, Op]:
    if kind == "memory":
        from langgraph.store.memory import InMemoryStore

        return await _StoreWork(InMemoryStore(), True).ops()
    if kind == "sqlite-sync":
        from langgraph.store.sqlite import SqliteStore

        conn = _sqlite_conn(tmp / "lg-store.db")
        stack.callback(conn.close)
        store = SqliteStore(conn)
        store.setup()
        return await _StoreWork(store, False).ops()
    if kind == "sqlite-async":
        from langgraph.store.sqlite.aio import AsyncSqliteStore

        store = AsyncSqliteStore(await _aiosqlite_conn(tmp / "lg-store.db", stack))
        await store.setup()
        return await _StoreWork(store, True).ops()
    from langgraph.store.postgres.aio import AsyncPostgresStore

    store = AsyncPostgresStore(await _pg_pool(stack))
    await store.setup()
    return await _StoreWork(store, True).ops()


# -- the Bot Framework work --------------------------------------------------------------------
def _bf_ops(storage: Any) -> dict[str, Op]:
    async def turn(i: int) -> None:
        key = f"emulator/users/user-{i % THREADS}"
        state = (await storage.read([key])).get(key) or {"turns": 0}
        state["turns"] += 1
        state["profile"] = VALUE
        await storage.write({key: state})

    return {"botframework turn": turn}


async def _bm_storage(backend: str, tmp: Path, stack: AsyncExitStack) -> dict[str, Op]:
    from botmemory.integrations.botbuilder import BotMemoryStorage

    return _bf_ops(BotMemoryStorage(await _open_botmemory(backend, tmp, stack), bot_id="bench"))


async def _bf_memory_storage(_kind: str, tmp: Path, stack: AsyncExitStack) -> dict[str, Op]:
    from botbuilder.core import MemoryStorage

    return _bf_ops(MemoryStorage())


def _bm(backend: str, label: str, requires: tuple[str, ...] = ()) -> list[_Impl]:
    async def saver(tmp: Path, stack: AsyncExitStack) -> dict[str, Op]:
        return await _bm_saver(backend, tmp, stack)

    async def store(tmp: Path, stack: AsyncExitStack) -> dict[str, Op]:
        return await _bm_store(backend, tmp, stack)

    async def storage(tmp: Path, stack: AsyncExitStack) -> dict[str, Op]:
        return await _bm_storage(backend, tmp, stack)

    lg = ("langgraph",)
    return [
        _Impl(f"bm-{backend}", f"BotMemorySaver {label}", backend, backend, requires + lg, saver),
        _Impl(f"bm-{backend}", f"BotMemoryStore {label}", backend, backend, requires + lg, store),
        _Impl(f"bm-{backend}", f"BotMemoryStorage {label}", backend, backend, (*requires, "botbuilder"), storage),
    ]


def _theirs(kind: str, family: str, label: str, requires: tuple[str, ...], what: str) -> _Impl:
    opener = {"saver": _lg_saver, "store": _lg_store, "storage": _bf_memory_storage}[what]

    async def open_(tmp: Path, stack: AsyncExitStack) -> dict[str, Op]:
        return await opener(kind, tmp, stack)

    prefix = "bf" if what == "storage" else "lg"
    return _Impl(f"{prefix}-{kind}", label, family, family, requires, open_)


IMPLS: list[_Impl] = [
    *_bm("memory", "memory"),
    *_bm("sqlite", "SQLite"),
    *_bm("postgres", "PostgreSQL", ("psycopg",)),
    *_bm("redis", "Redis", ("redis",)),
    _theirs("memory", "memory", "LangGraph InMemorySaver", ("langgraph",), "saver"),
    _theirs("sqlite-sync", "sqlite", "LangGraph SqliteSaver (sync)", ("langgraph.checkpoint.sqlite",), "saver"),
    _theirs("sqlite-async", "sqlite", "LangGraph AsyncSqliteSaver", ("langgraph.checkpoint.sqlite", "aiosqlite"),
            "saver"),
    _theirs("postgres", "postgres", "LangGraph AsyncPostgresSaver", ("langgraph.checkpoint.postgres",), "saver"),
    _theirs("memory", "memory", "LangGraph InMemoryStore", ("langgraph",), "store"),
    _theirs("sqlite-sync", "sqlite", "LangGraph SqliteStore (sync)", ("langgraph.store.sqlite",), "store"),
    _theirs("sqlite-async", "sqlite", "LangGraph AsyncSqliteStore", ("langgraph.store.sqlite", "aiosqlite"), "store"),
    _theirs("postgres", "postgres", "LangGraph AsyncPostgresStore", ("langgraph.store.postgres",), "store"),
    _theirs("memory", "memory", "Bot Framework MemoryStorage", ("botbuilder",), "storage"),
]


def _unavailable(impl: _Impl) -> str | None:
    import importlib.util

    for module in impl.requires:
        try:
            if importlib.util.find_spec(module) is None:
                return f"{module} not installed"
        except ModuleNotFoundError:
            return f"{module} not installed"
    return None  # a server that is down is reported when opening fails


@scenario(
    "integrations",
    "Integrations: LangGraph checkpointer and store, Bot Framework storage (same work on every row)",
    [Column("ops", "ops/s"), Column("p50", "p50 µs", "us"), Column("p99", "p99 µs", "us")],
)
async def integrations(config: Config, log: Log) -> list[Row]:
    """Every operation of every implementation, rounds interleaved within an operation."""
    per_round = max(20, min(config.ops, 1_000) // 2)
    rows: list[Row] = []
    async with AsyncExitStack() as stack:
        clients: list[_Client] = []
        for impl in IMPLS:
            if not config.wants(impl.id, impl.family):
                continue
            why = _unavailable(impl)
            opened: dict[str, Op] = {}
            if why is None:
                tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bm-int-")))
                try:
                    opened = await impl.open(tmp, stack)
                except Exception as exc:  # a server that is down: reported, not fatal
                    why = f"{type(exc).__name__}: {exc}"
            if why is not None:
                rows.append(Row("integrations", impl.id, impl.label, impl.family, None, skipped=why))
                continue
            clients.append(_Client(impl.id, impl.label, impl.family, opened))
        operations = sorted({op for c in clients for op in c.ops}, key=lambda op: list(_ORDER).index(op))
        for op in operations:
            group = [c for c in clients if op in c.ops]
            rates: dict[str, list[float]] = {c.id: [] for c in group}
            times: dict[str, list[int]] = {c.id: [] for c in group}
            start = 0
            for _ in range(config.rounds):
                for client in group:
                    fn = client.ops[op]
                    samples = times[client.id]
                    for i in range(start, start + per_round):
                        began = perf_counter_ns()
                        result = fn(i)
                        if result is not None:
                            await result
                        samples.append(perf_counter_ns() - began)
                    rates[client.id].append(per_round / (sum(samples[-per_round:]) / 1e9))
                start += per_round
            for client in group:
                metrics = {
                    "ops": statistics.median(rates[client.id]),
                    "p50": statistics.median(times[client.id]) / 1000,
                    "p99": percentile(times[client.id], 99),
                }
                target = f"{_ORDER[op]}:{client.id}"
                rows.append(
                    Row("integrations", target, f"{op}: {client.label}", client.family, None, metrics,
                        rounds={"ops": rates[client.id]})
                )
                log(f"  {op}: {client.label}: {metrics['ops']:,.0f} ops/s, p50 {metrics['p50']:,.0f} µs")
    return rows


#: operation -> the prefix of its rows' target ids (``saver-step:bm-sqlite``), in table order
_ORDER = {
    "saver step": "saver-step",
    "saver get": "saver-get",
    "saver list": "saver-list",
    "store put": "store-put",
    "store get": "store-get",
    "store search": "store-search",
    "botframework turn": "bf-turn",
}
