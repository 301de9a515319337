"""JSON paths: reading and writing a part of a stored value."""

from __future__ import annotations

from typing import Any

import pytest

from ...errors import (
    InvalidPathError,
    ValueTypeError,
)
from ...store import Store
from ..clock import FakeClock
from ._support import assert_same

# -- paths ---------------------------------------------------------------------


class PathContract:
    """``get``/``set`` with a path: creation rules, errors, nothing half-written."""

    async def test_get_with_path(self, store: Store) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set("k", {"profile": {"address": {"city": "Oslo"}}, "items": [{"name": "a"}], "n": None})
        assert await kvs.get("k", "profile.address.city") == "Oslo"
        assert await kvs.get("k", "items[0].name") == "a"
        assert await kvs.get("k", ("items", 0, "name")) == "a"
        assert await kvs.get("k", "n", default="d") is None

    @pytest.mark.parametrize("path", ["missing", "profile.x", "items[1]", "items[0].name.x", "[0]", "items.name"])
    async def test_get_with_path_leading_nowhere_is_default(self, store: Store, path: str) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set("k", {"profile": {}, "items": [{"name": "a"}]})
        assert await kvs.get("k", path, default="d") == "d"

    async def test_tuple_path_reaches_keys_with_dots(self, store: Store) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set("k", {"a.b": {"[0]": 1}})
        assert await kvs.get("k", ("a.b", "[0]")) == 1
        await kvs.set("k", 2, ("a.b", "c"))
        assert_same(await kvs.get("k"), {"a.b": {"[0]": 1, "c": 2}})

    async def test_set_path_creates_objects_and_lists(self, store: Store) -> None:
        kvs = store.bot("b1").kvs
        assert await kvs.set("k", 1, "x[0].y") == 1
        assert_same(await kvs.get("k"), {"x": [{"y": 1}]})
        assert await kvs.set("list", "v", "[0]") == 1
        assert_same(await kvs.get("list"), ["v"])

    async def test_set_path_null_on_the_way_counts_as_missing(self, store: Store) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set("k", {"a": None})
        await kvs.set("k", 1, "a.b")
        assert_same(await kvs.get("k"), {"a": {"b": 1}})
        await kvs.set("root", None)
        await kvs.set("root", 2, "c")
        assert_same(await kvs.get("root"), {"c": 2})

    async def test_set_path_keeps_the_rest_and_order(self, store: Store) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set("k", {"b": 1, "a": {"y": 1, "x": 2}, "c": 3})
        await kvs.set("k", 9, "a.y")
        assert_same(await kvs.get("k"), {"b": 1, "a": {"y": 9, "x": 2}, "c": 3})

    async def test_set_path_index_equal_to_length_appends(self, store: Store) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set("k", {"l": [1]})
        await kvs.set("k", 2, "l[1]")
        await kvs.set("k", 0, "l[0]")
        assert_same(await kvs.get("k"), {"l": [0, 2]})

    async def test_set_path_errors_write_nothing(self, store: Store, clock: FakeClock) -> None:
        kvs = store.bot("b1").kvs
        cases: list[tuple[Any, str, type[Exception]]] = [
            ({"l": [1]}, "l[2]", InvalidPathError),
            ({"s": "str"}, "s.x", ValueTypeError),
            ({"n": 5}, "n[0]", ValueTypeError),
            ({"b": True}, "b.x", ValueTypeError),
            ({"o": {}}, "o[0]", ValueTypeError),
            ({"l": []}, "l.x", ValueTypeError),
            ({"a": 1}, "[0]", ValueTypeError),
            ([1], "a", ValueTypeError),
            ("text", "a", ValueTypeError),
            ({"a": 1}, "a..b", InvalidPathError),
            ({"a": 1}, "__proto__.x", InvalidPathError),
            ({"a": 1}, "a[-1]", InvalidPathError),
            ({"a": 1}, "a[10001]", InvalidPathError),
        ]
        for i, (stored, path, error) in enumerate(cases):
            key = f"k{i}"
            await kvs.set(key, stored, expiry="1h")
            before = await kvs.get_entry(key)
            clock.advance(1)
            with pytest.raises(error):
                await kvs.set(key, "new", path)
            assert await kvs.get_entry(key) == before, (stored, path)

    async def test_failed_path_set_on_missing_key_creates_nothing(self, store: Store) -> None:
        kvs = store.bot("b1").kvs
        with pytest.raises(InvalidPathError):
            await kvs.set("k", 1, "[1]")
        assert not await kvs.exists("k")

    async def test_bad_path_on_get(self, store: Store) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set("k", {"a": 1})
        for path in ("", "a..b", "a.", ".a", "a[x]", ("a", True), ()):
            with pytest.raises(InvalidPathError):
                await kvs.get("k", path)
