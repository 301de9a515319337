"""Rows beyond the KVS methods: counts, namespaces, expired rows, bounded purges with kept prefixes."""

from __future__ import annotations

import pytest

from ...store import Store
from ..clock import FakeClock


class RowsContract:
    """What retention, sessions and dump/load read through the store: ``KVS.count``,
    ``store.namespaces``, ``KVS.expired_rows`` and ``store.purge_expired_rows``."""

    async def test_count_and_namespaces(self, store: Store, clock: FakeClock) -> None:
        await store.bot("b1").kvs.set_many({"a": 1, "b": 2})
        await store.bot("b1").kvs.set("gone", 1, expiry="1s")
        await store.bot("b2").kvs.set("a", 1)
        await store.global_kvs.set("g", 1)
        clock.advance(1)
        assert await store.kvs("b1").count() == 2
        assert await store.kvs("b2").count() == 1
        assert await store.kvs("nobody").count() == 0
        names = await store.namespaces()
        assert names == sorted(names)
        assert {"b1", "b2", store.global_kvs.namespace} <= set(names)
        assert await store.bots() == ["b1", "b2"]

    async def test_scan_expired_is_oldest_first_and_deletes_nothing(self, store: Store, clock: FakeClock) -> None:
        kvs = store.bot("b1").kvs
        for seconds in (3, 1, 2):
            await kvs.set(f"p/e{seconds}", seconds, expiry=seconds)
        await kvs.set("q/e", 0, expiry=1)
        await kvs.set("p/live", 0, expiry="1h")
        clock.advance(3)
        rows = await kvs.expired_rows("p/", 10)
        assert [r.key for r in rows] == ["p/e1", "p/e2", "p/e3"]
        assert [r.version for r in rows] == [1, 1, 1]
        assert [r.value for r in rows] == [b"1", b"2", b"3"]
        assert [r.key for r in await kvs.expired_rows("p/", 2)] == ["p/e1", "p/e2"]
        everything = [r.key for r in await kvs.expired_rows("", 10)]
        assert sorted(everything[:2]) == ["p/e1", "q/e"]  # same deadline: either order
        assert everything[2:] == ["p/e2", "p/e3"]
        assert await store.purge_expired() == 4

    async def test_purge_expired_by_namespace_and_kept_prefixes(self, store: Store, clock: FakeClock) -> None:
        memory = store.bot("b2").memory
        await store.bot("b1").kvs.set_many({"x": 1, "y": 2}, expiry=1)
        await memory.set_user_variable("held", "n", 1, expiry=2)
        await memory.set_user_variable("free", "n", 1, expiry=2)
        await store.private_kvs("__rt/contract").set("s", 1, expiry=1)
        clock.advance(2)
        now = clock.now()
        purged = await store.purge_expired_rows(100, "b1")
        assert sorted((p.namespace, p.key) for p in purged) == [("b1", "x"), ("b1", "y")]
        assert all(p.expires_at == pytest.approx(now - 1, abs=1e-3) for p in purged)
        held = memory.user("held").prefix
        purged = await store.purge_expired_rows(100, keep=[("b2", held)])
        assert [(p.namespace, p.key) for p in purged] == [("b2", memory.user("free").key("n"))]
        # kept prefixes and private namespaces stay, however often the janitor runs
        assert await store.purge_expired_rows(100, keep=[("b2", held)]) == []
        # what was kept is still stored (read as of now - 2, when everything was live)
        b2 = store.bot("b2").kvs
        held_key, free_key = memory.user("held").key("n"), memory.user("free").key("n")
        assert [r.key for r in await b2.rows([held_key, free_key], at=now - 2)] == [held_key]
        assert [r.key for r in await store.private_kvs("__rt/contract").rows(["s"], at=now - 2)] == ["s"]
        purged = await store.purge_expired_rows(100, "__rt/contract")
        assert [(p.namespace, p.key) for p in purged] == [("__rt/contract", "s")]
