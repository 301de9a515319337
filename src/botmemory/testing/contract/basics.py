"""The KVS basics: get, set, delete, incr, batches, and the values they store."""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime
from typing import Any

import pytest

from ...errors import (
    InvalidExpiryError,
    InvalidInputError,
    InvalidKeyError,
    ValueTooLargeError,
    ValueTypeError,
    VersionConflictError,
)
from ...kvs import Entry
from ...store import Store
from ..clock import FakeClock
from ._support import INT64_MAX, INT64_MIN, _version, all_keys, assert_same, dump_store

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
    'a"b\\c</script>',
    True,
    False,
    None,
    [],
    {},
    [1, 1.0, True, "1", None, [], {}],
    {"": "empty key", "__proto__": 1, "a.b": [2], "\x00": 3},
    "x" * 100_000,
    {f"k{i}": i for i in reversed(range(200))},
    ["\ud7ff", "\ue000", "\U0010ffff", "\\u0000", "\\", '"', "\u00e9", "\ufeff"],
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
        keys = [
            "café",
            unicodedata.normalize("NFD", "café"),
            "😀",
            "日本語/キー",
            "a b",
            "\uffff",
            "K\u212a",
            "'; DROP TABLE kv;--",
            "x') OR '1'='1",
        ]
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
