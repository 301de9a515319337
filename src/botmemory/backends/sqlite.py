"""The SQLite backend (``sqlite:///path.db``): the embedded default.

- WAL journal, ``synchronous=NORMAL``, ``secure_delete`` (erased values do
  not linger in free pages).
- All writes go through one writer thread per store with its own
  connection. Writes that are waiting when the thread picks up work share
  one ``BEGIN IMMEDIATE`` transaction (group commit), each inside its own
  savepoint so one failing write does not undo the others (a one-statement
  write such as a plain set needs none: SQLite undoes a failed statement
  alone; and a lone one is run in autocommit, without BEGIN and COMMIT).
  The event loop never waits for a lock, a busy database or an fsync.
- Reads are short indexed lookups; they run inline on the caller's thread
  with a zero busy timeout (measured faster than a thread hop) and move to a
  reader thread whenever SQLite answers "busy" or another thread holds the
  inline connection.
- Many processes may share one file: ``BEGIN IMMEDIATE`` waits for the
  write lock with SQLite's busy handler, up to ``timeout`` seconds, then
  raises ``StoreTimeoutError``; "database is locked" never leaks.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import queue
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar, overload

import orjson

from ..errors import (
    QuotaExceededError,
    StoreError,
    StoreFullError,
    StoreTimeoutError,
    StoreUnavailableError,
)
from .base import KEEP, PRIVATE_NS_PREFIX, Backend, BatchWrite, Keep, LockLease, MutateFn, Purged, Row, check_moves
from .keyrange import prefix_upper_bound
from .ops import put as _derived_put

__all__ = ["MIGRATIONS", "SQLiteBackend"]

T = TypeVar("T")

_HEADER = b"SQLite format 3\x00"
_MIGRATIONS_TABLE = "botmemory_migrations"

#: Ordered schema migrations; each is applied once and recorded.
MIGRATIONS: list[tuple[str, str]] = [
    (
        "kv",
        """
        CREATE TABLE kv (
            ns          TEXT NOT NULL,
            key         TEXT NOT NULL,
            value       BLOB NOT NULL,
            version     INTEGER NOT NULL,
            expires_at  REAL,
            modified_at REAL NOT NULL,
            PRIMARY KEY (ns, key)
        ) WITHOUT ROWID;
        CREATE INDEX kv_expires_at ON kv (expires_at) WHERE expires_at IS NOT NULL;
        """,
    ),
    (
        "locks",
        """
        CREATE TABLE locks (
            name       TEXT PRIMARY KEY,
            owner      TEXT,
            token      INTEGER NOT NULL,
            expires_at REAL NOT NULL
        ) WITHOUT ROWID;
        """,
    ),
]

_LIVE = "(expires_at IS NULL OR expires_at > ?)"
_UPSERT = (
    "INSERT INTO kv (ns, key, value, version, expires_at, modified_at) VALUES (?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (ns, key) DO UPDATE SET value = excluded.value, version = excluded.version, "
    "expires_at = excluded.expires_at, modified_at = excluded.modified_at"
)
# One statement for a plain set: version restarts at 1 over an expired row,
# and keep_ttl keeps only a live row's expiry.
_PUT = (
    "INSERT INTO kv (ns, key, value, version, expires_at, modified_at) VALUES (?1, ?2, ?3, 1, ?4, ?5) "
    "ON CONFLICT (ns, key) DO UPDATE SET value = excluded.value, "
    "version = CASE WHEN kv.expires_at IS NOT NULL AND kv.expires_at <= ?5 THEN 1 ELSE kv.version + 1 END, "
    "expires_at = CASE WHEN ?6 AND (kv.expires_at IS NULL OR kv.expires_at > ?5) "
    "THEN kv.expires_at ELSE excluded.expires_at END, "
    "modified_at = excluded.modified_at RETURNING version"
)
_SELECT_ROW = "SELECT key, value, version, expires_at, modified_at FROM kv WHERE ns = ? AND key = ?"
_SELECT_VERSION = "SELECT version, expires_at FROM kv WHERE ns = ? AND key = ?"
_COLUMNS = "key, value, version, expires_at, modified_at"
_CHUNK = 500


def _chunks(keys: list[str]) -> Iterator[tuple[list[str], str]]:
    """``keys`` in slices of ``_CHUNK``, each with its ``?,?,…`` placeholders for ``IN (…)``."""
    for i in range(0, len(keys), _CHUNK):
        chunk = keys[i : i + _CHUNK]
        yield chunk, ",".join("?" * len(chunk))


#: inline commits between two checkpoint requests to the writer thread
_CHECKPOINT_EVERY = 256
_CHECKPOINT = object()
#: batches of more keys than this are written by the writer thread, not inline
_INLINE_MAX = 16
log = logging.getLogger(__name__)


def _translate(exc: BaseException, what: str) -> StoreError:
    """The one seam where sqlite3 errors become botmemory errors."""
    msg = str(exc)
    low = msg.lower()
    if "locked" in low or "busy" in low:
        return StoreTimeoutError(f"SQLite {what}: {msg}")
    if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "disk is full" in low:
        return StoreFullError(f"SQLite {what}: {msg}")
    if isinstance(exc, sqlite3.OperationalError | sqlite3.DatabaseError) and any(
        s in low for s in ("unable to open", "readonly", "disk i/o", "not a database", "malformed", "no such table")
    ):
        return StoreUnavailableError(f"SQLite {what}: {msg}")
    return StoreError(f"SQLite {what}: {msg}")


def _row(r: tuple[Any, ...]) -> Row:
    return Row(r[0], bytes(r[1]), r[2], r[3], r[4])


#: durability levels: NORMAL (WAL commits are durable across process crashes,
#: the last ones may be lost on power loss) or FULL (every commit fsyncs)
SYNCHRONOUS = ("normal", "full")


def _connect(path: str, timeout: float, synchronous: str = "normal") -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
    conn.execute("PRAGMA secure_delete = ON")
    return conn


class _Job:
    """A write waiting for the writer thread.

    ``single`` marks a job that runs exactly one statement: SQLite makes one
    statement atomic by itself, so such a job needs no savepoint in a group
    and, alone, no explicit transaction.
    """

    __slots__ = ("error", "fn", "future", "loop", "result", "single")

    def __init__(
        self, fn: Callable[[sqlite3.Connection], Any], loop: asyncio.AbstractEventLoop, single: bool = False
    ) -> None:
        self.fn = fn
        self.loop = loop
        self.single = single
        self.future: asyncio.Future[Any] = loop.create_future()
        self.result: Any = None
        self.error: BaseException | None = None


def _deliver(jobs: list[_Job]) -> None:
    for job in jobs:
        if job.future.done():
            continue
        if job.error is not None:
            job.future.set_exception(job.error)
        else:
            job.future.set_result(job.result)


def _is_busy(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in str(exc) or "busy" in str(exc))


def _run_batch(conn: sqlite3.Connection, batch: list[_Job], *, yield_on_busy: bool = False) -> bool:
    """Run ``batch`` in one transaction on ``conn``, setting each job's result or error.

    Returns False, with nothing run, when ``yield_on_busy`` is set and the
    write lock is taken (the caller hands the batch to the writer thread).
    """
    if len(batch) == 1 and batch[0].single:
        # Autocommit saves the BEGIN and COMMIT statements: a lone write's
        # transaction takes the write lock at once and waits for it with
        # the busy handler, just as BEGIN IMMEDIATE does.
        job = batch[0]
        try:
            job.result = job.fn(conn)
        except BaseException as exc:
            if yield_on_busy and _is_busy(exc):
                return False  # one statement that could not take the lock changed nothing
            job.error = exc if not isinstance(exc, sqlite3.Error) else _translate(exc, "write")
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        return True
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.Error as exc:
        if yield_on_busy and _is_busy(exc):
            return False
        err = _translate(exc, "begin")
        for job in batch:
            job.error = err
        return True
    try:
        if len(batch) == 1:
            job = batch[0]
            try:
                job.result = job.fn(conn)
            except BaseException as exc:
                job.error = exc if not isinstance(exc, sqlite3.Error) else _translate(exc, "write")
                conn.execute("ROLLBACK")
                return True
        else:
            for job in batch:
                if job.single:
                    try:
                        job.result = job.fn(conn)
                    except BaseException as exc:
                        job.error = exc if not isinstance(exc, sqlite3.Error) else _translate(exc, "write")
                        if not conn.in_transaction:
                            # SQLite ended the whole transaction (disk full, I/O
                            # error): nothing of this batch is kept.
                            raise
                    continue
                conn.execute("SAVEPOINT job")
                try:
                    job.result = job.fn(conn)
                except BaseException as exc:
                    job.error = exc if not isinstance(exc, sqlite3.Error) else _translate(exc, "write")
                    conn.execute("ROLLBACK TO job")
                conn.execute("RELEASE job")
        conn.execute("COMMIT")
    except BaseException as exc:
        # Nothing of this batch was committed: every job fails alike.
        failure: BaseException = _translate(exc, "commit") if isinstance(exc, sqlite3.Error) else exc
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass
        for job in batch:
            job.error = failure
            job.result = None
    return True


class _Writer(threading.Thread):
    """Runs write jobs in group-committed transactions on its own connection."""

    MAX_BATCH = 256

    def __init__(self, path: str, timeout: float, synchronous: str = "normal") -> None:
        super().__init__(name=f"botmemory-sqlite-writer:{os.path.basename(path)}", daemon=True)
        self.conn = _connect(path, timeout, synchronous)
        self.jobs: queue.SimpleQueue[_Job | object | None] = queue.SimpleQueue()
        # True from taking a job until its batch is done: inline commits then
        # queue here instead of taking the write lock, because this thread
        # waits for a held lock with SQLite's busy handler (sleeps of 1, 2,
        # 5 ... 100 ms), and a stream of inline commits starved it for
        # hundreds of milliseconds at a time (a purge batch: 6 ms -> 0.5 s).
        self.busy = False

    def run(self) -> None:
        stop = False
        while not stop:
            self.busy = False
            first = self.jobs.get()
            self.busy = True
            if first is None:
                break
            batch: list[_Job] = []
            checkpoint = False
            item: _Job | object | None = first
            while True:
                if item is _CHECKPOINT:
                    checkpoint = True
                elif isinstance(item, _Job):
                    batch.append(item)
                # empty() first: a lone write would otherwise pay for raising queue.Empty
                if len(batch) >= self.MAX_BATCH or self.jobs.empty():
                    break
                try:
                    item = self.jobs.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
            if batch:
                try:
                    self._run(batch)
                except BaseException as exc:  # the writer must outlive any one batch
                    for job in batch:
                        job.error = job.error or exc
                    self._send(batch)
            if checkpoint:
                self._checkpoint()
        self.conn.close()

    def _checkpoint(self) -> None:
        # Writes committed inline (see SQLiteBackend._write) never checkpoint
        # themselves: that would fsync on the event loop's thread.
        try:
            self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error:
            log.warning("SQLite WAL checkpoint failed; the next one retries", exc_info=True)

    def _run(self, batch: list[_Job]) -> None:
        _run_batch(self.conn, batch)
        self._send(batch)

    @staticmethod
    def _send(batch: list[_Job]) -> None:
        if len(batch) == 1:
            try:
                batch[0].loop.call_soon_threadsafe(_deliver, batch)
            except RuntimeError:  # the caller's loop is closed: nobody is waiting
                pass
            return
        by_loop: dict[asyncio.AbstractEventLoop, list[_Job]] = {}
        for job in batch:
            by_loop.setdefault(job.loop, []).append(job)
        for loop, jobs in by_loop.items():
            try:
                loop.call_soon_threadsafe(_deliver, jobs)
            except RuntimeError:  # the caller's loop is closed: nobody is waiting
                pass


def _check_file(path: str, create: bool = True) -> None:
    """Refuse anything that is not a new, empty or botmemory SQLite file; change nothing.

    With ``create=False`` a missing or empty file is refused too.
    """
    if os.path.isdir(path):
        raise StoreUnavailableError(f"{path!r} is a directory, not a SQLite database file")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.exists(path):
        if not create:
            raise StoreUnavailableError(
                f"no botmemory store at {path!r}: the file does not exist (nothing was created)"
            )
        if not os.path.isdir(parent):
            raise StoreUnavailableError(f"cannot create {path!r}: directory {parent!r} does not exist")
        if not os.access(parent, os.W_OK):
            raise StoreUnavailableError(f"cannot create {path!r}: directory is not writable")
        return
    if not stat.S_ISREG(os.stat(path).st_mode):
        # /dev/null, a FIFO, a socket: SQLite fails on them later with misleading errors
        raise StoreUnavailableError(f"{path!r} is not a regular file; a SQLite store must be one")
    try:
        with open(path, "rb") as f:
            header = f.read(len(_HEADER))
    except OSError as exc:
        raise StoreUnavailableError(f"cannot read {path!r}: {exc}") from exc
    if not header:
        if not create:
            raise StoreUnavailableError(f"no botmemory store at {path!r}: the file is empty (nothing was created)")
        return  # a 0-byte file becomes a botmemory database
    if header != _HEADER:
        raise StoreUnavailableError(f"{path!r} is not a SQLite database; refusing to touch it")
    if not os.access(path, os.W_OK):
        raise StoreUnavailableError(f"{path!r} is read-only")
    # immutable=1 reads without locks and creates no -wal/-shm/-journal files;
    # a live WAL needs a normal read-only open to be seen.
    mode = "ro" if os.path.exists(path + "-wal") else "ro&immutable=1"
    uri = "file:" + _uri_path(path) + "?mode=" + mode
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=5)
        try:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            applied = 0
            if _MIGRATIONS_TABLE in tables:
                applied = conn.execute(f"SELECT coalesce(max(version), 0) FROM {_MIGRATIONS_TABLE}").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise StoreUnavailableError(f"cannot open {path!r} as SQLite: {exc}") from exc
    if not create and _MIGRATIONS_TABLE not in tables:
        raise StoreUnavailableError(f"no botmemory store at {path!r}: the database has no botmemory schema")
    if _MIGRATIONS_TABLE not in tables and {t for t in tables if not t.startswith("sqlite_")}:
        raise StoreUnavailableError(
            f"{path!r} is a SQLite database with other tables and no botmemory schema; refusing to touch it"
        )
    if applied > len(MIGRATIONS):
        raise StoreUnavailableError(
            f"{path!r} has schema version {applied}, newer than this botmemory ({len(MIGRATIONS)}); upgrade botmemory"
        )


def _uri_path(path: str) -> str:
    from urllib.parse import quote

    return quote(os.path.abspath(path))


def _migrate(conn: sqlite3.Connection, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            break
        except sqlite3.OperationalError as exc:
            # Turning a new file into WAL takes an exclusive lock, and when
            # processes opening the same new file at once each hold a shared
            # one, SQLite answers "locked" at once instead of waiting (its busy
            # handler would deadlock): wait here, up to the store's timeout.
            if not _is_busy(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.005)
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {_MIGRATIONS_TABLE} "
            "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
        )
        applied = conn.execute(f"SELECT coalesce(max(version), 0) FROM {_MIGRATIONS_TABLE}").fetchone()[0]
        if applied > len(MIGRATIONS):
            raise StoreUnavailableError(f"schema version {applied} is newer than this botmemory ({len(MIGRATIONS)})")
        for version, (name, sql) in enumerate(MIGRATIONS, start=1):
            if version <= applied:
                continue
            for statement in sql.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(
                f"INSERT INTO {_MIGRATIONS_TABLE} (version, name, applied_at) VALUES (?, ?, ?)",
                (version, name, time.time()),
            )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


class SQLiteBackend(Backend):
    """SQLite file shared by any number of threads and processes."""

    name = "sqlite"
    loop_bound = False

    def __init__(self, path: str, *, timeout: float = 30.0, synchronous: str = "normal", create: bool = True) -> None:
        self.path = path
        self.create = create
        self.timeout = timeout
        self.synchronous = synchronous
        self._writer: _Writer | None = None
        self._reader: sqlite3.Connection | None = None
        self._reader_lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._closed = False
        # Inline writes: see _write.
        self._inline: sqlite3.Connection | None = None
        self._inline_lock = threading.Lock()
        self._pending: list[_Job] = []
        self._pending_lock = threading.Lock()
        self._pending_loop: asyncio.AbstractEventLoop | None = None
        self._inline_commits = 0

    @classmethod
    async def open(
        cls, path: str, *, timeout: float = 30.0, synchronous: str = "normal", create: bool = True
    ) -> SQLiteBackend:
        """Check, create (unless ``create=False``) or migrate the file at ``path`` and start the writer."""
        backend = cls(path, timeout=timeout, synchronous=synchronous, create=create)
        await asyncio.to_thread(backend._open_sync)
        return backend

    def _open_sync(self) -> None:
        _check_file(self.path, self.create)
        existed = os.path.exists(self.path)
        try:
            writer = _Writer(self.path, self.timeout, self.synchronous)
        except sqlite3.Error as exc:
            raise _translate(exc, "open") from exc
        try:
            _migrate(writer.conn, self.timeout)
            reader = sqlite3.connect(self.path, timeout=0, isolation_level=None, check_same_thread=False)
            reader.execute("PRAGMA query_only = ON")
            # Zero busy timeout: a taken write lock sends the write to the
            # writer thread instead of waiting; no auto-checkpoint (its fsync
            # would run on the caller's thread): the writer checkpoints.
            # With synchronous=FULL every commit fsyncs: then all writes go to
            # the writer thread, where group commit shares one fsync.
            inline = None
            if self.synchronous == "normal":
                inline = _connect(self.path, 0)
                inline.execute("PRAGMA wal_autocheckpoint = 0")
        except BaseException as exc:
            writer.conn.close()
            # A new file is removed again, unless another process holds it (it is creating it too)
            if not existed and not _is_busy(exc):
                for suffix in ("", "-wal", "-shm", "-journal"):
                    try:
                        os.unlink(self.path + suffix)
                    except OSError:
                        pass
            if isinstance(exc, sqlite3.Error):
                raise _translate(exc, "open") from exc
            raise
        self._writer = writer
        self._reader = reader
        self._inline = inline
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="botmemory-sqlite-reader")
        writer.start()

    # -- plumbing ----------------------------------------------------------
    def _write(
        self, fn: Callable[[sqlite3.Connection], T], single: bool = False, inline: bool = True
    ) -> asyncio.Future[T]:
        """Queue a write; its future resolves once it is committed.

        Short writes (``inline``) issued in one turn of the event loop are
        committed together on the caller's thread right after that turn,
        when the write lock is free at once: WAL commits with
        ``synchronous=NORMAL`` do not fsync and checkpoints are left to the
        writer thread, so nothing waits there for a lock, a busy database
        or an fsync, and no thread hop is paid. When the lock is taken (the
        writer thread or another process is writing), the batch goes to the
        writer thread, which waits for the lock with the busy handler.
        Long writes (prefix deletes, purges, batches) always go to the writer.
        """
        writer = self._writer
        if writer is None or self._closed:
            raise StoreUnavailableError("the SQLite store is closed")
        loop = asyncio.get_running_loop()
        job = _Job(fn, loop, single)
        if inline and self._inline is not None:
            # The lock matters only when two threads' loops share this store
            # (the sync facade's caller-driven loop beside its loop thread).
            with self._pending_lock:
                if self._pending_loop is loop or not self._pending:
                    self._pending.append(job)
                    if len(self._pending) == 1:
                        self._pending_loop = loop
                        loop.call_soon(self._flush)
                    return job.future
        writer.jobs.put(job)
        return job.future

    def _flush(self) -> None:
        with self._pending_lock:
            batch, self._pending = self._pending, []
            self._pending_loop = None
        if not batch:
            return
        writer, conn = self._writer, self._inline
        if writer is None or conn is None:
            for job in batch:
                job.error = StoreUnavailableError("the SQLite store is closed")
            _deliver(batch)
            return
        done = False
        if not writer.busy and writer.jobs.empty() and self._inline_lock.acquire(blocking=False):
            try:
                done = _run_batch(conn, batch, yield_on_busy=True)
            finally:
                self._inline_lock.release()
        if not done:
            for job in batch:
                writer.jobs.put(job)
            return
        _deliver(batch)
        self._inline_commits += 1
        if self._inline_commits >= _CHECKPOINT_EVERY:
            self._inline_commits = 0
            writer.jobs.put(_CHECKPOINT)

    def _pooled_conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA query_only = ON")
            self._local.conn = conn
        return conn

    def _read_in_pool(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        try:
            return fn(self._pooled_conn())
        except sqlite3.Error as exc:
            raise _translate(exc, "read") from exc

    @overload
    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...

    @overload
    async def _read(self, fn: Callable[[sqlite3.Connection, tuple[Any, ...]], T], args: tuple[Any, ...]) -> T: ...

    async def _read(self, fn: Callable[..., T], args: tuple[Any, ...] | None = None) -> T:
        """Run ``fn(conn)``, or ``fn(conn, args)``: the hottest reads build no closure."""
        reader = self._reader
        if reader is None or self._closed:
            raise StoreUnavailableError("the SQLite store is closed")
        if self._reader_lock.acquire(blocking=False):
            try:
                return fn(reader) if args is None else fn(reader, args)
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise _translate(exc, "read") from exc
            except sqlite3.Error as exc:
                raise _translate(exc, "read") from exc
            finally:
                self._reader_lock.release()
        assert self._pool is not None
        if args is not None:
            fn = functools.partial(_call_with, fn, args)
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._read_in_pool, fn)

    # -- reads -------------------------------------------------------------
    async def get(self, ns: str, key: str, now: float) -> Row | None:
        return await self._read(_get_row, (ns, key, now))

    async def get_many(self, ns: str, keys: Sequence[str], now: float) -> list[Row]:
        keys = list(dict.fromkeys(keys))

        def q(conn: sqlite3.Connection) -> list[Row]:
            out: list[Row] = []
            for chunk, marks in _chunks(keys):
                out.extend(
                    _row(r)
                    for r in conn.execute(
                        "SELECT key, value, version, expires_at, modified_at FROM kv "
                        f"WHERE ns = ? AND key IN ({marks}) AND {_LIVE}",
                        (ns, *chunk, now),
                    )
                )
            return out

        return await self._read(q) if keys else []

    async def read_many(self, keys: Sequence[tuple[str, str]], now: float) -> list[tuple[str, Row]]:
        q = _read_many_query(keys, now)
        return await self._read(q) if keys else []

    async def acquire_and_read(
        self, name: str, owner: str, ttl: float, keys: Sequence[tuple[str, str]], now: float
    ) -> tuple[LockLease | None, list[tuple[str, Row]]]:
        read = _read_many_query(keys, now)

        def job(conn: sqlite3.Connection) -> tuple[LockLease | None, list[tuple[str, Row]]]:
            # one write job: the lock row and the reads in one transaction
            lease = _acquire(conn, name, owner, ttl, now)
            return (None, []) if lease is None else (lease, read(conn) if keys else [])

        return await self._write(job)
    async def scan(
        self, ns: str, prefix: str, after: str | None, limit: int, now: float, *, expired: bool = False
    ) -> list[str]:
        if expired:
            return [row.key for row in await self.scan_expired(ns, prefix, now, limit)]
        sql, params = _range(ns, prefix, after)

        def q(conn: sqlite3.Connection) -> list[str]:
            return [
                r[0]
                for r in conn.execute(
                    f"SELECT key FROM kv WHERE {sql} AND {_LIVE} ORDER BY key LIMIT ?", (*params, now, limit)
                )
            ]

        return await self._read(q)

    async def count(self, ns: str, now: float) -> int:
        return await self._read(lambda conn: _count(conn, ns, now))

    async def namespaces(self) -> list[str]:
        return await self._read(lambda conn: [r[0] for r in conn.execute("SELECT DISTINCT ns FROM kv ORDER BY ns")])

    async def scan_expired(self, ns: str, prefix: str, now: float, limit: int) -> list[Row]:
        sql, params = _range(ns, prefix, None)

        def q(conn: sqlite3.Connection) -> list[Row]:
            return [
                _row(r)
                for r in conn.execute(
                    "SELECT key, value, version, expires_at, modified_at FROM kv "
                    f"WHERE {sql} AND expires_at <= ? ORDER BY expires_at, key LIMIT ?",
                    (*params, now, limit),
                )
            ]

        return await self._read(q)

    # -- writes ------------------------------------------------------------
    async def put(
        self, ns: str, key: str, value: bytes, expires_at: float | Keep | None, now: float, max_keys: int | None
    ) -> int:
        if max_keys is not None:
            return await _derived_put(self, ns, key, value, expires_at, now, max_keys)
        keep = expires_at is KEEP
        # bytearray and int, not bytes and bool: sqlite3 binds those two
        # without its adapter lookup, which costs more than copying the value.
        params = (ns, key, bytearray(value), None if keep else expires_at, now, int(keep))
        version: int = await self._write(lambda conn: conn.execute(_PUT, params).fetchone()[0], single=True)
        return version

    async def mutate(self, ns: str, key: str, fn: MutateFn, now: float, max_keys: int | None) -> int | None:
        def job(conn: sqlite3.Connection) -> int | None:
            r = conn.execute(_SELECT_ROW, (ns, key)).fetchone()
            current = None if r is None or (r[3] is not None and r[3] <= now) else _row(r)
            mutation = fn(current)
            if mutation is None:
                return None
            if current is None:
                _check_quota(conn, ns, 1, now, max_keys)
            expires = mutation.expires_at
            if isinstance(expires, Keep):
                expires = None if current is None else current.expires_at
            if not mutation.bump and current is not None:
                conn.execute("UPDATE kv SET expires_at = ? WHERE ns = ? AND key = ?", (expires, ns, key))
                return current.version
            version = 1 if current is None else current.version + 1
            conn.execute(_UPSERT, (ns, key, mutation.value, version, expires, now))
            return version

        return await self._write(job)

    async def write_batch(self, writes: Sequence[BatchWrite], now: float, release: tuple[str, str] | None) -> bool:
        writes = list(writes)

        def job(conn: sqlite3.Connection) -> bool:
            # one job: one transaction (or a savepoint in a group); every check before any write
            rows = []
            for w in writes:
                r = conn.execute(_SELECT_VERSION, (w.ns, w.key)).fetchone()
                live = r is not None and (r[1] is None or r[1] > now)
                if (r[0] if live else 0) != w.expected:
                    return False
                rows.append(r[1] if live else None)
            for w, current_exp in zip(writes, rows, strict=True):
                exp = current_exp if isinstance(w.expires_at, Keep) else w.expires_at
                conn.execute(_UPSERT, (w.ns, w.key, w.value, w.version, exp, now))
            if release is not None:
                conn.execute("UPDATE locks SET owner = NULL WHERE name = ? AND owner = ?", release)
            return True

        return await self._write(job)

    async def put_many(
        self, ns: str, items: Sequence[tuple[str, bytes]], expires_at: float | None, now: float, max_keys: int | None
    ) -> list[int]:
        items = list(items)

        def job(conn: sqlite3.Connection) -> list[int]:
            if max_keys is not None:
                keys = list(dict.fromkeys(k for k, _ in items))
                live = 0
                for chunk, marks in _chunks(keys):
                    live += conn.execute(
                        f"SELECT count(*) FROM kv WHERE ns = ? AND key IN ({marks}) AND {_LIVE}", (ns, *chunk, now)
                    ).fetchone()[0]
                _check_quota(conn, ns, len(keys) - live, now, max_keys)
            return [conn.execute(_PUT, (ns, k, bytearray(v), expires_at, now, 0)).fetchone()[0] for k, v in items]

        return await self._write(job, inline=len(items) <= _INLINE_MAX)

    async def restore(self, ns: str, rows: Sequence[Row]) -> None:
        params = [(ns, r.key, r.value, r.version, r.expires_at, r.modified_at) for r in rows]

        def job(conn: sqlite3.Connection) -> None:
            conn.executemany(_UPSERT, params)

        if params:
            await self._write(job, inline=False)

    async def replace_namespaces(self, moves: Mapping[str, str | None]) -> None:
        pairs = check_moves(moves)

        def job(conn: sqlite3.Connection) -> None:
            # one job: one transaction (a savepoint inside a group), all moves or none
            for target, source in pairs:
                conn.execute("DELETE FROM kv WHERE ns = ?", (target,))
                if source is not None:
                    conn.execute("UPDATE kv SET ns = ? WHERE ns = ?", (target, source))

        await self._write(job, inline=False)

    async def delete(self, ns: str, keys: Sequence[str], now: float, *, prefix: str | None = None) -> int:
        if prefix is not None:
            return await self.delete_prefix(ns, prefix, now)
        keys = list(dict.fromkeys(keys))

        def job(conn: sqlite3.Connection) -> int:
            live = 0
            for chunk, marks in _chunks(keys):
                for (exp,) in conn.execute(
                    f"DELETE FROM kv WHERE ns = ? AND key IN ({marks}) RETURNING expires_at", (ns, *chunk)
                ).fetchall():
                    live += exp is None or exp > now
            return live

        return await self._write(job, inline=len(keys) <= _INLINE_MAX) if keys else 0

    async def delete_prefix(self, ns: str, prefix: str, now: float) -> int:
        sql, params = _range(ns, prefix, None)

        def job(conn: sqlite3.Connection) -> int:
            live: int = conn.execute(f"SELECT count(*) FROM kv WHERE {sql} AND {_LIVE}", (*params, now)).fetchone()[0]
            conn.execute(f"DELETE FROM kv WHERE {sql}", params)
            return live

        return await self._write(job, inline=False)

    async def set_expiry(self, ns: str, key: str, expires_at: float | None, now: float) -> bool:
        extra = " AND expires_at IS NOT NULL" if expires_at is None else ""

        def job(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                f"UPDATE kv SET expires_at = ? WHERE ns = ? AND key = ? AND {_LIVE}{extra}", (expires_at, ns, key, now)
            )
            return cur.rowcount > 0

        return await self._write(job)

    async def purge_expired(
        self, now: float, limit: int, ns: str | None = None, keep: Sequence[tuple[str, str]] = ()
    ) -> list[Purged]:
        if ns is None:
            # a range test, not LIKE: "_" is a LIKE wildcard
            where = "expires_at <= ? AND NOT (ns >= ? AND ns < ?)"
            params: tuple[Any, ...] = (now, PRIVATE_NS_PREFIX, prefix_upper_bound(PRIVATE_NS_PREFIX))
        else:
            where = "expires_at <= ? AND ns = ?"
            params = (now, ns)
        for kept_ns, kept_prefix in keep:  # legal hold: leave these rows alone
            kept_sql, kept_params = _range(kept_ns, kept_prefix, None)
            where += f" AND NOT ({kept_sql})"
            params += kept_params
        params += (limit,)

        doomed = f"SELECT ns, key, expires_at FROM kv WHERE {where} ORDER BY expires_at LIMIT ?"

        def job(conn: sqlite3.Connection) -> list[Purged]:
            # One row out, not one per purged row: each row fetched is a GIL
            # hand-off for this thread, and while the event loop is busy each
            # can wait for the interpreter's switch interval (5 ms); a batch
            # of hundreds then took seconds. Same transaction, same rows.
            (listed,) = conn.execute(
                f"SELECT json_group_array(json_array(ns, key, printf('%!.17g', expires_at))) FROM ({doomed})",
                params,
            ).fetchone()
            found = orjson.loads(listed)
            deleted = conn.execute(
                f"DELETE FROM kv WHERE (ns, key) IN (SELECT ns, key FROM ({doomed}))", params
            ).rowcount
            if deleted != len(found):  # cannot happen under the write lock; never audit what was not deleted
                raise StoreError(f"SQLite purge: listed {len(found)} rows, deleted {deleted}")
            return sorted((Purged(ns_, key, float(exp)) for ns_, key, exp in found), key=lambda p: p.expires_at)

        return await self._write(job, inline=False)

    # -- locks -------------------------------------------------------------
    async def acquire_lock(self, name: str, owner: str, ttl: float, now: float) -> LockLease | None:
        return await self._write(lambda conn: _acquire(conn, name, owner, ttl, now))

    async def release_lock(self, name: str, owner: str) -> bool:
        def job(conn: sqlite3.Connection) -> bool:
            # Keep the row so the next grant's fencing token is larger.
            cur = conn.execute("UPDATE locks SET owner = NULL WHERE name = ? AND owner = ?", (name, owner))
            return cur.rowcount > 0

        return await self._write(job)

    # -- lifecycle ---------------------------------------------------------
    async def checkpoint(self) -> None:
        """Copy the WAL into the database and truncate it (used after erasure)."""
        await self._write(lambda conn: None, inline=False)

        def job() -> None:
            conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
            try:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                conn.close()

        await asyncio.to_thread(job)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._pending and self._pending_loop is asyncio.get_running_loop():
            # writes already accepted on this loop are committed, not dropped
            # (another loop's pending writes fail as closed when it flushes them)
            self._flush()
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.jobs.put(None)
            await asyncio.to_thread(writer.join)
        with self._inline_lock:
            if self._inline is not None:
                self._inline.close()
                self._inline = None
        with self._reader_lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "path": self.path, "synchronous": self.synchronous}


_GET_ROW = _SELECT_ROW + " AND " + _LIVE


def _get_row(conn: sqlite3.Connection, args: tuple[Any, ...]) -> Row | None:
    """One live row by (ns, key, now)."""
    r = conn.execute(_GET_ROW, args).fetchone()
    return None if r is None else Row(r[0], r[1], r[2], r[3], r[4])


def _call_with(
    fn: Callable[[sqlite3.Connection, tuple[Any, ...]], T], args: tuple[Any, ...], conn: sqlite3.Connection
) -> T:
    return fn(conn, args)


def _range(ns: str, prefix: str, after: str | None) -> tuple[str, tuple[Any, ...]]:
    """An index-friendly WHERE clause for keys under a literal prefix (never LIKE/GLOB)."""
    sql = "ns = ?"
    params: list[Any] = [ns]
    if after is not None and after >= prefix:
        sql += " AND key > ?"
        params.append(after)
    elif prefix:
        sql += " AND key >= ?"
        params.append(prefix)
    bound = prefix_upper_bound(prefix)
    if bound is not None:
        sql += " AND key < ?"
        params.append(bound)
    return sql, tuple(params)


def _acquire(conn: sqlite3.Connection, name: str, owner: str, ttl: float, now: float) -> LockLease | None:
    """Take (or renew) lock ``name`` for ``owner`` inside the caller's write transaction."""
    r = conn.execute("SELECT owner, token, expires_at FROM locks WHERE name = ?", (name,)).fetchone()
    if r is not None and r[0] is not None and r[2] > now:
        if r[0] != owner:
            return None
        token = r[1]
    else:
        token = (r[1] if r is not None else 0) + 1
    conn.execute(
        "INSERT INTO locks (name, owner, token, expires_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, token = excluded.token, "
        "expires_at = excluded.expires_at",
        (name, owner, token, now + ttl),
    )
    return LockLease(name, owner, token, now + ttl)


def _read_many_query(
    keys: Sequence[tuple[str, str]], now: float
) -> Callable[[sqlite3.Connection], list[tuple[str, Row]]]:
    """The reads of ``read_many``: one primary-key search per key, a SELECT per namespace joined by UNION ALL.

    (A row value ``(ns, key) IN (VALUES …)`` would make SQLite scan the whole table.)
    """
    by_ns: dict[str, list[str]] = {}
    for ns, key in dict.fromkeys(keys):
        by_ns.setdefault(ns, []).append(key)
    parts: list[tuple[str, list[Any]]] = []
    for ns, names in by_ns.items():
        for chunk, marks in _chunks(names):
            sql = f"SELECT ns, {_COLUMNS} FROM kv WHERE ns = ? AND key IN ({marks}) AND {_LIVE}"
            parts.append((sql, [ns, *chunk, now]))

    def q(conn: sqlite3.Connection) -> list[tuple[str, Row]]:
        out: list[tuple[str, Row]] = []
        for i in range(0, len(parts), 8):
            group = parts[i : i + 8]
            sql = " UNION ALL ".join(part for part, _ in group)
            out.extend((r[0], _row(r[1:])) for r in conn.execute(sql, [v for _, ps in group for v in ps]))
        return out

    return q


def _count(conn: sqlite3.Connection, ns: str, now: float) -> int:
    n: int = conn.execute(f"SELECT count(*) FROM kv WHERE ns = ? AND {_LIVE}", (ns, now)).fetchone()[0]
    return n


def _check_quota(conn: sqlite3.Connection, ns: str, new: int, now: float, max_keys: int | None) -> None:
    if max_keys is not None and new > 0 and _count(conn, ns, now) + new > max_keys:
        raise QuotaExceededError(f"{ns!r} would hold more than {max_keys} keys")


async def open_backend(url: str, **options: Any) -> SQLiteBackend:
    """``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``.

    Options: ``timeout`` (seconds to wait for the write lock, default 30)
    and ``synchronous`` (``"normal"``, the default: WAL commits survive a
    crash of the process but the last ones may be lost on power loss, and
    short writes commit on the caller's thread; ``"full"``: every commit is
    fsynced, on the writer thread, where group commit shares one fsync among
    the writes waiting), also as URL queries ``sqlite:///x.db?timeout=5&synchronous=full``
    (an option given here wins over the URL).
    """
    from ..errors import InvalidInputError
    from .urlquery import positive_seconds, seconds, take_query_options, text

    url = take_query_options(url, {"timeout": seconds, "synchronous": text}, options, backend="SQLite")
    rest = url[len("sqlite://") :]
    if not rest.startswith("/") or len(rest) < 2 or "?" in rest or "#" in rest:
        raise InvalidInputError(
            f"bad SQLite URL {url!r}: use sqlite:///relative/path.db or sqlite:////absolute/path.db"
        )
    timeout = options.pop("timeout", 30.0)
    synchronous = options.pop("synchronous", "normal")
    create = options.pop("create", True)
    if options:
        raise InvalidInputError(f"unknown SQLite options: {sorted(options)}")
    if synchronous not in SYNCHRONOUS:
        raise InvalidInputError(f"synchronous must be one of {SYNCHRONOUS}, got {synchronous!r}")
    timeout = positive_seconds("timeout", timeout)
    path = rest[1:]
    if path == ":memory:" or path.startswith("file:"):
        # each SQLite connection would get its own in-memory database, or read the
        # path as a URI; the writer thread and the readers must share one file
        raise InvalidInputError(
            f"bad SQLite URL {url!r}: give a file path; for a store that lives in memory use memory://"
        )
    return await SQLiteBackend.open(path, timeout=timeout, synchronous=synchronous, create=create is not False)
