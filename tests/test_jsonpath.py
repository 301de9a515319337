"""JSON paths: parse, get, set, incr (api.md "Paths", bad-inputs.md V11)."""

from __future__ import annotations

import copy

import pytest

from botmemory.errors import InvalidPathError, ValueTypeError
from botmemory.jsonpath import (
    MAX_INDEX,
    MAX_PATH_DEPTH,
    get_path,
    incr_value,
    parse_path,
    set_path,
)

# ---------------------------------------------------------------- parse_path

PARSED: list[tuple[object, tuple[str | int, ...]]] = [
    ("a", ("a",)),
    ("profile.address.city", ("profile", "address", "city")),
    ("items[0].name", ("items", 0, "name")),
    ("[0]", (0,)),
    ("[0].a", (0, "a")),
    ("a[1][2]", ("a", 1, 2)),
    ("a[10000]", ("a", MAX_INDEX)),
    ("constructor.prototype.x", ("constructor", "prototype", "x")),
    ("_private", ("_private",)),
    ("a_", ("a_",)),
    ("a__b", ("a__b",)),
    ("a b.c d", ("a b", "c d")),
    ("'; DROP TABLE kv;--", ("'; DROP TABLE kv;--",)),  # K13: a literal field name
    ("x') OR '1'='1", ("x') OR '1'='1",)),
    ("café", ("café",)),
    (".".join(["k"] * MAX_PATH_DEPTH), ("k",) * MAX_PATH_DEPTH),
    ("[0]" * MAX_PATH_DEPTH, (0,) * MAX_PATH_DEPTH),
    (("a.b", 0), ("a.b", 0)),
    (["a[0]", "b"], ("a[0]", "b")),
    ((0,), (0,)),
    (["x"], ("x",)),
    (("a", MAX_INDEX), ("a", MAX_INDEX)),
    (("constructor", "prototype"), ("constructor", "prototype")),
    (tuple(["k"] * MAX_PATH_DEPTH), ("k",) * MAX_PATH_DEPTH),
]


@pytest.mark.parametrize(("path", "segments"), PARSED, ids=repr)
def test_parse_path(path: object, segments: tuple[str | int, ...]) -> None:
    parsed = parse_path(path)
    assert parsed == segments
    assert [type(s) for s in parsed] == [type(s) for s in segments]


REFUSED_PATHS: list[object] = [
    # V11
    "__proto__.x",
    "__proto__",
    "a.__proto__",
    "__class__.__init__.__globals__",
    "a[0].__dict__",
    "__",
    "a..b",
    "a.",
    ".a",
    ".",
    "..",
    "a[-1]",
    "a[10000000]",
    "a[10001]",
    "a[99999999999999999999999999999999999]",
    ["__proto__", "x"],
    ("a", "__class__"),
    ("a", -1),
    ("a", MAX_INDEX + 1),
    ("a", 10_000_000),
    # malformed
    "",
    "a[",
    "a]",
    "a[]",
    "a[0",
    "a0]",
    "a[[0]]",
    "a[x]",
    "a[ 0]",
    "a[0 ]",
    "a[+1]",
    "a[01]",
    "a[00]",
    "a[０]",
    "a[١]",
    "a[1.5]",
    "a[0]b",
    "a.[0]",
    "[0]a",
    "a\ud800",
    ".".join(["k"] * (MAX_PATH_DEPTH + 1)),
    "[0]" * (MAX_PATH_DEPTH + 1),
    # tuples/lists
    (),
    [],
    ("",),
    ("a", ""),
    ("a", True),
    (False,),
    ("a", 1.0),
    ("a", None),
    ("a", b"b"),
    ("\udc00",),
    tuple(["k"] * (MAX_PATH_DEPTH + 1)),
    # other types
    None,
    0,
    b"a",
    {"a": 1},
    True,
]


@pytest.mark.parametrize("path", REFUSED_PATHS, ids=lambda p: ascii(p)[:50])
def test_parse_path_refuses(path: object) -> None:
    with pytest.raises(InvalidPathError):
        parse_path(path)


def test_parse_path_message_repeats_the_path() -> None:
    with pytest.raises(InvalidPathError, match=r"'a\.\.b'"):
        parse_path("a..b")
    with pytest.raises(InvalidPathError, match="__proto__"):
        parse_path("__proto__.x")


def test_parse_path_caches_string_paths() -> None:
    assert parse_path("cache.me[3]") is parse_path("cache.me[3]")


def test_parse_path_refuses_long_hostile_paths_quickly() -> None:
    with pytest.raises(InvalidPathError):
        parse_path("a." * 100_000 + "b")
    with pytest.raises(InvalidPathError):
        parse_path("a[" + "9" * 100_000 + "]")


def test_str_subclass_path() -> None:
    class Path(str):
        pass

    assert parse_path(Path("a.b")) == ("a", "b")


# ---------------------------------------------------------------- get_path

DOC: dict[str, object] = {
    "profile": {"address": {"city": "London"}, "nick": None},
    "items": [{"name": "tea"}, {"name": "cake"}],
    "n": 0,
    "s": "text",
    "empty": {},
    "falsy": [False, 0, "", None],
    "a.b": {"[0]": "literal"},
}

GOT: list[tuple[tuple[str | int, ...], object]] = [
    (("profile", "address", "city"), "London"),
    (("profile", "nick"), None),  # a stored null is found
    (("items", 0, "name"), "tea"),
    (("items", 1), {"name": "cake"}),
    (("n",), 0),
    (("empty",), {}),
    (("falsy", 0), False),
    (("falsy", 1), 0),
    (("falsy", 2), ""),
    (("falsy", 3), None),
    (("a.b", "[0]"), "literal"),
]


@pytest.mark.parametrize(("segments", "expected"), GOT, ids=repr)
def test_get_path_found(segments: tuple[str | int, ...], expected: object) -> None:
    assert get_path(DOC, segments) == (True, expected)


NOWHERE: list[tuple[str | int, ...]] = [
    ("missing",),
    ("profile", "missing"),
    ("profile", "nick", "x"),  # through a null
    ("items", 2),  # index out of range
    ("items", "0"),  # a key into a list
    ("profile", 0),  # an index into a dict
    ("n", "x"),  # through a number
    ("s", 0),  # through a string: never indexes characters
    ("s", "x"),
    ("falsy", 0, "x"),
    ("empty", "x"),
]


@pytest.mark.parametrize("segments", NOWHERE, ids=repr)
def test_get_path_nowhere(segments: tuple[str | int, ...]) -> None:
    assert get_path(DOC, segments) == (False, None)


@pytest.mark.parametrize("root", [None, 0, "x", True, 1.5], ids=repr)
def test_get_path_through_scalar_root(root: object) -> None:
    assert get_path(root, ("a",)) == (False, None)
    assert get_path(root, (0,)) == (False, None)


def test_get_path_in_tuples() -> None:
    assert get_path({"t": (1, (2, 3))}, ("t", 1, 0)) == (True, 2)


# ---------------------------------------------------------------- set_path

SET_CASES: list[tuple[object, bool, tuple[str | int, ...], object, object]] = [
    # root, missing_root, segments, value, expected new root
    (None, True, ("a",), 1, {"a": 1}),
    (None, True, ("a", "b"), 1, {"a": {"b": 1}}),
    (None, True, (0,), "x", ["x"]),
    (None, True, ("a", 0, "b"), 1, {"a": [{"b": 1}]}),
    (None, True, ("a", 0, 0), 1, {"a": [[1]]}),
    ({"old": 1}, True, ("a",), 1, {"a": 1}),  # missing_root ignores the old root
    (None, False, ("a",), 1, {"a": 1}),  # a stored null root counts as missing
    ({"a": 1}, False, ("a",), 2, {"a": 2}),
    ({"a": 1}, False, ("b",), 2, {"a": 1, "b": 2}),
    ({"a": None}, False, ("a", "b"), 1, {"a": {"b": 1}}),  # null on the way
    ({"a": None}, False, ("a", 0), 1, {"a": [1]}),
    ({"a": [1, 2]}, False, ("a", 0), 9, {"a": [9, 2]}),
    ({"a": [1, 2]}, False, ("a", 2), 3, {"a": [1, 2, 3]}),  # index == len appends
    ({"a": [None]}, False, ("a", 0, "b"), 1, {"a": [{"b": 1}]}),
    ({"a": {"b": {"c": 1}}}, False, ("a", "b", "c"), None, {"a": {"b": {"c": None}}}),
    ({"a": 1}, False, ("a",), {"deep": [1]}, {"a": {"deep": [1]}}),
    ([1, [2, 3]], False, (1, 1), 4, [1, [2, 4]]),
    ({"t": (1, 2)}, False, ("t", 0), 5, {"t": [5, 2]}),  # a tuple becomes a list
    ({"a.b": 1}, False, ("a.b",), 2, {"a.b": 2}),
]


@pytest.mark.parametrize(("root", "missing", "segments", "value", "expected"), SET_CASES, ids=repr)
def test_set_path(
    root: object,
    missing: bool,
    segments: tuple[str | int, ...],
    value: object,
    expected: object,
) -> None:
    before = copy.deepcopy(root)
    assert set_path(root, segments, value, missing_root=missing) == expected
    assert root == before  # never mutated in place


def test_set_path_keeps_key_order() -> None:
    new = set_path({"z": 1, "a": {"y": 1, "b": 2}}, ("a", "b"), 3, missing_root=False)
    assert isinstance(new, dict)
    assert list(new) == ["z", "a"]
    assert list(new["a"]) == ["y", "b"]


def test_set_path_shares_untouched_branches() -> None:
    untouched = {"big": list(range(10))}
    root = {"keep": untouched, "edit": {"x": 1}}
    new = set_path(root, ("edit", "x"), 2, missing_root=False)
    assert isinstance(new, dict)
    assert new["keep"] is untouched


SET_REFUSED: list[tuple[object, tuple[str | int, ...], type[Exception]]] = [
    # through a scalar
    ({"a": "text"}, ("a", "b"), ValueTypeError),
    ({"a": "text"}, ("a", 0), ValueTypeError),
    ({"a": 5}, ("a", "b"), ValueTypeError),
    ({"a": 1.5}, ("a", 0), ValueTypeError),
    ({"a": True}, ("a", "b"), ValueTypeError),
    ({"a": False}, ("a", 0), ValueTypeError),
    ("root", ("a",), ValueTypeError),
    (0, (0,), ValueTypeError),
    # wrong kind of segment for the container
    ({"a": {"b": 1}}, ("a", 0), ValueTypeError),
    ({"a": [1]}, ("a", "b"), ValueTypeError),
    ([1], ("a",), ValueTypeError),
    ({"a": 1}, (0,), ValueTypeError),
    # past the end
    ({"a": [1, 2]}, ("a", 3), InvalidPathError),
    ({"a": None}, ("a", 1), InvalidPathError),
    (None, (5,), InvalidPathError),
    ({"a": []}, ("a", MAX_INDEX), InvalidPathError),
    # fails deep down: nothing written above it either
    ({"a": {"b": [{"c": "s"}]}}, ("a", "b", 0, "c", "d"), ValueTypeError),
    ({"a": {"b": [{"c": []}]}}, ("a", "b", 0, "c", 1), InvalidPathError),
]


@pytest.mark.parametrize(("root", "segments", "error"), SET_REFUSED, ids=repr)
def test_set_path_refused_without_changing_anything(
    root: object, segments: tuple[str | int, ...], error: type[Exception]
) -> None:
    before = copy.deepcopy(root)
    with pytest.raises(error):
        set_path(root, segments, {"new": 1}, missing_root=False)
    assert root == before


def test_set_path_message_names_the_path() -> None:
    with pytest.raises(ValueTypeError, match=r"a\.b") as info:
        set_path({"a": {"b": "s"}}, ("a", "b", "c"), 1, missing_root=False)
    assert "a string" in str(info.value)
    with pytest.raises(InvalidPathError, match=r"length 2"):
        set_path({"a": [1, 2]}, ("a", 3), 1, missing_root=False)


# ---------------------------------------------------------------- incr_value

INCR_OK: list[tuple[bool, object, int | float, int | float]] = [
    (False, None, 1, 1),
    (False, None, 2.5, 2.5),
    (False, None, -3, -3),
    (True, 0, 1, 1),
    (True, 41, 1, 42),
    (True, 1.5, 1, 2.5),
    (True, 1, 0.5, 1.5),
    (True, 10, -20, -10),
    (True, 2**63 - 2, 1, 2**63 - 1),
    (True, -(2**63) + 1, -1, -(2**63)),
    (True, 0.1, 0.2, 0.1 + 0.2),
    (True, 1e308, 1e308 * -1, 0.0),
]


@pytest.mark.parametrize(("found", "current", "amount", "expected"), INCR_OK, ids=repr)
def test_incr_value(found: bool, current: object, amount: int | float, expected: int | float) -> None:
    result = incr_value(found, current, amount)
    assert result == expected
    assert type(result) is type(expected)


INCR_REFUSED: list[tuple[bool, object, object]] = [
    (True, None, 1),  # incr on a null
    (True, True, 1),
    (True, False, 1),
    (True, "1", 1),
    (True, [1], 1),
    (True, {"a": 1}, 1),
    (False, None, True),
    (True, 1, False),
    (True, 1, "1"),
    (True, 1, None),
    (True, 1, float("nan")),
    (True, 1, float("inf")),
    (True, 1, float("-inf")),
    (True, 2**63 - 1, 1),  # int overflow
    (True, -(2**63), -1),
    (False, None, 2**63),
    (True, 1.7976931348623157e308, 1.7976931348623157e308),  # float overflow
    (True, 1.0, 10**400),  # OverflowError converting to float
    (True, 1, 1j),
]


@pytest.mark.parametrize(("found", "current", "amount"), INCR_REFUSED, ids=repr)
def test_incr_value_refused(found: bool, current: object, amount: object) -> None:
    with pytest.raises(ValueTypeError):
        incr_value(found, current, amount)  # type: ignore[arg-type]


def test_incr_on_null_message() -> None:
    with pytest.raises(ValueTypeError, match="incr on a null"):
        incr_value(True, None, 1)


def test_huge_numbers_in_messages_do_not_break_the_typed_error() -> None:
    with pytest.raises(InvalidPathError, match="bits"):
        parse_path(("a", 10**5000))
    with pytest.raises(ValueTypeError, match="bits"):
        incr_value(True, 1, 10**5000)
