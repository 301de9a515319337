"""PostgreSQL-specific facts the shared contract suite cannot see.

Schema isolation, recorded migrations, racing openers, ``COLLATE "C"``
ordering, exact value bytes, ``SKIP LOCKED`` purges and option checks. Every
test owns a fresh schema and drops it afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

import botmemory
from botmemory.backends.postgres import MIGRATIONS
from botmemory.errors import InvalidInputError, StoreUnavailableError
from botmemory.testing import FakeClock
from botmemory.testing.backends import POSTGRES_URL, open_test_store, unique_suffix
from botmemory.testing.contract import all_keys
from conftest import require_backend

pytestmark = pytest.mark.postgres


@pytest.fixture(autouse=True)
def _server() -> None:
    require_backend("postgres")


@pytest.fixture
async def pg(clock: FakeClock, tmp_path: Path) -> AsyncIterator[botmemory.Store]:
    async with open_test_store("postgres", tmp_path, clock=clock) as store:
        yield store


@contextlib.asynccontextmanager
async def _schema_store(schema: str, **options: Any) -> AsyncIterator[botmemory.Store]:
    """A store on ``schema`` that is closed (not dropped) afterwards."""
    store = await botmemory.open(POSTGRES_URL, clock=FakeClock(), schema=schema, **options)
    try:
        yield store
    finally:
        await store.close()


async def _sql(query: str, *params: Any) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as conn:
        cur = await conn.execute(query, params)  # type: ignore[arg-type]
        return await cur.fetchall() if cur.description else []


async def _drop(schema: str) -> None:
    await _sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


async def test_two_schemas_never_see_each_other(pg: botmemory.Store, tmp_path: Path) -> None:
    async with open_test_store("postgres", tmp_path, clock=FakeClock()) as other:
        assert pg.backend.describe()["schema"] != other.backend.describe()["schema"]
        await pg.bot("b1").kvs.set("k", "mine")
        await other.bot("b1").kvs.set("k", "theirs")
        await other.bot("b2").kvs.set("only-there", 1)
        assert await pg.bot("b1").kvs.get("k") == "mine"
        assert await other.bot("b1").kvs.get("k") == "theirs"
        assert await pg.bots() == ["b1"]
        assert await other.bots() == ["b1", "b2"]
        assert await pg.bot("b1").kvs.delete_prefix("", all=True) == 1
        assert await other.bot("b1").kvs.get("k") == "theirs"


async def test_tables_live_in_the_schema_and_drop_everything_removes_it() -> None:
    schema = unique_suffix()
    store = await botmemory.open(POSTGRES_URL, schema=schema)
    try:
        await store.bot("b1").kvs.set("k", 1)
        tables = await _sql("SELECT table_name FROM information_schema.tables WHERE table_schema = %s", schema)
        assert sorted(t for (t,) in tables) == ["botmemory_migrations", "kv", "locks"]
        await store.backend.drop_everything()  # type: ignore[attr-defined]
        assert await _sql("SELECT 1 FROM information_schema.schemata WHERE schema_name = %s", schema) == []
    finally:
        await store.close()
        await _drop(schema)


async def test_migrations_are_recorded_once_even_when_openers_race() -> None:
    schema = unique_suffix()
    try:
        stores = await asyncio.gather(*(botmemory.open(POSTGRES_URL, schema=schema) for _ in range(4)))
        for store in stores:
            await store.close()
        rows = await _sql(f'SELECT version, name FROM "{schema}".botmemory_migrations ORDER BY version')
        assert rows == [(i, name) for i, (name, _) in enumerate(MIGRATIONS, start=1)]
        async with _schema_store(schema) as again:  # reopening applies nothing
            assert await again.bot("b").kvs.set("k", 1) == 1
        assert len(await _sql(f'SELECT 1 FROM "{schema}".botmemory_migrations')) == len(MIGRATIONS)
    finally:
        await _drop(schema)


async def test_a_schema_newer_than_the_code_is_refused() -> None:
    schema = unique_suffix()
    try:
        async with _schema_store(schema) as store:
            await store.bot("b").kvs.set("k", 1)
        newer = len(MIGRATIONS) + 1
        await _sql(
            f'INSERT INTO "{schema}".botmemory_migrations (version, name, applied_at) VALUES (%s, %s, 0)',
            newer,
            "from-the-future",
        )
        with pytest.raises(StoreUnavailableError, match="newer"):
            await botmemory.open(POSTGRES_URL, schema=schema)
    finally:
        await _drop(schema)


async def test_keys_are_collate_c_and_listed_in_code_point_order(pg: botmemory.Store) -> None:
    kvs = pg.bot("b1").kvs
    keys = ["b", "B", "a", "a b", "ab", "é", "e\u0301", "e", "Z", "_", "~", "ÿ", "Ā", "😀", "\uffff", "a%", "a_"]
    await kvs.set_many({k: i for i, k in enumerate(keys)})
    assert await all_keys(kvs) == sorted(keys)
    assert await all_keys(kvs, "a") == sorted(k for k in keys if k.startswith("a"))
    # "%" and "_" are LIKE wildcards: a literal prefix must not treat them so
    assert await all_keys(kvs, "a%") == ["a%"]
    assert await all_keys(kvs, "a_") == ["a_"]
    schema = pg.backend.describe()["schema"]
    collations = await _sql(
        "SELECT column_name, collation_name FROM information_schema.columns "
        "WHERE table_schema = %s AND table_name = 'kv' AND column_name IN ('ns', 'key') ORDER BY column_name",
        schema,
    )
    assert collations == [("key", "C"), ("ns", "C")]


async def test_values_are_the_codec_bytes_unchanged(pg: botmemory.Store, tmp_path: Path) -> None:
    """A value written on SQLite reads back byte-identical from PostgreSQL (bytea, not jsonb)."""
    value = {"z": 1, "a": [1.5, 1e300, -0.0, 2**63 - 1], "m": {"b": None, "a": "é😀\"\\"}, "": True}
    async with open_test_store("sqlite", tmp_path, clock=FakeClock()) as lite:
        await lite.bot("b1").kvs.set("k", value)
        written = await lite.backend.get("b1", "k", 0.0)
    assert written is not None
    await pg.backend.put("b1", "k", written.value, None, 0.0, None)
    read = await pg.backend.get("b1", "k", 0.0)
    assert read is not None and read.value == written.value
    assert list((await pg.bot("b1").kvs.get("k")).keys()) == ["z", "a", "m", ""]
    schema = pg.backend.describe()["schema"]
    assert await _sql(f'SELECT value FROM "{schema}".kv WHERE ns = %s AND key = %s', "b1", "k") == [(written.value,)]


async def test_concurrent_increments_on_one_pool_lose_nothing(tmp_path: Path) -> None:
    async with open_test_store("postgres", tmp_path, clock=FakeClock(), max_size=6) as store:
        kvs = store.bot("b1").kvs
        await asyncio.gather(*(kvs.incr("n") for _ in range(120)), *(kvs.incr("fresh") for _ in range(30)))
        assert await kvs.get("n") == 120
        assert (await kvs.get_entry("n")).version == 120  # type: ignore[union-attr]
        assert await kvs.get("fresh") == 30


async def test_concurrent_creators_get_exactly_one_winner(tmp_path: Path) -> None:
    """set_if_absent on a missing row: the advisory lock lets exactly one creator through."""
    async with open_test_store("postgres", tmp_path, clock=FakeClock(), max_size=6) as store:
        kvs = store.bot("b1").kvs
        for round_ in range(5):
            won = await asyncio.gather(*(kvs.set_if_absent(f"k{round_}", i) for i in range(12)))
            assert sum(won) == 1
            assert await kvs.get(f"k{round_}") == won.index(True)


async def test_quota_holds_under_concurrent_creation(tmp_path: Path) -> None:
    limits = botmemory.Limits(max_keys_per_bot=10)
    async with open_test_store("postgres", tmp_path, clock=FakeClock(), limits=limits, max_size=6) as store:
        kvs = store.bot("b1").kvs
        results = await asyncio.gather(*(kvs.set(f"k{i}", i) for i in range(30)), return_exceptions=True)
        created = [r for r in results if r == 1]
        assert len(created) == 10
        assert all(isinstance(r, botmemory.QuotaExceededError) for r in results if r != 1)
        assert await store.backend.count("b1", store.clock.now()) == 10


async def test_two_janitors_share_the_expired_rows(pg: botmemory.Store, clock: FakeClock, tmp_path: Path) -> None:
    """FOR UPDATE SKIP LOCKED: concurrent purges never delete (or report) a row twice."""
    kvs = pg.bot("b1").kvs
    await kvs.set_many({f"k{i:03}": i for i in range(300)}, expiry="10s")
    await kvs.set("stays", 1)
    clock.advance(10)
    schema = pg.backend.describe()["schema"]
    async with _schema_store(schema) as other:
        now = clock.now()
        batches = await asyncio.gather(
            *(b.purge_expired(now, 120) for b in (pg.backend, other.backend, pg.backend, other.backend))
        )
    purged = [(p.namespace, p.key) for batch in batches for p in batch]
    assert len(purged) == len(set(purged)) == 300
    assert await all_keys(kvs) == ["stays"]


async def test_locks_are_shared_between_stores(pg: botmemory.Store, clock: FakeClock) -> None:
    schema = pg.backend.describe()["schema"]
    async with _schema_store(schema) as other:
        now = clock.now()
        first = await pg.backend.acquire_lock("conv/1", "replica-a", 30, now)
        assert first is not None
        assert await other.backend.acquire_lock("conv/1", "replica-b", 30, now) is None
        renewed = await pg.backend.acquire_lock("conv/1", "replica-a", 30, now + 10)
        assert renewed is not None and renewed.token == first.token
        assert not await other.backend.release_lock("conv/1", "replica-b")
        assert await pg.backend.release_lock("conv/1", "replica-a")
        taken = await other.backend.acquire_lock("conv/1", "replica-b", 30, now + 11)
        assert taken is not None and taken.token > first.token
        # an expired lease is taken over, with a larger fencing token
        stolen = await pg.backend.acquire_lock("conv/1", "replica-a", 30, now + 41)
        assert stolen is not None and stolen.token > taken.token


@pytest.mark.parametrize(
    "options",
    [
        {"schema": "Bad-Name"},
        {"schema": "1abc"},
        {"schema": 'x"; DROP TABLE y; --'},
        {"schema": ""},
        {"timeout": 0},
        {"timeout": True},
        {"timeout": float("nan")},
        {"max_size": 0},
        {"min_size": 5, "max_size": 2},
        {"colour": "blue"},
    ],
)
async def test_bad_options_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(InvalidInputError):
        await botmemory.open(POSTGRES_URL, **options)


async def test_a_closed_port_is_unavailable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(StoreUnavailableError):
        await botmemory.open(f"postgresql://postgres@127.0.0.1:{port}/test", timeout=1)


async def test_closed_store_is_unavailable(tmp_path: Path) -> None:
    async with open_test_store("postgres", tmp_path, clock=FakeClock()) as store:
        await store.bot("b1").kvs.set("k", 1)
        backend = store.backend
        await backend.ping()
    with pytest.raises(StoreUnavailableError):
        await backend.ping()


async def test_a_restarted_server_is_used_again_without_reopening(tmp_path: Path) -> None:
    """Every pooled connection killed (as a server restart does): reads go on, writes fail at most once."""
    async with open_test_store("postgres", tmp_path, clock=FakeClock(), min_size=3, max_size=3) as store:
        kvs = store.bot("b1").kvs
        await kvs.set("k", 1)
        await asyncio.gather(*(kvs.get("k") for _ in range(6)))  # use every connection
        name = f"botmemory:{store.backend.describe()['schema']}"
        killed = await _sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s", name
        )
        assert len(killed) == 3
        assert [await kvs.get("k") for _ in range(4)] == [1, 1, 1, 1]
        assert await kvs.set("k", 2) == 2
        assert await kvs.incr("n") == 1
        assert await all_keys(kvs) == ["k", "n"]


async def test_overlapping_set_many_in_opposite_orders(tmp_path: Path) -> None:
    """Rows are locked in key order, so writers of the same keys in opposite orders finish (no deadlock)."""
    async with open_test_store("postgres", tmp_path, clock=FakeClock(), max_size=8) as store:
        kvs = store.bot("b1").kvs
        keys = [f"k{i:03}" for i in range(200)]
        orders = [keys if j % 2 else keys[::-1] for j in range(8)]
        results = await asyncio.gather(*(kvs.set_many({k: j for k in order}) for j, order in enumerate(orders)))
        # each writer saw every key at the same version: the writes were serialised whole
        assert all(len(set(versions)) == 1 for versions in results)
        assert sorted(versions[0] for versions in results) == list(range(1, 9))
        entries = [await kvs.get_entry(k) for k in keys]
        assert {e.version for e in entries if e is not None} == {8}
        assert len({e.value for e in entries if e is not None}) == 1  # all-or-nothing: one writer was last everywhere
