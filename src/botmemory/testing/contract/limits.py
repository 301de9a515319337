"""Limits and quotas (stores opened with other ``Limits``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ...errors import (
    InvalidKeyError,
    QuotaExceededError,
    ValueTooLargeError,
)
from ...limits import Limits
from ...store import Store
from ..backends import open_test_store
from ..clock import FakeClock
from ._support import all_keys

# -- limits and quotas (stores opened with other Limits) ------------------------------------


class LimitsContract:
    """``Limits``: key and value sizes, and ``max_keys_per_bot``."""

    async def test_key_length_limit(self, store: Store) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set("x" * 512, 1)
        await kvs.set("é" * 256, 1)  # 512 UTF-8 bytes
        for key in ("x" * 513, "é" * 256 + "x", "😀" * 128 + "x", "x" * (1 << 20)):
            with pytest.raises(InvalidKeyError):
                await kvs.set(key, 1)
        assert sorted(await all_keys(kvs)) == sorted(["x" * 512, "é" * 256])

    async def test_the_largest_value_round_trips(self, store: Store) -> None:
        kvs = store.bot("b1").kvs
        largest = {"v": "é" * ((1_048_576 - 8) // 2)}  # {"v":""} is 8 bytes, é is 2
        await kvs.set("k", largest)
        assert await kvs.get("k") == largest
        with pytest.raises(ValueTooLargeError):
            await kvs.set("k", 1, "w")
        assert await kvs.get_many(["k"]) == {"k": largest}

    async def test_value_size_limit(self, backend_name: str, tmp_path: Path, clock: FakeClock) -> None:
        limits = Limits(max_value_bytes=100)
        async with open_test_store(backend_name, tmp_path, clock=clock, limits=limits) as store:
            kvs = store.bot("b1").kvs
            await kvs.set("k", "x" * 98)  # 100 bytes with the quotes
            with pytest.raises(ValueTooLargeError):
                await kvs.set("k", "x" * 99)
            await kvs.set("doc", {"a": "x" * 50})
            with pytest.raises(ValueTooLargeError):  # the whole value after a path set
                await kvs.set("doc", "y" * 50, "b")
            with pytest.raises(ValueTooLargeError):
                await kvs.set_many({"n": 1, "big": "z" * 200})
            await kvs.set("counter", {"n": 9, "p": "x" * 86})  # exactly 100 bytes
            with pytest.raises(ValueTooLargeError):  # 10 takes one more byte
                await kvs.incr("counter", path="n")
            assert await kvs.get("counter", "n") == 9
            assert await kvs.incr("counter", -9, path="n") == 0
            assert await kvs.get("k") == "x" * 98
            assert await kvs.get("doc") == {"a": "x" * 50}
            assert await kvs.get_many(["n", "big"]) == {}

    async def test_quota(self, backend_name: str, tmp_path: Path, clock: FakeClock) -> None:
        limits = Limits(max_keys_per_bot=3)
        async with open_test_store(backend_name, tmp_path, clock=clock, limits=limits) as store:
            kvs = store.bot("b1").kvs
            await kvs.set_many({"a": 1, "b": 2})
            await kvs.set("c", 3)
            for write in (
                lambda: kvs.set("d", 4),
                lambda: kvs.set("d", 4, "x"),
                lambda: kvs.incr("d"),
                lambda: kvs.set_if_absent("d", 4),
                lambda: kvs.set("d", 4, if_version=0),
                lambda: kvs.set_many({"a": 0, "d": 4}),
                lambda: store.bot("b1").memory.set_user_variable("u", "n", 1),
            ):
                with pytest.raises(QuotaExceededError):
                    await write()
            assert await all_keys(kvs) == ["a", "b", "c"]
            assert await kvs.get("a") == 1
            # overwriting existing keys creates none
            assert await kvs.set("a", 10) == 2
            assert await kvs.incr("b") == 3
            assert await kvs.set_many({"a": 11, "c": 12}) == [3, 2]
            # other bots have their own quota
            await store.bot("b2").kvs.set_many({"a": 1, "b": 2, "c": 3})
            # deleting frees a slot
            await kvs.delete("c")
            await kvs.set("d", 4)
            with pytest.raises(QuotaExceededError):
                await kvs.set("e", 5)

    async def test_expired_keys_do_not_count_towards_quota(
        self, backend_name: str, tmp_path: Path, clock: FakeClock
    ) -> None:
        limits = Limits(max_keys_per_bot=2)
        async with open_test_store(backend_name, tmp_path, clock=clock, limits=limits) as store:
            kvs = store.bot("b1").kvs
            await kvs.set("a", 1, expiry="1s")
            await kvs.set("b", 2)
            with pytest.raises(QuotaExceededError):
                await kvs.set("c", 3)
            clock.advance(1)
            await kvs.set("c", 3)
            assert await all_keys(kvs) == ["b", "c"]
            with pytest.raises(QuotaExceededError):  # re-creating the expired key makes a new key
                await kvs.set("a", 1)
            assert await kvs.get("a") is None

    async def test_memory_keys_may_exceed_max_key_bytes(self, store: Store) -> None:
        memory = store.bot("b1").memory
        user = "é" * 128  # 256 bytes: the longest user id; 768 chars once encoded
        name = "ü" * 128
        await memory.set_user_variable(user, name, 1)
        assert await memory.get_user_variable(user, name) == 1
        kvs = store.bot("b1").kvs
        (key,) = await all_keys(kvs, "storage/users/")
        assert len(key.encode()) > 512
        assert await kvs.get(key) == 1
        assert await kvs.exists(key)
        assert await kvs.delete(key) is True
        with pytest.raises(InvalidKeyError):
            await memory.set_user_variable("é" * 128 + "x", "n", 1)
        with pytest.raises(InvalidKeyError):
            await memory.set_user_variable("u", "ü" * 128 + "x", 1)
