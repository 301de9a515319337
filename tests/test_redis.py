"""Redis-specific facts the shared contract suite cannot see.

Prefix isolation, literal glob characters, nothing left after
``drop_everything``, native expiry as late garbage collection only, index
entries of natively-collected hashes, exact value bytes, a flushed script
cache, concurrency and option checks. Every test owns a fresh key prefix and
deletes it afterwards.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

import botmemory
from botmemory.backends.redis import NATIVE_GRACE, glob_escape
from botmemory.errors import InvalidInputError, StoreUnavailableError
from botmemory.testing import FakeClock
from botmemory.testing.backends import REDIS_URL, open_test_store, unique_suffix
from botmemory.testing.contract import all_keys
from conftest import require_backend

pytestmark = pytest.mark.redis


@pytest.fixture(autouse=True)
def _server() -> None:
    require_backend("redis")


@pytest.fixture
async def rd(clock: FakeClock, tmp_path: Path) -> AsyncIterator[botmemory.Store]:
    async with open_test_store("redis", tmp_path, clock=clock) as store:
        yield store


@pytest.fixture
async def raw() -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        yield client
    finally:
        await client.aclose()


def _prefix(store: botmemory.Store) -> str:
    prefix: str = store.backend.describe()["prefix"]
    return prefix


async def _redis_keys(raw: aioredis.Redis, prefix: str) -> list[bytes]:
    return sorted([k async for k in raw.scan_iter(match=glob_escape(prefix) + "*", count=1000)])


async def test_two_prefixes_never_see_each_other(rd: botmemory.Store, tmp_path: Path) -> None:
    async with open_test_store("redis", tmp_path, clock=FakeClock()) as other:
        assert _prefix(rd) != _prefix(other)
        await rd.bot("b1").kvs.set("k", "mine")
        await other.bot("b1").kvs.set("k", "theirs")
        await other.bot("b2").kvs.set("only-there", 1)
        assert await rd.bot("b1").kvs.get("k") == "mine"
        assert await other.bot("b1").kvs.get("k") == "theirs"
        assert await rd.bots() == ["b1"]
        assert await other.bots() == ["b1", "b2"]
        assert await rd.bot("b1").kvs.delete_prefix("", all=True) == 1
        assert await other.bot("b1").kvs.get("k") == "theirs"


async def test_glob_characters_in_keys_are_literal(rd: botmemory.Store) -> None:
    kvs = rd.bot("b1").kvs
    keys = ["a", "a*", "a?", "a[b]", "a[", "a]", "a\\", "a\\*", "ab", "abc", "a^", "a-z"]
    await kvs.set_many({k: k for k in keys})
    assert await all_keys(kvs) == sorted(keys)
    assert await all_keys(kvs, "a*") == ["a*"]
    assert await all_keys(kvs, "a?") == ["a?"]
    assert await all_keys(kvs, "a[") == ["a[", "a[b]"]
    assert await all_keys(kvs, "a\\") == ["a\\", "a\\*"]
    assert await kvs.delete_prefix("a[") == 2
    assert await kvs.delete_prefix("a\\") == 2
    assert await kvs.delete_prefix("a*") == 1
    assert await all_keys(kvs) == sorted(set(keys) - {"a[", "a[b]", "a\\", "a\\*", "a*"})


async def test_namespace_and_key_boundaries_never_collide(rd: botmemory.Store) -> None:
    """Entry ids are length-prefixed: ("a", "bc") and ("ab", "c") are two entries."""
    await rd.bot("a").kvs.set("bc", 1)
    await rd.bot("ab").kvs.set("c", 2)
    await rd.bot("a1").kvs.set(":x", 3)
    await rd.bot("a").kvs.set("1:x", 4)
    assert await rd.bot("a").kvs.get("bc") == 1
    assert await rd.bot("ab").kvs.get("c") == 2
    assert await rd.bot("a1").kvs.get(":x") == 3
    assert await rd.bot("a").kvs.get("1:x") == 4
    assert await all_keys(rd.bot("a").kvs) == ["1:x", "bc"]
    assert await rd.bot("a").kvs.delete_prefix("", all=True) == 2
    assert await rd.bot("ab").kvs.get("c") == 2


async def test_drop_everything_leaves_no_key_and_spares_similar_prefixes(raw: aioredis.Redis) -> None:
    base = f"botmemory-test:{unique_suffix()}:"  # no glob characters: a plain SCAN MATCH pattern
    # unescaped, "?*:*" would also match the second prefix, and "[a]\\:*" nothing at all
    prefixes = [base + "?*:", base + "x:", base + "[a]\\:"]
    stores = [await botmemory.open(REDIS_URL, prefix=p, clock=FakeClock()) for p in prefixes]

    async def left(prefix: str) -> int:
        return sum(1 for k in await _redis_keys(raw, base) if k.startswith(prefix.encode()))

    try:
        for store in stores:
            kvs = store.bot("b1").kvs
            await kvs.set_many({f"k{i}": i for i in range(700)}, expiry="1h")
            await kvs.set("forever", 1)
            await store.backend.acquire_lock("conv", "me", 10, store.clock.now())
        counts = [await left(p) for p in prefixes]
        assert all(n > 700 for n in counts)
        await stores[0].backend.drop_everything()  # type: ignore[attr-defined]
        assert [await left(p) for p in prefixes] == [0, *counts[1:]]
        await stores[2].backend.drop_everything()  # type: ignore[attr-defined]
        assert [await left(p) for p in prefixes] == [0, counts[1], 0]
        assert await stores[1].bot("b1").kvs.get("k699") == 699
        await stores[1].backend.drop_everything()  # type: ignore[attr-defined]
        assert await _redis_keys(raw, base) == []
    finally:
        for store in stores:
            await store.close()


async def test_native_expiry_is_only_late_garbage_collection(
    rd: botmemory.Store, clock: FakeClock, raw: aioredis.Redis
) -> None:
    kvs = rd.bot("b1").kvs
    entry = f"{_prefix(rd)}e:2:b1k".encode()
    # the store's clock far behind the real one: the native deadline follows real time
    clock.set(1_000_000_000.0)
    await kvs.set("k", 1, expiry="10s")
    ttl = await raw.pttl(entry)
    assert (NATIVE_GRACE + 9) * 1000 < ttl <= (NATIVE_GRACE + 10) * 1000
    # ahead of the real one: never earlier than the store's deadline + grace
    clock.set(time.time() + 1_000_000)
    assert await kvs.get("k") is None
    await kvs.set("k", 1, expiry="10s")
    assert await raw.pttl(entry) > (1_000_000 + NATIVE_GRACE) * 1000
    assert await kvs.expire("k", "20s")
    assert await raw.pttl(entry) > (1_000_010 + NATIVE_GRACE) * 1000
    assert await kvs.persist("k")
    assert await raw.pttl(entry) == -1
    await kvs.set("k", 2, expiry="1m")
    await kvs.set("k", 3)  # a set without expiry removes it, natively too
    assert await raw.pttl(entry) == -1


async def test_index_entries_of_collected_hashes_are_absent(
    rd: botmemory.Store, clock: FakeClock, raw: aioredis.Redis
) -> None:
    """Native expiry deleted the hash but not its index members: tolerated, cleaned lazily."""
    kvs = rd.bot("b1").kvs
    await kvs.set_many({"gone1": 1, "gone2": 2}, expiry="10s")
    await kvs.set("stays", 3)
    clock.advance(10)
    await raw.delete(f"{_prefix(rd)}e:2:b1gone1", f"{_prefix(rd)}e:2:b1gone2")  # what PEXPIREAT does later
    assert await all_keys(kvs) == ["stays"]
    assert await rd.backend.count("b1", clock.now()) == 1
    assert [r.key for r in await rd.backend.get_many("b1", ["gone1", "gone2", "stays"], clock.now())] == ["stays"]
    assert await rd.backend.scan_expired("b1", "", clock.now(), 10) == []
    purged = await rd.backend.purge_expired(clock.now(), 10)
    assert sorted(p.key for p in purged) == ["gone1", "gone2"]
    assert await raw.zcard(f"{_prefix(rd)}k:b1") == 1
    assert await raw.zcard(f"{_prefix(rd)}d") == 0
    assert await kvs.set("gone1", "again") == 1


async def test_empty_namespaces_disappear(rd: botmemory.Store, clock: FakeClock) -> None:
    await rd.bot("b1").kvs.set("k", 1, expiry="5s")
    await rd.bot("b2").kvs.set("k", 1)
    assert await rd.bots() == ["b1", "b2"]
    clock.advance(5)
    assert await rd.bots() == ["b1", "b2"]  # expired rows still count until purged
    assert await rd.purge_expired() == 1
    assert await rd.bots() == ["b2"]
    assert await rd.bot("b2").kvs.delete("k")
    assert await rd.bots() == []


async def test_values_are_the_codec_bytes_unchanged(rd: botmemory.Store, tmp_path: Path, raw: aioredis.Redis) -> None:
    """A value written on SQLite reads back byte-identical from Redis."""
    value = {"z": 1, "a": [1.5, 1e300, -0.0, 2**63 - 1], "m": {"b": None, "a": "é😀\"\\"}, "": True}
    async with open_test_store("sqlite", tmp_path, clock=FakeClock()) as lite:
        await lite.bot("b1").kvs.set("k", value)
        written = await lite.backend.get("b1", "k", 0.0)
    assert written is not None
    await rd.backend.put("b1", "k", written.value, None, 0.0, None)
    read = await rd.backend.get("b1", "k", 0.0)
    assert read is not None and read.value == written.value
    assert await raw.hget(f"{_prefix(rd)}e:2:b1k", "v") == written.value
    assert list((await rd.bot("b1").kvs.get("k")).keys()) == ["z", "a", "m", ""]


async def test_exact_float_deadlines_survive_the_round_trip(rd: botmemory.Store, clock: FakeClock) -> None:
    clock.set(1_800_000_000.123456)
    kvs = rd.bot("b1").kvs
    await kvs.set("k", 1, expiry=0.001)
    entry = await kvs.get_entry("k")
    assert entry is not None and entry.expires_at == 1_800_000_000.123456 + 0.001
    assert entry.modified_at == 1_800_000_000.123456
    clock.set(entry.expires_at)
    assert await kvs.get("k") is None


async def test_a_flushed_script_cache_is_reloaded(rd: botmemory.Store, raw: aioredis.Redis) -> None:
    kvs = rd.bot("b1").kvs
    await kvs.set("k", 1)
    await raw.script_flush()
    assert await kvs.set("k", 2) == 2  # EVALSHA
    await raw.script_flush()
    assert await kvs.incr("n") == 1  # WATCH/MULTI/EXEC with EVALSHA inside
    await raw.script_flush()
    assert await kvs.set("k", 3, if_version=2) == 3


async def test_concurrent_mutations_lose_nothing(rd: botmemory.Store) -> None:
    kvs = rd.bot("b1").kvs
    await asyncio.gather(*(kvs.incr("n") for _ in range(150)), *(kvs.incr("fresh") for _ in range(30)))
    assert await kvs.get("n") == 150
    assert (await kvs.get_entry("n")).version == 150  # type: ignore[union-attr]
    won = await asyncio.gather(*(kvs.set_if_absent("once", i) for i in range(12)))
    assert sum(won) == 1 and await kvs.get("once") == won.index(True)


async def test_quota_holds_under_concurrent_creation(tmp_path: Path) -> None:
    limits = botmemory.Limits(max_keys_per_bot=10)
    async with open_test_store("redis", tmp_path, clock=FakeClock(), limits=limits) as store:
        kvs = store.bot("b1").kvs
        results = await asyncio.gather(
            *(kvs.set(f"k{i}", i) for i in range(20)),
            *(kvs.incr(f"n{i}") for i in range(20)),
            return_exceptions=True,
        )
        assert sum(1 for r in results if not isinstance(r, Exception)) == 10
        assert all(isinstance(r, botmemory.QuotaExceededError) for r in results if isinstance(r, Exception))
        assert await store.backend.count("b1", store.clock.now()) == 10


async def test_locks_are_shared_between_stores(rd: botmemory.Store, clock: FakeClock) -> None:
    other = await botmemory.open(REDIS_URL, prefix=_prefix(rd), clock=clock)
    try:
        now = clock.now()
        first = await rd.backend.acquire_lock("conv/1", "replica-a", 30, now)
        assert first is not None
        assert await other.backend.acquire_lock("conv/1", "replica-b", 30, now) is None
        renewed = await rd.backend.acquire_lock("conv/1", "replica-a", 30, now + 10)
        assert renewed is not None and renewed.token == first.token
        assert not await other.backend.release_lock("conv/1", "replica-b")
        assert await rd.backend.release_lock("conv/1", "replica-a")
        taken = await other.backend.acquire_lock("conv/1", "replica-b", 30, now + 11)
        assert taken is not None and taken.token > first.token
        stolen = await rd.backend.acquire_lock("conv/1", "replica-a", 30, now + 41)
        assert stolen is not None and stolen.token > taken.token
    finally:
        await other.close()


@pytest.mark.parametrize(
    "options",
    [
        {"prefix": ""},
        {"prefix": 5},
        {"timeout": 0},
        {"timeout": -1},
        {"timeout": False},
        {"timeout": float("inf")},
        {"max_connections": 0},
        {"colour": "blue"},
    ],
)
async def test_bad_options_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(InvalidInputError):
        await botmemory.open(REDIS_URL, **options)


async def test_a_closed_port_is_unavailable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(StoreUnavailableError):
        await botmemory.open(f"redis://127.0.0.1:{port}/0", timeout=1)


async def test_closed_store_is_unavailable(tmp_path: Path) -> None:
    async with open_test_store("redis", tmp_path, clock=FakeClock()) as store:
        await store.bot("b1").kvs.set("k", 1)
        backend = store.backend
        await backend.ping()
    with pytest.raises(StoreUnavailableError):
        await backend.ping()


async def test_a_restarted_server_is_used_again_without_reopening(rd: botmemory.Store, raw: aioredis.Redis) -> None:
    """Every pooled connection killed (as a server restart does): the next calls all work."""
    kvs = rd.bot("b1").kvs
    await kvs.set("k", 1)
    await asyncio.gather(*(kvs.incr(f"n{i}") for i in range(8)))  # open several connections
    name = f"botmemory:{_prefix(rd)}"
    ids = [c["id"] for c in await raw.client_list() if c.get("name") == name]
    assert len(ids) >= 2
    for client_id in ids:
        await raw.client_kill_filter(_id=client_id)
    assert [await kvs.get("k") for _ in range(4)] == [1, 1, 1, 1]
    assert await kvs.set("k", 2) == 2
    assert await kvs.incr("n0") == 2
    assert await rd.backend.count("b1", rd.clock.now()) == 9


async def test_the_client_never_resends_a_command_and_waits_at_most_timeout(tmp_path: Path) -> None:
    """The retry policy read back from the client and a live connection (redis-py 8.1 and 8.2 alike).

    An asyncio client must get ``redis.asyncio.retry.Retry``: redis-py 8.2
    converts a synchronous one with a warning and drops its customisation.
    Zero retries, because a write whose answer was lost may have been applied;
    the backend's own single re-run of reads is in ``_call``.
    """
    from redis.asyncio.retry import Retry as AsyncRetry

    async with open_test_store("redis", tmp_path, clock=FakeClock(), timeout=2.5) as store:
        client = store.backend._client()
        kwargs = client.connection_pool.connection_kwargs
        assert type(kwargs["retry"]) is AsyncRetry
        assert kwargs["retry"].get_retries() == 0
        assert kwargs["socket_timeout"] == kwargs["socket_connect_timeout"] == 2.5
        assert client.connection_pool.timeout == 2.5  # waiting for a free pooled connection
        connection = await client.connection_pool.get_connection()
        try:
            assert type(connection.retry) is AsyncRetry
            assert connection.retry.get_retries() == 0
            assert connection.socket_timeout == 2.5
        finally:
            await client.connection_pool.release(connection)
