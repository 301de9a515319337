"""The backend contract suite: one set of tests every backend must pass.

Each class below holds ``async def test_*`` methods that take pytest
fixtures; a test module makes pytest collect them by subclassing::

    from botmemory.testing.contract import KVSContract

    class TestKVS(KVSContract):
        pass

Fixtures the classes use:

- ``store``: a fresh, empty :class:`botmemory.Store` opened with ``clock``;
- ``clock``: the :class:`botmemory.testing.FakeClock` that store uses;
- ``backend_name`` and ``tmp_path`` (the few tests that need a store of
  their own: other ``Limits``, or one they close): the backend's name for
  :func:`botmemory.testing.backends.open_test_store`.

Nothing here looks at which backend runs it: behaviour differences between
backends are bugs. Expiry is driven by the fake clock, never by sleeping.
"""

from __future__ import annotations

import asyncio
import math
import unicodedata
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ..errors import (
    InvalidExpiryError,
    InvalidInputError,
    InvalidKeyError,
    InvalidPathError,
    KeyNotFoundError,
    QuotaExceededError,
    StoreUnavailableError,
    ValueTooLargeError,
    ValueTypeError,
    VersionConflictError,
)
from ..kvs import KVS, Entry
from ..limits import Limits
from ..store import Store
from .backends import open_test_store
from .clock import FakeClock

__all__ = [
    "BackendContract",
    "BotpressContract",
    "ConcurrencyContract",
    "ExpiredContract",
    "ExpiryContract",
    "ExpiryRulesContract",
    "IsolationContract",
    "KVSContract",
    "KeysContract",
    "LimitsContract",
    "MemoryContract",
    "PathContract",
    "ValuesContract",
    "VersionContract",
    "all_keys",
    "assert_same",
    "dump_store",
]

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


# -- the KVS methods ------------------------------------------------------------


class KVSContract:
    """get, get_entry, exists, set, set_if_absent, incr, delete and the *_many calls."""

    async def test_get_missing_is_none_or_default(self, store: Store) -> None:
        kvs = store.bot("b1").kvs
        assert await kvs.get("nope") is None
        assert await kvs.get("nope", default="d") == "d"
        assert await kvs.get("nope", "a.b", default=7) == 7

    async def test_set_then_get(self, store: Store) -> None:
        kvs = store.bot("b1").kvs
        assert await kvs.set("k", {"total": 12.5}) == 1
        assert_same(await kvs.get("k"), {"total": 12.5})

    async def test_stored_none_is_a_value_not_the_default(self, store: Store) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set("k", None)
        assert await kvs.get("k", default="d") is None
        assert await kvs.exists("k")
        entry = await kvs.get_entry("k")
        assert entry is not None and entry.value is None
        assert await all_keys(kvs) == ["k"]
        assert await kvs.get_many(["k"]) == {"k": None}

    async def test_get_entry_fields(self, store: Store, clock: FakeClock) -> None:
        kvs = store.bot("b1").kvs
        t0 = clock.now()
        await kvs.set("k", [1, "two"], expiry="30s")
        entry = await kvs.get_entry("k")
        assert isinstance(entry, Entry)
        assert entry.key == "k"
        assert_same(entry.value, [1, "two"])
        assert entry.version == 1
        assert entry.expires_at == pytest.approx(t0 + 30, abs=1e-3)
        assert entry.modified_at == pytest.approx(t0, abs=1e-3)
        assert isinstance(entry.modified_at, float) and isinstance(entry.expires_at, float)

    async def test_get_entry_never_expiring_and_missing(self, store: Store) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set("k", 1)
        entry = await kvs.get_entry("k")
        assert entry is not None and entry.expires_at is None
        assert await kvs.get_entry("other") is None

    async def test_entry_is_frozen(self, store: Store) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set("k", 1)
        entry = await kvs.get_entry("k")
        assert entry is not None
        with pytest.raises(AttributeError):
            entry.value = 2  # type: ignore[misc]

    @pytest.mark.parametrize("falsy", [0, 0.0, False, "", None, [], {}])
    async def test_exists_for_falsy_values(self, store: Store, falsy: Any) -> None:
        kvs = store.bot("b1").kvs
        assert not await kvs.exists("k")
        await kvs.set("k", falsy)
        assert await kvs.exists("k")
        assert_same(await kvs.get("k", default="missing"), falsy)

    async def test_set_returns_growing_versions(self, store: Store) -> None:
        kvs = store.bot("b1").kvs
        assert [await kvs.set("k", i) for i in range(4)] == [1, 2, 3, 4]
        assert await kvs.get("k") == 3

    async def test_set_if_version_matches(self, store: Store) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set("k", "a")
        assert await kvs.set("k", "b", if_version=1) == 2
        assert await kvs.get("k") == "b"

    async def test_set_if_version_mismatch_changes_nothing(self, store: Store, clock: FakeClock) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set("k", "a", expiry="1h")
        before = await kvs.get_entry("k")
        clock.advance(1)
        for wrong in (0, 2, 5):
            with pytest.raises(VersionConflictError):
                await kvs.set("k", "b", if_version=wrong)
        assert await kvs.get_entry("k") == before

    async def test_set_if_version_zero_means_absent(self, store: Store) -> None:
        kvs = store.bot("b1").kvs
        assert await kvs.set("k", "first", if_version=0) == 1
        with pytest.raises(VersionConflictError):
            await kvs.set("k", "second", if_version=0)
        assert await kvs.get("k") == "first"

    async def test_set_if_version_on_missing_key_conflicts(self, store: Store) -> None:
        kvs = store.bot("b1").kvs
        with pytest.raises(VersionConflictError):
            await kvs.set("k", 1, if_version=1)
        assert not await kvs.exists("k")

    async def test_set_if_version_with_path(self, store: Store) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set("k", {"a": 1})
        assert await kvs.set("k", 2, "b", if_version=1) == 2
        with pytest.raises(VersionConflictError):
            await kvs.set("k", 3, "c", if_version=1)
        assert_same(await kvs.get("k"), {"a": 1, "b": 2})

    @pytest.mark.parametrize("bad", [-1, 1.0, "1", True])
    async def test_set_if_version_must_be_a_non_negative_int(self, store: Store, bad: Any) -> None:
        kvs = store.bot("b1").kvs
        with pytest.raises(InvalidInputError):
            await kvs.set("k", 1, if_version=bad)
        assert not await kvs.exists("k")

    async def test_set_if_absent(self, store: Store) -> None:
        kvs = store.bot("b1").kvs
        assert await kvs.set_if_absent("k", "first") is True
        assert await kvs.set_if_absent("k", "second") is False
        assert await kvs.get("k") == "first"
        assert await _version(kvs, "k") == 1

    async def test_set_if_absent_sees_falsy_values(self, store: Store) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set("k", None)
        assert await kvs.set_if_absent("k", "x") is False
        assert await kvs.get("k", default="d") is None

    async def test_set_if_absent_leaves_a_live_key_alone(self, store: Store, clock: FakeClock) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set("k", "first", expiry="1m")
        before = await kvs.get_entry("k")
        clock.advance(1)
        assert await kvs.set_if_absent("k", "second", expiry="1h") is False
        assert await kvs.get_entry("k") == before

    async def test_set_if_absent_with_expiry(self, store: Store, clock: FakeClock) -> None:
        kvs = store.bot("b1").kvs
        assert await kvs.set_if_absent("k", 1, expiry="10s")
        assert await kvs.ttl("k") == pytest.approx(10, abs=1e-3)
        clock.advance(10)
        assert await kvs.set_if_absent("k", 2)
        assert await kvs.ttl("k") is None

    async def test_incr_missing_counts_as_zero(self, store: Store) -> None:
        kvs = store.bot("b1").kvs
        assert await kvs.incr("n") == 1
        assert await kvs.incr("n", 5) == 6
        assert await kvs.incr("n", -10) == -4
        assert_same(await kvs.get("n"), -4)
        assert await kvs.ttl("n") is None

    async def test_incr_by_zero_creates_the_key(self, store: Store) -> None:
        kvs = store.bot("b1").kvs
        assert_same(await kvs.incr("n", 0), 0)
        assert await kvs.exists("n")
        assert await _version(kvs, "n") == 1
        assert_same(await kvs.incr("f", 0.0), 0.0)

    async def test_incr_float(self, store: Store) -> None:
        kvs = store.bot("b1").kvs
        assert_same(await kvs.incr("f", 0.1), 0.1)
        assert_same(await kvs.incr("f", 0.2), 0.1 + 0.2)
        await kvs.set("i", 1)
        assert_same(await kvs.incr("i", 0.5), 1.5)
        assert_same(await kvs.get("i"), 1.5)
        await kvs.set("big", 1.7976931348623157e308)
        with pytest.raises(ValueTypeError):  # to infinity: not a JSON number
            await kvs.incr("big", 1.7976931348623157e308)
        assert_same(await kvs.get("big"), 1.7976931348623157e308)
        await kvs.set("whole", 2.0)
        assert_same(await kvs.incr("whole", 1), 3.0)  # a float stays a float

    async def test_incr_with_path(self, store: Store) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set("k", {"a": {"n": 1}, "z": "keep"})
        assert await kvs.incr("k", 2, path="a.n") == 3
        assert await kvs.incr("k", path="a.m") == 1
        assert await kvs.incr("k", 4, path=("b", 0)) == 4
        assert_same(await kvs.get("k"), {"a": {"n": 3, "m": 1}, "z": "keep", "b": [4]})

    async def test_incr_with_path_on_missing_key(self, store: Store) -> None:
        kvs = store.bot("b1").kvs
        assert await kvs.incr("k", 3, path="c.d") == 3
        assert_same(await kvs.get("k"), {"c": {"d": 3}})
        assert await _version(kvs, "k") == 1

    @pytest.mark.parametrize("stored", [None, True, False, "1", [1], {"a": 1}])
    async def test_incr_on_a_non_number_changes_nothing(self, store: Store, stored: Any) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set("k", stored)
        with pytest.raises(ValueTypeError):
            await kvs.incr("k")
        assert_same(await kvs.get("k"), stored)
        assert await _version(kvs, "k") == 1

    @pytest.mark.parametrize("stored", [None, True, "x"])
    async def test_incr_path_on_a_non_number(self, store: Store, stored: Any) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set("k", {"a": stored})
        with pytest.raises(ValueTypeError):
            await kvs.incr("k", path="a")
        assert_same(await kvs.get("k"), {"a": stored})

    async def test_incr_path_through_a_scalar(self, store: Store) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set("k", {"a": 5})
        with pytest.raises(ValueTypeError):
            await kvs.incr("k", path="a.b")
        assert_same(await kvs.get("k"), {"a": 5})

    @pytest.mark.parametrize(("start", "amount"), [(INT64_MAX, 1), (INT64_MIN, -1), (0, 2**63), (1, INT64_MAX)])
    async def test_incr_out_of_int64_range(self, store: Store, start: int, amount: int) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set("k", start)
        with pytest.raises(ValueTypeError):
            await kvs.incr("k", amount)
        assert_same(await kvs.get("k"), start)
        assert await _version(kvs, "k") == 1

    async def test_incr_to_the_int64_edges(self, store: Store) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set("hi", INT64_MAX - 1)
        assert_same(await kvs.incr("hi"), INT64_MAX)
        assert_same(await kvs.get("hi"), INT64_MAX)
        await kvs.set("lo", INT64_MIN + 1)
        assert_same(await kvs.incr("lo", -1), INT64_MIN)
        assert_same(await kvs.get("lo"), INT64_MIN)

    @pytest.mark.parametrize("amount", [True, "1", None, float("nan"), float("inf"), [1]])
    async def test_incr_amount_must_be_a_number(self, store: Store, amount: Any) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set("k", 1)
        with pytest.raises(ValueTypeError):
            await kvs.incr("k", amount)
        assert_same(await kvs.get("k"), 1)

    async def test_delete(self, store: Store) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set("k", 0)
        assert await kvs.delete("k") is True
        assert await kvs.delete("k") is False
        assert not await kvs.exists("k")
        assert await kvs.get("k") is None

    async def test_get_many(self, store: Store) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set_many({"a": 1, "b": None, "c": "x"})
        got = await kvs.get_many(["c", "missing", "a", "b"])
        assert got == {"a": 1, "b": None, "c": "x"}
        assert await kvs.get_many([]) == {}
        assert await kvs.get_many(["a", "a"]) == {"a": 1}

    async def test_get_many_large(self, store: Store) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set_many({f"k{i:04d}": i for i in range(1200)})
        wanted = [f"k{i:04d}" for i in range(0, 2400, 2)]
        got = await kvs.get_many(wanted)
        assert got == {f"k{i:04d}": i for i in range(0, 1200, 2)}

    async def test_set_many_returns_versions(self, store: Store) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set("a", 0)
        assert await kvs.set_many({"a": 1, "b": 2}) == [2, 1]
        assert await kvs.get_many(["a", "b"]) == {"a": 1, "b": 2}
        assert await kvs.set_many({}) == []

    async def test_set_many_with_expiry(self, store: Store, clock: FakeClock) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set_many({"a": 1, "b": 2}, expiry="1m")
        assert await kvs.ttl("a") == pytest.approx(60, abs=1e-3)
        assert await kvs.ttl("b") == pytest.approx(60, abs=1e-3)
        clock.advance(60)
        assert await kvs.get_many(["a", "b"]) == {}

    @pytest.mark.parametrize(
        ("mapping", "error"),
        [
            ({"new": 1, "a": float("nan")}, ValueTypeError),
            ({"new": 1, "a": b"bytes"}, ValueTypeError),
            ({"new": 1, "a": 2**63}, ValueTypeError),
            ({"new": 1, "": 2}, InvalidKeyError),
            ({"new": 1, " a": 2}, InvalidKeyError),
            ({"new": 1, "x" * 513: 2}, InvalidKeyError),
            ({"new": 1, "a": "y" * 2_000_000}, ValueTooLargeError),
        ],
    )
    async def test_set_many_is_all_or_nothing(
        self, store: Store, mapping: dict[str, Any], error: type[Exception]
    ) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set("a", "old")
        before = await dump_store(store)
        with pytest.raises(error):
            await kvs.set_many(mapping)
        assert await dump_store(store) == before

    async def test_set_many_bad_expiry_writes_nothing(self, store: Store) -> None:
        kvs = store.bot("b1").kvs
        with pytest.raises(InvalidExpiryError):
            await kvs.set_many({"a": 1}, expiry="5 fortnights")
        assert await dump_store(store) == {}

    async def test_delete_many(self, store: Store, clock: FakeClock) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set_many({"a": 1, "b": 2, "c": 3})
        await kvs.set("e", 4, expiry="1s")
        clock.advance(1)
        assert await kvs.delete_many(["a", "b", "missing", "e"]) == 2
        assert await all_keys(kvs) == ["c"]
        assert await kvs.delete_many([]) == 0

    async def test_values_are_copies(self, store: Store) -> None:
        kvs = store.bot("b1").kvs
        value = {"l": [1]}
        await kvs.set("k", value)
        value["l"].append(2)
        got = await kvs.get("k")
        assert got == {"l": [1]}
        got["l"].append(3)
        assert await kvs.get("k") == {"l": [1]}


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
        keys = ["b", "a", "B", "ab", "a-", "a b", "é", "z", "~", "Z", "\u00ff", "\u0100", "\ue000", "\uffff",
                "\U0001f600", "\U0010fffd", "0", "€"]
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
        keys = ["a\U0010ffff", "a\U0010ffffb", "a\U0010fffe", "a\ud7ff", "a\ud7ffx", "a\ue000", "a\uffff",
                "\U0010ffff", "\U0010ffff\U0010ffff", "b"]
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
        # the expired row is gone too: winding the clock back does not revive it
        clock.set(t0)
        assert await kvs.get("p/3") is None
        assert await all_keys(kvs) == ["q/1"]

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


# -- expiry: ttl / expire / persist / purge -------------------------------------------------


class ExpiryContract:
    """ttl, expire, persist, the accepted expiry forms and ``store.purge_expired``."""

    async def test_relative_expiry_forms(self, store: Store, clock: FakeClock) -> None:
        kvs = store.bot("b1").kvs
        forms: list[tuple[Any, float]] = [
            ("30s", 30),
            ("10 m", 600),
            ("1.5h", 5400),
            ("30 days", 30 * 86400),
            ("2 hours", 7200),
            ("PT10M", 600),
            ("P2D", 172800),
            ("P1W", 604800),
            ("P1DT2H30.5S", 86400 + 7200 + 30.5),
            ("250ms", 0.25),
            ("0.0001ms", 0.001),
            (45, 45),
            (1.1, 1.1),
            (timedelta(days=1, seconds=1), 86401),
            (timedelta(microseconds=1), 0.001),
        ]
        t0 = clock.now()
        for i, (expiry, seconds) in enumerate(forms):
            await kvs.set(f"k{i}", 1, expiry=expiry)
            entry = await kvs.get_entry(f"k{i}")
            assert entry is not None and entry.expires_at == pytest.approx(t0 + seconds, abs=1e-3), expiry
            assert await kvs.ttl(f"k{i}") == pytest.approx(seconds, abs=1e-3), expiry

    async def test_absolute_expiry(self, store: Store, clock: FakeClock) -> None:
        kvs = store.bot("b1").kvs
        at = datetime.fromtimestamp(clock.now() + 3600, tz=UTC)
        await kvs.set("k", 1, expiry=at)
        assert await kvs.ttl("k") == pytest.approx(3600, abs=1e-3)
        clock.advance(3600)
        assert not await kvs.exists("k")

    async def test_absolute_expiry_rounds_up_to_whole_ms(self, store: Store, clock: FakeClock) -> None:
        kvs = store.bot("b1").kvs
        at = datetime.fromtimestamp(clock.now() + 10, tz=UTC) + timedelta(microseconds=500)
        await kvs.set("k", 1, expiry=at)
        entry = await kvs.get_entry("k")
        assert entry is not None and entry.expires_at == pytest.approx(clock.now() + 10.001, abs=1e-6)

    async def test_up_to_100_years(self, store: Store) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set("k", 1, expiry="36525d")
        assert await kvs.ttl("k") == pytest.approx(36_525 * 86_400, abs=1e-3)
        await kvs.set("w", 1, expiry=timedelta(days=36_525))
        assert await kvs.get("w") == 1
        with pytest.raises(InvalidExpiryError):
            await kvs.set("k", 2, expiry=36_525 * 86_400 + 1)
        assert await kvs.get("k") == 1

    async def test_expired_at_exactly_expires_at(self, store: Store, clock: FakeClock) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set("k", 1, expiry=10)
        clock.advance(9.99)
        assert await kvs.get("k") == 1
        clock.advance(0.01)
        assert await kvs.get("k") is None

    async def test_ttl(self, store: Store, clock: FakeClock) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set("never", 1)
        await kvs.set("soon", 1, expiry="10s")
        assert await kvs.ttl("never") is None
        assert await kvs.ttl("soon") == pytest.approx(10, abs=1e-3)
        clock.advance(4)
        assert await kvs.ttl("soon") == pytest.approx(6, abs=1e-3)
        with pytest.raises(KeyNotFoundError):
            await kvs.ttl("missing")
        with pytest.raises(KeyError):  # KeyNotFoundError is also a KeyError
            await kvs.ttl("missing")

    async def test_expire_sets_ttl_and_keeps_version(self, store: Store, clock: FakeClock) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set("k", 1)
        before = await kvs.get_entry("k")
        clock.advance(7)
        assert await kvs.expire("k", "1m") is True
        after = await kvs.get_entry("k")
        assert before is not None and after is not None
        assert (after.version, after.modified_at, after.value) == (before.version, before.modified_at, 1)
        assert after.expires_at == pytest.approx(clock.now() + 60, abs=1e-3)
        assert await kvs.expire("k", 5) is True
        assert await kvs.ttl("k") == pytest.approx(5, abs=1e-3)
        clock.advance(5)
        assert not await kvs.exists("k")

    async def test_expire_missing_is_false(self, store: Store) -> None:
        kvs = store.bot("b1").kvs
        assert await kvs.expire("missing", "1m") is False
        assert not await kvs.exists("missing")

    @pytest.mark.parametrize("expiry", [None, "never"])
    async def test_expire_never_is_refused(self, store: Store, expiry: Any) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set("k", 1, expiry="1m")
        with pytest.raises(InvalidExpiryError):
            await kvs.expire("k", expiry)
        assert await kvs.ttl("k") == pytest.approx(60, abs=1e-3)

    @pytest.mark.parametrize("expiry", ["-5m", 0, "0s", "abc", float("nan"), True, "5 M"])
    async def test_expire_bad_expiry_changes_nothing(self, store: Store, expiry: Any) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set("k", 1, expiry="1m")
        before = await dump_store(store)
        with pytest.raises(InvalidExpiryError):
            await kvs.expire("k", expiry)
        assert await dump_store(store) == before

    async def test_persist(self, store: Store, clock: FakeClock) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set("k", 1, expiry="10s")
        before = await kvs.get_entry("k")
        clock.advance(3)
        assert await kvs.persist("k") is True
        after = await kvs.get_entry("k")
        assert before is not None and after is not None
        assert after.expires_at is None
        assert (after.version, after.modified_at) == (before.version, before.modified_at)
        assert await kvs.persist("k") is False  # had no expiry
        assert await kvs.persist("missing") is False
        clock.advance(3600)
        assert await kvs.get("k") == 1

    async def test_purge_expired(self, store: Store, clock: FakeClock) -> None:
        b1, b2 = store.bot("b1").kvs, store.bot("b2").kvs
        t0 = clock.now()
        await b1.set_many({"e1": 1, "e2": 2, "e3": 3}, expiry="10s")
        await b2.set("e4", 4, expiry="5s")
        await store.global_kvs.set("e5", 5, expiry="5s")
        await b1.set("live", 1)
        await b2.set("later", 1, expiry="1h")
        assert await store.purge_expired() == 0
        clock.advance(10)
        assert await store.purge_expired(limit=2) == 2
        assert await store.purge_expired(limit=2) == 2
        assert await store.purge_expired(limit=2) == 1
        assert await store.purge_expired(limit=2) == 0
        clock.set(t0)  # purged rows are gone, not merely hidden
        assert await b1.get_many(["e1", "e2", "e3", "live"]) == {"live": 1}
        assert await b2.get_many(["e4", "later"]) == {"later": 1}
        assert await store.global_kvs.get("e5") is None

    async def test_purge_expired_takes_the_oldest_first(self, store: Store, clock: FakeClock) -> None:
        kvs = store.bot("b1").kvs
        t0 = clock.now()
        for seconds in (3, 1, 2):
            await kvs.set(f"e{seconds}", seconds, expiry=seconds)
        clock.advance(3)
        assert await store.purge_expired(limit=1) == 1
        clock.set(t0)  # what was not purged is still stored
        assert await kvs.get_many(["e1", "e2", "e3"]) == {"e2": 2, "e3": 3}
        clock.set(t0 + 3)
        assert await store.purge_expired(limit=1) == 1
        clock.set(t0)
        assert await kvs.get_many(["e1", "e2", "e3"]) == {"e3": 3}

    async def test_purge_expired_leaves_live_and_private_data(self, store: Store, clock: FakeClock) -> None:
        private = store.private_kvs("__rt/contract")
        await private.set("session", 1, expiry="1s")
        await store.bot("b1").kvs.set("live", 1, expiry="1h")
        clock.advance(1)
        assert await private.get("session") is None  # expired is never returned, even there
        assert await store.purge_expired() == 0  # its owner purges it, not the store-wide janitor
        assert await store.bot("b1").kvs.get("live") == 1
        assert "__rt/contract" not in await store.bots()

    async def test_purge_expired_many(self, store: Store, clock: FakeClock) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set_many({f"k{i}": i for i in range(1001)}, expiry="1s")
        clock.advance(1)
        assert await store.purge_expired() == 1000
        assert await store.purge_expired() == 1
        assert await store.purge_expired() == 0

    @pytest.mark.parametrize("limit", [0, -1, 1.5, True])
    async def test_purge_expired_limit_must_be_positive(self, store: Store, limit: Any) -> None:
        with pytest.raises(InvalidInputError):
            await store.purge_expired(limit=limit)


# -- Redis expiry rules -----------------------------------------------------------


class ExpiryRulesContract:
    """What each write does to an existing expiry (Redis semantics)."""

    async def test_set_without_expiry_removes_it(self, store: Store) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set("k", 1, expiry="1h")
        await kvs.set("k", 2)
        assert await kvs.ttl("k") is None

    async def test_set_never_removes_it(self, store: Store) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set("k", 1, expiry="1h")
        await kvs.set("k", 2, expiry="never")
        assert await kvs.ttl("k") is None

    async def test_set_with_expiry_replaces_it(self, store: Store, clock: FakeClock) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set("k", 1, expiry="1h")
        clock.advance(10)
        await kvs.set("k", 2, expiry="5s")
        assert await kvs.ttl("k") == pytest.approx(5, abs=1e-3)

    async def test_keep_ttl_keeps_it(self, store: Store, clock: FakeClock) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set("k", 1, expiry="1h")
        clock.advance(600)
        assert await kvs.set("k", 2, keep_ttl=True) == 2
        assert await kvs.ttl("k") == pytest.approx(3000, abs=1e-3)
        assert await kvs.get("k") == 2

    async def test_keep_ttl_on_a_key_without_expiry(self, store: Store) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set("k", 1)
        await kvs.set("k", 2, keep_ttl=True)
        assert await kvs.ttl("k") is None
        await kvs.set("new", 1, keep_ttl=True)
        assert await kvs.ttl("new") is None

    @pytest.mark.parametrize("expiry", ["1h", "never", 5])
    async def test_keep_ttl_with_expiry_is_refused(self, store: Store, expiry: Any) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set("k", 1, expiry="1m")
        before = await dump_store(store)
        with pytest.raises(InvalidInputError):
            await kvs.set("k", 2, expiry=expiry, keep_ttl=True)
        assert await dump_store(store) == before

    async def test_incr_keeps_it(self, store: Store, clock: FakeClock) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set("n", 1, expiry="1m")
        clock.advance(20)
        assert await kvs.incr("n") == 2
        assert await kvs.ttl("n") == pytest.approx(40, abs=1e-3)

    async def test_path_set_keeps_it(self, store: Store, clock: FakeClock) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set("k", {"a": 1}, expiry="1m")
        clock.advance(20)
        await kvs.set("k", 2, "b")
        assert await kvs.ttl("k") == pytest.approx(40, abs=1e-3)

    async def test_path_set_with_expiry_sets_it(self, store: Store) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set("k", {"a": 1}, expiry="1m")
        await kvs.set("k", 2, "b", expiry="1h")
        assert await kvs.ttl("k") == pytest.approx(3600, abs=1e-3)
        await kvs.set("plain", {"a": 1})
        await kvs.set("plain", 2, "b", "10s")
        assert await kvs.ttl("plain") == pytest.approx(10, abs=1e-3)

    async def test_set_if_version_without_expiry_removes_it(self, store: Store) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set("k", 1, expiry="1m")
        await kvs.set("k", 2, if_version=1)
        assert await kvs.ttl("k") is None

    async def test_set_many_without_expiry_removes_it(self, store: Store) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set("k", 1, expiry="1m")
        await kvs.set_many({"k": 2})
        assert await kvs.ttl("k") is None

    async def test_bad_expiry_writes_nothing(self, store: Store) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set("k", 1)
        before = await dump_store(store)
        for expiry in ("-5m", -1, 0, "0", "0s", "30", "1e309 ms", "inf", float("inf"), "nan", float("nan"),
                       "5 fortnights", "5 M", "none", "Never", " 5m ", "５m", "1_000s", ".5s", "6000 weeks",
                       "36526d", 2**63, True, "5m\n", "2030-01-01T00:00:00", "P1Y", "P1M"):
            with pytest.raises(InvalidExpiryError):
                await kvs.set("k", 2, expiry=expiry)
            with pytest.raises(InvalidExpiryError):
                await kvs.set("new", 2, expiry=expiry)
            with pytest.raises(InvalidExpiryError):
                await kvs.set_if_absent("new", 2, expiry=expiry)
        assert await dump_store(store) == before

    async def test_absolute_expiry_in_the_past_or_now_is_refused(self, store: Store, clock: FakeClock) -> None:
        kvs = store.bot("b1").kvs
        for when in (clock.now(), clock.now() - 1):
            with pytest.raises(InvalidExpiryError):
                await kvs.set("k", 1, expiry=datetime.fromtimestamp(when, tz=UTC))
        with pytest.raises(InvalidExpiryError):
            await kvs.set("k", 1, expiry=datetime(2099, 1, 1))  # naive
        assert not await kvs.exists("k")


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


class ExpiredContract:
    """Once ``now >= expires_at`` no call returns, counts or lists a key."""

    async def test_reads(self, store: Store, clock: FakeClock) -> None:
        kvs = await _with_expired(store, clock)
        assert await kvs.get("gone") is None
        assert await kvs.get("gone", default="d") == "d"
        assert await kvs.get("gone", "a", default="d") == "d"
        assert await kvs.get_entry("gone") is None
        assert await kvs.exists("gone") is False
        assert await kvs.get_many(["gone", "live"]) == {"live": {"v": 1}}
        assert await all_keys(kvs) == ["live"]
        assert await all_keys(kvs, "go") == []
        with pytest.raises(KeyNotFoundError):
            await kvs.ttl("gone")
        assert await kvs.get_storage_with_expiry("gone") is None

    async def test_deletes_do_not_count_it(self, store: Store, clock: FakeClock) -> None:
        kvs = await _with_expired(store, clock)
        assert await kvs.delete("gone") is False
        kvs = await _with_expired(store, clock)
        assert await kvs.delete_many(["gone", "live"]) == 1
        kvs = await _with_expired(store, clock)
        assert await kvs.delete_prefix("g") == 0
        assert await kvs.delete_prefix("", all=True) == 1

    async def test_expire_and_persist_do_not_revive_it(self, store: Store, clock: FakeClock) -> None:
        kvs = await _with_expired(store, clock)
        assert await kvs.expire("gone", "1h") is False
        assert await kvs.persist("gone") is False
        assert await kvs.get("gone") is None

    async def test_set_starts_over(self, store: Store, clock: FakeClock) -> None:
        kvs = await _with_expired(store, clock)
        assert await kvs.set("gone", "new") == 1
        assert await kvs.ttl("gone") is None

    async def test_keep_ttl_does_not_keep_a_dead_expiry(self, store: Store, clock: FakeClock) -> None:
        kvs = await _with_expired(store, clock)
        assert await kvs.set("gone", "new", keep_ttl=True) == 1
        assert await kvs.get("gone") == "new"
        assert await kvs.ttl("gone") is None

    async def test_set_if_absent_and_if_version_zero(self, store: Store, clock: FakeClock) -> None:
        kvs = await _with_expired(store, clock)
        assert await kvs.set_if_absent("gone", "x") is True
        assert await _version(kvs, "gone") == 1
        kvs = await _with_expired(store, clock)
        with pytest.raises(VersionConflictError):
            await kvs.set("gone", "x", if_version=3)
        assert await kvs.set("gone", "y", if_version=0) == 1
        assert await kvs.get("gone") == "y"

    async def test_incr_restarts_at_zero(self, store: Store, clock: FakeClock) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set("n", 41, expiry="1s")
        clock.advance(1)
        assert await kvs.incr("n") == 1
        assert await _version(kvs, "n") == 1
        assert await kvs.ttl("n") is None

    async def test_path_set_starts_from_nothing(self, store: Store, clock: FakeClock) -> None:
        kvs = await _with_expired(store, clock)
        assert await kvs.set("gone", 5, "b") == 1
        assert_same(await kvs.get("gone"), {"b": 5})
        kvs = await _with_expired(store, clock)
        assert await kvs.incr("gone", 2, path="a") == 2
        assert_same(await kvs.get("gone"), {"a": 2})

    async def test_set_many_starts_over(self, store: Store, clock: FakeClock) -> None:
        kvs = await _with_expired(store, clock)
        assert await kvs.set_many({"gone": 1, "live": 2}) == [1, 2]

    async def test_memory_scopes_hide_it(self, store: Store, clock: FakeClock) -> None:
        memory = store.bot("b1").memory
        await memory.set_user_variable("u", "gone", 1, expiry="1s")
        await memory.set_user_variable("u", "live", 2)
        await memory.set_conversation_variable("c", "gone", 1, expiry="1s")
        clock.advance(1)
        assert await memory.get_user_variable("u", "gone", "d") == "d"
        assert await memory.user("u").items() == {"live": 2}
        assert await memory.delete_user_variable("u", "gone") is False
        assert await memory.end_conversation("c") == 0
        assert await memory.user("u").clear() == 1


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


# -- values --------------------------------------------------------------------------

_ROUND_TRIP: list[Any] = [
    {"b": 1, "a": 2, "c": {"z": 0, "y": [3, {"q": None, "p": True}]}},
    INT64_MAX,
    INT64_MIN,
    0,
    -1,
    -0.0,
    0.0,
    5e-324,
    -5e-324,
    1.7976931348623157e308,
    2.2250738585072014e-308,
    0.1,
    1.0,
    1e16,
    123456789.123456789,
    "café",
    unicodedata.normalize("NFD", "café"),
    "😀 \U0010fffd \uffff 日本語 \u2028 \x00 \x7f \t\n",
    "",
    "a\"b\\c</script>",
    True,
    False,
    None,
    [],
    {},
    [1, 1.0, True, "1", None, [], {}],
    {"": "empty key", "__proto__": 1, "a.b": [2], "\x00": 3},
    "x" * 100_000,
    {f"k{i}": i for i in reversed(range(200))},
    ["\ud7ff", "\ue000", "\U0010ffff", "\\u0000", "\\", "\"", "\u00e9", "\ufeff"],
    [[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]],
]


_NOT_JSON: list[Any] = [
    2**63,
    -(2**63) - 1,
    10**5000,
    float("nan"),
    float("inf"),
    -float("inf"),
    b"x",
    bytearray(b"x"),
    {1, 2},
    {1: "x"},
    {None: "x"},
    object(),
    datetime(2030, 1, 1, tzinfo=UTC),
    "\ud800",
    {"k": "\udfff"},
    {"\ud800": 1},
    [1, b"x"],
]


class ValuesContract:
    """Values read back exactly: types, key order, numbers, strings."""

    async def test_exact_round_trip(self, store: Store) -> None:
        kvs = store.bot("b1").kvs
        for value in _ROUND_TRIP:
            await kvs.set("k", value)
            assert_same(await kvs.get("k"), value)
            entry = await kvs.get_entry("k")
            assert entry is not None
            assert_same(entry.value, value)
            assert_same((await kvs.get_many(["k"]))["k"], value)

    async def test_round_trip_through_set_many_and_path(self, store: Store) -> None:
        kvs = store.bot("b1").kvs
        values = {f"k{i}": v for i, v in enumerate(_ROUND_TRIP)}
        await kvs.set_many(values)
        got = await kvs.get_many(list(values))
        for key, value in values.items():
            assert_same(got[key], value)
        await kvs.set("doc", {})
        for i, value in enumerate(_ROUND_TRIP[:10]):
            await kvs.set("doc", value, f"f{i}")
        assert_same(await kvs.get("doc"), {f"f{i}": v for i, v in enumerate(_ROUND_TRIP[:10])})

    async def test_tuples_read_back_as_lists(self, store: Store) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set("k", ("a", (1, 2), {"t": ()}))
        assert_same(await kvs.get("k"), ["a", [1, 2], {"t": []}])

    async def test_unicode_keys_round_trip(self, store: Store) -> None:
        kvs = store.bot("b1").kvs
        keys = ["café", unicodedata.normalize("NFD", "café"), "😀", "日本語/キー", "a b", "\uffff", "K\u212a",
                "'; DROP TABLE kv;--", "x') OR '1'='1"]
        await kvs.set_many({k: k for k in keys})
        for k in keys:
            assert await kvs.get(k) == k
        assert await all_keys(kvs) == sorted(keys)

    async def test_non_json_values_are_refused(self, store: Store) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set("k", {"old": 1})
        for i, value in enumerate(_NOT_JSON):
            with pytest.raises(ValueTypeError):
                await kvs.set("k", value)
            with pytest.raises(ValueTypeError):
                await kvs.set("k", value, "a")
            with pytest.raises(ValueTypeError):
                await kvs.set_many({"other": 1, "k": value})
            assert_same(await kvs.get("k"), {"old": 1})
            assert await _version(kvs, "k") == 1, i
        assert await all_keys(kvs) == ["k"]

    async def test_cycles_and_depth_are_too_large(self, store: Store) -> None:
        kvs = store.bot("b1").kvs
        cyclic: dict[str, Any] = {}
        cyclic["self"] = cyclic
        deep: Any = 0
        for _ in range(65):
            deep = [deep]
        ok: Any = 0
        for _ in range(63):
            ok = [ok]
        for bad in (cyclic, deep):
            with pytest.raises(ValueTooLargeError):
                await kvs.set("k", bad)
        assert not await kvs.exists("k")
        await kvs.set("k", [ok])  # depth 64 is allowed
        assert await kvs.get("k") == [ok]


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


# -- dialog memory ---------------------------------------------------------------------


class MemoryContract:
    """The three scopes, scope handles and the percent-encoded key layout."""

    async def test_user_variables(self, store: Store) -> None:
        memory = store.bot("b1").memory
        assert await memory.get_user_variable("u-17", "firstname") is None
        assert await memory.get_user_variable("u-17", "firstname", "anon") == "anon"
        assert await memory.set_user_variable("u-17", "firstname", "Ada") == 1
        assert await memory.set_user_variable("u-17", "firstname", "Grace") == 2
        assert await memory.get_user_variable("u-17", "firstname") == "Grace"
        assert await memory.get_user_variable("u-18", "firstname") is None
        assert await memory.delete_user_variable("u-17", "firstname") is True
        assert await memory.delete_user_variable("u-17", "firstname") is False

    async def test_conversation_variables(self, store: Store) -> None:
        memory = store.bot("b1").memory
        assert await memory.set_conversation_variable("c1", "step", 1) == 1
        assert await memory.get_conversation_variable("c1", "step") == 1
        assert await memory.get_conversation_variable("c2", "step", "d") == "d"
        assert await memory.delete_conversation_variable("c1", "step") is True
        assert await memory.delete_conversation_variable("c1", "step") is False

    async def test_global_variables(self, store: Store) -> None:
        memory = store.bot("b1").memory
        assert await memory.set_global_variable("motd", "hi") == 1
        assert await memory.get_global_variable("motd") == "hi"
        assert await memory.get_global_variable("other", 0) == 0
        assert await memory.delete_global_variable("motd") is True
        assert await memory.delete_global_variable("motd") is False

    async def test_global_variables_are_per_bot(self, store: Store) -> None:
        m1, m2 = store.bot("b1").memory, store.bot("b2").memory
        await m1.set_global_variable("motd", "one")
        assert await m2.get_global_variable("motd") is None
        await m2.set_global_variable("motd", "two")
        assert await m1.get_global_variable("motd") == "one"
        assert await m1.global_scope().clear() == 1
        assert await m2.get_global_variable("motd") == "two"
        assert await store.global_kvs.get("storage/global/motd") is None

    async def test_variables_with_expiry(self, store: Store, clock: FakeClock) -> None:
        memory = store.bot("b1").memory
        await memory.set_user_variable("u", "a", 1, expiry="1h")
        await memory.set_conversation_variable("c", "a", 1, "10m")
        await memory.set_global_variable("a", 1, expiry=30)
        clock.advance(30)
        assert await memory.get_global_variable("a") is None
        assert await memory.get_conversation_variable("c", "a") == 1
        clock.advance(570)
        assert await memory.get_conversation_variable("c", "a") is None
        assert await memory.get_user_variable("u", "a") == 1
        clock.advance(3000)
        assert await memory.get_user_variable("u", "a") is None

    async def test_key_layout(self, store: Store) -> None:
        memory = store.bot("b1").memory
        await memory.set_user_variable("u/x", "first name", "Ada")
        await memory.set_conversation_variable("c:1", "step", 1)
        await memory.set_global_variable("é~-._", 2)
        assert await all_keys(store.bot("b1").kvs) == [
            "storage/conversation/c%3A1/step",
            "storage/global/%C3%A9~-._",
            "storage/users/u%2Fx/first%20name",
        ]
        assert await store.bot("b1").kvs.get("storage/users/u%2Fx/first%20name") == "Ada"

    async def test_tricky_user_ids_are_distinct_and_isolated(self, store: Store) -> None:
        memory = store.bot("b1").memory
        ids = ["u/x", "u%2Fx", "u%252Fx", "..", "%", ".", "u", "x", "__proto__", "alice/../bob", "bob", "a:b",
               "storage", "users"]
        for uid in ids:
            await memory.set_user_variable(uid, "v", uid)
            await memory.set_user_variable(uid, "n/..", uid + "!")
        for uid in ids:
            assert await memory.get_user_variable(uid, "v") == uid
            assert await memory.user(uid).items() == {"v": uid, "n/..": uid + "!"}
        assert len(await all_keys(store.bot("b1").kvs, "storage/users/")) == 2 * len(ids)
        assert await memory.user("%").clear() == 2
        for uid in ids:
            expected = None if uid == "%" else uid
            assert await memory.get_user_variable(uid, "v") == expected

    async def test_ids_and_names_do_not_collide(self, store: Store) -> None:
        memory = store.bot("b1").memory
        await memory.set_user_variable("a/b", "c", 1)
        await memory.set_user_variable("a", "b/c", 2)
        await memory.set_user_variable("x", "n", "user")
        await memory.set_conversation_variable("x", "n", "conversation")
        await memory.set_global_variable("n", "global")
        assert await memory.get_user_variable("a/b", "c") == 1
        assert await memory.get_user_variable("a", "b/c") == 2
        assert await memory.user("a").items() == {"b/c": 2}
        assert await memory.get_user_variable("x", "n") == "user"
        assert await memory.get_conversation_variable("x", "n") == "conversation"
        assert await memory.get_global_variable("n") == "global"
        assert await memory.end_conversation("x") == 1
        assert await memory.get_user_variable("x", "n") == "user"
        assert await memory.get_global_variable("n") == "global"

    async def test_scope_handles(self, store: Store, clock: FakeClock) -> None:
        memory = store.bot("b1").memory
        for scope in (memory.user("u1"), memory.conversation("c1"), memory.global_scope()):
            assert await scope.items() == {}
            assert await scope.set("a", 1) == 1
            assert await scope.set("b", {"x": [1]}) == 1
            assert await scope.set("gone", 0, expiry="1s") == 1
            assert await scope.get("a") == 1
            assert await scope.get("missing", "d") == "d"
            clock.advance(1)
            assert await scope.items() == {"a": 1, "b": {"x": [1]}}
            assert await scope.delete("a") is True
            assert await scope.delete("a") is False
            assert await scope.clear() == 1
            assert await scope.items() == {}
            assert await scope.clear() == 0
        assert await all_keys(store.bot("b1").kvs) == []

    async def test_scope_handles_see_the_named_methods(self, store: Store) -> None:
        memory = store.bot("b1").memory
        await memory.set_user_variable("u", "a", 1)
        await memory.conversation("c").set("a", 2)
        await memory.global_scope().set("a", 3)
        assert await memory.user("u").get("a") == 1
        assert await memory.get_conversation_variable("c", "a") == 2
        assert await memory.get_global_variable("a") == 3

    async def test_end_conversation(self, store: Store) -> None:
        memory = store.bot("b1").memory
        for name in ("a", "b", "c"):
            await memory.set_conversation_variable("c1", name, name)
        await memory.set_conversation_variable("c10", "a", "other")
        await memory.set_user_variable("c1", "a", "user")
        assert await memory.end_conversation("c1") == 3
        assert await memory.end_conversation("c1") == 0
        assert await memory.get_conversation_variable("c1", "a") is None
        assert await memory.get_conversation_variable("c10", "a") == "other"
        assert await memory.get_user_variable("c1", "a") == "user"

    async def test_items_decode_names(self, store: Store) -> None:
        memory = store.bot("b1").memory
        names = ["a b", "é", "x/y", "%41", "~", "50%"]
        for i, name in enumerate(names):
            await memory.set_user_variable("u", name, i)
        assert await memory.user("u").items() == {name: i for i, name in enumerate(names)}

    async def test_items_skip_keys_memory_could_not_have_written(self, store: Store) -> None:
        # Botpress code writes "storage/users/<id>/<name>" through the KVS
        # without percent-encoding; such keys are not variables and must not
        # break the listing of the ones that are.
        kvs = store.bot("b1").kvs
        memory = store.bot("b1").memory
        await memory.set_user_variable("u", "first name", "Ada")
        for raw in ("first name", "%41", "bad%", "%zz", "%0A", "%C3", "a/b", "x%2f"):
            await kvs.set("storage/users/u/" + raw, "raw")
            await kvs.set("storage/global/" + raw, "raw")
        assert await memory.user("u").items() == {"first name": "Ada"}
        assert await memory.global_scope().items() == {}
        assert await memory.get_user_variable("u", "first name") == "Ada"
        assert await memory.user("u").clear() == 9  # clear() empties the whole prefix

    async def test_kvs_prefix_operations_see_memory(self, store: Store) -> None:
        memory = store.bot("b1").memory
        kvs = store.bot("b1").kvs
        await memory.set_user_variable("u1", "a", 1)
        await memory.set_user_variable("u2", "a", 1)
        await memory.set_conversation_variable("c", "a", 1)
        assert await kvs.delete_prefix("storage/users/") == 2
        assert await memory.get_user_variable("u1", "a") is None
        assert await memory.get_conversation_variable("c", "a") == 1

    async def test_bad_ids_and_names(self, store: Store) -> None:
        memory = store.bot("b1").memory
        for bad in ("", " u", "u ", "\t", "a\x00b", "a\nb", "\u2028", "\ud800", 5, None):
            for make in (
                lambda b: memory.set_user_variable(b, "n", 1),
                lambda b: memory.set_user_variable("u", b, 1),
                lambda b: memory.set_conversation_variable(b, "n", 1),
                lambda b: memory.set_global_variable(b, 1),
                lambda b: memory.get_user_variable(b, "n"),
                lambda b: memory.end_conversation(b),
            ):
                with pytest.raises(InvalidKeyError):
                    await make(bad)
        assert await dump_store(store) == {}


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


# -- backend primitives the runtime and retention build on -----------------------------


class BackendContract:
    """``store.backend`` primitives beyond the KVS: count, namespaces, scan_expired,
    purge_expired by namespace and with kept prefixes, restore, and locks."""

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
        clock.set(now - 2)  # what was kept is still stored
        assert await memory.get_user_variable("held", "n") == 1
        assert await memory.get_user_variable("free", "n") is None
        assert await store.private_kvs("__rt/contract").get("s") == 1
        clock.set(now)
        purged = await store.purge_expired_rows(100, "__rt/contract")
        assert [(p.namespace, p.key) for p in purged] == [("__rt/contract", "s")]

    async def test_restore_writes_rows_exactly(self, store: Store, clock: FakeClock) -> None:
        from ..backends.base import Row

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
        from ..backends.base import Row

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

    async def test_locks(self, store: Store, clock: FakeClock) -> None:
        now = clock.now()

        async def acquire(owner: str, at: float, name: str = "janitor") -> Any:
            clock.set(at)
            return await store.acquire_lock(name, owner, 10)

        first = await acquire("a", now)
        assert first is not None and (first.name, first.owner) == ("janitor", "a")
        assert first.expires_at == pytest.approx(now + 10)
        assert await acquire("b", now + 1) is None
        renewed = await acquire("a", now + 5)
        assert renewed is not None and renewed.token == first.token
        assert renewed.expires_at == pytest.approx(now + 15)
        assert await acquire("b", now + 14) is None
        assert await store.release_lock("janitor", "b") is False
        assert await store.release_lock("janitor", "a") is True
        assert await store.release_lock("janitor", "a") is False
        second = await acquire("b", now + 14)
        assert second is not None and second.token > first.token
        # an expired lease is up for grabs, with a larger fencing token
        third = await acquire("a", now + 24)
        assert third is not None and third.owner == "a" and third.token > second.token
        other = await acquire("b", now + 24, "other")
        assert other is not None
