"""The rows: one small client per store measured, and the registry of them.

A client does one ``set(key)`` (write ``VALUE`` with a one-hour expiry) or
one ``get(key)`` (read and decode it) in the way a user of that store
would; ``is_async`` tells whether those return awaitables. Raw drivers use
exactly the schema, pragmas and upsert of botmemory's SQLite backend and
encode/decode JSON with orjson, so the rows differ only in the layer under
test.

To add a row (PostgreSQL, Redis, ...), write a client with ``set``, ``get``,
``fill`` and ``close`` and register it::

    register(botmemory_target("bm-postgres-async", "botmemory PostgreSQL (async)", "postgres",
                              lambda tmp: POSTGRES_URL, requires=("psycopg",)))
"""

from __future__ import annotations

import importlib.util
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import orjson

import botmemory
from botmemory.backends.sqlite import MIGRATIONS

from .config import EXPIRY_SECONDS, NAMESPACE, VALUE

__all__ = ["TARGETS", "KVClient", "KVTarget", "botmemory_target", "missing_requirement", "register", "target"]

_FILL_CHUNK = 1_000

#: The raw drivers' write: the same upsert a hand-written SQLite KV would use.
RAW_UPSERT = (
    "INSERT INTO kv (ns, key, value, version, expires_at, modified_at) VALUES (?, ?, ?, 1, ?, ?) "
    "ON CONFLICT (ns, key) DO UPDATE SET value = excluded.value, version = kv.version + 1, "
    "expires_at = excluded.expires_at, modified_at = excluded.modified_at"
)
#: The raw drivers' read, with the same live-row filter as the backend.
RAW_SELECT = "SELECT value FROM kv WHERE ns = ? AND key = ? AND (expires_at IS NULL OR expires_at > ?)"
_PRAGMAS = ("PRAGMA journal_mode = WAL", "PRAGMA synchronous = NORMAL", "PRAGMA secure_delete = ON")


class KVClient(Protocol):
    """One open store, ready to time."""

    is_async: bool

    def set(self, key: str) -> Any:
        """Write ``VALUE`` at ``key`` with a one-hour expiry (an awaitable when ``is_async``)."""

    def get(self, key: str) -> Any:
        """Read and decode ``key`` (an awaitable when ``is_async``)."""

    async def fill(self, keys: Sequence[str]) -> None:
        """Write ``VALUE`` at every key, as fast as the store allows (untimed)."""

    async def close(self) -> None:
        """Release everything; the harness deletes the directory afterwards."""


Opener = Callable[[Path], Awaitable[KVClient]]


@dataclass(frozen=True)
class KVTarget:
    """A store to measure.

    Attributes:
        id: short name used by ``--only``, goals and the JSON output.
        label: what the table shows.
        family: the comparison group ("memory", "sqlite", ...).
        open: opens a fresh client whose files live under the given directory.
        requires: modules that must be importable (optional deps); rows are
            skipped with a note when one is missing.
        url: for botmemory rows, the store URL under a directory (the
            profile opens the same store to time each layer).
        sync: whether the row goes through the blocking facade.
    """

    id: str
    label: str
    family: str
    open: Opener
    requires: tuple[str, ...] = ()
    url: Callable[[Path], str] | None = None
    sync: bool = False

    @property
    def ours(self) -> bool:
        """Whether this row runs botmemory code (the profile looks only at these)."""
        return self.url is not None


TARGETS: dict[str, KVTarget] = {}


def register(spec: KVTarget) -> KVTarget:
    """Add a row; ids are unique."""
    if spec.id in TARGETS:
        raise ValueError(f"duplicate benchmark target {spec.id!r}")
    TARGETS[spec.id] = spec
    return spec


def target(target_id: str) -> KVTarget:
    """The registered target called ``target_id``."""
    return TARGETS[target_id]


def missing_requirement(spec: KVTarget) -> str | None:
    """The first optional module the row needs that is not installed, or None."""
    for module in spec.requires:
        if importlib.util.find_spec(module) is None:
            return module
    return None


# -- botmemory ---------------------------------------------------------------
class _BotmemoryAsync:
    is_async = True

    def __init__(self, store: botmemory.Store) -> None:
        self.store = store
        self.kvs = store.bot(NAMESPACE).kvs

    def set(self, key: str) -> Awaitable[int]:
        return self.kvs.set(key, VALUE, expiry=EXPIRY_SECONDS)

    def get(self, key: str) -> Awaitable[Any]:
        return self.kvs.get(key)

    async def fill(self, keys: Sequence[str]) -> None:
        for i in range(0, len(keys), _FILL_CHUNK):
            await self.kvs.set_many(dict.fromkeys(keys[i : i + _FILL_CHUNK], VALUE), expiry=EXPIRY_SECONDS)

    async def close(self) -> None:
        await self.store.close()


class _BotmemorySync:
    is_async = False
    plain_thread = True  # timed from a thread with no running event loop, as scripts call it

    def __init__(self, store: botmemory.SyncStore) -> None:
        self.store = store
        self.kvs = store.bot(NAMESPACE).kvs

    def set(self, key: str) -> int:
        version: int = self.kvs.set(key, VALUE, expiry=EXPIRY_SECONDS)
        return version

    def get(self, key: str) -> Any:
        return self.kvs.get(key)

    async def fill(self, keys: Sequence[str]) -> None:
        for i in range(0, len(keys), _FILL_CHUNK):
            self.kvs.set_many(dict.fromkeys(keys[i : i + _FILL_CHUNK], VALUE), expiry=EXPIRY_SECONDS)

    async def close(self) -> None:
        self.store.close()


def botmemory_async(url: Callable[[Path], str]) -> Opener:
    """An opener for ``botmemory.open(url(tmp_dir))``."""

    async def open_(tmp: Path) -> KVClient:
        return _BotmemoryAsync(await botmemory.open(url(tmp)))

    return open_


def botmemory_sync(url: Callable[[Path], str]) -> Opener:
    """An opener for ``botmemory.open_sync(url(tmp_dir))`` (the blocking facade)."""

    async def open_(tmp: Path) -> KVClient:
        return _BotmemorySync(botmemory.open_sync(url(tmp)))

    return open_


def botmemory_target(
    target_id: str,
    label: str,
    family: str,
    url: Callable[[Path], str],
    *,
    sync: bool = False,
    requires: tuple[str, ...] = (),
) -> KVTarget:
    """A row that runs botmemory's KVS on ``url(tmp_dir)``, async or through ``open_sync``."""
    opener = botmemory_sync(url) if sync else botmemory_async(url)
    return KVTarget(target_id, label, family, opener, requires, url=url, sync=sync)


def _memory_url(tmp: Path) -> str:
    return "memory://"


def _sqlite_url(tmp: Path) -> str:
    return f"sqlite:///{tmp / 'botmemory.db'}"  # tmp is absolute: sqlite:////abs/path


# -- raw SQLite drivers ------------------------------------------------------
def _schema_statements() -> list[str]:
    (name, sql) = MIGRATIONS[0]
    assert name == "kv"
    return [s for s in sql.split(";") if s.strip()]


class _RawSQLite:
    """Python's sqlite3, autocommit: one upsert per write, committed."""

    is_async = False

    def __init__(self, path: Path, synchronous: str = "NORMAL") -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        for pragma in _PRAGMAS:
            self.conn.execute(pragma.replace("NORMAL", synchronous))
        for statement in _schema_statements():
            self.conn.execute(statement)

    def set(self, key: str) -> None:
        now = time.time()
        self.conn.execute(RAW_UPSERT, (NAMESPACE, key, orjson.dumps(VALUE), now + EXPIRY_SECONDS, now))

    def get(self, key: str) -> Any:
        row = self.conn.execute(RAW_SELECT, (NAMESPACE, key, time.time())).fetchone()
        return None if row is None else orjson.loads(row[0])

    async def fill(self, keys: Sequence[str]) -> None:
        now = time.time()
        data = orjson.dumps(VALUE)
        self.conn.execute("BEGIN")
        self.conn.executemany(RAW_UPSERT, ((NAMESPACE, k, data, now + EXPIRY_SECONDS, now) for k in keys))
        self.conn.execute("COMMIT")

    async def close(self) -> None:
        self.conn.close()


async def _open_raw_sqlite(tmp: Path) -> KVClient:
    return _RawSQLite(tmp / "raw.db")


async def _open_raw_sqlite_full(tmp: Path) -> KVClient:
    return _RawSQLite(tmp / "raw-full.db", "FULL")


def _sqlite_full_url(tmp: Path) -> str:
    return f"sqlite:///{tmp / 'botmemory-full.db'}?synchronous=full"


class _AioSQLite:
    """aiosqlite, autocommit: one upsert per write, committed, one thread hop per call."""

    is_async = True

    def __init__(self, db: Any) -> None:
        self.db = db

    async def set(self, key: str) -> None:
        now = time.time()
        await self.db.execute(RAW_UPSERT, (NAMESPACE, key, orjson.dumps(VALUE), now + EXPIRY_SECONDS, now))

    async def get(self, key: str) -> Any:
        # execute_fetchall: one hop to the driver thread, not two (execute + fetchone)
        rows = await self.db.execute_fetchall(RAW_SELECT, (NAMESPACE, key, time.time()))
        return orjson.loads(rows[0][0]) if rows else None

    async def fill(self, keys: Sequence[str]) -> None:
        now = time.time()
        data = orjson.dumps(VALUE)
        await self.db.execute("BEGIN")
        await self.db.executemany(RAW_UPSERT, [(NAMESPACE, k, data, now + EXPIRY_SECONDS, now) for k in keys])
        await self.db.execute("COMMIT")

    async def close(self) -> None:
        await self.db.close()


async def _open_aiosqlite(tmp: Path) -> KVClient:
    import aiosqlite

    db = await aiosqlite.connect(tmp / "aio.db", isolation_level=None)
    for pragma in _PRAGMAS:
        await db.execute(pragma)
    for statement in _schema_statements():
        await db.execute(statement)
    return _AioSQLite(db)


# -- LangGraph ---------------------------------------------------------------
_LG_NAMESPACE = ("bots", NAMESPACE)


class _LangGraphSync:
    """LangGraph's InMemoryStore (no TTL support there: it stores no expiry)."""

    is_async = False

    def __init__(self) -> None:
        from langgraph.store.memory import InMemoryStore

        self.store = InMemoryStore()

    def set(self, key: str) -> None:
        self.store.put(_LG_NAMESPACE, key, VALUE)

    def get(self, key: str) -> Any:
        item = self.store.get(_LG_NAMESPACE, key)
        return None if item is None else item.value

    async def fill(self, keys: Sequence[str]) -> None:
        from langgraph.store.base import PutOp

        for i in range(0, len(keys), _FILL_CHUNK):
            self.store.batch([PutOp(_LG_NAMESPACE, k, VALUE) for k in keys[i : i + _FILL_CHUNK]])

    async def close(self) -> None:
        return None


class _LangGraphAsync(_LangGraphSync):
    is_async = True

    async def set(self, key: str) -> None:  # type: ignore[override]
        await self.store.aput(_LG_NAMESPACE, key, VALUE)

    async def get(self, key: str) -> Any:
        item = await self.store.aget(_LG_NAMESPACE, key)
        return None if item is None else item.value


async def _open_langgraph(tmp: Path) -> KVClient:
    return _LangGraphSync()


async def _open_langgraph_async(tmp: Path) -> KVClient:
    return _LangGraphAsync()


# -- the registry ------------------------------------------------------------
register(botmemory_target("bm-memory-async", "botmemory memory (async)", "memory", _memory_url))
register(botmemory_target("bm-memory-sync", "botmemory memory (open_sync)", "memory", _memory_url, sync=True))
register(KVTarget("lg-memory-sync", "LangGraph InMemoryStore (sync)", "memory", _open_langgraph, ("langgraph",)))
register(
    KVTarget("lg-memory-async", "LangGraph InMemoryStore (async)", "memory", _open_langgraph_async, ("langgraph",))
)
register(botmemory_target("bm-sqlite-async", "botmemory SQLite (async)", "sqlite", _sqlite_url))
register(botmemory_target("bm-sqlite-sync", "botmemory SQLite (open_sync)", "sqlite", _sqlite_url, sync=True))
register(KVTarget("raw-sqlite3", "raw sqlite3 autocommit (sync)", "sqlite", _open_raw_sqlite))
# Durable commits (an fsync each): where group commit has something to share.
register(botmemory_target("bm-sqlite-full-async", "botmemory SQLite synchronous=full (async)", "sqlite-full",
                          _sqlite_full_url))
register(KVTarget("raw-sqlite3-full", "raw sqlite3 synchronous=FULL autocommit (sync)", "sqlite-full",
                  _open_raw_sqlite_full))
register(KVTarget("raw-aiosqlite", "raw aiosqlite autocommit", "sqlite", _open_aiosqlite, ("aiosqlite",)))
