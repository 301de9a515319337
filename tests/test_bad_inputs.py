"""The K*, V* and E* rows of spec/bad-inputs.md that apply to the Python library.

The catalogue is data: each case names its row, the expected error class and
the calls (on a bot's KVS, the server-wide KVS, dialog memory or the store)
that must refuse the input. Every case runs on every backend; each call must
raise the typed error (a subclass of ``InvalidInputError``) quickly, and the
store must hold exactly what it held before (keys, values, versions,
expiry times and modification times, in every namespace).

Rows that only concern HTTP or the CLI (K7, K15, V1's HTTP bodies, V8, V12)
are tested with those surfaces; V6 (duplicate object keys) cannot be
expressed as a Python dict. Inputs that must be *accepted* exactly (K8-K11,
K13, V5's ``-0``/``1e-400``, V10, E8's good forms) are checked at the end.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import reduce
from typing import Any

import pytest

from botmemory import (
    InvalidExpiryError,
    InvalidInputError,
    InvalidKeyError,
    InvalidPathError,
    Store,
    ValueTooLargeError,
    ValueTypeError,
)
from botmemory.testing import FakeClock
from botmemory.testing.contract import all_keys, assert_same, dump_store

Call = Callable[[Store], Awaitable[Any]]

BOT = "b1"


@dataclass(frozen=True)
class Case:
    row: str
    label: str
    error: type[InvalidInputError]
    calls: tuple[tuple[str, Call], ...]


CASES: list[Case] = []


def case(row: str, label: str, error: type[InvalidInputError], calls: dict[str, Call]) -> None:
    CASES.append(Case(row, label, error, tuple(calls.items())))


async def _drain(it: Any) -> list[Any]:
    return [x async for x in it]


# -- keys, ids and names ---------------------------------------------------------------

_BAD_STRINGS: dict[str, list[str]] = {
    "K1": [""],
    "K2": [" a", "a ", "\t", "a\n", "\u3000a"],
    "K4": ["a\x00b", "\x00"],
    "K5": ["\n", "\r", "a\rb", "a\x1bb", "\x7f", "a\x85b", "a\x9fb", "\u2028", "a\u2029b"],
    "K6": ["\ud800", "a\udfffb"],
}
_NOT_STRINGS: list[Any] = [1, None, True, b"k", ("k",)]


def _key_calls(key: Any) -> dict[str, Call]:
    calls: dict[str, Call] = {
        "set": lambda s: s.bot(BOT).kvs.set(key, 1),
        "set path": lambda s: s.bot(BOT).kvs.set(key, 1, "a"),
        "get": lambda s: s.bot(BOT).kvs.get(key),
        "get_entry": lambda s: s.bot(BOT).kvs.get_entry(key),
        "exists": lambda s: s.bot(BOT).kvs.exists(key),
        "incr": lambda s: s.bot(BOT).kvs.incr(key),
        "set_if_absent": lambda s: s.bot(BOT).kvs.set_if_absent(key, 1),
        "delete": lambda s: s.bot(BOT).kvs.delete(key),
        "ttl": lambda s: s.bot(BOT).kvs.ttl(key),
        "expire": lambda s: s.bot(BOT).kvs.expire(key, "1h"),
        "persist": lambda s: s.bot(BOT).kvs.persist(key),
        "get_many": lambda s: s.bot(BOT).kvs.get_many(["k", key]),
        "set_many": lambda s: s.bot(BOT).kvs.set_many({"new": 1, key: 1}),
        "delete_many": lambda s: s.bot(BOT).kvs.delete_many(["k", key]),
        "global set": lambda s: s.global_kvs.set(key, 1),
        "global delete": lambda s: s.global_kvs.delete(key),
        "set_storage_with_expiry": lambda s: s.bot(BOT).kvs.set_storage_with_expiry(key, 1, "1h"),
    }
    return calls


def _id_calls(value: Any) -> dict[str, Call]:
    return {
        "user id set": lambda s: s.bot(BOT).memory.set_user_variable(value, "n", 1),
        "user id get": lambda s: s.bot(BOT).memory.get_user_variable(value, "n"),
        "user id delete": lambda s: s.bot(BOT).memory.delete_user_variable(value, "n"),
        "user scope": lambda s: s.bot(BOT).memory.user(value).items(),
        "variable name": lambda s: s.bot(BOT).memory.set_user_variable("u", value, 1),
        "conversation id": lambda s: s.bot(BOT).memory.set_conversation_variable(value, "n", 1),
        "conversation name": lambda s: s.bot(BOT).memory.set_conversation_variable("c", value, 1),
        "end_conversation": lambda s: s.bot(BOT).memory.end_conversation(value),
        "global name": lambda s: s.bot(BOT).memory.set_global_variable(value, 1),
        "global scope name": lambda s: s.bot(BOT).memory.global_scope().get(value),
        "bot id": lambda s: s.bot(value).kvs.set("k", 1),
    }


def _prefix_calls(prefix: Any) -> dict[str, Call]:
    return {
        "keys": lambda s: _drain(s.bot(BOT).kvs.keys(prefix)),
        "delete_prefix": lambda s: s.bot(BOT).kvs.delete_prefix(prefix),
        "delete_prefix all": lambda s: s.bot(BOT).kvs.delete_prefix(prefix, all=True),
        "remove_storage_keys_starting_with": lambda s: s.bot(BOT).kvs.remove_storage_keys_starting_with(prefix),
    }


for _row, _values in _BAD_STRINGS.items():
    for _value in _values:
        case(_row, f"key {_value!r}", InvalidKeyError, _key_calls(_value))
        case(_row, f"id {_value!r}", InvalidKeyError, _id_calls(_value))
        # a prefix may be empty and may end in whitespace (so K1 and K2 differ for prefixes)
        if _row in ("K4", "K5", "K6"):
            case(_row, f"prefix {_value!r}", InvalidKeyError, _prefix_calls(_value))
for _value in (" a", "\ta", "\u3000a", " "):
    case("K2", f"prefix {_value!r}", InvalidKeyError, _prefix_calls(_value))

for _value in _NOT_STRINGS:
    _calls = _key_calls(_value)
    _calls |= _id_calls(_value)
    _calls |= _prefix_calls(_value)
    case("K16", f"non-str {_value!r}", InvalidKeyError, _calls)

# K3: limits in UTF-8 bytes, 512 for keys a caller writes and 256 for ids and names
for _label, _key in (("513 ASCII bytes", "k" * 513), ("514 bytes of é", "é" * 257), ("1 MiB", "k" * (1 << 20)),
                     ("513 bytes with emoji", "\U0001f600" * 128 + "k")):
    case("K3", f"key of {_label}", InvalidKeyError, {
        "set": lambda s, k=_key: s.bot(BOT).kvs.set(k, 1),
        "set path": lambda s, k=_key: s.bot(BOT).kvs.set(k, 1, "a"),
        "incr": lambda s, k=_key: s.bot(BOT).kvs.incr(k),
        "set_if_absent": lambda s, k=_key: s.bot(BOT).kvs.set_if_absent(k, 1),
        "set_many": lambda s, k=_key: s.bot(BOT).kvs.set_many({"new": 1, k: 1}),
        "global set": lambda s, k=_key: s.global_kvs.set(k, 1),
    })
for _label, _id in (("257 ASCII bytes", "u" * 257), ("258 bytes of é", "é" * 129), ("1 MiB", "u" * (1 << 20))):
    case("K3", f"id of {_label}", InvalidKeyError, {
        "user id": lambda s, i=_id: s.bot(BOT).memory.set_user_variable(i, "n", 1),
        "variable name": lambda s, i=_id: s.bot(BOT).memory.set_user_variable("u", i, 1),
        "conversation id": lambda s, i=_id: s.bot(BOT).memory.set_conversation_variable(i, "n", 1),
        "global name": lambda s, i=_id: s.bot(BOT).memory.set_global_variable(i, 1),
    })

# K14: bot ids outside [A-Za-z0-9][A-Za-z0-9_.-]{0,63}
for _bot in ("__global__", "../x", "a/b", ".", "..", "-a", "_a", "a" * 65, "bot!", "é", "a b", "a\x00"):
    case("K14", f"bot id {_bot!r}", InvalidKeyError, {
        "bot": lambda s, b=_bot: s.bot(b).kvs.set("k", 1),
        "bot memory": lambda s, b=_bot: s.bot(b).memory.set_global_variable("n", 1),
    })


# -- values --------------------------------------------------------------------------


class _Big:
    """A large value built only when a call needs it, so the catalogue stays small in memory."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self.make = make


def _value_calls(given: Any) -> dict[str, Call]:
    def v() -> Any:
        return given.make() if isinstance(given, _Big) else given

    return {
        "set": lambda s: s.bot(BOT).kvs.set("k", v()),
        "set new": lambda s: s.bot(BOT).kvs.set("new", v()),
        "set path": lambda s: s.bot(BOT).kvs.set("doc", v(), "a.b"),
        "set_if_absent": lambda s: s.bot(BOT).kvs.set_if_absent("new", v()),
        "set_many": lambda s: s.bot(BOT).kvs.set_many({"new": 1, "k": v()}),
        "if_version": lambda s: s.bot(BOT).kvs.set("k", v(), if_version=1),
        "global": lambda s: s.global_kvs.set("k", v()),
        "user variable": lambda s: s.bot(BOT).memory.set_user_variable("u", "n", v()),
        "conversation variable": lambda s: s.bot(BOT).memory.set_conversation_variable("c", "n", v()),
        "global variable": lambda s: s.bot(BOT).memory.set_global_variable("n", v()),
    }


def _nested(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


def _cyclic() -> Any:
    a: dict[str, Any] = {}
    a["again"] = [a]
    return a


class _Custom:
    pass


case("V1", "value of limit+1 bytes", ValueTooLargeError, _value_calls(_Big(lambda: "x" * ((1 << 20) - 1))))
case("V1", "value of 8 MiB", ValueTooLargeError, _value_calls(_Big(lambda: ["y" * 1024] * 8192)))
case("V2", "nested 65 levels", ValueTooLargeError, _value_calls(_nested(65)))
case("V2", "nested 100,000 levels", ValueTooLargeError, _value_calls(_Big(lambda: _nested(100_000))))
case("V2", "dict nested 1,000 levels", ValueTooLargeError, _value_calls(reduce(lambda v, _: {"a": v}, range(1000), 0)))
case("V3", "10^6 elements", ValueTooLargeError, _value_calls(_Big(lambda: [0] * 1_000_000)))
case("V3", "200,000 keys", ValueTooLargeError, _value_calls(_Big(lambda: dict.fromkeys(map(str, range(200_000)), 0))))
for _label, _value in (("NaN", float("nan")), ("Infinity", float("inf")), ("-Infinity", float("-inf")),
                       ("1e400", 1e400), ("nested NaN", {"a": [1, float("nan")]})):
    case("V4", _label, ValueTypeError, _value_calls(_value))
for _label, _value in (("2**63", 2**63), ("-2**63-1", -(2**63) - 1), ("5000 digits", 10**4999),
                       ("nested 2**64", {"a": [2**64]})):
    case("V5", _label, ValueTypeError, _value_calls(_value))
for _label, _value in (("bytes", b"x"), ("bytearray", bytearray(b"x")), ("datetime", datetime(2030, 1, 1, tzinfo=UTC)),
                       ("set", {1, 2}), ("frozenset", frozenset()), ("custom object", _Custom()),
                       ("int object key", {1: "x"}), ("tuple object key", {("a",): 1}),
                       ("None object key", {None: 1}), ("lone surrogate", "\ud800"),
                       ("surrogate key", {"\udc00": 1}), ("nested bytes", [1, {"a": b"x"}]),
                       ("complex", 1j), ("timedelta", timedelta(1))):
    case("V9", _label, ValueTypeError, _value_calls(_value))
case("V9", "cyclic dict", ValueTooLargeError, _value_calls(_cyclic()))


def _path_calls(path: Any) -> dict[str, Call]:
    return {
        "set": lambda s: s.bot(BOT).kvs.set("doc", 1, path),
        "set new key": lambda s: s.bot(BOT).kvs.set("new", 1, path),
        "get": lambda s: s.bot(BOT).kvs.get("doc", path),
        "incr": lambda s: s.bot(BOT).kvs.incr("doc", path=path),
        "incr new key": lambda s: s.bot(BOT).kvs.incr("new", path=path),
    }


for _path in ("__proto__.x", "a.__proto__", "__class__.__init__.__globals__", "a..b", "a.", ".a", "", "a[-1]",
              "a[10000000]", "a[10001]", "a[01]", "a[+1]", "a[1", "a]", "a[]", "a[x]", ("__proto__", "x"),
              ("a", -1), ("a", 10_001), ("a", True), ("a", 1.0), ("a", ""), (), [], "a." * 33 + "a", 5, {"a": 1}):
    case("V11", f"path {_path!r:.40}", InvalidPathError, _path_calls(_path))


# -- expiry ------------------------------------------------------------------------------


def _expiry_calls(expiry: Any) -> dict[str, Call]:
    return {
        "set": lambda s: s.bot(BOT).kvs.set("k", 2, expiry=expiry),
        "set new": lambda s: s.bot(BOT).kvs.set("new", 2, expiry=expiry),
        "set path": lambda s: s.bot(BOT).kvs.set("doc", 2, "a.b", expiry),
        "set_if_absent": lambda s: s.bot(BOT).kvs.set_if_absent("new", 2, expiry=expiry),
        "set_many": lambda s: s.bot(BOT).kvs.set_many({"new": 1, "k": 2}, expiry=expiry),
        "expire": lambda s: s.bot(BOT).kvs.expire("k", expiry),
        "set_storage_with_expiry": lambda s: s.bot(BOT).kvs.set_storage_with_expiry("k", 2, expiry),
        "user variable": lambda s: s.bot(BOT).memory.set_user_variable("u", "n", 2, expiry),
        "global kvs": lambda s: s.global_kvs.set("g", 2, expiry=expiry),
    }


_BAD_EXPIRIES: dict[str, list[Any]] = {
    "E1": ["-5m", -1, -5, -0.5, timedelta(seconds=-1), "-PT5M"],
    "E2": [0, 0.0, "0", "0s", "0 ms", "PT0S", timedelta(0), "0.0h"],
    "E3": ["1e309 ms", 1e309, "inf", "Infinity", float("inf"), float("-inf"), "1e3s"],
    "E4": [float("nan"), "nan", "NaN"],
    "E5": ["5 fortnights", "5 parsecs", "5 M", "5 S", "5 Hours", "5 years", "P1Y", "P1M", "5"],
    "E6": ["none", "forever", "Never", "NEVER", "null", "", -1, False, True],
    "E7": ["6000 weeks", "36526d", 2**63, 36_526 * 86_400, timedelta(days=36_526), "P36526D",
           datetime(9999, 12, 31, tzinfo=UTC), "9999-12-31T00:00:00Z"],
    "E8": [".5s", "1_000s", " 5m", "5m ", " 5m ", "５m", "١٢m", "5  m", "5m5s", "1,5h", "PT1,5M", "P", "PT"],
    "E10": ["2030-01-01T00:00:00", "2030-01-01", "2030-02-30T00:00:00Z", "2030-01-01T23:59:60Z",
            "2030-01-01 00:00:00Z", datetime(2030, 1, 1), 1e12],
    "E11": ["5m; DROP TABLE kv", "5m\n", "\n5m", "5m\x00", "30s' OR '1'='1"],
}
for _row, _values in _BAD_EXPIRIES.items():
    for _value in _values:
        case(_row, f"expiry {_value!r:.40}", InvalidExpiryError, _expiry_calls(_value))


def _relative_to_now(offset: float) -> Call:
    def call(s: Store) -> Awaitable[Any]:
        when = datetime.fromtimestamp(s.clock.now() + offset, tz=UTC)
        return s.bot(BOT).kvs.set("k", 2, expiry=when)

    return call


case("E9", "absolute expiry in the past or now", InvalidExpiryError, {
    "now": _relative_to_now(0),
    "1 s ago": _relative_to_now(-1),
    "1 ms ago": _relative_to_now(-0.001),
    "year 2000": lambda s: s.bot(BOT).kvs.set("k", 2, expiry=datetime(2000, 1, 1, tzinfo=UTC)),
    "RFC 3339 in the past": lambda s: s.bot(BOT).kvs.set("k", 2, expiry="2001-01-01T00:00:00Z"),
})

# expiry combined with keep_ttl is ambiguous: refused, "never" included (api.md)
case("E12", "expiry with keep_ttl", InvalidInputError, {
    f"{e!r}": (lambda s, e=e: s.bot(BOT).kvs.set("k", 2, expiry=e, keep_ttl=True)) for e in ("1h", "never", 5)
})
# expire() needs an expiry: persist() removes one
case("E6", "expire(None/'never')", InvalidExpiryError, {
    "None": lambda s: s.bot(BOT).kvs.expire("k", None),
    "never": lambda s: s.bot(BOT).kvs.expire("k", "never"),
})

# other library refusals that guard against silent mass changes (A6's limits, the empty prefix)
case("X", "argument checks", InvalidInputError, {
    "delete_prefix('')": lambda s: s.bot(BOT).kvs.delete_prefix(""),
    "remove_storage_keys_starting_with('')": lambda s: s.bot(BOT).kvs.remove_storage_keys_starting_with(""),
    "keys limit=0": lambda s: _drain(s.bot(BOT).kvs.keys(limit=0)),
    "keys limit=-1": lambda s: _drain(s.bot(BOT).kvs.keys(limit=-1)),
    "if_version=-1": lambda s: s.bot(BOT).kvs.set("k", 2, if_version=-1),
    "purge_expired limit=0": lambda s: s.purge_expired(limit=0),
    "set_many of a list": lambda s: s.bot(BOT).kvs.set_many([("k", 2)]),  # type: ignore[arg-type]
    "get_many of a str": lambda s: s.bot(BOT).kvs.get_many("k"),
})


# -- the test --------------------------------------------------------------------------


async def _seed(store: Store) -> None:
    """Data in several namespaces, with and without expiry, so that "changed nothing" means something."""
    kvs = store.bot(BOT).kvs
    await kvs.set("k", 1)
    await kvs.set("k", 1, keep_ttl=True)
    await kvs.set("doc", {"a": {"b": 0}, "list": [1]}, expiry="1h")
    await kvs.set("gone", "expired", expiry="1s")
    await store.bot("b2").kvs.set("k", "other bot")
    await store.global_kvs.set("g", "global", expiry="1d")
    memory = store.bot(BOT).memory
    await memory.set_user_variable("u", "n", "user")
    await memory.set_conversation_variable("c", "n", "conversation")
    await memory.set_global_variable("n", "global")
    assert isinstance(store.clock.clock, FakeClock)  # the store reads it through a NonDecreasingClock
    store.clock.clock.advance(1)


ROWS = list(dict.fromkeys(c.row for c in CASES))


@pytest.mark.parametrize("row", ROWS)
async def test_refused_and_nothing_changed(store: Store, row: str) -> None:
    """Every call of every case of the row raises its typed error, quickly, and changes nothing."""
    await _seed(store)
    before = await dump_store(store)
    failures: list[str] = []
    for bad in (c for c in CASES if c.row == row):
        assert issubclass(bad.error, InvalidInputError)
        for label, call in bad.calls:
            where = f"{bad.label} / {label}"
            started: float | None = None
            try:
                pending = call(store)  # builds the input (and may refuse it at once, e.g. store.bot)
                started = time.perf_counter()
                await pending
            except bad.error as exc:
                if not isinstance(exc, InvalidInputError):
                    failures.append(f"{where}: {exc!r} is not an InvalidInputError")
            except BaseException as exc:
                failures.append(f"{where}: raised {exc!r}, expected {bad.error.__name__}")
            else:
                failures.append(f"{where}: accepted, expected {bad.error.__name__}")
            elapsed = 0.0 if started is None else time.perf_counter() - started
            if elapsed > 1.0:
                failures.append(f"{where}: took {elapsed:.2f} s (must answer in under a second)")
        if await dump_store(store) != before:
            failures.append(f"{bad.label}: the store changed")
            before = await dump_store(store)
    assert failures == []
    assert await store.bots() == [BOT, "b2"]


def test_catalogue_covers_the_rows() -> None:
    rows = {c.row for c in CASES}
    expected = {"K1", "K2", "K3", "K4", "K5", "K6", "K14", "K16", "V1", "V2", "V3", "V4", "V5", "V9", "V11"}
    expected |= {f"E{i}" for i in range(1, 13)}
    assert expected <= rows


# -- inputs that must be accepted exactly --------------------------------------------------


async def test_k8_k9_k10_distinct_exact_keys(store: Store) -> None:
    kvs = store.bot(BOT).kvs
    keys = ["café", "cafe\u0301", "User", "user", "ß", "SS", "\u212a", "K", "\u0430", "a", "a\u200bb", "ab",
            "\u202eevil", "evil"]
    for i, key in enumerate(keys):
        await kvs.set(key, i)
    assert await all_keys(kvs) == sorted(keys)
    for i, key in enumerate(keys):
        assert await kvs.get(key) == i


async def test_k11_k14_ids_are_encoded_and_isolated(store: Store) -> None:
    memory = store.bot(BOT).memory
    ids = ["alice/../bob", "bob", "a/b", "a", "a:b", ".", "..", "__proto__", "%2F", "%252F", "//", "x/"]
    for uid in ids:
        await memory.set_user_variable(uid, "who", uid)
        await memory.set_conversation_variable(uid, "who", "c:" + uid)
    await memory.set_user_variable("a", "b/c", "name with slash")
    for uid in ids:
        assert await memory.get_user_variable(uid, "who") == uid
        assert await memory.get_conversation_variable(uid, "who") == "c:" + uid
    assert await memory.get_user_variable("a/b", "c") is None
    assert await memory.user("bob").items() == {"who": "bob"}
    assert await store.bot("b2").memory.get_user_variable("bob", "who") is None


async def test_k13_injection_strings_are_literal(store: Store) -> None:
    kvs = store.bot(BOT).kvs
    await store.bot("b2").kvs.set("secret", "other bot")
    hostile = ["'; DROP TABLE kv;--", "x') OR '1'='1", '" OR 1=1', "*", "%", "_", "') OR 1=1 --"]
    for text in hostile:
        await kvs.set(text, text)
        await kvs.set("doc", text, (text,))
        assert await kvs.get(text) == text
        assert await kvs.get("doc", (text,)) == text
        assert await all_keys(kvs, text) == sorted(k for k in hostile[: hostile.index(text) + 1] if k.startswith(text))
    assert await store.bot("b2").kvs.get("secret") == "other bot"
    assert await all_keys(store.bot("b2").kvs) == ["secret"]


async def test_v5_v7_v10_values_accepted_exactly(store: Store) -> None:
    kvs = store.bot(BOT).kvs
    for value in (-0, 1e-400, -0.0, 2**63 - 1, -(2**63), "\u0000", "a\u0000b", None, 5e-324):
        await kvs.set("k", value)
        assert_same(await kvs.get("k", default="missing"), value)
    assert await kvs.exists("k")


@pytest.mark.parametrize(
    ("expiry", "seconds"),
    [("1.5h", 5400), ("0.0001ms", 0.001), ("never", None), (None, None), ("1.1h", 3960), (1.1, 1.1)],
)
async def test_e6_e8_accepted_expiry_forms(store: Store, clock: FakeClock, expiry: Any, seconds: float | None) -> None:
    kvs = store.bot(BOT).kvs
    await kvs.set("k", 1, expiry=expiry)
    ttl = await kvs.ttl("k")
    if seconds is None:
        assert ttl is None
    else:
        assert ttl == pytest.approx(seconds, abs=1e-3)
