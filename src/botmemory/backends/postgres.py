"""The PostgreSQL backend (``postgresql://user@host:port/db``): several replicas, one database.

- psycopg 3 (async) with a ``psycopg_pool.AsyncConnectionPool``; connections
  run in autocommit mode, multi-statement work in explicit transactions. One
  idle connection is kept out of the pool for the next call (the "lane": no
  pool bookkeeping on the hot path) while no call waits for the pool.
- Options come as keyword arguments of ``botmemory.open`` or as the URL's
  query (``?schema=bot_a&timeout=3``, next to libpq's own ``sslmode``…).
- Every table lives in one schema (option ``schema``, default
  ``botmemory``), created and migrated under ``pg_advisory_xact_lock`` so
  processes that open at the same time do not race. Migrations are an ordered
  list recorded in ``botmemory_migrations``; a schema newer than this code is
  refused with ``StoreUnavailableError``.
- Keys and namespaces are ``text COLLATE "C"`` so ``ORDER BY key`` is code
  point order (= UTF-8 byte order), and prefix scans are index range scans
  ``key >= prefix AND key < prefix_upper_bound(prefix)``, never ``LIKE``.
- Values are ``bytea``: the exact bytes the codec wrote, so a value reads back
  identically on every backend (``jsonb`` would reorder and drop object keys).
- ``mutate`` locks the row with ``SELECT … FOR UPDATE``; a missing row is
  serialised with ``pg_advisory_xact_lock(hashtext(ns), hashtext(key))`` and
  inserted with ``ON CONFLICT DO NOTHING`` (a concurrent plain ``put`` that
  wins makes the transaction start over), so no update is lost across
  processes. Creating a key under a quota takes a per-namespace advisory lock
  so concurrent creators cannot overshoot it.
- Time never comes from the server: every expiry decision uses ``now``.
- Nothing hangs: getting a connection waits at most ``timeout`` seconds and a
  watchdog shuts down the socket of a call that has not finished by then (the
  call fails with ``StoreTimeoutError``); the server also enforces
  ``statement_timeout``. Connections broken by an outage are discarded (and
  the idle ones checked before their next use), a read that meets a dead
  connection runs once more on a fresh one, and writes are never resent; so
  the same store works again once the server is back.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import math
import os
import re
import socket
import time
import traceback
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final, TypeVar

import psycopg
import psycopg.errors
from psycopg import AsyncConnection
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout

from ..cancellation import keep_cancellation
from ..errors import (
    InvalidInputError,
    QuotaExceededError,
    StoreError,
    StoreTimeoutError,
    StoreUnavailableError,
)
from .base import PRIVATE_NS_PREFIX, Backend, BatchWrite, Keep, LockLease, MutateFn, Mutation, Purged, Row, check_moves
from .keyrange import prefix_upper_bound
from .ops import put as _derived_put
from .urlquery import positive_seconds, seconds, take_query_options, text

__all__ = ["MIGRATIONS", "PostgresBackend", "open_backend"]

T = TypeVar("T")

_SCHEMA_RE: Final = re.compile(r"[a-z_][a-z0-9_]{0,62}", re.ASCII)
_MIGRATIONS_TABLE: Final = "botmemory_migrations"
#: advisory lock key (bigint key space) that serialises migrations
_MIGRATE_LOCK: Final = 0x626F746D656D  # "botmem"
#: a mutate that lost an insert race or a deadlock starts over this many times
_ATTEMPTS: Final = 8
#: a connection parked in the lane goes back through the pool at least this often
_LANE_SECONDS: Final = 30.0

#: Ordered schema migrations; ``{s}`` is the quoted schema. Each is applied
#: once, in order, and recorded in ``botmemory_migrations``.
MIGRATIONS: list[tuple[str, str]] = [
    (
        "kv",
        """
        CREATE TABLE {s}.kv (
            ns          text COLLATE "C" NOT NULL,
            key         text COLLATE "C" NOT NULL,
            value       bytea NOT NULL,
            version     bigint NOT NULL,
            expires_at  double precision,
            modified_at double precision NOT NULL,
            PRIMARY KEY (ns, key)
        );
        CREATE INDEX kv_expires_at ON {s}.kv (expires_at) WHERE expires_at IS NOT NULL
        """,
    ),
    (
        "locks",
        """
        CREATE TABLE {s}.locks (
            name       text COLLATE "C" PRIMARY KEY,
            owner      text,
            token      bigint NOT NULL,
            expires_at double precision NOT NULL
        )
        """,
    ),
]

_LIVE: Final = "(expires_at IS NULL OR expires_at > %(now)s)"
_COLUMNS: Final = "key, value, version, expires_at, modified_at"


#: loop time by which the call running in this task must answer
_deadline: contextvars.ContextVar[float] = contextvars.ContextVar("botmemory_pg_deadline")


class _Retry(Exception):
    """Internal: the transaction lost a race and must start over."""


def _bounded(template: str) -> tuple[str, str]:
    """(without, with) an upper key bound ``key < %(hi)s`` in place of ``{hi}``."""
    return template.format(hi=""), template.format(hi=" AND key < %(hi)s")


class _Sql:
    """The statements, with the schema name filled in once."""

    def __init__(self, schema: str) -> None:
        kv = f'"{schema}".kv'
        locks = f'"{schema}".locks'
        self.get = f"SELECT {_COLUMNS} FROM {kv} WHERE ns = %(ns)s AND key = %(key)s AND {_LIVE}"
        self.get_many = f"SELECT {_COLUMNS} FROM {kv} WHERE ns = %(ns)s AND key = ANY(%(keys)s::text[]) AND {_LIVE}"
        # Ranged statements come in two forms, with and without an upper
        # bound: an "OR %(hi)s IS NULL" would hide the bound from the index.
        self.scan = _bounded(
            f"SELECT key FROM {kv} WHERE ns = %(ns)s AND key >= %(lo)s{{hi}} "
            f"AND key > %(after)s AND {_LIVE} ORDER BY key LIMIT %(limit)s"
        )
        self.count = f"SELECT count(*) FROM {kv} WHERE ns = %(ns)s AND {_LIVE}"
        # A loose index scan: one index probe per namespace, not a full scan.
        self.namespaces = (
            f"WITH RECURSIVE t(ns) AS (SELECT min(ns) FROM {kv} "
            f"UNION ALL SELECT (SELECT min(ns) FROM {kv} WHERE ns > t.ns) FROM t WHERE t.ns IS NOT NULL) "
            "SELECT ns FROM t WHERE ns IS NOT NULL"
        )
        self.lock_row = f"SELECT {_COLUMNS} FROM {kv} WHERE ns = %(ns)s AND key = %(key)s FOR UPDATE"
        self.lock_key = "SELECT pg_advisory_xact_lock(hashtext(%(ns)s), hashtext(%(key)s))"
        self.lock_ns = "SELECT pg_advisory_xact_lock(hashtextextended(%(quota)s, 0))"
        self.insert = (
            f"INSERT INTO {kv} (ns, key, value, version, expires_at, modified_at) "
            "VALUES (%(ns)s, %(key)s, %(value)s, 1, %(exp)s, %(now)s) "
            "ON CONFLICT (ns, key) DO NOTHING RETURNING version"
        )
        self.update = (
            f"UPDATE {kv} SET value = %(value)s, version = %(version)s, expires_at = %(exp)s, modified_at = %(now)s "
            "WHERE ns = %(ns)s AND key = %(key)s"
        )
        # One statement for a plain set: version restarts at 1 over an expired
        # row, and keep_ttl keeps only a live row's expiry (as sqlite's _PUT).
        self.put = (
            f"INSERT INTO {kv} AS kv (ns, key, value, version, expires_at, modified_at) "
            "VALUES (%(ns)s, %(key)s, %(value)s, 1, %(exp)s, %(now)s) "
            "ON CONFLICT (ns, key) DO UPDATE SET value = excluded.value, "
            "version = CASE WHEN kv.expires_at IS NOT NULL AND kv.expires_at <= %(now)s THEN 1 "
            "ELSE kv.version + 1 END, "
            "expires_at = CASE WHEN %(keep)s AND (kv.expires_at IS NULL OR kv.expires_at > %(now)s) "
            "THEN kv.expires_at ELSE excluded.expires_at END, "
            "modified_at = excluded.modified_at RETURNING version"
        )
        # put_many of distinct keys as one statement (atomic without BEGIN/COMMIT,
        # one execution instead of one per row); rows are inserted, hence
        # locked, in the order given (key order), so overlapping batches never deadlock.
        self.put_many = (
            f"INSERT INTO {kv} AS kv (ns, key, value, version, expires_at, modified_at) "
            "SELECT %(ns)s::text, t.k, t.v, 1, %(exp)s::double precision, %(now)s::double precision "
            "FROM unnest(%(keys)s::text[], %(values)s::bytea[]) WITH ORDINALITY AS t(k, v, i) ORDER BY t.i "
            "ON CONFLICT (ns, key) DO UPDATE SET value = excluded.value, "
            "version = CASE WHEN kv.expires_at IS NOT NULL AND kv.expires_at <= %(now)s THEN 1 "
            "ELSE kv.version + 1 END, "
            "expires_at = excluded.expires_at, modified_at = excluded.modified_at RETURNING key, version"
        )
        self.restore = (
            f"INSERT INTO {kv} (ns, key, value, version, expires_at, modified_at) "
            "VALUES (%(ns)s, %(key)s, %(value)s, %(version)s, %(exp)s, %(now)s) "
            "ON CONFLICT (ns, key) DO UPDATE SET value = excluded.value, version = excluded.version, "
            "expires_at = excluded.expires_at, modified_at = excluded.modified_at"
        )
        self.live_among = f"SELECT count(*) FROM {kv} WHERE ns = %(ns)s AND key = ANY(%(keys)s::text[]) AND {_LIVE}"
        self.delete = (
            f"WITH d AS (DELETE FROM {kv} WHERE ns = %(ns)s AND key = ANY(%(keys)s::text[]) RETURNING expires_at) "
            f"SELECT count(*) FROM d WHERE {_LIVE}"
        )
        self.delete_prefix = _bounded(
            f"WITH d AS (DELETE FROM {kv} WHERE ns = %(ns)s AND key >= %(lo)s{{hi}} RETURNING expires_at) "
            f"SELECT count(*) FROM d WHERE {_LIVE}"
        )
        self.set_expiry = (
            f"UPDATE {kv} SET expires_at = %(exp)s WHERE ns = %(ns)s AND key = %(key)s AND {_LIVE} "
            "AND (%(exp)s::double precision IS NOT NULL OR expires_at IS NOT NULL)"
        )
        # Bounded: the oldest ``limit`` expired rows, skipping rows another
        # transaction holds, so concurrent janitors share the work.
        pick = (
            f"SELECT ns, key FROM {kv} WHERE expires_at <= %(now)s AND {{where}} "
            "ORDER BY expires_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED"
        )
        purge = f"DELETE FROM {kv} WHERE (ns, key) IN ({pick}) AND expires_at <= %(now)s RETURNING ns, key, expires_at"
        # a range test, not LIKE: "_" is a LIKE wildcard
        self.purge_public = purge.format(where="NOT (ns >= %(plo)s AND ns < %(phi)s)")
        self.purge_ns = purge.format(where="ns = %(ns)s")
        self.scan_expired = _bounded(
            f"SELECT {_COLUMNS} FROM {kv} WHERE ns = %(ns)s AND key >= %(lo)s{{hi}} AND expires_at <= %(now)s "
            "ORDER BY expires_at, key LIMIT %(limit)s"
        )
        self.acquire = (
            f"INSERT INTO {locks} AS l (name, owner, token, expires_at) VALUES (%(name)s, %(owner)s, 1, %(exp)s) "
            "ON CONFLICT (name) DO UPDATE SET "
            "token = CASE WHEN l.owner = %(owner)s AND l.expires_at > %(now)s THEN l.token ELSE l.token + 1 END, "
            "owner = excluded.owner, expires_at = excluded.expires_at "
            "WHERE l.owner IS NULL OR l.owner = %(owner)s OR l.expires_at <= %(now)s "
            "RETURNING token"
        )
        # Keep the row so the next grant's fencing token is larger.
        self.release = f"UPDATE {locks} SET owner = NULL WHERE name = %(name)s AND owner = %(owner)s"
        self.read_many = (
            f"SELECT kv.ns, kv.key, kv.value, kv.version, kv.expires_at, kv.modified_at FROM {kv} AS kv "
            "JOIN unnest(%(nss)s::text[], %(keys)s::text[]) AS t(ns, key) ON kv.ns = t.ns AND kv.key = t.key "
            "WHERE (kv.expires_at IS NULL OR kv.expires_at > %(now)s)"
        )
        # One statement, so one round trip and atomic in autocommit: rows
        # still at their expected version are updated (a concurrent writer
        # makes the UPDATE re-check the new row version and skip it), missing
        # ones inserted (a concurrent creator makes ON CONFLICT skip it); if
        # fewer rows than asked were written, the division by zero aborts
        # the whole statement, lock release included.
        self.write_batch = (
            "WITH w AS (SELECT * FROM unnest(%(nss)s::text[], %(keys)s::text[], %(values)s::bytea[], "
            "%(exps)s::double precision[], %(keeps)s::boolean[], %(versions)s::bigint[], %(expected)s::bigint[]) "
            "AS t(ns, key, value, exp, keep, version, expected)), "
            f"upd AS (UPDATE {kv} AS kv SET value = w.value, version = w.version, "
            "expires_at = CASE WHEN NOT w.keep THEN w.exp WHEN w.expected = 0 THEN NULL ELSE kv.expires_at END, "
            "modified_at = %(now)s FROM w WHERE kv.ns = w.ns AND kv.key = w.key AND "
            "(CASE WHEN kv.expires_at IS NOT NULL AND kv.expires_at <= %(now)s THEN 0 ELSE kv.version END) "
            "= w.expected "
            "RETURNING 1), "
            f"ins AS (INSERT INTO {kv} (ns, key, value, version, expires_at, modified_at) "
            "SELECT w.ns, w.key, w.value, w.version, CASE WHEN w.keep THEN NULL ELSE w.exp END, %(now)s FROM w "
            f"WHERE w.expected = 0 AND NOT EXISTS (SELECT 1 FROM {kv} AS o WHERE o.ns = w.ns AND o.key = w.key) "
            "ON CONFLICT (ns, key) DO NOTHING RETURNING 1), "
            f"rel AS (UPDATE {locks} SET owner = NULL WHERE %(release)s AND name = %(name)s AND owner = %(owner)s "
            "RETURNING 1) "
            "SELECT 1 / ((SELECT count(*) FROM upd) + (SELECT count(*) FROM ins) = %(n)s)::int, "
            "(SELECT count(*) FROM rel)"
        )


def _translate(exc: BaseException, what: str) -> StoreError:
    """The one seam where psycopg and pool errors become botmemory errors."""
    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, PoolTimeout):
        return StoreUnavailableError(f"PostgreSQL {what}: no connection available ({exc})")
    if isinstance(exc, PoolClosed):
        return StoreUnavailableError(f"PostgreSQL {what}: the store is closed")
    if isinstance(exc, psycopg.errors.QueryCanceled | psycopg.errors.LockNotAvailable):
        return StoreTimeoutError(f"PostgreSQL {what}: {exc}")
    if isinstance(
        exc,
        psycopg.OperationalError
        | psycopg.errors.UndefinedTable
        | psycopg.errors.InvalidSchemaName
        | psycopg.errors.InvalidCatalogName
        | psycopg.errors.InvalidAuthorizationSpecification,
    ):
        return StoreUnavailableError(f"PostgreSQL {what}: {exc}")
    return StoreError(f"PostgreSQL {what}: {exc}")


def _row(r: Sequence[Any]) -> Row:
    return Row(r[0], bytes(r[1]), r[2], r[3], r[4])


def _live(row: Row | None, now: float) -> Row | None:
    if row is None or (row.expires_at is not None and row.expires_at <= now):
        return None
    return row


def _sever(conn: AsyncConnection[Any]) -> None:
    """Shut the connection's socket down so a pending call fails at once.

    Cancelling the task instead would make psycopg send a cancel request and
    wait up to ten more seconds for a server that may be frozen; a shutdown
    socket reads EOF immediately, and the pool discards the broken connection.
    """
    try:
        fd = conn.pgconn.socket
        sock = socket.socket(fileno=os.dup(fd))
    except (OSError, psycopg.Error):
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        sock.close()


class _Connection(AsyncConnection[Any]):
    """psycopg's connection, minus a socket leak when connecting fails.

    When ``connect`` times out (a frozen server), psycopg raises an exception
    whose traceback holds its own frame, which holds the connection attempt
    and its open socket, in a reference cycle: the socket stays open until the
    cyclic garbage collector runs, and for as long as anything keeps the
    exception (psycopg_pool logs every failed reconnection attempt, and a
    logging handler may keep the record). Measured by the reliability suite: a
    10 s freeze left 6-12 sockets open after recovery. Clearing the frames
    closes the attempt at once.
    """

    @classmethod
    async def connect(cls, *args: Any, **kwargs: Any) -> _Connection:
        try:
            return await super().connect(*args, **kwargs)
        except psycopg.Error as exc:
            traceback.clear_frames(exc.__traceback__)
            raise exc.with_traceback(None) from None


def _range(statement: tuple[str, str], prefix: str, after: str | None = None) -> tuple[str, dict[str, Any]]:
    """The form of a ranged statement for keys under the literal ``prefix``, and its parameters."""
    hi = prefix_upper_bound(prefix)
    params = {"lo": prefix, "hi": hi, "after": "" if after is None else after}
    return statement[hi is not None], params


class PostgresBackend(Backend):
    """Rows in one PostgreSQL schema shared by any number of processes."""

    name = "postgresql"

    def __init__(self, pool: AsyncConnectionPool[Any], schema: str, timeout: float, conninfo: dict[str, Any]) -> None:
        self._pool: AsyncConnectionPool[Any] | None = pool
        self.schema = schema
        self.timeout = timeout
        self._sql = _Sql(schema)
        self._info = conninfo
        # Connections that answered after the last connection failure; the
        # others are checked before use, so an outage costs one failed call.
        self._healthy: weakref.WeakSet[AsyncConnection[Any]] = weakref.WeakSet()
        self._failed_at = 0.0
        # The lane: one idle connection kept out of the pool, taken by the
        # next call without the pool's bookkeeping (about 14 µs of a 100 µs
        # get on a local server). Parked only when no call waits for the
        # pool, and handed back to the pool after _LANE_SECONDS so the pool's
        # max_lifetime and checks still apply to it.
        self._lane: AsyncConnection[Any] | None = None
        self._lane_until = 0.0
        self._waiting = 0

    # -- plumbing ----------------------------------------------------------
    async def _check(self, conn: AsyncConnection[Any]) -> None:
        """Pool ``check`` hook: after an outage, probe a connection before handing it out."""
        if not self._failed_at or conn in self._healthy:
            return
        await self._guarded(conn, lambda c: c.execute(""), "check")
        self._healthy.add(conn)

    async def _guarded(
        self, conn: AsyncConnection[Any], fn: Callable[[AsyncConnection[Any]], Awaitable[T]], what: str
    ) -> T:
        """Run ``fn(conn)``; shut the connection down if the call's deadline passes first."""
        loop = asyncio.get_running_loop()
        deadline = _deadline.get(loop.time() + self.timeout)
        fired = False

        def watchdog() -> None:
            nonlocal fired
            fired = True
            _sever(conn)

        handle = loop.call_at(deadline, watchdog)
        try:
            return await fn(conn)
        except psycopg.Error as exc:
            if fired:
                raise StoreTimeoutError(f"PostgreSQL {what}: no answer within {self.timeout:g} s") from exc
            raise
        finally:
            handle.cancel()

    async def _run(self, what: str, fn: Callable[[AsyncConnection[Any]], Awaitable[T]], *, read: bool = False) -> T:
        """:meth:`_call`, and a cancellation of the caller is never lost (psycopg_pool waits with
        ``asyncio.wait_for``, which can swallow one on Python 3.11)."""
        with keep_cancellation():
            return await self._call(what, fn, read=read)

    async def _call(self, what: str, fn: Callable[[AsyncConnection[Any]], Awaitable[T]], *, read: bool = False) -> T:
        """Run ``fn`` on a pooled connection; errors translated, nothing waits past ``timeout``.

        The whole call (waiting for a connection, checking it, running, one
        retry) shares one deadline. A read that finds its connection dead
        (the server restarted since it was last used) runs once more on a
        fresh one; a write never does, as it may have been applied before the
        connection died.
        """
        pool = self._pool
        if pool is None:
            raise StoreUnavailableError("the PostgreSQL store is closed")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        token = _deadline.set(deadline)
        try:
            for attempt in (1, 2):
                try:
                    conn, until = await self._take(pool, deadline - loop.time())
                    parked = False
                    try:
                        result = await self._guarded(conn, fn, what)
                        self._healthy.add(conn)
                        parked = self._park(pool, conn, until, loop.time())
                        return result
                    finally:
                        if not parked:
                            # the pool rolls back, resets or discards a connection left in a bad state
                            await pool.putconn(conn)
                except StoreTimeoutError:
                    self._lost_connections()
                    raise
                except (psycopg.Error, PoolTimeout, PoolClosed) as exc:
                    lost = isinstance(exc, psycopg.OperationalError) and not isinstance(
                        exc, psycopg.errors.QueryCanceled | psycopg.errors.LockNotAvailable
                    )
                    if lost:
                        self._lost_connections()
                    if not (lost and read and attempt == 1 and loop.time() < deadline):
                        raise _translate(exc, what) from exc
            raise AssertionError("unreachable")
        finally:
            _deadline.reset(token)

    async def _take(self, pool: AsyncConnectionPool[Any], wait: float) -> tuple[AsyncConnection[Any], float]:
        """A connection for one call, and until when it may be parked in the lane afterwards."""
        conn = self._lane
        if conn is not None:
            self._lane = None
            if not self._failed_at or conn in self._healthy:
                return conn, self._lane_until
            await pool.putconn(conn)  # unchecked since an outage: the pool's check hook vets it
        self._waiting += 1
        try:
            conn = await pool.getconn(timeout=max(wait, 0.001))
        finally:
            self._waiting -= 1
        return conn, asyncio.get_running_loop().time() + _LANE_SECONDS

    def _park(self, pool: AsyncConnectionPool[Any], conn: AsyncConnection[Any], until: float, now: float) -> bool:
        """Keep ``conn`` in the lane for the next call, if the lane is free and no call waits for the pool."""
        if (
            self._lane is None
            and not self._waiting
            and now < until
            and self._pool is pool
            and conn.pgconn.transaction_status == psycopg.pq.TransactionStatus.IDLE
        ):
            self._lane, self._lane_until = conn, until
            return True
        return False

    def _lost_connections(self) -> None:
        """A connection failed: check every idle one before it is used again."""
        self._failed_at = time.monotonic()
        self._healthy = weakref.WeakSet()

    async def _transact(self, what: str, fn: Callable[[AsyncConnection[Any]], Awaitable[T]]) -> T:
        """Run ``fn`` in a transaction, starting over when it lost a race or a deadlock."""

        async def body(conn: AsyncConnection[Any]) -> T:
            for attempt in range(_ATTEMPTS):
                try:
                    async with conn.transaction():
                        return await fn(conn)
                except (_Retry, psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure):
                    if attempt == _ATTEMPTS - 1:
                        raise
            raise AssertionError("unreachable")

        try:
            return await self._run(what, body)
        except _Retry as exc:
            raise StoreError(f"PostgreSQL {what}: gave up after {_ATTEMPTS} conflicting attempts") from exc

    async def _fetchone(self, what: str, sql: str, params: dict[str, Any], *, read: bool = False) -> Any:
        async def q(conn: AsyncConnection[Any]) -> Any:
            cur = await conn.execute(sql, params)
            return await cur.fetchone()

        return await self._run(what, q, read=read)

    async def _fetchall(self, what: str, sql: str, params: dict[str, Any], *, read: bool = False) -> list[Any]:
        async def q(conn: AsyncConnection[Any]) -> list[Any]:
            cur = await conn.execute(sql, params)
            return await cur.fetchall()

        return await self._run(what, q, read=read)

    # -- reads -------------------------------------------------------------
    async def get(self, ns: str, key: str, now: float) -> Row | None:
        r = await self._fetchone("get", self._sql.get, {"ns": ns, "key": key, "now": now}, read=True)
        return None if r is None else _row(r)

    async def get_many(self, ns: str, keys: Sequence[str], now: float) -> list[Row]:
        keys = list(dict.fromkeys(keys))
        if not keys:
            return []
        rows = await self._fetchall("get_many", self._sql.get_many, {"ns": ns, "keys": keys, "now": now}, read=True)
        return [_row(r) for r in rows]

    async def read_many(self, keys: Sequence[tuple[str, str]], now: float) -> list[tuple[str, Row]]:
        pairs = list(dict.fromkeys(keys))
        if not pairs:
            return []
        params = {"nss": [ns for ns, _ in pairs], "keys": [k for _, k in pairs], "now": now}
        rows = await self._fetchall("read_many", self._sql.read_many, params, read=True)
        return [(r[0], _row(r[1:])) for r in rows]

    async def acquire_and_read(
        self, name: str, owner: str, ttl: float, keys: Sequence[tuple[str, str]], now: float
    ) -> tuple[LockLease | None, list[tuple[str, Row]]]:
        pairs = list(dict.fromkeys(keys))
        exp = now + ttl
        lock = {"name": name, "owner": owner, "now": now, "exp": exp}
        read = {"nss": [ns for ns, _ in pairs], "keys": [k for _, k in pairs], "now": now}

        async def q(conn: AsyncConnection[Any]) -> tuple[Any, list[Any]]:
            # Two statements sent together (one round trip): the read is a statement of its
            # own, so its snapshot is taken after the lock was granted and sees every write
            # the previous holder committed with its release.
            async with conn.pipeline():
                granted = await conn.execute(self._sql.acquire, lock)
                rows = await conn.execute(self._sql.read_many, read)
                token = await granted.fetchone()
                found = await rows.fetchall()
            return token, found

        token, found = await self._run("acquire_and_read", q)
        if token is None:
            return None, []
        return LockLease(name, owner, int(token[0]), exp), [(r[0], _row(r[1:])) for r in found]
    async def scan(
        self, ns: str, prefix: str, after: str | None, limit: int, now: float, *, expired: bool = False
    ) -> list[str]:
        if expired:
            return [row.key for row in await self.scan_expired(ns, prefix, now, limit)]
        sql, params = _range(self._sql.scan, prefix, after)
        params.update(ns=ns, now=now, limit=limit)
        return [r[0] for r in await self._fetchall("scan", sql, params, read=True)]

    async def count(self, ns: str, now: float) -> int:
        r = await self._fetchone("count", self._sql.count, {"ns": ns, "now": now}, read=True)
        return int(r[0])

    async def namespaces(self) -> list[str]:
        return [r[0] for r in await self._fetchall("namespaces", self._sql.namespaces, {}, read=True)]

    async def scan_expired(self, ns: str, prefix: str, now: float, limit: int) -> list[Row]:
        sql, params = _range(self._sql.scan_expired, prefix)
        params.update(ns=ns, now=now, limit=limit)
        return [_row(r) for r in await self._fetchall("scan_expired", sql, params, read=True)]

    # -- writes ------------------------------------------------------------
    async def _quota(
        self, conn: AsyncConnection[Any], ns: str, keys: list[str], now: float, max_keys: int | None
    ) -> None:
        """Refuse writing ``keys`` when the new ones would take ``ns`` beyond ``max_keys``.

        Takes a per-namespace advisory lock first, so creators in ``ns``
        count one after the other and cannot overshoot the quota together.
        """
        if max_keys is None:
            return
        sql = self._sql
        await conn.execute(sql.lock_ns, {"quota": f"{self.schema}\x1f{ns}"})
        cur = await conn.execute(sql.live_among, {"ns": ns, "keys": keys, "now": now})
        r = await cur.fetchone()
        assert r is not None
        new = len(keys) - int(r[0])
        if new <= 0:
            return
        cur = await conn.execute(sql.count, {"ns": ns, "now": now})
        r = await cur.fetchone()
        assert r is not None
        if int(r[0]) + new > max_keys:
            raise QuotaExceededError(f"{ns!r} would hold more than {max_keys} keys")

    async def put(
        self, ns: str, key: str, value: bytes, expires_at: float | Keep | None, now: float, max_keys: int | None
    ) -> int:
        if max_keys is not None:
            return await _derived_put(self, ns, key, value, expires_at, now, max_keys)
        keep = isinstance(expires_at, Keep)
        params = {"ns": ns, "key": key, "value": value, "exp": None if keep else expires_at, "now": now, "keep": keep}
        r = await self._fetchone("put", self._sql.put, params)
        return int(r[0])

    async def mutate(self, ns: str, key: str, fn: MutateFn, now: float, max_keys: int | None) -> int | None:
        sql = self._sql
        ident = {"ns": ns, "key": key}

        async def job(conn: AsyncConnection[Any]) -> int | None:
            cur = await conn.execute(sql.lock_row, ident)
            r = await cur.fetchone()
            if r is None:
                # No row to lock: serialise the would-be creators of this key.
                await conn.execute(sql.lock_key, ident)
                cur = await conn.execute(sql.lock_row, ident)
                r = await cur.fetchone()
            current = _live(None if r is None else _row(r), now)
            mutation: Mutation | None = fn(current)
            if mutation is None:
                return None
            if current is None:
                await self._quota(conn, ns, [key], now, max_keys)
            expires = mutation.expires_at
            if isinstance(expires, Keep):
                expires = None if current is None else current.expires_at
            params = {**ident, "value": mutation.value, "exp": expires, "now": now}
            if not mutation.bump and current is not None:
                await conn.execute(sql.set_expiry, {**ident, "exp": expires, "now": now})
                return current.version
            if r is None:
                cur = await conn.execute(sql.insert, params)
                if await cur.fetchone() is None:
                    raise _Retry  # a plain put created the row meanwhile: read it and start over
                return 1
            version = 1 if current is None else current.version + 1
            await conn.execute(sql.update, {**params, "version": version})
            return version

        return await self._transact("mutate", job)

    async def write_batch(self, writes: Sequence[BatchWrite], now: float, release: tuple[str, str] | None) -> bool:
        ordered = sorted(writes, key=lambda w: (w.ns.encode(), w.key.encode()))  # lock rows in one order
        params = {
            "nss": [w.ns for w in ordered],
            "keys": [w.key for w in ordered],
            "values": [w.value for w in ordered],
            "exps": [None if isinstance(w.expires_at, Keep) else w.expires_at for w in ordered],
            "keeps": [isinstance(w.expires_at, Keep) for w in ordered],
            "versions": [w.version for w in ordered],
            "expected": [w.expected for w in ordered],
            "now": now,
            "n": len(ordered),
            "release": release is not None,
            "name": None if release is None else release[0],
            "owner": None if release is None else release[1],
        }

        async def q(conn: AsyncConnection[Any]) -> bool:
            try:
                await conn.execute(self._sql.write_batch, params)
            except psycopg.errors.DivisionByZero:
                return False  # a row was not at its expected version: the statement changed nothing
            return True

        return await self._run("write_batch", q)

    async def put_many(
        self, ns: str, items: Sequence[tuple[str, bytes]], expires_at: float | None, now: float, max_keys: int | None
    ) -> list[int]:
        items = list(items)
        if not items:
            return []
        sql = self._sql
        distinct = len({k for k, _ in items}) == len(items)

        async def one_statement(conn: AsyncConnection[Any]) -> list[int]:
            ordered = sorted(items, key=lambda item: item[0].encode())
            params = {
                "ns": ns,
                "keys": [k for k, _ in ordered],
                "values": [v for _, v in ordered],
                "exp": expires_at,
                "now": now,
            }
            cur = await conn.execute(sql.put_many, params)
            versions = {key: int(version) for key, version in await cur.fetchall()}
            return [versions[k] for k, _ in items]

        if distinct and max_keys is None:
            return await self._run("put_many", one_statement)

        async def job(conn: AsyncConnection[Any]) -> list[int]:
            if max_keys is not None:
                keys = list(dict.fromkeys(k for k, _ in items))
                await self._quota(conn, ns, keys, now, max_keys)
            if distinct:
                return await one_statement(conn)
            # A key given twice gets two versions: one upsert per item, rows
            # locked in key order (a stable sort keeps repeated keys in the
            # order given), so two overlapping put_many never deadlock.
            order = sorted(range(len(items)), key=lambda i: items[i][0].encode())
            params = [
                {"ns": ns, "key": items[i][0], "value": items[i][1], "exp": expires_at, "now": now, "keep": False}
                for i in order
            ]
            versions = [0] * len(items)
            async with conn.cursor() as cur:
                await cur.executemany(sql.put, params, returning=True)
                for i in order:
                    row = await cur.fetchone()
                    assert row is not None
                    versions[i] = int(row[0])
                    cur.nextset()
            return versions

        return await self._transact("put_many", job)

    async def restore(self, ns: str, rows: Sequence[Row]) -> None:
        params = [
            {"ns": ns, "key": r.key, "value": r.value, "version": r.version, "exp": r.expires_at, "now": r.modified_at}
            for r in rows
        ]
        if not params:
            return

        async def job(conn: AsyncConnection[Any]) -> None:
            async with conn.cursor() as cur:
                await cur.executemany(self._sql.restore, params)

        await self._transact("restore", job)

    async def replace_namespaces(self, moves: Mapping[str, str | None]) -> None:
        pairs = check_moves(moves)
        kv = f'"{self.schema}".kv'

        async def job(conn: AsyncConnection[Any]) -> None:
            for target, source in pairs:
                await conn.execute(f"DELETE FROM {kv} WHERE ns = %s", (target,))
                if source is not None:
                    await conn.execute(f"UPDATE {kv} SET ns = %s WHERE ns = %s", (target, source))

        await self._transact("replace_namespaces", job)

    async def delete(self, ns: str, keys: Sequence[str], now: float, *, prefix: str | None = None) -> int:
        if prefix is not None:
            return await self.delete_prefix(ns, prefix, now)
        keys = list(dict.fromkeys(keys))
        if not keys:
            return 0
        r = await self._fetchone("delete", self._sql.delete, {"ns": ns, "keys": keys, "now": now})
        return int(r[0])

    async def delete_prefix(self, ns: str, prefix: str, now: float) -> int:
        sql, params = _range(self._sql.delete_prefix, prefix)
        params.update(ns=ns, now=now)
        r = await self._fetchone("delete_prefix", sql, params)
        return int(r[0])

    async def set_expiry(self, ns: str, key: str, expires_at: float | None, now: float) -> bool:
        params = {"ns": ns, "key": key, "exp": expires_at, "now": now}

        async def q(conn: AsyncConnection[Any]) -> bool:
            cur = await conn.execute(self._sql.set_expiry, params)
            return cur.rowcount > 0

        return await self._run("set_expiry", q)

    async def purge_expired(
        self, now: float, limit: int, ns: str | None = None, keep: Sequence[tuple[str, str]] = ()
    ) -> list[Purged]:
        if ns is None:
            sql = self._sql.purge_public
            params: dict[str, Any] = {
                "now": now,
                "limit": limit,
                "plo": PRIVATE_NS_PREFIX,
                "phi": prefix_upper_bound(PRIVATE_NS_PREFIX),
            }
        else:
            sql, params = self._sql.purge_ns, {"now": now, "limit": limit, "ns": ns}
        if keep:
            # legal hold: leave rows under these (namespace, prefix) pairs alone; range tests, never LIKE
            kept = []
            for i, (kept_ns, kept_prefix) in enumerate(keep):
                hi = prefix_upper_bound(kept_prefix)
                params.update({f"kn{i}": kept_ns, f"kl{i}": kept_prefix, f"kh{i}": hi})
                upper = "" if hi is None else f" AND key < %(kh{i})s"
                kept.append(f"(ns = %(kn{i})s AND key >= %(kl{i})s{upper})")
            held = " OR ".join(kept)
            sql = sql.replace(" ORDER BY expires_at LIMIT", f" AND NOT ({held}) ORDER BY expires_at LIMIT", 1)
        rows = await self._fetchall("purge_expired", sql, params)
        return sorted((Purged(r[0], r[1], r[2]) for r in rows), key=lambda p: p.expires_at)

    # -- locks -------------------------------------------------------------
    async def acquire_lock(self, name: str, owner: str, ttl: float, now: float) -> LockLease | None:
        exp = now + ttl
        params = {"name": name, "owner": owner, "now": now, "exp": exp}
        r = await self._fetchone("acquire_lock", self._sql.acquire, params)
        return None if r is None else LockLease(name, owner, int(r[0]), exp)

    async def release_lock(self, name: str, owner: str) -> bool:
        async def q(conn: AsyncConnection[Any]) -> bool:
            cur = await conn.execute(self._sql.release, {"name": name, "owner": owner})
            return cur.rowcount > 0

        return await self._run("release_lock", q)

    # -- lifecycle ---------------------------------------------------------
    async def ping(self) -> None:
        await self._fetchone("ping", "SELECT 1", {}, read=True)

    async def migrate(self, *, create: bool = True) -> None:
        """Create the schema and apply pending migrations, one process at a time.

        Args:
            create: False to refuse a schema that does not exist yet instead
                of creating it (read-only tools: a mistyped schema name is an
                error, not a new empty store).

        Raises:
            StoreUnavailableError: the schema was written by a newer botmemory,
                or (``create=False``) holds no botmemory store.
        """
        s = f'"{self.schema}"'

        async def job(conn: AsyncConnection[Any]) -> None:
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATE_LOCK,))
            if not create:
                cur = await conn.execute("SELECT to_regclass(%s)", (f"{s}.{_MIGRATIONS_TABLE}",))
                found = await cur.fetchone()
                if found is None or found[0] is None:
                    raise StoreUnavailableError(f"no botmemory store in schema {self.schema!r} (nothing was created)")
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {s}")
            await conn.execute(
                f"CREATE TABLE IF NOT EXISTS {s}.{_MIGRATIONS_TABLE} "
                "(version integer PRIMARY KEY, name text NOT NULL, applied_at double precision NOT NULL)"
            )
            cur = await conn.execute(f"SELECT coalesce(max(version), 0) FROM {s}.{_MIGRATIONS_TABLE}")
            r = await cur.fetchone()
            applied = int(r[0]) if r is not None else 0
            if applied > len(MIGRATIONS):
                raise StoreUnavailableError(
                    f"schema {self.schema!r} has version {applied}, newer than this botmemory "
                    f"({len(MIGRATIONS)}); upgrade botmemory"
                )
            for version, (name, ddl) in enumerate(MIGRATIONS, start=1):
                if version <= applied:
                    continue
                for statement in ddl.format(s=s).split(";"):
                    if statement.strip():
                        await conn.execute(statement)
                await conn.execute(
                    f"INSERT INTO {s}.{_MIGRATIONS_TABLE} (version, name, applied_at) VALUES (%s, %s, %s)",
                    (version, name, time.time()),
                )

        await self._transact("migrate", job)

    async def drop_everything(self) -> None:
        """Drop the schema and everything in it (tests use it to clean up)."""

        async def q(conn: AsyncConnection[Any]) -> None:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')

        await self._run("drop_everything", q)

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        lane, self._lane = self._lane, None
        if pool is not None:
            if lane is not None:
                await pool.putconn(lane)
            await pool.close(timeout=self.timeout)

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "host": self._info.get("host", "localhost"),
            "port": self._info.get("port", "5432"),
            "database": self._info.get("dbname", ""),
            "schema": self.schema,
        }


@functools.cache
def _libpq_keywords() -> frozenset[str]:
    return frozenset(o.keyword.decode() for o in psycopg.pq.Conninfo.get_defaults())


def _libpq_parameter(name: str) -> bool:
    """Whether ``name`` is a libpq connection parameter (left in the URL for libpq)."""
    return name in _libpq_keywords()


def _size(name: str, value: Any, least: int) -> int:
    if type(value) is not int or value < least:
        raise InvalidInputError(f"{name} must be an int >= {least}, got {value!r}")
    return value


async def open_backend(url: str, **options: Any) -> PostgresBackend:
    """Open ``postgresql://user[:password]@host[:port]/db`` and migrate its schema.

    Args:
        url: a libpq connection URL (``postgres://`` is accepted too). Its
            query may set ``schema`` and ``timeout`` (``…/db?schema=bot_a``)
            next to libpq's own parameters (``sslmode=require``…); any other
            name is refused.
        **options: ``schema`` (default ``"botmemory"``; lower-case letters,
            digits and ``_``), ``timeout`` (seconds to wait for a connection
            and for each call, default 5), ``min_size`` (default 1) and
            ``max_size`` (default 10) of the connection pool. An option given
            here wins over the same one in the URL.

    Raises:
        InvalidInputError: a malformed URL or option.
        StoreUnavailableError: the server cannot be reached or the schema is
            newer than this botmemory.
    """
    url = take_query_options(
        url,
        {"schema": text, "timeout": seconds},
        options,
        backend="PostgreSQL",
        driver_parameter=_libpq_parameter,
        driver_note=" and libpq's own parameters (sslmode, connect_timeout, options, ...)",
    )
    schema = options.pop("schema", "botmemory")
    create = options.pop("create", True)
    timeout = positive_seconds("timeout", options.pop("timeout", 5.0))
    min_size = _size("min_size", options.pop("min_size", 1), 0)
    max_size = _size("max_size", options.pop("max_size", 10), 1)
    if options:
        raise InvalidInputError(f"unknown PostgreSQL options: {sorted(options)}")
    if not isinstance(schema, str) or not _SCHEMA_RE.fullmatch(schema):
        raise InvalidInputError(
            f"schema must be 1-63 lower-case letters, digits or _ (not starting with a digit), got {schema!r}"
        )
    if max_size < max(min_size, 1):
        raise InvalidInputError(f"max_size ({max_size}) must be >= min_size ({min_size})")
    try:
        info = conninfo_to_dict(url)
    except psycopg.Error as exc:
        raise InvalidInputError(f"bad PostgreSQL URL: {exc}") from exc
    ms = max(1, int(timeout * 1000))
    kwargs: dict[str, Any] = {
        "autocommit": True,
        "prepare_threshold": 2,
        # libpq wants whole seconds and treats 1 as 2; never 0 (= wait forever)
        "connect_timeout": max(2, math.ceil(timeout)),
        "options": (
            f"-c statement_timeout={ms} -c lock_timeout={ms} "
            f"-c idle_in_transaction_session_timeout={max(10_000, 4 * ms)}"
        ),
        "application_name": f"botmemory:{schema}"[:63],
    }
    where = f"PostgreSQL at {info.get('host', 'localhost')}:{info.get('port', '5432')}"
    # One direct connection first: a refused or frozen server fails here
    # within ``timeout`` (libpq's connect_timeout counts whole seconds, and a
    # pool that is still connecting in the background cannot be closed early).
    try:
        async with asyncio.timeout(timeout):
            probe = await _Connection.connect(url, **kwargs)
        await probe.close()
    except (psycopg.Error, TimeoutError) as exc:
        why = str(exc) or "timed out"
        raise StoreUnavailableError(f"cannot connect to {where} within {timeout:g} s ({why})") from exc
    backend_box: list[PostgresBackend] = []

    async def check(conn: AsyncConnection[Any]) -> None:
        if backend_box:
            await backend_box[0]._check(conn)

    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        url,
        min_size=min_size,
        max_size=max_size,
        kwargs=kwargs,
        timeout=timeout,
        check=check,
        connection_class=_Connection,
        # psycopg_pool's reconnection backoff doubles without a cap until it
        # gives up; giving up early restarts it at once on the next request,
        # so a server that is back is used again within seconds.
        reconnect_timeout=max(5.0, 2 * timeout),
        open=False,
        name=f"botmemory:{schema}",
    )
    try:
        await pool.open(wait=True, timeout=timeout)
    except (psycopg.Error, PoolTimeout) as exc:
        await pool.close(timeout=0)
        raise StoreUnavailableError(f"cannot connect to {where} within {timeout:g} s ({exc})") from exc
    backend = PostgresBackend(pool, schema, timeout, info)
    backend_box.append(backend)
    try:
        await backend.migrate(create=create is not False)
    except BaseException:
        await backend.close()
        raise
    return backend
