"""Isolation and hostile input (issue 16, item 5), on every backend: the library and the CLI.

``tests/test_bad_inputs.py`` runs spec/bad-inputs.md's K, V and E rows
against the library on every backend; this module adds

- the same catalogue through the **CLI** (``typer``'s CliRunner, and the
  real console script for raw argv bytes): exit 2, one ``error:`` line on
  stderr, no traceback, and the data unchanged (a snapshot of every bot and
  the server-wide KVS before and after);
- a **Hypothesis fuzz run** of the library (keys, paths, values and expiries
  drawn from hostile and arbitrary text and objects, on every operation):
  every call succeeds or raises an ``InvalidInputError``-family error
  (never another exception, never a ``StoreError`` on a healthy server); a
  refused call changes nothing, and an accepted one changes nothing outside
  the bot it named;
- the same fuzz through the **CLI**: exit 0 or 2, never a traceback, same
  snapshot rule.

``memory://`` lives in one process, so through the CLI each invocation sees
a new empty store: there only the exit codes and messages are checked.

The HTTP surface is ``test_http_hostile.py`` (``run_http`` beside
:func:`run_cli`, and the BOLA matrix) and ``tests/test_http_schemathesis.py``
(schemathesis over ``/openapi.json``), with the same snapshot check.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner, Result

import botmemory
from botmemory import BotMemoryError, InvalidInputError, StoreError
from botmemory.cli import app
from botmemory.testing.backends import POSTGRES_URL, REDIS_URL, open_test_store, unique_suffix
from botmemory.testing.contract import dump_store
from conftest import require_backend
from reliability_suite import record, size

# the catalogue's data, shared with the library's test (tests/test_bad_inputs.py)
from test_bad_inputs import _BAD_EXPIRIES, _BAD_STRINGS

BIN = Path(sys.executable).parent / "botmemory"
VICTIMS = ("victim1", "victim2")

BACKENDS = [
    "sqlite",
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("redis", marks=pytest.mark.redis),
]


# -- a store the CLI can reach, seeded with other bots' data ----------------------------------------


def _url_and_options(name: str, tmp_path: Path) -> tuple[str, dict[str, Any]]:
    if name == "sqlite":
        return f"sqlite:///{tmp_path / 'hostile.db'}", {}
    if name == "postgres":
        schema = unique_suffix()
        return f"{POSTGRES_URL}?schema={schema}", {"schema": schema}
    if name == "redis":
        prefix = f"botmemory-test:{unique_suffix()}:"
        return f"{REDIS_URL}?prefix={prefix}", {"prefix": prefix}
    return "memory://", {}


async def _seed(store: botmemory.Store) -> None:
    for bot in (*VICTIMS, "fuzz"):
        kvs = store.bot(bot).kvs
        await kvs.set("k", {"secret": bot})
        await kvs.set("%", "percent")
        await kvs.set("doc", {"a": {"b": [1, 2]}}, expiry="1d")
        await store.bot(bot).memory.set_user_variable("u", "name", bot)
        await store.bot(bot).memory.set_conversation_variable("c", "topic", bot)
        await store.bot(bot).memory.set_global_variable("g", bot)
    await store.global_kvs.set("settings", {"shared": True})


@contextmanager
def seeded(name: str, tmp_path: Path) -> Iterator[str]:
    """A seeded store on backend ``name``; yields the URL for ``--store`` and drops the data afterwards."""
    if name in ("postgres", "redis"):
        require_backend(name)
    url, options = _url_and_options(name, tmp_path)
    if name == "memory":
        yield url
        return

    async def seed() -> None:
        async with await botmemory.open(url) as store:
            await _seed(store)

    async def drop() -> None:
        async with open_test_store(name, tmp_path, **options):
            pass  # open_test_store drops the schema / key prefix on the way out

    asyncio.run(seed())
    try:
        yield url
    finally:
        if name in ("postgres", "redis"):
            asyncio.run(drop())


def snapshot(url: str) -> dict[str, Any]:
    """Everything live behind ``url`` (every bot and the server-wide KVS)."""
    if url == "memory://":
        return {}

    async def go() -> dict[str, Any]:
        async with await botmemory.open(url) as store:
            return await dump_store(store)

    return asyncio.run(go())


def _without(dump: dict[str, Any], namespaces: set[str]) -> dict[str, Any]:
    return {ns: rows for ns, rows in dump.items() if ns not in namespaces}


# -- the CLI surface ---------------------------------------------------------------------------------


def run_cli(url: str, *args: str) -> Result:
    return CliRunner().invoke(app, ["--store", url, *args])


def assert_refused(result: Result, what: str) -> None:
    assert result.exit_code == 2, f"{what}: exit {result.exit_code}, {result.output!r}"
    assert "Traceback" not in result.output, what
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, f"{what}: {result.stderr!r}"
    assert result.stdout == "", f"{what}: {result.stdout!r}"


#: the bot every refused call aims at: one with data, so "nothing changed" means something
T = "victim1"


def _key_cases(key: str) -> list[list[str]]:
    return [
        ["kvs", "set", T, key, "1"],
        ["kvs", "get", T, key],
        ["kvs", "del", T, key],
        ["kvs", "ttl", T, key],
        ["memory", "set", T, "user", key, "n", "1"],
        ["memory", "set", T, "user", "u", key, "1"],
        ["memory", "set", T, "conversation", key, "n", "1"],
        ["memory", "set", T, "global", key, "1"],
        ["user", "export", T, key],
        ["user", "forget", T, key],
    ]


def _catalogue(full: bool) -> dict[str, list[list[str]]]:
    """Rows of bad-inputs.md as CLI argv lists; with ``full`` false, one input per row (server backends)."""
    pick = (lambda xs: xs) if full else (lambda xs: xs[:1])
    rows: dict[str, list[list[str]]] = {}
    for row, values in _BAD_STRINGS.items():
        rows[row] = [case for v in pick(values) for case in _key_cases(v)]
        if row in ("K4", "K5", "K6"):
            rows[row] += [["kvs", "ls", T, v] for v in pick(values)]
    rows["K3"] = [c for k in pick(["k" * 513, "é" * 257])
                  for c in (["kvs", "set", T, k, "1"], ["memory", "set", T, "user", "u" * 257, "n", "1"])]
    rows["K14"] = [c for b in pick(["__global__", "../x", "a/b", ".", "-a", "a" * 65, "bot!", "é", "@nope"])
                   for c in (["kvs", "set", b, "k", "1"], ["memory", "set", b, "global", "n", "1"])]
    values = {
        "V1": ['"' + "x" * (1 << 20) + '"'],
        "V2": ["[" * 65 + "]" * 65, "[" * 100_000 + "]" * 100_000],
        "V4": ["NaN", "Infinity", "-Infinity", "[1, NaN]", "1e400"],
        "V5": ["9223372036854775808", "-9223372036854775809", "9" * 5000],
        "V6": ['{"a": 1, "a": 2}'],
        "V8": ["", "{", "'single'", "undefined", '"\\ud800"'],
    }
    for row, texts in values.items():
        rows[row] = [c for v in pick(texts) for c in (["kvs", "set", T, "k", v],
                                                     ["memory", "set", T, "user", "u", "n", v])]
    paths = ["__proto__.x", "a..b", "a.", ".a", "a[-1]", "a[10000000]", "a[01]", "a[x]", "a." * 33 + "a"]
    rows["V11"] = [c for p in pick(paths) for c in (["kvs", "set", T, "doc", "1", "--path", p],
                                                   ["kvs", "get", T, "doc", "--path", p])]
    for row, expiries in _BAD_EXPIRIES.items():
        texts = [e for e in expiries if isinstance(e, str)]
        rows[row] = [c for e in pick(texts) for c in (["kvs", "set", T, "k", "2", "--expiry", e],
                                                     ["memory", "set", T, "user", "u", "n", "2", "--expiry", e])]
    # a huge limit is capped (A6 allows it), not refused
    rows["A6"] = [["kvs", "ls", T, "--limit", v] for v in pick(["0", "-1", "x", "1e9", "1.5"])]
    rows["C1"] = [["nosuch"], ["kvs", "set"], ["kvs", "set", T, "k", "1", "--nosuch"]]
    return {row: cases for row, cases in rows.items() if cases}


@pytest.mark.parametrize("name", [*BACKENDS, "memory"])
def test_the_catalogue_through_the_cli(name: str, tmp_path: Path) -> None:
    full = name == "sqlite"  # the server backends and memory:// take one input per row
    invocations = 0
    with seeded(name, tmp_path) as url:
        before = snapshot(url)
        assert set(before) >= {*VICTIMS, "fuzz", "__global__"} or name == "memory"
        failures = []
        for row, cases in _catalogue(full).items():
            for argv in cases:
                invocations += 1
                result = run_cli(url, *argv)
                try:
                    assert_refused(result, f"{row} {argv!r:.80}")
                except AssertionError as exc:
                    failures.append(str(exc))
            if snapshot(url) != before:
                failures.append(f"{row}: the data changed")
        assert failures == []
    record(f"hostile.cli_catalogue.{name}", rows=len(_catalogue(full)), invocations=invocations,
           tracebacks=0, data_changes=0)


def test_raw_argv_bytes_through_the_console_script(tmp_path: Path) -> None:
    """Bytes no str argument can carry: invalid UTF-8, encoded surrogates, a huge argument."""
    url = f"sqlite:///{tmp_path / 'argv.db'}"
    assert run_cli(url, "kvs", "set", "b1", "k", "1").exit_code == 0
    before = snapshot(url)
    hostile: list[list[bytes | str]] = [
        ["kvs", "set", "b1", b"\xff", "1"],
        ["kvs", "set", "b1", b"\xed\xa0\x80", "1"],  # a surrogate, UTF-8-encoded
        ["kvs", "set", "b1", "k", b'"\xc3"'],
        ["kvs", "get", b"\xfe\xff", "k"],
        ["memory", "set", "b1", "user", b"u\x80", "n", "1"],
        ["kvs", "set", "b1", "k", "2", "--expiry", b"5\xffm"],
        ["kvs", "set", "b1", "k" * 100_000, "1"],
        ["kvs", "set", "b1", "a\nb", "1"],
        ["kvs", "set", "b1", "\x1b[31mred", "1"],
    ]
    for argv in hostile:
        done = subprocess.run([BIN, "--store", url, *argv], capture_output=True, timeout=60, check=False,
                              cwd=tmp_path, env={**os.environ, "LC_ALL": "C.UTF-8"})
        assert done.returncode == 2, (argv, done.stderr)
        assert done.stderr.startswith(b"error: ") and done.stderr.count(b"\n") == 1, (argv, done.stderr)
        assert b"Traceback" not in done.stderr + done.stdout
    assert snapshot(url) == before


# -- fuzzing ---------------------------------------------------------------------------------------------

HOSTILE_TEXT = [
    "", " ", "a ", " a", "\t", "\x00", "a\x00b", "\n", "\r\n", "\x1b[2J", "\x7f", "\x85", "\u2028", "\ud800",
    "a\udfff", "%", "_", "*", "?", "[a]", "\\", "%2F", "..%2F", "'; DROP TABLE kv;--", "x') OR '1'='1",
    '" OR 1=1', "../x", "a/b", "__proto__", "__global__", "__rt/sessions", "café", "cafe\u0301", "\u202eevil",
    "a\u200bb", "k" * 513, "é" * 257, "u" * 257, "..", ".", "@global", "storage/users/", "victim1", "0", "-1",
]
TEXT = st.one_of(
    st.sampled_from(HOSTILE_TEXT),
    st.sampled_from(["k", "doc", "a/b", "u", "c", "n", "orders/42", "fuzz"]),  # valid: calls that get through
    st.text(st.characters(codec=None, exclude_categories=()), max_size=12),
    st.text(max_size=40),
)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=12,
)


def _nested(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


HOSTILE_VALUES = [float("nan"), float("inf"), 2**63, -(2**63) - 1, 10**400, b"x", {1: "x"}, {"a": {1, 2}},
                  object(), _nested(65), "\ud800", {"\udc00": 1}, datetime(2030, 1, 1, tzinfo=UTC), 1j,
                  "x" * (1 << 20)]
VALUES = st.one_of(_JSON, st.sampled_from(HOSTILE_VALUES))
PATHS = st.one_of(
    st.none(),
    st.sampled_from(["a", "a.b", "a[0]", "[0]", "a[10001]", "__proto__.x", "a..b", "a[-1]", "x.y.z"]),
    TEXT,
    st.lists(st.one_of(TEXT, st.integers(-3, 10_002), st.booleans()), max_size=4).map(tuple),
    st.integers(),
)
EXPIRIES = st.one_of(
    st.none(),
    st.sampled_from(["never", "30s", "1.5h", "PT10M", "P1W", "0", "-5m", "nan", "inf", "5 fortnights", "1e309 ms",
                     "36526d", "2000-01-01T00:00:00Z", "2099-01-01T00:00:00", "5m\n", " 5m"]),
    st.text(max_size=12),
    st.floats(),
    st.integers(-10, 10**20),
    st.booleans(),
    st.timedeltas(),
    st.datetimes(timezones=st.none() | st.just(UTC)),
)
OPS = st.sampled_from([
    "set", "set_path", "get", "get_entry", "exists", "incr", "set_if_absent", "set_many", "get_many", "delete",
    "delete_many", "ttl", "expire", "persist", "keys", "delete_prefix", "user_var", "conversation_var", "global_var",
    "get_user_var", "user_items", "end_conversation", "other_bot", "global_kvs", "export",
])


async def _call(store: botmemory.Store, op: str, key: Any, key2: Any, value: Any, path: Any, expiry: Any) -> set[str]:
    """Run one fuzzed call on bot ``fuzz``; returns the namespaces it may change when it succeeds."""
    kvs = store.bot("fuzz").kvs
    memory = store.bot("fuzz").memory
    allowed = {"fuzz"}
    if op == "set":
        await kvs.set(key, value, expiry=expiry)
    elif op == "set_path":
        await kvs.set(key, value, path, expiry)
    elif op == "get":
        await kvs.get(key, path)
    elif op == "get_entry":
        await kvs.get_entry(key)
    elif op == "exists":
        await kvs.exists(key)
    elif op == "incr":
        await kvs.incr(key, value if isinstance(value, int | float) else 1, path=path)
    elif op == "set_if_absent":
        await kvs.set_if_absent(key, value, expiry=expiry)
    elif op == "set_many":
        await kvs.set_many({key: value, key2: 1} if isinstance(key2, str) else {key: value}, expiry=expiry)
    elif op == "get_many":
        await kvs.get_many([key, key2])
    elif op == "delete":
        await kvs.delete(key)
    elif op == "delete_many":
        await kvs.delete_many([key, key2])
    elif op == "ttl":
        await kvs.ttl(key)
    elif op == "expire":
        await kvs.expire(key, expiry)
    elif op == "persist":
        await kvs.persist(key)
    elif op == "keys":
        [k async for k in kvs.keys(key, limit=5)]
    elif op == "delete_prefix":
        await kvs.delete_prefix(key)
    elif op == "user_var":
        await memory.set_user_variable(key, key2, value, expiry)
    elif op == "conversation_var":
        await memory.set_conversation_variable(key, key2, value, expiry)
    elif op == "global_var":
        await memory.set_global_variable(key, value, expiry)
    elif op == "get_user_var":
        await memory.get_user_variable(key, key2)
    elif op == "user_items":
        await memory.user(key).items()
    elif op == "end_conversation":
        await memory.end_conversation(key)
    elif op == "other_bot":
        await store.bot(key).kvs.set("k", value)
        allowed = {key}
    elif op == "global_kvs":
        await store.global_kvs.set(key, value, expiry=expiry)
        allowed = {"__global__"}
    elif op == "export":
        await store.bot("fuzz").users.export(key)
    return allowed


@pytest.mark.parametrize("name", ["memory", *BACKENDS])
def test_fuzz_the_library(name: str, tmp_path: Path) -> None:
    if name in ("postgres", "redis"):
        require_backend(name)
    stats = {"examples": 0, "accepted": 0, "refused": 0}
    with asyncio.Runner() as runner:
        cm = open_test_store(name, tmp_path)
        store = runner.run(cm.__aenter__())
        try:
            runner.run(_seed(store))

            @settings(max_examples=size(150, 2000) if name in ("memory", "sqlite") else size(60, 1000),
                      deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
            @given(op=OPS, key=TEXT, key2=TEXT, value=VALUES, path=PATHS, expiry=EXPIRIES)
            def fuzz(op: str, key: Any, key2: Any, value: Any, path: Any, expiry: Any) -> None:
                before = runner.run(dump_store(store))
                try:
                    allowed = runner.run(_call(store, op, key, key2, value, path, expiry))
                except BotMemoryError as exc:
                    assert not isinstance(exc, StoreError), f"{op}: a healthy store failed: {exc!r}"
                    after = runner.run(dump_store(store))
                    assert after == before, f"{op} was refused ({exc!r}) but changed the data"
                    stats["refused"] += isinstance(exc, InvalidInputError)
                else:
                    after = runner.run(dump_store(store))
                    assert _without(after, allowed) == _without(before, allowed), f"{op} changed another bot"
                    stats["accepted"] += 1
                stats["examples"] += 1

            fuzz()
        finally:
            runner.run(cm.__aexit__(None, None, None))
    record(f"hostile.fuzz_library.{name}", **stats, unexpected_exceptions=0, foreign_changes=0)


# the CLI fuzz ------------------------------------------------------------------------------------------

JSON_TEXT = st.one_of(
    _JSON.map(lambda v: __import__("json").dumps(v)),
    st.sampled_from(["NaN", "Infinity", '{"a":1,"a":2}', "[" * 70 + "]" * 70, "1e400", "9" * 5000, '"\\ud800"',
                     "", "{", "null", "-0", '"\\u0000"']),
    st.text(max_size=20),
)
ARG = st.one_of(TEXT.filter(lambda t: "\x00" not in t), st.sampled_from(["--", "-", "--json", "--help"]))
BOT = st.one_of(st.just("fuzz"), st.just("@global"), TEXT).filter(lambda b: b not in VICTIMS and "\x00" not in b)


@st.composite
def cli_argv(draw: st.DrawFn) -> list[str]:
    bot, key, other = draw(BOT), draw(ARG), draw(ARG)
    template = draw(st.integers(0, 9))
    if template == 0:
        argv = ["kvs", "set", bot, key, draw(JSON_TEXT)]
        if draw(st.booleans()):
            argv += ["--expiry", draw(ARG)]
        if draw(st.booleans()):
            argv += ["--path", draw(ARG)]
        return argv
    if template == 1:
        return ["kvs", "get", bot, key, *(["--path", other] if draw(st.booleans()) else [])]
    if template == 2:
        return ["kvs", "del", bot, key]
    if template == 3:
        return ["kvs", "ls", bot, key, "--limit", draw(st.sampled_from(["1", "0", "-1", "x", other]))]
    if template == 4:
        return ["kvs", "ttl", bot, key]
    if template == 5:
        return ["memory", "set", bot, draw(st.sampled_from(["user", "conversation", "global", other])), key, other,
                draw(JSON_TEXT)]
    if template == 6:
        return ["memory", "get", bot, "user", key, other]
    if template == 7:
        return ["user", "export", bot, key]
    if template == 8:
        return ["audit", bot, "--since", other]
    return draw(st.lists(ARG, max_size=6))


@pytest.mark.parametrize("name", BACKENDS)
def test_fuzz_the_cli(name: str, tmp_path: Path) -> None:
    stats = {"examples": 0, "exit_0": 0, "exit_2": 0}
    with seeded(name, tmp_path) as url:

        @settings(max_examples=size(120, 2000) if name == "sqlite" else size(40, 600), deadline=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
        @given(argv=cli_argv())
        def fuzz(argv: list[str]) -> None:
            before = snapshot(url)
            result = run_cli(url, *argv)
            assert "Traceback" not in result.output, argv
            assert result.exit_code in (0, 2), (argv, result.exit_code, result.output)
            after = snapshot(url)
            if result.exit_code == 2:
                assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, (argv, result.stderr)
                assert after == before, f"{argv!r} was refused but changed the data"
            else:
                bot = argv[2] if len(argv) > 2 and argv[0] in ("kvs", "memory", "user") else None
                allowed = {"__global__" if bot == "@global" else bot}
                assert _without(after, allowed) == _without(before, allowed), f"{argv!r} changed another bot"
            stats["examples"] += 1
            stats[f"exit_{result.exit_code}"] += 1

        fuzz()
    record(f"hostile.fuzz_cli.{name}", **stats, tracebacks=0, foreign_changes=0)

