from __future__ import annotations

import botmemory
from botmemory.testing import FakeClock


async def test_set_get_expire(store: botmemory.Store, clock: FakeClock) -> None:
    kvs = store.bot("b1").kvs
    assert await kvs.set("a", {"x": 1}, expiry="10s") == 1
    assert await kvs.get("a") == {"x": 1}
    assert await kvs.ttl("a") == 10
    clock.advance(9.999)
    assert await kvs.exists("a")
    clock.advance(0.001)
    assert not await kvs.exists("a")
    assert await kvs.set("a", 1) == 1
    assert await kvs.incr("a", 2) == 3
    assert await kvs.set("b", {"p": {"q": 1}}) == 1
    assert await kvs.set("b", 5, "p.r") == 2
    assert await kvs.get("b") == {"p": {"q": 1, "r": 5}}
    assert [k async for k in kvs.keys()] == ["a", "b"]
    assert await store.bot("b2").kvs.get("a") is None
    m = store.bot("b1").memory
    await m.set_user_variable("u/x", "name", "Ada")
    assert await m.get_user_variable("u/x", "name") == "Ada"
    assert await m.user("u/x").items() == {"name": "Ada"}
    assert [k async for k in kvs.keys("storage/")] == ["storage/users/u%2Fx/name"]
