"""Values to JSON bytes and back (api.md "Identifiers and values"; V2, V4, V5, V9)."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import math
import sys
import uuid
from collections import OrderedDict
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from botmemory.codec import decode, encode
from botmemory.errors import ValueTooLargeError, ValueTypeError
from botmemory.limits import Limits

LIMITS = Limits()

ENCODED: list[tuple[object, bytes]] = [
    (None, b"null"),
    (True, b"true"),
    (False, b"false"),
    (0, b"0"),
    (-1, b"-1"),
    (2**63 - 1, b"9223372036854775807"),
    (-(2**63), b"-9223372036854775808"),
    (12.5, b"12.5"),
    ("", b'""'),
    ("café", '"café"'.encode()),
    ("\u0000", b'"\\u0000"'),
    ({}, b"{}"),
    ([], b"[]"),
    ((), b"[]"),
    ((1, "a"), b'[1,"a"]'),
    ({"total": 12.5, "items": [1, 2]}, b'{"total":12.5,"items":[1,2]}'),
    ({"z": 1, "a": 2, "m": 3}, b'{"z":1,"a":2,"m":3}'),  # key order kept
    ({"a": {"b": [None, True, {}]}}, b'{"a":{"b":[null,true,{}]}}'),
]


@pytest.mark.parametrize(("value", "expected"), ENCODED, ids=repr)
def test_encode_is_compact_utf8_json(value: object, expected: bytes) -> None:
    assert encode(value, LIMITS) == expected


@pytest.mark.parametrize(
    "number",
    [-0.0, 0.0, 1e-300, 5e-324, 1.7976931348623157e308, 0.1, 1 / 3, 2.0**53 + 2, -1.5e-10, 1e16],
    ids=repr,
)
def test_floats_round_trip_exactly(number: float) -> None:
    back = decode(encode(number, LIMITS))
    assert type(back) is float
    assert back == number
    assert math.copysign(1.0, back) == math.copysign(1.0, number)
    assert decode(encode([number], LIMITS)) == [number]


def test_tuples_come_back_as_lists_and_order_is_kept() -> None:
    value = {"b": (1, (2,)), "a": [()]}
    back = decode(encode(value, LIMITS))
    assert back == {"b": [1, [2]], "a": [[]]}
    assert list(back) == ["b", "a"]


def test_decode_accepts_str_and_bytes() -> None:
    assert decode('{"a":[1]}') == {"a": [1]}
    assert decode(b'{"a":[1]}') == {"a": [1]}


class Color(enum.Enum):
    RED = 1


class IntColor(enum.IntEnum):
    RED = 1


class StrKind(enum.StrEnum):
    A = "a"


class MyStr(str):
    pass


class MyInt(int):
    pass


class MyFloat(float):
    pass


class MyDict(dict[str, Any]):
    pass


class MyList(list[Any]):
    pass


@dataclasses.dataclass
class Point:
    x: int


class Custom:
    pass


NOT_JSON: list[object] = [
    b"bytes",
    bytearray(b"x"),
    memoryview(b"x"),
    {1, 2},
    frozenset(),
    datetime.datetime(2030, 1, 1),
    datetime.date(2030, 1, 1),
    datetime.timedelta(1),
    decimal.Decimal("1.5"),
    uuid.UUID(int=0),
    Color.RED,
    IntColor.RED,
    StrKind.A,
    MyStr("x"),
    MyInt(1),
    MyFloat(1.0),
    MyDict(),
    MyList(),
    OrderedDict(),
    Point(1),
    Custom(),
    object(),
    1j,
    range(3),
    iter([1]),
    print,
    type,
    # non-str object keys (no silent str())
    {1: "x"},
    {None: "x"},
    {True: "x"},
    {(1, 2): "x"},
    {MyStr("k"): 1},
    # V4: NaN and infinities
    math.nan,
    math.inf,
    -math.inf,
    float("1e400"),
    # V5: integers outside 64 bits
    2**63,
    -(2**63) - 1,
    2**64 - 1,  # orjson alone would take this
    10**5000,
    # lone surrogates, in values and in keys
    "\ud800",
    "a\udfffb",
    {"\ud800": 1},
]


def _short_id(value: object) -> str:
    if type(value) is int and value.bit_length() > 1000:
        return f"int of {value.bit_length()} bits"  # repr would hit int's digit limit
    return ascii(value)[:40]


@pytest.mark.parametrize("value", NOT_JSON, ids=_short_id)
def test_encode_refuses_what_is_not_json(value: object) -> None:
    with pytest.raises(ValueTypeError):
        encode(value, LIMITS)
    # the same, nested below containers
    with pytest.raises(ValueTypeError):
        encode({"a": [1, {"b": value}]}, LIMITS)
    with pytest.raises(ValueTypeError):
        encode([(value,)], LIMITS)


def test_messages_name_the_type() -> None:
    with pytest.raises(ValueTypeError, match="bytes"):
        encode({"a": b"x"}, LIMITS)
    with pytest.raises(ValueTypeError, match="datetime"):
        encode([datetime.datetime(2030, 1, 1)], LIMITS)
    with pytest.raises(ValueTypeError, match="keys must be str, not int"):
        encode({1: "x"}, LIMITS)
    with pytest.raises(ValueTypeError, match="64-bit"):
        encode(2**63, LIMITS)
    with pytest.raises(ValueTypeError, match="surrogate"):
        encode(["\ud800"], LIMITS)


def test_value_type_error_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        encode({1, 2}, LIMITS)


# ---------------------------------------------------------------- depth (V2) and cycles (V9)


def nested_lists(depth: int) -> object:
    value: object = 0
    for _ in range(depth):
        value = [value]
    return value


def nested_dicts(depth: int) -> object:
    value: object = None
    for _ in range(depth):
        value = {"a": value}
    return value


@pytest.mark.parametrize(
    ("value", "depth"),
    [
        (0, 0),
        ("s", 0),
        ({}, 1),
        ([], 1),
        ([0], 1),
        ([[0]], 2),
        ({"a": {"b": []}}, 3),
        ([{}, [[]]], 3),
    ],
    ids=repr,
)
def test_depth_is_counted_as_specified(value: object, depth: int) -> None:
    assert encode(value, Limits(max_depth=max(depth, 1)))
    if depth >= 1:
        with pytest.raises(ValueTooLargeError):
            encode(value, Limits(max_depth=depth - 1) if depth > 1 else _depth_zero())


def _depth_zero() -> Limits:
    # Limits refuses max_depth=0; build one anyway to check the boundary.
    limits = Limits(max_depth=1)
    object.__setattr__(limits, "max_depth", 0)
    return limits


@pytest.mark.parametrize("build", [nested_lists, nested_dicts])
def test_depth_limit_64(build: Any) -> None:
    assert decode(encode(build(64), LIMITS)) == build(64)
    with pytest.raises(ValueTooLargeError, match="64"):
        encode(build(65), LIMITS)


@pytest.mark.parametrize("depth", [65, 100, 1_000, 100_000])
def test_very_deep_values_raise_value_too_large_not_recursion_error(depth: int) -> None:
    with pytest.raises(ValueTooLargeError):
        encode(nested_lists(depth), LIMITS)
    with pytest.raises(ValueTooLargeError):
        encode(nested_dicts(depth), LIMITS)


def test_depth_limit_above_orjson_own_limit() -> None:
    # Limits may allow more nesting than orjson can write: still a typed error.
    deep = nested_lists(400)
    with pytest.raises(ValueTooLargeError):
        encode(deep, Limits(max_depth=sys.getrecursionlimit() * 10))


def test_cycles_raise_value_too_large() -> None:
    cyclic_dict: dict[str, object] = {}
    cyclic_dict["self"] = cyclic_dict
    cyclic_list: list[object] = []
    cyclic_list.append(cyclic_list)
    indirect: dict[str, object] = {"a": [1]}
    indirect["a"].append({"back": indirect})  # type: ignore[attr-defined]
    for value in (cyclic_dict, cyclic_list, indirect):
        with pytest.raises(ValueTooLargeError, match="cycle"):
            encode(value, LIMITS)


# ---------------------------------------------------------------- size (V1)


def test_size_limit_exactly() -> None:
    limits = Limits(max_value_bytes=10)
    assert encode("a" * 8, limits) == b'"' + b"a" * 8 + b'"'  # 10 bytes
    with pytest.raises(ValueTooLargeError, match=r"11 bytes.*10 allowed"):
        encode("a" * 9, limits)
    assert encode(["a" * 6], limits) == b'["aaaaaa"]'
    with pytest.raises(ValueTooLargeError):
        encode(["a" * 7], limits)
    assert encode(1234567890, limits) == b"1234567890"
    with pytest.raises(ValueTooLargeError):
        encode(12345678901, limits)
    assert encode(0, Limits(max_value_bytes=1)) == b"0"


def test_size_counts_utf8_bytes_and_escapes() -> None:
    limits = Limits(max_value_bytes=10)
    assert encode("é" * 4, limits)  # 10 bytes
    with pytest.raises(ValueTooLargeError):
        encode("é" * 5, limits)  # 5 characters, 12 bytes
    with pytest.raises(ValueTooLargeError):
        encode("\x00" * 2, limits)  # 2 characters, 14 bytes escaped


def test_huge_values_refused_before_encoding() -> None:
    limits = Limits(max_value_bytes=1_000)
    big = "x" * 10_000_000
    for value in (big, [big], {"k": big}, {big: 1}, [[big]]):
        with pytest.raises(ValueTooLargeError, match="at least"):
            encode(value, limits)


def test_repeated_shared_parts_refused_without_walking_everything() -> None:
    # 1000**4 leaves: walking (or encoding) it all would never finish.
    level: object = [0] * 1000
    for _ in range(3):
        level = [level] * 1000
    with pytest.raises(ValueTooLargeError):
        encode(level, LIMITS)


def test_wide_values_within_the_limit_are_fine() -> None:
    wide = list(range(100_000))
    assert decode(encode(wide, LIMITS)) == wide


# ---------------------------------------------------------------- properties

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(exclude_categories=["Cs"]))
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.text(st.characters(exclude_categories=["Cs"]), max_size=8), children, max_size=5)
    ),
    max_leaves=30,
)


@given(JSON_VALUES)
def test_round_trip(value: object) -> None:
    data = encode(value, LIMITS)
    back = decode(data)
    assert back == value
    assert encode(back, LIMITS) == data  # same bytes: key order and numbers kept


@given(JSON_VALUES, st.integers(min_value=1, max_value=200))
def test_size_limit_is_exact(value: object, max_bytes: int) -> None:
    size = len(encode(value, LIMITS))
    limits = Limits(max_value_bytes=max_bytes)
    if size <= max_bytes:
        assert len(encode(value, limits)) == size
    else:
        with pytest.raises(ValueTooLargeError):
            encode(value, limits)


def test_very_wide_values_refused_before_walking() -> None:
    wide = [None] * 10_000_000
    with pytest.raises(ValueTooLargeError, match="at least"):
        encode(wide, LIMITS)
    with pytest.raises(ValueTooLargeError, match="at least"):
        encode({"a": wide}, LIMITS)
