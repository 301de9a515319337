"""Scenario ``servers``: botmemory on PostgreSQL and Redis against raw drivers and LangGraph.

Rows (one family per server, all clients of a family open at once and taking
turns round by round, so that a busy machine slows them alike):

- ``bm-postgres``: ``botmemory.open(POSTGRES_URL, schema=<unique>)``, plain
  KVS keys (``store.bot(...).kvs``).
- ``raw-psycopg``: one psycopg 3 ``AsyncConnection`` in autocommit on a table
  of the same shape in its own schema (the backend's own ``kv`` migration:
  ``bytea`` value, ``COLLATE "C"`` keys), writing with the backend's own
  upsert (``RETURNING version``, version reset over an expired row) and
  reading with its own statement (the same ``expires_at`` filter); JSON with
  orjson. Batches: ``executemany(..., returning=True)`` inside one
  transaction, all of it in pipeline mode (one round trip); ``get_many`` is
  one ``key = ANY(...)`` select.
- ``lg-postgres``: LangGraph's ``AsyncPostgresStore`` on a pool, tables in a
  unique schema (``search_path``), ``put(..., ttl=60)`` (minutes: the same
  1 h expiry) and ``get(..., refresh_ttl=False)`` (botmemory does not extend
  expiry on read); batches through ``abatch`` of ``PutOp`` / ``GetOp``.
- ``bm-redis``: ``botmemory.open(REDIS_URL, prefix=<unique>)``.
- ``raw-redis``: ``redis.asyncio`` doing what an app needs for the same
  semantics (a value with a version that increases on every write, and a 1 h
  expiry), in one round trip per call: ``MULTI; HINCRBY ver 1; HSET v m;
  PEXPIRE; EXEC`` and ``HMGET v ver`` on read; with the client settings the
  same guarantees need (a bounded pool that waits for a free connection, 5 s
  socket timeouts so no call hangs), as botmemory's client has them.
  ``raw-redis-defaults`` does the same work on ``Redis.from_url(url)`` as is
  (no timeouts, unbounded pool), for reference. Batches: one ``MULTI`` pipeline
  of the same three commands per key (all or nothing, like ``set_many``), and
  one non-transactional pipeline of ``HMGET`` for ``get_many``. botmemory does
  more per write (it keeps the namespace's key and expiry indexes that scans,
  counts and the janitor use, in a Lua script): the raw row is the floor an
  app could reach, not the same data structure.

Every run writes under its own schema / key prefix and removes it at the end.
Rows are skipped with the reason when a server cannot be reached or an
optional module is missing. Keys per store and ops per round: 3,000 by
default, ``--ops`` (or ``--quick``'s N) when given, or
``BOTMEMORY_BENCH_SERVER_OPS``; batches hold 100 keys.
"""

from __future__ import annotations

import asyncio
import gc
import os
import random
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from time import perf_counter
from typing import Any

import orjson

import botmemory

from .config import EXPIRY_SECONDS, NAMESPACE, VALUE, Config, make_keys
from .goals import GOALS, Goal
from .scenarios import Column, Log, Row, scenario

__all__ = ["BATCH", "POSTGRES_URL", "REDIS_URL", "servers"]

POSTGRES_URL = os.environ.get("BOTMEMORY_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("BOTMEMORY_TEST_REDIS", "redis://127.0.0.1:6379/0")
#: keys per set_many / get_many call
BATCH = 100
_DEFAULT_OPS = 3_000
_FILL = 1_000


def _ops(config: Config) -> int:
    """Keys in each store and operations per timed round.

    ``BOTMEMORY_BENCH_SERVER_OPS`` first, then ``--ops`` (or ``--quick``'s N)
    when it is not the default; the default run's 10,000 in-process ops per
    round would take minutes against a server, so it uses 3,000.
    """
    env = os.environ.get("BOTMEMORY_BENCH_SERVER_OPS")
    if env:
        return max(BATCH, int(env))
    if config.ops != Config().ops:
        return max(BATCH, config.ops)
    return _DEFAULT_OPS


def _unique(stem: str) -> str:
    return f"{stem}_{uuid.uuid4().hex[:10]}"


# -- clients -------------------------------------------------------------------
class Client:
    """One open store: single and batched reads and writes of ``VALUE``."""

    async def set(self, key: str) -> Any:
        raise NotImplementedError

    async def get(self, key: str) -> Any:
        raise NotImplementedError

    async def set_many(self, keys: Sequence[str]) -> Any:
        raise NotImplementedError

    async def get_many(self, keys: Sequence[str]) -> Any:
        raise NotImplementedError

    async def fill(self, keys: Sequence[str]) -> None:
        for i in range(0, len(keys), _FILL):
            await self.set_many(keys[i : i + _FILL])

    async def close(self) -> None:
        """Release everything and remove what the run wrote."""


class _Botmemory(Client):
    def __init__(self, store: botmemory.Store, cleanup: Callable[[], Awaitable[None]]) -> None:
        self.store = store
        self.kvs = store.bot(NAMESPACE).kvs
        self._cleanup = cleanup

    def set(self, key: str) -> Awaitable[int]:  # type: ignore[override]
        return self.kvs.set(key, VALUE, expiry=EXPIRY_SECONDS)

    def get(self, key: str) -> Awaitable[Any]:  # type: ignore[override]
        return self.kvs.get(key)

    def set_many(self, keys: Sequence[str]) -> Awaitable[list[int]]:  # type: ignore[override]
        return self.kvs.set_many(dict.fromkeys(keys, VALUE), expiry=EXPIRY_SECONDS)

    def get_many(self, keys: Sequence[str]) -> Awaitable[dict[str, Any]]:  # type: ignore[override]
        return self.kvs.get_many(keys)

    async def close(self) -> None:
        try:
            await self.store.close()
        finally:
            await self._cleanup()


async def _drop_schema(schema: str) -> None:
    import psycopg

    async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as conn:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


async def _open_bm_postgres() -> Client:
    schema = _unique("bench_bm")
    try:
        store = await botmemory.open(POSTGRES_URL, schema=schema)
    except BaseException:
        await _drop_schema(schema)
        raise
    return _Botmemory(store, lambda: _drop_schema(schema))


class _RawPsycopg(Client):
    def __init__(self, conn: Any, schema: str) -> None:
        from botmemory.backends.postgres import _Sql

        self.conn = conn
        self.schema = schema
        sql = _Sql(schema)
        self.put, self.select, self.select_many = sql.put, sql.get, sql.get_many

    def _params(self, key: str, now: float) -> dict[str, Any]:
        return {
            "ns": NAMESPACE,
            "key": key,
            "value": orjson.dumps(VALUE),
            "exp": now + EXPIRY_SECONDS,
            "now": now,
            "keep": False,
        }

    async def set(self, key: str) -> int:
        cur = await self.conn.execute(self.put, self._params(key, time.time()))
        row = await cur.fetchone()
        return int(row[0])

    async def get(self, key: str) -> Any:
        cur = await self.conn.execute(self.select, {"ns": NAMESPACE, "key": key, "now": time.time()})
        row = await cur.fetchone()
        return None if row is None else orjson.loads(row[1])

    async def set_many(self, keys: Sequence[str]) -> list[int]:
        now = time.time()
        versions = []
        async with self.conn.pipeline(), self.conn.transaction(), self.conn.cursor() as cur:
            await cur.executemany(self.put, [self._params(k, now) for k in keys], returning=True)
            while True:
                row = await cur.fetchone()
                versions.append(int(row[0]))
                if not cur.nextset():
                    break
        return versions

    async def get_many(self, keys: Sequence[str]) -> dict[str, Any]:
        params = {"ns": NAMESPACE, "keys": list(keys), "now": time.time()}
        cur = await self.conn.execute(self.select_many, params)
        return {r[0]: orjson.loads(r[1]) for r in await cur.fetchall()}

    async def close(self) -> None:
        try:
            await self.conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
        finally:
            await self.conn.close()


async def _open_raw_psycopg() -> Client:
    import psycopg

    from botmemory.backends.postgres import MIGRATIONS

    schema = _unique("bench_raw")
    conn = await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True)
    await conn.execute(f'CREATE SCHEMA "{schema}"')
    name, ddl = MIGRATIONS[0]
    assert name == "kv"
    for statement in ddl.format(s=f'"{schema}"').split(";"):
        if statement.strip():
            await conn.execute(statement)
    return _RawPsycopg(conn, schema)


_LG_NS = ("bots", NAMESPACE)
_LG_TTL_MINUTES = EXPIRY_SECONDS / 60


class _LangGraphPostgres(Client):
    def __init__(self, store: Any, stack: AsyncExitStack, schema: str) -> None:
        from langgraph.store.base import GetOp, PutOp

        self.store = store
        self._stack = stack
        self.schema = schema
        self._put_op, self._get_op = PutOp, GetOp

    async def set(self, key: str) -> None:
        await self.store.aput(_LG_NS, key, VALUE, ttl=_LG_TTL_MINUTES)

    async def get(self, key: str) -> Any:
        item = await self.store.aget(_LG_NS, key, refresh_ttl=False)
        return None if item is None else item.value

    async def set_many(self, keys: Sequence[str]) -> None:
        await self.store.abatch([self._put_op(_LG_NS, k, VALUE, ttl=_LG_TTL_MINUTES) for k in keys])

    async def get_many(self, keys: Sequence[str]) -> dict[str, Any]:
        items = await self.store.abatch([self._get_op(_LG_NS, k, refresh_ttl=False) for k in keys])
        return {item.key: item.value for item in items if item is not None}

    async def close(self) -> None:
        try:
            await self._stack.aclose()
        finally:
            await _drop_schema(self.schema)


async def _open_lg_postgres() -> Client:
    import psycopg
    from langgraph.store.postgres.aio import AsyncPostgresStore
    from psycopg.rows import dict_row
    from psycopg_pool import AsyncConnectionPool

    schema = _unique("bench_lg")
    async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as conn:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
    stack = AsyncExitStack()
    try:
        # the connection settings LangGraph's own from_conn_string uses, with
        # its tables in the run's schema; a pool of the size botmemory's has
        pool = AsyncConnectionPool(
            POSTGRES_URL,
            min_size=1,
            max_size=10,
            open=False,
            kwargs={
                "autocommit": True,
                "prepare_threshold": 0,
                "row_factory": dict_row,
                "options": f"-c search_path={schema}",
            },
        )
        await pool.open(wait=True)
        stack.push_async_callback(pool.close)
        store = AsyncPostgresStore(pool)
        await store.setup()
    except BaseException:
        await stack.aclose()
        await _drop_schema(schema)
        raise
    return _LangGraphPostgres(store, stack, schema)


class _RawRedis(Client):
    def __init__(self, client: Any, prefix: str) -> None:
        self.r = client
        self.prefix = prefix

    def _key(self, key: str) -> str:
        return f"{self.prefix}{NAMESPACE}:{key}"

    def _write(self, pipe: Any, key: str, data: bytes, now: float) -> None:
        ek = self._key(key)
        pipe.hincrby(ek, "ver", 1)
        pipe.hset(ek, mapping={"v": data, "m": repr(now)})
        pipe.pexpire(ek, EXPIRY_SECONDS * 1000)

    async def set(self, key: str) -> int:
        pipe = self.r.pipeline(transaction=True)
        self._write(pipe, key, orjson.dumps(VALUE), time.time())
        result = await pipe.execute()
        return int(result[0])

    async def get(self, key: str) -> Any:
        value, _ver = await self.r.hmget(self._key(key), ["v", "ver"])
        return None if value is None else orjson.loads(value)

    async def set_many(self, keys: Sequence[str]) -> list[int]:
        pipe = self.r.pipeline(transaction=True)
        now = time.time()
        for key in keys:
            self._write(pipe, key, orjson.dumps(VALUE), now)
        result = await pipe.execute()
        return [int(v) for v in result[::3]]

    async def get_many(self, keys: Sequence[str]) -> dict[str, Any]:
        pipe = self.r.pipeline(transaction=False)
        for key in keys:
            pipe.hmget(self._key(key), ["v", "ver"])
        found = await pipe.execute()
        return {k: orjson.loads(h[0]) for k, h in zip(keys, found, strict=True) if h[0] is not None}

    async def close(self) -> None:
        try:
            await _unlink_prefix(self.r, self.prefix)
        finally:
            await self.r.aclose()


async def _unlink_prefix(client: Any, prefix: str) -> None:
    batch: list[Any] = []
    async for name in client.scan_iter(match=f"{prefix}*", count=1000):
        batch.append(name)
        if len(batch) >= 1000:
            await client.unlink(*batch)
            batch.clear()
    if batch:
        await client.unlink(*batch)


async def _open_raw_redis() -> Client:
    """redis.asyncio with the client settings botmemory's guarantees need.

    A bounded pool that waits for a free connection instead of failing
    (``BlockingConnectionPool``, 64 connections) and 5 s socket timeouts so
    that no call hangs on a dead server: what an app with the same guarantees
    sets up, and what ``botmemory.open("redis://…")`` sets up.
    """
    import redis.asyncio as aioredis

    pool = aioredis.BlockingConnectionPool.from_url(
        REDIS_URL, max_connections=64, timeout=5.0, socket_timeout=5.0, socket_connect_timeout=5.0
    )
    return _RawRedis(aioredis.Redis.from_pool(pool), f"bench-raw-{uuid.uuid4().hex[:10]}:")


async def _open_raw_redis_defaults() -> Client:
    """redis.asyncio as ``Redis.from_url`` makes it: unbounded pool, no socket timeouts."""
    import redis.asyncio as aioredis

    return _RawRedis(aioredis.Redis.from_url(REDIS_URL), f"bench-rawd-{uuid.uuid4().hex[:10]}:")


async def _open_bm_redis() -> Client:
    import redis.asyncio as aioredis

    prefix = f"bench-bm-{uuid.uuid4().hex[:10]}:"

    async def cleanup() -> None:
        client = aioredis.Redis.from_url(REDIS_URL)
        try:
            await _unlink_prefix(client, prefix)
        finally:
            await client.aclose()

    try:
        store = await botmemory.open(REDIS_URL, prefix=prefix)
    except BaseException:
        await cleanup()
        raise
    return _Botmemory(store, cleanup)


# -- reachability ----------------------------------------------------------------
async def _postgres_down() -> str | None:
    """Why PostgreSQL cannot be used, or None."""
    try:
        import psycopg
    except ImportError:
        return "psycopg not installed"
    try:
        async with asyncio.timeout(3):
            conn = await psycopg.AsyncConnection.connect(POSTGRES_URL, connect_timeout=2)
        await conn.close()
    except (psycopg.Error, TimeoutError, OSError) as exc:
        return f"PostgreSQL unreachable at {_where(POSTGRES_URL)} ({str(exc).strip() or 'timed out'})"
    return None


async def _redis_down() -> str | None:
    """Why Redis cannot be used, or None."""
    try:
        import redis.asyncio as aioredis
        from redis.exceptions import RedisError
    except ImportError:
        return "redis not installed"
    client = aioredis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
    try:
        await client.ping()
    except (RedisError, TimeoutError, OSError) as exc:
        return f"Redis unreachable at {_where(REDIS_URL)} ({str(exc).strip() or 'timed out'})"
    finally:
        await client.aclose()
    return None


def _where(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.hostname or 'localhost'}:{parts.port or ''}".rstrip(":")


def _langgraph_missing() -> str | None:
    import importlib.util

    for module in ("langgraph.store.postgres", "psycopg_pool"):
        try:
            if importlib.util.find_spec(module) is None:
                return f"{module} not installed (pip install -r benchmarks/requirements.txt)"
        except ModuleNotFoundError:
            return f"{module} not installed (pip install -r benchmarks/requirements.txt)"
    return None


# -- the rows --------------------------------------------------------------------
@dataclass(frozen=True)
class _Target:
    id: str
    label: str
    family: str
    open: Callable[[], Awaitable[Client]]
    missing: Callable[[], str | None] = lambda: None


TARGETS: list[_Target] = [
    _Target("bm-postgres", "botmemory PostgreSQL (async)", "postgres", _open_bm_postgres),
    _Target("raw-psycopg", "raw psycopg async autocommit", "postgres", _open_raw_psycopg),
    _Target("lg-postgres", "LangGraph AsyncPostgresStore", "postgres", _open_lg_postgres, _langgraph_missing),
    _Target("bm-redis", "botmemory Redis (async)", "redis", _open_bm_redis),
    _Target("raw-redis", "raw redis.asyncio (same pool, timeouts)", "redis", _open_raw_redis),
    _Target("raw-redis-defaults", "raw redis.asyncio (default client)", "redis", _open_raw_redis_defaults),
]

#: Reads first, on freshly filled (insert-only) tables: after the writes, PostgreSQL
#: reads depend on how far autovacuum has cleared the dead row versions and
#: index entries the updates left (each write changes the indexed
#: ``expires_at``, so no update is HOT), which made read ratios swing 3x.
_OPS = ("get", "get_many", "set", "set_many")


#: operations (single) or calls (batched) per slice: clients take turns slice by slice
_SLICE = 100
_BATCH_SLICE = 2


async def _timed(op: Callable[[Any], Awaitable[Any]], work: Sequence[Any]) -> float:
    """Seconds ``op`` takes over ``work``, one call after the other."""
    start = perf_counter()
    for item in work:
        await op(item)
    return perf_counter() - start


async def _race(ops: Sequence[Callable[[Any], Awaitable[Any]]], work: Sequence[Any], slice_: int) -> list[float]:
    """Seconds each op spends on all of ``work``, the ops taking turns every ``slice_`` items.

    Fine-grained turns (a few dozen milliseconds) so that load from the rest
    of a shared machine, which comes and goes within seconds, falls on every
    client alike: the ratios are what this scenario is about.
    """
    spent = [0.0] * len(ops)
    for turn, i in enumerate(range(0, len(work), slice_)):
        chunk = work[i : i + slice_]
        for j in range(len(ops)):
            k = (j + turn) % len(ops)  # rotate who goes first
            spent[k] += await _timed(ops[k], chunk)
    return spent


async def _measure(targets: Sequence[_Target], config: Config, n: int, log: Log) -> list[Row]:
    """Open every target of a family, fill it, and time the four operations round by round."""
    keys = make_keys(n, config.seed)
    rng = random.Random(config.seed)
    rows: list[Row] = []
    async with AsyncExitStack() as stack:
        clients: list[tuple[_Target, Client]] = []
        for t in targets:
            try:
                client = await t.open()
            except Exception as exc:  # a row that cannot run says why; the others still run
                rows.append(Row("servers", t.id, t.label, t.family, n, skipped=f"cannot open: {exc}"))
                continue
            stack.push_async_callback(client.close)
            await client.fill(keys)
            clients.append((t, client))
        rates: dict[tuple[str, str], list[float]] = {}
        for op_name in _OPS:
            for round_ in range(config.rounds + 1):  # round 0 is the warm-up
                count = max(BATCH, n // 5) if round_ == 0 else n
                if op_name.endswith("_many"):
                    work: Any = [rng.sample(keys, BATCH) for _ in range(max(1, count // BATCH))]
                else:
                    work = rng.choices(keys, k=count)
                gc.collect()
                batched = op_name.endswith("_many")
                ops = [getattr(client, op_name) for _, client in clients]
                spent = await _race(ops, work, _BATCH_SLICE if batched else _SLICE)
                done = len(work) * (BATCH if batched else 1)
                if round_:
                    for (t, _), seconds in zip(clients, spent, strict=True):
                        rates.setdefault((t.id, op_name), []).append(done / seconds)
        for t, _client in clients:
            metrics = {f"{op}_ops": statistics.median(rates[(t.id, op)]) for op in _OPS}
            log(
                f"  {t.label:<40} set {metrics['set_ops']:>8,.0f}/s  get {metrics['get_ops']:>8,.0f}/s  "
                f"set_many {metrics['set_many_ops']:>8,.0f} keys/s  get_many {metrics['get_many_ops']:>8,.0f} keys/s"
            )
            rounds = {f"{op}_ops": rates[(t.id, op)] for op in _OPS}
            rows.append(Row("servers", t.id, t.label, t.family, n, metrics, rounds=rounds))
    return rows


@scenario(
    "servers",
    f"PostgreSQL and Redis: one task, single ops and batches of {BATCH}",
    [
        Column("set_ops", "set ops/s"),
        Column("get_ops", "get ops/s"),
        Column("set_many_ops", f"set_many keys/s ({BATCH}/call)"),
        Column("get_many_ops", f"get_many keys/s ({BATCH}/call)"),
    ],
)
async def servers(config: Config, log: Log) -> list[Row]:
    """botmemory PostgreSQL and Redis against raw psycopg, raw redis.asyncio and LangGraph's AsyncPostgresStore."""
    wanted = [t for t in TARGETS if config.wants(t.id, t.family)]
    if not wanted:
        return []
    n = _ops(config)
    rows: list[Row] = []
    runnable: list[_Target] = []
    down = {"postgres": await _postgres_down()} if any(t.family == "postgres" for t in wanted) else {}
    if any(t.family == "redis" for t in wanted):
        down["redis"] = await _redis_down()
    for t in wanted:
        why = down.get(t.family) or t.missing()
        if why:
            log(f"  {t.label}: skipped ({why})")
            rows.append(Row("servers", t.id, t.label, t.family, n, skipped=why))
        else:
            runnable.append(t)
    # LangGraph's store runs on PostgreSQL: it is the reference of both families
    for family in ("postgres", "redis"):
        group = [t for t in runnable if t.family == family]
        if group:
            rows += await _measure(group, config, n, log)
    return rows


def _goals() -> list[Goal]:
    out = []
    for ours, raw, server, raw_label in (
        ("bm-postgres", "raw-psycopg", "PostgreSQL", "raw psycopg autocommit"),
        ("bm-redis", "raw-redis", "Redis", "raw redis.asyncio (same client settings)"),
    ):
        for op in ("set", "get"):
            out.append(Goal(f"{server} {op} ≥ 0.8× {raw_label} (one task)", "servers", f"{op}_ops", ours, (raw,), 0.8))
        for op in ("set_many", "get_many"):
            out.append(
                Goal(
                    f"{server} {op} ({BATCH} keys) ≥ 0.7× {raw_label} batched",
                    "servers",
                    f"{op}_ops",
                    ours,
                    (raw,),
                    0.7,
                )
            )
        if ours == "bm-redis":
            for op in ("set", "get"):
                out.append(
                    Goal(
                        f"Redis {op} ≥ 0.8× raw redis.asyncio, default client (no timeouts, unbounded pool)",
                        "servers",
                        f"{op}_ops",
                        ours,
                        ("raw-redis-defaults",),
                        0.8,
                    )
                )
        for op in _OPS:
            out.append(
                Goal(
                    f"{server} {op} ≥ 1× LangGraph AsyncPostgresStore",
                    "servers",
                    f"{op}_ops",
                    ours,
                    ("lg-postgres",),
                    1.0,
                )
            )
    return out


GOALS.extend(_goals())
