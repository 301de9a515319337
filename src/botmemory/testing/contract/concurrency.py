"""Many tasks on one store."""

from __future__ import annotations

import asyncio
from pathlib import Path

from ...errors import (
    QuotaExceededError,
    VersionConflictError,
)
from ...limits import Limits
from ...store import Store
from ..backends import open_test_store
from ._support import all_keys

# -- many tasks on one store --------------------------------------------------------

_TASKS = 64


class ConcurrencyContract:
    """64 asyncio tasks on one store: incr, path set and compare-and-set lose no update."""

    async def test_incr_one_counter(self, store: Store) -> None:
        kvs = store.bot("race").kvs

        async def bump() -> list[int | float]:
            return [await kvs.incr("counter") for _ in range(10)]

        seen = [n for batch in await asyncio.gather(*(bump() for _ in range(_TASKS))) for n in batch]
        assert await kvs.get("counter") == _TASKS * 10
        assert sorted(seen) == list(range(1, _TASKS * 10 + 1))  # each increment saw a distinct value

    async def test_incr_paths_and_floats(self, store: Store) -> None:
        kvs = store.bot("race").kvs
        await asyncio.gather(*(kvs.incr("doc", 0.5, path=f"c{i % 4}") for i in range(_TASKS)))
        assert await kvs.get("doc") == {f"c{i}": _TASKS / 4 * 0.5 for i in range(4)}

    async def test_compare_and_set_has_one_winner(self, store: Store) -> None:
        kvs = store.bot("race").kvs
        await kvs.set("slot", "initial")

        async def claim(i: int) -> int | None:
            try:
                return await kvs.set("slot", i, if_version=1)
            except VersionConflictError:
                return None

        results = await asyncio.gather(*(claim(i) for i in range(_TASKS)))
        winners = [i for i, version in enumerate(results) if version is not None]
        assert len(winners) == 1
        assert results[winners[0]] == 2
        assert await kvs.get("slot") == winners[0]

    async def test_create_with_if_version_zero_once(self, store: Store) -> None:
        kvs = store.bot("race").kvs

        async def create(i: int) -> bool:
            try:
                await kvs.set("lock", i, if_version=0)
            except VersionConflictError:
                return False
            return True

        created = await asyncio.gather(*(create(i) for i in range(_TASKS)))
        flags = await asyncio.gather(*(kvs.set_if_absent("once", i) for i in range(_TASKS)))
        assert sum(created) == 1 and sum(flags) == 1
        assert await kvs.get("lock") == created.index(True)
        assert await kvs.get("once") == flags.index(True)

    async def test_path_updates_lose_none(self, store: Store) -> None:
        kvs = store.bot("race").kvs
        await kvs.set("doc", {})

        async def write(i: int) -> None:
            for round_ in range(3):
                await kvs.set("doc", round_, path=f"f{i}")

        await asyncio.gather(*(write(i) for i in range(_TASKS)))
        assert await kvs.get("doc") == {f"f{i}": 2 for i in range(_TASKS)}
        entry = await kvs.get_entry("doc")
        assert entry is not None and entry.version == 1 + 3 * _TASKS

    async def test_cannot_overshoot_the_quota(self, backend_name: str, tmp_path: Path) -> None:
        quota = 10
        async with open_test_store(backend_name, tmp_path, limits=Limits(max_keys_per_bot=quota)) as store:
            kvs = store.bot("race").kvs

            async def create(i: int) -> bool:
                try:
                    await kvs.set(f"k{i:02d}", i)
                except QuotaExceededError:
                    return False
                return True

            created = await asyncio.gather(*(create(i) for i in range(_TASKS)))
            keys = await all_keys(kvs)
            assert sum(created) == quota
            assert keys == sorted(f"k{i:02d}" for i, ok in enumerate(created) if ok)

            async def create_many(i: int) -> bool:
                try:
                    await store.bot("race2").kvs.set_many({f"a{i:02d}": 1, f"b{i:02d}": 2})
                except QuotaExceededError:
                    return False
                return True

            created = await asyncio.gather(*(create_many(i) for i in range(_TASKS)))
            assert sum(created) == quota // 2
            assert len(await all_keys(store.bot("race2").kvs)) == quota
