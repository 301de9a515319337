"""Keys and prefixes: validation, listing in code point order, literal prefixes."""

from __future__ import annotations

import unicodedata
from typing import Any

import pytest

from ...errors import (
    InvalidInputError,
)
from ...store import Store
from ..clock import FakeClock
from ._support import all_keys

# -- keys and prefixes -----------------------------------------------------------

_WILD_KEYS = [
    "%",
    "%a",
    "a%x",
    "_",
    "_x",
    "a_x",
    "ax",
    "a",
    "*",
    "*x",
    "ab*",
    "?",
    "?y",
    "[a]",
    "[a]b",
    "[",
    "\\",
    "\\x",
    "x\\",
    "b",
]


class KeysContract:
    """``keys`` and ``delete_prefix``: literal prefixes, code point order, paging."""

    async def test_keys_all_in_code_point_order(self, store: Store) -> None:
        kvs = store.bot("b1").kvs
        keys = [
            "b",
            "a",
            "B",
            "ab",
            "a-",
            "a b",
            "é",
            "z",
            "~",
            "Z",
            "\u00ff",
            "\u0100",
            "\ue000",
            "\uffff",
            "\U0001f600",
            "\U0010fffd",
            "0",
            "€",
        ]
        await kvs.set_many({k: 1 for k in keys})
        # Python orders str by code point; UTF-16 would put the emoji before U+E000.
        assert await all_keys(kvs) == sorted(keys)
        assert sorted(keys).index("\uffff") < sorted(keys).index("\U0001f600")

    async def test_keys_no_case_folding_or_normalisation(self, store: Store) -> None:
        kvs = store.bot("b1").kvs
        nfc = "café"
        nfd = unicodedata.normalize("NFD", nfc)
        keys = ["User", "user", "ß", "SS", "ss", "\u212a", "K", "k", "\u0430", "a", nfc, nfd]
        await kvs.set_many({k: i for i, k in enumerate(keys)})
        assert await all_keys(kvs) == sorted(keys)
        assert await kvs.get(nfc) == keys.index(nfc)
        assert await kvs.get(nfd) == keys.index(nfd)
        assert await all_keys(kvs, "u") == ["user"]
        assert await all_keys(kvs, "K") == ["K"]
        assert await all_keys(kvs, "s") == ["ss"]

    async def test_keys_prefix_is_literal(self, store: Store) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set_many({k: 1 for k in _WILD_KEYS})
        for prefix in ("%", "_", "*", "?", "[a]", "[", "\\", "a_", "a%", "a", "ab*", "x\\"):
            assert await all_keys(kvs, prefix) == sorted(k for k in _WILD_KEYS if k.startswith(prefix)), prefix

    async def test_delete_prefix_is_literal(self, store: Store) -> None:
        kvs = store.bot("b1").kvs
        for prefix in ("%", "_", "*", "?", "[a]", "\\", "a_"):
            await kvs.set_many({k: 1 for k in _WILD_KEYS})
            doomed = [k for k in _WILD_KEYS if k.startswith(prefix)]
            assert await kvs.delete_prefix(prefix) == len(doomed), prefix
            assert await all_keys(kvs) == sorted(set(_WILD_KEYS) - set(doomed)), prefix

    async def test_keys_prefix_with_trailing_space_and_high_code_points(self, store: Store) -> None:
        kvs = store.bot("b1").kvs
        keys = ["my key", "my", "mykey", "a\uffff", "a\uffffb", "a\U0001f600", "b"]
        await kvs.set_many({k: 1 for k in keys})
        assert await all_keys(kvs, "my ") == ["my key"]
        assert await all_keys(kvs, "a\uffff") == ["a\uffff", "a\uffffb"]
        assert await all_keys(kvs, "a") == sorted(k for k in keys if k.startswith("a"))

    async def test_keys_prefix_at_the_top_of_unicode(self, store: Store) -> None:
        kvs = store.bot("b1").kvs
        keys = [
            "a\U0010ffff",
            "a\U0010ffffb",
            "a\U0010fffe",
            "a\ud7ff",
            "a\ud7ffx",
            "a\ue000",
            "a\uffff",
            "\U0010ffff",
            "\U0010ffff\U0010ffff",
            "b",
        ]
        await kvs.set_many({k: 1 for k in keys})
        for prefix in ("a\U0010ffff", "a\ud7ff", "a\uffff", "\U0010ffff", "a", "a\U0010fffe"):
            assert await all_keys(kvs, prefix) == sorted(k for k in keys if k.startswith(prefix)), prefix
        assert await kvs.delete_prefix("\U0010ffff") == 2
        assert await kvs.delete_prefix("a\ud7ff") == 2
        assert await all_keys(kvs) == sorted(set(keys) - {"\U0010ffff", "\U0010ffff\U0010ffff", "a\ud7ff", "a\ud7ffx"})

    async def test_keys_survive_deletes_while_paging(self, store: Store) -> None:
        kvs = store.bot("b1").kvs
        keys = [f"k{i:04d}" for i in range(1200)]
        await kvs.set_many({k: 1 for k in keys})
        seen = []
        async for key in kvs.keys():
            seen.append(key)
            await kvs.delete(key)
        assert seen == keys
        assert await all_keys(kvs) == []

    async def test_keys_paging_over_many_keys(self, store: Store) -> None:
        kvs = store.bot("b1").kvs
        keys = [f"k{i:04d}" for i in range(1234)]
        await kvs.set_many({k: 1 for k in reversed(keys)})
        assert await all_keys(kvs) == keys
        assert await all_keys(kvs, "k1") == keys[1000:]
        assert await all_keys(kvs, limit=3) == keys[:3]
        assert await all_keys(kvs, limit=500) == keys[:500]
        assert await all_keys(kvs, limit=501) == keys[:501]
        assert await all_keys(kvs, limit=1100) == keys[:1100]
        assert await all_keys(kvs, limit=5000) == keys
        assert await all_keys(kvs, "k11", limit=50) == keys[1100:1150]

    async def test_keys_paging_skips_expired(self, store: Store, clock: FakeClock) -> None:
        kvs = store.bot("b1").kvs
        keys = [f"k{i:04d}" for i in range(1200)]
        await kvs.set_many({k: 1 for k in keys[0::2]}, expiry="10s")
        await kvs.set_many({k: 1 for k in keys[1::2]})
        clock.advance(10)
        assert await all_keys(kvs) == keys[1::2]
        assert await all_keys(kvs, limit=510) == keys[1::2][:510]

    @pytest.mark.parametrize("limit", [0, -1, 1.5, True, "3"])
    async def test_keys_limit_must_be_positive_int(self, store: Store, limit: Any) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set("a", 1)
        with pytest.raises(InvalidInputError):
            await all_keys(kvs, limit=limit)

    async def test_keys_of_an_empty_store(self, store: Store) -> None:
        assert await all_keys(store.bot("b1").kvs) == []
        assert await all_keys(store.global_kvs, "x") == []

    async def test_delete_prefix_counts_live_and_deletes_expired(self, store: Store, clock: FakeClock) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set_many({"p/1": 1, "p/2": 2, "q/1": 3})
        await kvs.set("p/3", 3, expiry="5s")
        t0 = clock.now()
        clock.advance(5)
        assert await kvs.delete_prefix("p/") == 2
        assert await all_keys(kvs) == ["q/1"]
        # the expired row is gone too: read as of t0, when it was live, it is not there
        assert await kvs.rows(["p/3"], at=t0) == []
        assert await kvs.scan_keys(at=t0) == ["q/1"]

    async def test_delete_prefix_empty_needs_all(self, store: Store) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set_many({"a": 1, "b": 2})
        with pytest.raises(InvalidInputError):
            await kvs.delete_prefix("")
        with pytest.raises(InvalidInputError):
            await kvs.delete_prefix("", all="yes")  # type: ignore[arg-type]
        assert await all_keys(kvs) == ["a", "b"]
        assert await kvs.delete_prefix("", all=True) == 2
        assert await all_keys(kvs) == []

    async def test_delete_prefix_this_bot_only(self, store: Store) -> None:
        b1, b2 = store.bot("b1").kvs, store.bot("b2").kvs
        for kvs in (b1, b2, store.global_kvs):
            await kvs.set_many({"x/1": 1, "x/2": 2, "y": 3})
        assert await b1.delete_prefix("x/") == 2
        assert await all_keys(b1) == ["y"]
        assert await all_keys(b2) == ["x/1", "x/2", "y"]
        assert await all_keys(store.global_kvs) == ["x/1", "x/2", "y"]
        assert await b1.delete_prefix("", all=True) == 1
        assert await all_keys(b2) == ["x/1", "x/2", "y"]

    async def test_delete_prefix_of_nothing(self, store: Store) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set("a", 1)
        assert await kvs.delete_prefix("b") == 0
        assert await kvs.delete_prefix("a", all=True) == 1

    async def test_delete_prefix_many_keys(self, store: Store) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set_many({f"p{i:04d}": i for i in range(1100)})
        await kvs.set("q", 1)
        assert await kvs.delete_prefix("p") == 1100
        assert await all_keys(kvs) == ["q"]
