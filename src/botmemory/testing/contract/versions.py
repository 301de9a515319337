"""Versions and compare-and-set."""

from __future__ import annotations

import pytest

from ...errors import (
    InvalidInputError,
    VersionConflictError,
)
from ...store import Store
from ..clock import FakeClock
from ._support import _version

# -- versions ----------------------------------------------------------------------


class VersionContract:
    """Versions count writes of the value; expire/persist do not."""

    async def test_every_write_adds_one(self, store: Store) -> None:
        kvs = store.bot("b1").kvs
        assert await kvs.set("k", {"n": 0}) == 1
        assert await kvs.set("k", 1, "m") == 2
        await kvs.incr("k", path="n")
        assert await _version(kvs, "k") == 3
        assert await kvs.set_many({"k": {"n": 5}}) == [4]
        assert await kvs.set("k", {"n": 6}, keep_ttl=True) == 5
        assert await kvs.set("k", {"n": 7}, if_version=5) == 6
        assert await _version(kvs, "k") == 6

    async def test_expire_and_persist_change_no_version(self, store: Store, clock: FakeClock) -> None:
        kvs = store.bot("b1").kvs
        t0 = clock.now()
        await kvs.set("k", 1)
        clock.advance(5)
        await kvs.expire("k", "1h")
        await kvs.persist("k")
        await kvs.expire("k", "2h")
        entry = await kvs.get_entry("k")
        assert entry is not None
        assert entry.version == 1
        assert entry.modified_at == pytest.approx(t0, abs=1e-3)

    async def test_writes_move_modified_at(self, store: Store, clock: FakeClock) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set("k", 1)
        clock.advance(5)
        await kvs.incr("k")
        entry = await kvs.get_entry("k")
        assert entry is not None and entry.modified_at == pytest.approx(clock.now(), abs=1e-3)

    async def test_recreated_after_delete_starts_at_one(self, store: Store) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set("k", 1)
        await kvs.set("k", 2)
        await kvs.delete("k")
        assert await kvs.set("k", 3) == 1
        await kvs.delete("k")
        assert await kvs.incr("k") == 1
        assert await _version(kvs, "k") == 1
        await kvs.delete_many(["k"])
        assert await kvs.set_if_absent("k", 1)
        assert await _version(kvs, "k") == 1
        await kvs.delete_prefix("k")
        assert await kvs.set("k", 1, "a") == 1
        assert await kvs.set_many({"k": 1}) == [2]

    async def test_failed_writes_change_no_version(self, store: Store) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set("k", {"s": "x"})
        for call in (
            kvs.set("k", 1, "s.t"),
            kvs.incr("k", path="s"),
            kvs.set("k", float("nan")),
            kvs.set("k", 1, if_version=7),
        ):
            with pytest.raises((InvalidInputError, VersionConflictError)):
                await call
        assert await kvs.set_if_absent("k", 1) is False
        assert await _version(kvs, "k") == 1
