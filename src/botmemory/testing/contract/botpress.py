"""The Botpress names of the KVS."""

from __future__ import annotations

import pytest

from ...errors import (
    InvalidExpiryError,
    InvalidInputError,
)
from ...store import Store
from ..clock import FakeClock
from ._support import all_keys, assert_same

# -- Botpress compatibility -------------------------------------------------------------


class BotpressContract:
    """Botpress's positional order and method names, minus its bugs."""

    async def test_positional_path_and_expiry(self, store: Store) -> None:
        kvs = store.bot("b1").kvs
        assert await kvs.set("k", 5, "a.b", "10s") == 1
        assert await kvs.get("k", "a.b") == 5
        assert_same(await kvs.get("k"), {"a": {"b": 5}})
        assert await kvs.ttl("k") == pytest.approx(10, abs=1e-3)

    async def test_storage_with_expiry_aliases(self, store: Store, clock: FakeClock) -> None:
        kvs = store.bot("b1").kvs
        assert await kvs.get_storage_with_expiry("k") is None
        assert await kvs.set_storage_with_expiry("k", {"n": 0}, "1 hour") == 1
        assert await kvs.get_storage_with_expiry("k") == {"n": 0}
        assert await kvs.ttl("k") == pytest.approx(3600, abs=1e-3)
        assert await kvs.set_storage_with_expiry("k", False) == 2
        assert await kvs.get_storage_with_expiry("k") is False
        assert await kvs.ttl("k") is None
        await kvs.set_storage_with_expiry("e", 1, "5s")
        clock.advance(5)
        assert await kvs.get_storage_with_expiry("e") is None

    async def test_unparseable_expiry_is_refused_not_stored_expired(self, store: Store) -> None:
        kvs = store.bot("b1").kvs
        with pytest.raises(InvalidExpiryError):
            await kvs.set_storage_with_expiry("k", 1, "soon")
        assert not await kvs.exists("k")

    async def test_remove_storage_keys_starting_with(self, store: Store) -> None:
        b1, b2 = store.bot("b1").kvs, store.bot("b2").kvs
        for kvs in (b1, b2):
            await kvs.set_many({"a_1": 1, "a_2": 2, "ab": 3, "a%": 4, "b": 5})
        assert await b1.remove_storage_keys_starting_with("a_") == 2
        assert await all_keys(b1) == ["a%", "ab", "b"]
        assert await b1.remove_storage_keys_starting_with("a%") == 1
        assert await all_keys(b1) == ["ab", "b"]
        assert await all_keys(b2) == ["a%", "a_1", "a_2", "ab", "b"]
        with pytest.raises(InvalidInputError):
            await b1.remove_storage_keys_starting_with("")
