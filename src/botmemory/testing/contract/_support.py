"""Helpers the contract classes share (the public ones are re-exported by the package)."""

from __future__ import annotations

import math
from typing import Any

from ...kvs import KVS
from ...store import Store
from ..clock import FakeClock

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)


# -- helpers (public: other suites reuse them) ---------------------------------


async def all_keys(kvs: KVS, prefix: str = "", *, limit: int | None = None) -> list[str]:
    """Every key ``kvs.keys(prefix, limit=limit)`` yields, as a list."""
    return [k async for k in kvs.keys(prefix, limit=limit)]


def assert_same(actual: Any, expected: Any) -> None:
    """Assert that two JSON values are equal with the same types everywhere.

    ``==`` alone would let ``1 == 1.0 == True`` and ``0.0 == -0.0`` pass and
    would not see object key order; a store must keep all of these.
    """
    assert type(actual) is type(expected), f"{actual!r} is a {type(actual).__name__}, expected {expected!r}"
    if isinstance(expected, dict):
        assert list(actual) == list(expected), f"key order {list(actual)} != {list(expected)}"
        for k in expected:
            assert_same(actual[k], expected[k])
    elif isinstance(expected, list):
        assert len(actual) == len(expected), f"{actual!r} != {expected!r}"
        for a, e in zip(actual, expected, strict=True):
            assert_same(a, e)
    elif isinstance(expected, float):
        assert actual == expected and math.copysign(1.0, actual) == math.copysign(1.0, expected), (
            f"{actual!r} != {expected!r}"
        )
    else:
        assert actual == expected, f"{actual!r} != {expected!r}"


async def dump_store(store: Store) -> dict[str, dict[str, tuple[Any, int, float | None, float]]]:
    """Everything live in ``store``: namespace -> key -> (value, version, expires_at, modified_at).

    Covers every bot that has data and the server-wide KVS, so comparing two
    dumps shows whether a call changed anything at all.
    """
    kvs_list = [store.bot(b).kvs for b in await store.bots()] + [store.global_kvs]
    out: dict[str, dict[str, tuple[Any, int, float | None, float]]] = {}
    for kvs in kvs_list:
        rows: dict[str, tuple[Any, int, float | None, float]] = {}
        for key in await all_keys(kvs):
            entry = await kvs.get_entry(key)
            assert entry is not None, f"{key!r} was listed but get_entry found nothing"
            rows[key] = (entry.value, entry.version, entry.expires_at, entry.modified_at)
        if rows:
            out[kvs.namespace] = rows
    return out


async def _version(kvs: KVS, key: str) -> int | None:
    entry = await kvs.get_entry(key)
    return None if entry is None else entry.version


# -- expired data is never returned, counted or listed ----------------------------------


async def _with_expired(store: Store, clock: FakeClock) -> KVS:
    """A bot KVS holding ``live`` and ``gone`` (expired exactly now, at version 3)."""
    kvs = store.bot("b1").kvs
    await kvs.set("live", {"v": 1})
    await kvs.set("gone", {"a": 1}, expiry="10s")
    await kvs.set("gone", {"a": 2}, keep_ttl=True)
    await kvs.set("gone", {"a": 3}, keep_ttl=True)
    clock.advance(10)
    return kvs
