"""The SQLite writer thread (lone writes in autocommit, single-statement jobs in a group) and the read fallback.

A job marked ``single`` runs one statement: alone it runs without
BEGIN/COMMIT, in a group it runs without a savepoint. These tests pin that
the shortcut keeps the group-commit contract: every write that succeeded is
committed, a failing one changes nothing and fails alone, and a locked
database still waits and then times out as ``StoreTimeoutError``.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from botmemory.backends.sqlite import SQLiteBackend
from botmemory.errors import StoreError, StoreTimeoutError

NOW = 1_000_000.0


async def _open(tmp_path: Path, timeout: float = 30.0) -> SQLiteBackend:
    return await SQLiteBackend.open(str(tmp_path / "w.db"), timeout=timeout)


def _rows(path: Path) -> dict[str, bytes]:
    conn = sqlite3.connect(path)
    try:
        return {k: v for k, v in conn.execute("SELECT key, value FROM kv WHERE ns = 'n'")}
    finally:
        conn.close()


def _hold_writer(backend: SQLiteBackend) -> tuple[threading.Event, asyncio.Future[None]]:
    """Keep the writer thread busy until the event is set, so later jobs queue up as one group."""
    release = threading.Event()
    return release, backend._write(lambda conn: release.wait(10))


async def test_lone_put_is_committed_and_versions_count_up(tmp_path: Path) -> None:
    backend = await _open(tmp_path)
    try:
        assert await backend.put("n", "a", b"1", None, NOW, None) == 1
        assert await backend.put("n", "a", b"2", NOW + 60, NOW, None) == 2
        assert not backend._writer.conn.in_transaction  # type: ignore[union-attr]
        assert _rows(tmp_path / "w.db") == {"a": b"2"}  # visible to another connection: committed
    finally:
        await backend.close()


async def test_grouped_puts_commit_together_with_a_failing_single_job_alone_undone(tmp_path: Path) -> None:
    backend = await _open(tmp_path)
    try:
        release, blocker = _hold_writer(backend)
        puts = [asyncio.ensure_future(backend.put("n", f"k{i}", b"v", None, NOW, None)) for i in range(5)]
        # NOT NULL fails: SQLite undoes this one statement and keeps the transaction.
        bad = backend._write(
            lambda conn: conn.execute(
                "INSERT INTO kv (ns, key, value, version, modified_at) VALUES ('n', 'bad', NULL, 1, 0)"
            ),
            single=True,
        )
        more = asyncio.ensure_future(backend.put("n", "k0", b"w", None, NOW, None))
        await asyncio.sleep(0.05)  # every job is queued behind the blocker
        release.set()
        await blocker
        assert await asyncio.gather(*puts) == [1] * 5
        with pytest.raises(StoreError, match="NOT NULL"):
            await bad
        assert await more == 2
        rows = _rows(tmp_path / "w.db")
        assert rows == {"k0": b"w", "k1": b"v", "k2": b"v", "k3": b"v", "k4": b"v"}
    finally:
        await backend.close()


async def test_lone_put_on_a_locked_database_times_out_and_writes_nothing(tmp_path: Path) -> None:
    backend = await _open(tmp_path, timeout=0.2)
    other = sqlite3.connect(tmp_path / "w.db", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreTimeoutError):
            await backend.put("n", "a", b"1", None, NOW, None)
        other.execute("COMMIT")
        assert not backend._writer.conn.in_transaction  # type: ignore[union-attr]
        assert await backend.put("n", "a", b"2", None, NOW, None) == 1  # the failed write left no row
        assert _rows(tmp_path / "w.db") == {"a": b"2"}
    finally:
        other.close()
        await backend.close()


async def test_get_falls_back_to_the_reader_pool_when_the_inline_connection_is_taken(tmp_path: Path) -> None:
    backend = await _open(tmp_path)
    try:
        await backend.put("n", "a", b"1", None, NOW, None)
        with backend._reader_lock:  # as if another thread were reading inline right now
            row = await backend.get("n", "a", NOW)
            missing = await backend.get("n", "b", NOW)
        assert row is not None and (row.key, bytes(row.value), row.version) == ("a", b"1", 1)
        assert missing is None
    finally:
        await backend.close()
