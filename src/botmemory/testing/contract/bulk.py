"""The ``BulkLoad`` capability: rows restored verbatim and namespaces swapped atomically (``botmemory load``)."""

from __future__ import annotations

import pytest

from ...backends.base import BulkLoad
from ...errors import (
    InvalidInputError,
)
from ...store import Store
from ..clock import FakeClock
from ._support import assert_same


class BulkLoadContract:
    """``store.restore`` (any backend: derived where the backend lacks ``BulkLoad``) and
    ``store.replace_namespaces`` (``BulkLoad`` only: skipped elsewhere)."""

    async def test_restore_writes_rows_exactly(self, store: Store, clock: FakeClock) -> None:
        from ...backends.base import Row

        kvs = store.bot("b1").kvs
        await kvs.set("a", "old")
        rows = [
            Row("a", b'{"b":1,"a":2}', 7, clock.now() + 60, clock.now() - 100),
            Row("new", b"null", 3, None, clock.now() - 5),
        ]
        await store.restore("b1", rows)
        a = await kvs.get_entry("a")
        new = await kvs.get_entry("new")
        assert a is not None and new is not None
        assert_same(a.value, {"b": 1, "a": 2})
        assert a.version == 7
        assert a.modified_at == pytest.approx(clock.now() - 100)
        assert a.expires_at == pytest.approx(clock.now() + 60)
        assert (new.value, new.version, new.expires_at) == (None, 3, None)
        assert await kvs.set("a", 1) == 8

    async def test_replace_namespaces_swaps_everything_at_once(self, store: Store, clock: FakeClock) -> None:
        from ...backends.base import Row

        if not store.supports(BulkLoad):
            pytest.skip("the backend has no BulkLoad capability")
        target, staging, marker = "b1", "__rt/load/contract/b1", "__rt/load/contract"
        await store.bot("b1").kvs.set_many({"old": 1, "kept-out": 2})
        await store.bot("b1").kvs.set("old-expiring", 1, expiry="1h")
        await store.bot("b2").kvs.set("other", 1)
        await store.private_kvs(marker).set("manifest", {"n": 1})
        now = clock.now()
        rows = [
            Row("a", b'{"z":1,"a":2}', 5, now + 60, now - 100),
            Row("b", b"2", 1, None, now - 5),
            Row("gone", b"3", 2, now - 1, now - 50),  # expired already: moved too, read as absent
        ]
        await store.restore(staging, rows)
        await store.replace_namespaces({target: staging, marker: None})
        kvs = store.bot("b1").kvs
        assert [k async for k in kvs.keys()] == ["a", "b"]
        a = await kvs.get_entry("a")
        assert a is not None and a.version == 5 and a.modified_at == now - 100
        assert a.expires_at == pytest.approx(now + 60)
        assert_same(a.value, {"z": 1, "a": 2})
        assert await store.kvs(staging).count() == 0 and await store.kvs(marker).count() == 0
        assert staging not in await store.namespaces() and marker not in await store.namespaces()
        assert await store.bot("b2").kvs.get("other") == 1  # untouched
        assert await kvs.set("a", 0) == 6  # versions go on from the restored ones
        clock.advance(61)  # the moved expiries are honoured, and purged as the target's
        purged = await store.purge_expired_rows(100)
        assert sorted((p.namespace, p.key) for p in purged) == [("b1", "gone")]
        # a target with no source is emptied; a namespace used twice is refused
        await store.replace_namespaces({"b2": None})
        assert await store.kvs("b2").count() == 0 and "b2" not in await store.namespaces()
        with pytest.raises(InvalidInputError):
            await store.replace_namespaces({"b1": "x", "x": None})
