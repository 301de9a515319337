"""The PostgreSQL backend's lane: one idle connection kept out of the pool for the next call.

The lane must never hold a connection another call is waiting for (a pool of
one connection still serves many tasks), must not survive a failed call, and
must go back to the pool when the store closes.
"""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest

import botmemory
from botmemory.backends.postgres import PostgresBackend
from botmemory.errors import StoreError
from botmemory.testing import FakeClock
from botmemory.testing.backends import POSTGRES_URL, unique_suffix
from conftest import require_backend

pytestmark = pytest.mark.postgres


@pytest.fixture(autouse=True)
def _server() -> None:
    require_backend("postgres")


async def _open(schema: str, **options: Any) -> botmemory.Store:
    return await botmemory.open(POSTGRES_URL, clock=FakeClock(), schema=schema, **options)


async def _drop(schema: str) -> None:
    async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as conn:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _backend(store: botmemory.Store) -> PostgresBackend:
    backend = store.backend
    assert isinstance(backend, PostgresBackend)
    return backend


async def test_a_pool_of_one_serves_many_tasks_without_waiting_on_the_lane() -> None:
    schema = f"lane_{unique_suffix()}"
    store = await _open(schema, max_size=1, timeout=3)
    try:
        kvs = store.bot("b").kvs

        async def worker(i: int) -> None:
            for j in range(10):
                await kvs.set(f"k{i}", j)
                assert await kvs.get(f"k{i}") == j
                await kvs.incr("counter")

        await asyncio.gather(*(worker(i) for i in range(16)))
        assert await kvs.get("counter") == 160
    finally:
        await store.close()
        await _drop(schema)


async def test_one_task_reuses_the_parked_connection() -> None:
    schema = f"lane_{unique_suffix()}"
    store = await _open(schema)
    try:
        backend = _backend(store)
        kvs = store.bot("b").kvs
        await kvs.set("a", 1)
        first = backend._lane
        assert first is not None
        for i in range(5):
            await kvs.set("a", i)
            assert await kvs.get("a") == i
        assert backend._lane is first
    finally:
        await store.close()
        await _drop(schema)


async def test_a_failed_call_does_not_park_its_connection() -> None:
    schema = f"lane_{unique_suffix()}"
    store = await _open(schema)
    try:
        backend = _backend(store)
        kvs = store.bot("b").kvs
        await kvs.set("a", 1)
        lane = backend._lane
        assert lane is not None

        async def broken(conn: psycopg.AsyncConnection[Any]) -> None:
            await conn.execute("SELECT * FROM no_such_table_here")

        with pytest.raises(StoreError):
            await backend._run("broken", broken)
        assert backend._lane is None  # handed back to the pool, which rolled it back or dropped it
        assert await kvs.get("a") == 1
        assert backend._lane is not None
    finally:
        await store.close()
        await _drop(schema)


async def test_close_returns_the_lane_and_every_connection_to_the_pool() -> None:
    schema = f"lane_{unique_suffix()}"
    store = await _open(schema)
    backend = _backend(store)
    pool = backend._pool
    assert pool is not None
    try:
        await store.bot("b").kvs.set("a", 1)
        lane = backend._lane
        assert lane is not None
    finally:
        await store.close()
        await _drop(schema)
    assert backend._lane is None
    assert pool.closed
    assert lane.closed  # the pool closed it: it was returned, not leaked


async def test_a_call_still_running_when_the_store_closes_does_not_park_or_leak() -> None:
    schema = f"lane_{unique_suffix()}"
    store = await _open(schema)
    backend = _backend(store)
    try:
        used: list[psycopg.AsyncConnection[Any]] = []

        async def slow(conn: psycopg.AsyncConnection[Any]) -> int:
            used.append(conn)
            await conn.execute("SELECT pg_sleep(0.3)")
            return 1

        call = asyncio.create_task(backend._run("slow", slow))
        await asyncio.sleep(0.1)
        await store.close()
        assert await call == 1
        assert backend._lane is None
        assert used and used[0].closed  # returned to the closed pool, which closed it
    finally:
        await _drop(schema)
