"""``KVS.keys(after=)`` (resuming a listing, for the HTTP API's cursors) and ``KVS.is_expired``, on every backend."""

from __future__ import annotations

import pytest

from botmemory import InvalidKeyError, Store
from botmemory.testing import FakeClock


async def test_keys_after_resumes_a_listing(store: Store) -> None:
    kvs = store.bot("b1").kvs
    await kvs.set_many({f"p/{i:02d}": i for i in range(12)} | {"q": 1, "o": 1})
    assert [k async for k in kvs.keys("p/", after="p/05")] == [f"p/{i:02d}" for i in range(6, 12)]
    assert [k async for k in kvs.keys("p/", after="p/05", limit=2)] == ["p/06", "p/07"]
    assert [k async for k in kvs.keys("p/", after="p/11")] == []
    assert [k async for k in kvs.keys("", after="p/11")] == ["q"]
    assert [k async for k in kvs.keys("p/", after="a")] == [f"p/{i:02d}" for i in range(12)]
    with pytest.raises(InvalidKeyError):
        kvs.keys("p/", after="bad\n")


async def test_is_expired_tells_expired_from_missing(store: Store, clock: FakeClock) -> None:
    kvs = store.bot("b1").kvs
    await kvs.set("short", 1, expiry="1s")
    await kvs.set("short/longer", 1, expiry="1s")
    await kvs.set("live", 1)
    assert not await kvs.is_expired("short")
    clock.advance(2)
    assert await kvs.get("short") is None
    assert await kvs.is_expired("short")
    assert not await kvs.is_expired("live")
    assert not await kvs.is_expired("never-there")
    await store.purge_expired()
    assert not await kvs.is_expired("short")
