"""Isolation between bots, and a closed store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ...errors import (
    InvalidKeyError,
    StoreUnavailableError,
)
from ...store import Store
from ..backends import open_test_store
from ..clock import FakeClock
from ._support import all_keys

# -- isolation between bots ------------------------------------------------------------


class IsolationContract:
    """Bots never see each other's data, nor the server-wide KVS."""

    async def test_same_key_in_two_bots(self, store: Store) -> None:
        b1, b2 = store.bot("b1").kvs, store.bot("b2").kvs
        await b1.set("k", 1)
        await b2.set("k", 2)
        await store.global_kvs.set("k", 3)
        assert (await b1.get("k"), await b2.get("k"), await store.global_kvs.get("k")) == (1, 2, 3)
        assert await b1.delete("k")
        assert await b2.get("k") == 2
        assert await store.global_kvs.get("k") == 3
        assert await b1.get_many(["k"]) == {}
        assert await b1.delete_many(["k"]) == 0
        assert await b2.delete_many(["k"]) == 1
        assert await store.global_kvs.get("k") == 3

    async def test_versions_and_ttls_are_per_bot(self, store: Store) -> None:
        b1, b2 = store.bot("b1").kvs, store.bot("b2").kvs
        await b1.set("k", 1, expiry="1m")
        await b1.set("k", 1, keep_ttl=True)
        assert await b2.set("k", 1) == 1
        assert await b2.ttl("k") is None
        assert await b2.set_if_absent("j", 1)
        assert await b1.set_if_absent("j", 1)
        assert await b2.incr("n") == 1
        assert await b1.incr("n") == 1

    async def test_keys_are_per_bot(self, store: Store) -> None:
        await store.bot("b1").kvs.set_many({"a": 1, "b": 1})
        await store.bot("b10").kvs.set("c", 1)
        await store.bot("b").kvs.set("d", 1)
        await store.global_kvs.set("e", 1)
        assert await all_keys(store.bot("b1").kvs) == ["a", "b"]
        assert await all_keys(store.bot("b10").kvs) == ["c"]
        assert await all_keys(store.bot("b").kvs) == ["d"]
        assert await all_keys(store.global_kvs) == ["e"]
        assert await store.bots() == ["b", "b1", "b10"]

    async def test_a_closed_store_refuses_work(self, backend_name: str, tmp_path: Path, clock: FakeClock) -> None:
        async with open_test_store(backend_name, tmp_path, clock=clock) as store:
            kvs = store.bot("b1").kvs
            await kvs.set("k", 1)
            await store.close()
            await store.close()  # idempotent
            for call in (
                lambda: kvs.get("k"),
                lambda: kvs.set("k", 2),
                lambda: all_keys(kvs),
                lambda: store.purge_expired(),
                lambda: store.bot("b2").memory.set_user_variable("u", "n", 1),
            ):
                with pytest.raises(StoreUnavailableError):
                    await call()

    async def test_handles_of_one_bot_share_data(self, store: Store) -> None:
        await store.bot("b1").kvs.set("k", 1)
        assert await store.bot("b1").kvs.get("k") == 1

    async def test_bad_bot_ids(self, store: Store) -> None:
        bad_ids: tuple[Any, ...] = ("__global__", "../x", "a/b", "", "-a", "a" * 65, "é", " a", None, 1)
        for bad in bad_ids:
            with pytest.raises(InvalidKeyError):
                store.bot(bad)
        assert await store.bots() == []

    async def test_bot_ids_are_exact(self, store: Store) -> None:
        await store.bot("Bot").kvs.set("k", 1)
        assert await store.bot("bot").kvs.get("k") is None
        assert await store.bot("a" * 64).kvs.set("k", 1) == 1
