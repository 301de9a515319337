"""Concurrent incr, compare-and-set and path updates lose no update.

Two layers:

- in-process: 64 asyncio tasks on one store, on every backend of the
  ``store`` fixture (``ConcurrencyContract``, shipped in
  ``botmemory.testing.contract`` so other backends run it too);
- multi-process: 8 processes (``spawn``, so nothing is shared but the store
  behind the URL) on one store. ``MULTIPROCESS_BACKENDS`` lists the
  backends (the ``backend_name`` fixture skips, or with CI=true fails,
  when a server is missing); each process opens
  ``botmemory.open(url, **options)`` itself.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import sqlite3
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

import botmemory
from botmemory import VersionConflictError
from botmemory.testing.backends import BACKENDS, POSTGRES_URL, REDIS_URL, open_test_store, unique_suffix
from botmemory.testing.contract import ConcurrencyContract, all_keys

PROCESSES = 8
INCRS_PER_PROCESS = 500
PATH_ROUNDS = 10
WORKER_TIMEOUT = 240.0

# Every backend that can be shared by several processes (memory:// cannot).
MULTIPROCESS_BACKENDS = [b for b in BACKENDS if b != "memory"]


def _target(name: str, tmp_path: Path) -> tuple[str, dict[str, Any]]:
    """The URL and options every process opens for backend ``name``.

    Mirrors ``open_test_store`` with a fixed schema/prefix, so that the
    parent's ``open_test_store`` (which drops it afterwards) and the workers
    see the same data.
    """
    if name == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}", {}
    if name == "postgres":
        return POSTGRES_URL, {"schema": unique_suffix()}
    if name == "redis":
        return REDIS_URL, {"prefix": f"botmemory-test:{unique_suffix()}:"}
    raise ValueError(f"{name} cannot be shared between processes")


@asynccontextmanager
async def _shared_store(name: str, tmp_path: Path) -> AsyncIterator[tuple[botmemory.Store, str, dict[str, Any]]]:
    url, options = _target(name, tmp_path)
    async with open_test_store(name, tmp_path, **options) as store:
        yield store, url, options


# -- workers (module level: spawn pickles them by name) ---------------------------


def _worker(job: str, url: str, options: dict[str, Any], index: int, barrier: Any, results: Any) -> None:
    """Run one job in a fresh process and report ("ok", value) or ("error", type, text)."""
    try:
        value = asyncio.run(_JOBS[job](url, options, index, barrier))
    except BaseException as exc:
        results.put((index, "error", type(exc).__name__, traceback.format_exc()))
    else:
        results.put((index, "ok", value, ""))


async def _incr_job(url: str, options: dict[str, Any], index: int, barrier: Any) -> int:
    async with await botmemory.open(url, **options) as store:
        kvs = store.bot("race").kvs
        await asyncio.to_thread(barrier.wait)
        last = 0
        for _ in range(INCRS_PER_PROCESS):
            last = int(await kvs.incr("counter"))
        return last


async def _cas_job(url: str, options: dict[str, Any], index: int, barrier: Any) -> str:
    async with await botmemory.open(url, **options) as store:
        kvs = store.bot("race").kvs
        await asyncio.to_thread(barrier.wait)
        try:
            version = await kvs.set("slot", f"winner-{index}", if_version=1)
        except VersionConflictError:
            return "conflict"
        return f"won:{version}"


async def _path_job(url: str, options: dict[str, Any], index: int, barrier: Any) -> int:
    async with await botmemory.open(url, **options) as store:
        kvs = store.bot("race").kvs
        await asyncio.to_thread(barrier.wait)
        for round_ in range(PATH_ROUNDS):
            await kvs.set("doc", round_, path=f"f{index}")
        return PATH_ROUNDS


QUOTA = 10


async def _quota_job(url: str, options: dict[str, Any], index: int, barrier: Any) -> int:
    limits = botmemory.Limits(max_keys_per_bot=QUOTA)
    async with await botmemory.open(url, limits=limits, **options) as store:
        kvs = store.bot("race").kvs
        await asyncio.to_thread(barrier.wait)
        created = 0
        for i in range(5):
            try:
                await kvs.set(f"p{index}-{i}", i)
            except botmemory.QuotaExceededError:
                continue
            created += 1
        return created


_JOBS: dict[str, Callable[[str, dict[str, Any], int, Any], Awaitable[Any]]] = {
    "incr": _incr_job,
    "cas": _cas_job,
    "path": _path_job,
    "quota": _quota_job,
}


def _run_processes(job: str, url: str, options: dict[str, Any]) -> dict[int, tuple[str, Any, str]]:
    """Start PROCESSES workers that begin together; their results by index."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(PROCESSES)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(job, url, options, i, barrier, results), daemon=True)
        for i in range(PROCESSES)
    ]
    for p in procs:
        p.start()
    out: dict[int, tuple[str, Any, str]] = {}
    try:
        for _ in range(PROCESSES):
            index, status, value, detail = results.get(timeout=WORKER_TIMEOUT)
            out[index] = (status, value, detail)
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
                p.join()
        results.close()
        results.join_thread()
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    return out


def _errors(out: dict[int, tuple[str, Any, str]]) -> list[str]:
    return [f"process {i}: {value}\n{detail}" for i, (status, value, detail) in out.items() if status != "ok"]


@pytest.mark.slow
@pytest.mark.parametrize("backend_name", MULTIPROCESS_BACKENDS, indirect=True)
async def test_processes_incr_one_counter(backend_name: str, tmp_path: Path) -> None:
    async with _shared_store(backend_name, tmp_path) as (store, url, options):
        out = await asyncio.to_thread(_run_processes, "incr", url, options)
        assert _errors(out) == []
        assert await store.bot("race").kvs.get("counter") == PROCESSES * INCRS_PER_PROCESS
        entry = await store.bot("race").kvs.get_entry("counter")
        assert entry is not None and entry.version == PROCESSES * INCRS_PER_PROCESS
        # every process saw its own increments land: the last value each read is distinct
        assert len({value for _, value, _ in out.values()}) == PROCESSES


@pytest.mark.slow
@pytest.mark.parametrize("backend_name", MULTIPROCESS_BACKENDS, indirect=True)
async def test_processes_compare_and_set_has_one_winner(backend_name: str, tmp_path: Path) -> None:
    async with _shared_store(backend_name, tmp_path) as (store, url, options):
        kvs = store.bot("race").kvs
        assert await kvs.set("slot", "initial") == 1
        out = await asyncio.to_thread(_run_processes, "cas", url, options)
        assert _errors(out) == []
        winners = [i for i, (_, value, _) in out.items() if value != "conflict"]
        assert len(winners) == 1, out
        assert out[winners[0]][1] == "won:2"
        assert await kvs.get("slot") == f"winner-{winners[0]}"
        assert await kvs.set("slot", "later", if_version=2) == 3


@pytest.mark.slow
@pytest.mark.parametrize("backend_name", MULTIPROCESS_BACKENDS, indirect=True)
async def test_processes_path_updates_lose_none(backend_name: str, tmp_path: Path) -> None:
    async with _shared_store(backend_name, tmp_path) as (store, url, options):
        kvs = store.bot("race").kvs
        await kvs.set("doc", {"keep": True})
        out = await asyncio.to_thread(_run_processes, "path", url, options)
        assert _errors(out) == []
        doc = await kvs.get("doc")
        assert doc == {"keep": True, **{f"f{i}": PATH_ROUNDS - 1 for i in range(PROCESSES)}}
        entry = await kvs.get_entry("doc")
        assert entry is not None and entry.version == 1 + PROCESSES * PATH_ROUNDS


@pytest.mark.slow
@pytest.mark.parametrize("backend_name", MULTIPROCESS_BACKENDS, indirect=True)
async def test_processes_cannot_overshoot_the_quota(backend_name: str, tmp_path: Path) -> None:
    async with _shared_store(backend_name, tmp_path) as (store, url, options):
        out = await asyncio.to_thread(_run_processes, "quota", url, options)
        assert _errors(out) == []
        assert sum(value for _, value, _ in out.values()) == QUOTA
        assert len(await all_keys(store.bot("race").kvs)) == QUOTA


# -- in-process: many tasks on one store, every backend (shipped in the contract suite) ----


class TestTasks(ConcurrencyContract):
    pass


async def test_sqlite_lock_held_by_another_process_is_a_typed_timeout(tmp_path: Path) -> None:
    """'database is locked' never leaks: a write waits up to ``timeout``, then StoreTimeoutError; reads go on."""
    path = tmp_path / "locked.db"
    async with await botmemory.open(f"sqlite:///{path}", timeout=0.5) as store:
        kvs = store.bot("b").kvs
        await kvs.set("k", 1)
        other = sqlite3.connect(path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # another writer holds the write lock
            started = time.perf_counter()
            with pytest.raises(botmemory.StoreTimeoutError):
                await kvs.set("k", 2)
            assert 0.4 < time.perf_counter() - started < 10
            assert await kvs.get("k") == 1  # WAL: readers are not blocked by a writer
            assert await all_keys(kvs) == ["k"]
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert await kvs.set("k", 3) == 2
        assert await kvs.incr("n") == 1
