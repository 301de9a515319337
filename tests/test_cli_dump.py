"""``botmemory dump`` / ``load``: exact round trips between backends, and refusal of bad files (C3)."""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import os
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

import botmemory
from botmemory import dumpfile
from botmemory.backends.base import Backend, Row
from botmemory.backends.ops import restore as derived_restore
from botmemory.cli import app
from botmemory.retention.layout import sessions_ns
from botmemory.testing import FakeClock
from botmemory.testing.backends import open_test_store, server_missing

IN_CI = os.environ.get("CI", "").lower() == "true"

Snapshot = dict[str, dict[str, Row]]


async def snapshot(store: botmemory.Store) -> Snapshot:
    """Every live row of every namespace, read through the backend primitives."""
    backend, now = store.backend, store.clock.now()
    out: Snapshot = {}
    for ns in await backend.namespaces():
        keys = [k async for k in _scan(backend, ns, now)]
        rows = {r.key: r for r in await backend.get_many(ns, keys, now)} if keys else {}
        if rows:
            out[ns] = rows
    return out


async def _scan(backend: Backend, ns: str, now: float) -> Any:
    after = None
    while True:
        page = await backend.scan(ns, "", after, 100, now)
        for key in page:
            yield key
        if len(page) < 100:
            return
        after = page[-1]


async def fill(store: botmemory.Store, clock: FakeClock) -> None:
    """A bit of everything: versions > 1, expiry, memory scopes, the global KVS, runtime state."""
    a = store.bot("a")
    for i in range(3):
        await a.kvs.set("counter", i)
    await a.kvs.incr("counter", 5)
    await a.kvs.set("cart", {"items": [1, 2.5, -0.0, 1e-300], "big": 2**63 - 1}, expiry="10m")
    await a.kvs.set("profile", {"z": 1, "a": {"b": None}}, expiry="P2D")
    await a.kvs.set("profile", "Lyon", path="a.city")
    for key in ["café", "cafe\u0301", "User", "user", "a%", "a_", "\u202eevil", "emoji 🎉", "x" * 512]:
        await a.kvs.set(key, key)
    await a.memory.set_user_variable("u/1", "firstname", "Ada", expiry="1h")
    await a.memory.set_conversation_variable("c 1", "topic", {"t": True})
    await a.memory.set_global_variable("visits", 41)
    await a.memory.global_scope().incr("visits")
    await store.bot("b").kvs.set_many({f"k{i:04d}": {"i": i} for i in range(1200)})  # more than a page
    await store.global_kvs.set("settings", {"theme": "dark"})
    sessions = store.private_kvs(sessions_ns("a"))
    await sessions.set("c 1", {"user_id": "u/1", "flow": "main", "node": "start", "temp": {}}, expiry="30m")
    await a.kvs.set("gone-soon", 1, expiry="5s")
    clock.advance(10)  # "gone-soon" has expired: no dump may carry it
    await a.kvs.set("late", "written after the advance")


async def copy(source: botmemory.Store, target: botmemory.Store, **options: Any) -> dumpfile.LoadPlan:
    buffer = io.BytesIO()
    await dumpfile.write_dump(source, buffer)
    buffer.seek(0)
    plan = dumpfile.validate(buffer, target.limits, target.clock.now(), options.get("owners"))
    buffer.seek(0)
    await dumpfile.load(target, buffer, plan, **options)
    return plan


def chain() -> list[str]:
    names = ["memory", "sqlite"]
    for name in ("postgres", "redis"):
        why = server_missing(name)
        if why is None:
            names.append(name)
        elif IN_CI:
            pytest.fail(f"required in CI: {why}")
    return [*names, "sqlite"]


async def test_round_trip_through_every_backend_preserves_everything(tmp_path: Path) -> None:
    clock = FakeClock()
    names = chain()
    async with AsyncExitStack() as stack:
        stores = []
        for i, name in enumerate(names):
            folder = tmp_path / f"{i}-{name}"
            folder.mkdir()
            stores.append(await stack.enter_async_context(open_test_store(name, folder, clock=clock)))
        await fill(stores[0], clock)
        original = await snapshot(stores[0])
        assert "gone-soon" not in original["a"]
        assert set(original) == {"a", "b", "__global__", sessions_ns("a")}
        assert original["a"]["counter"].version == 4
        for source, target in itertools.pairwise(stores):
            plan = await copy(source, target)
            assert plan.to_write == sum(len(rows) for rows in original.values())
            assert await snapshot(target) == original, f"{source.backend.name} -> {target.backend.name}"
        # the copies behave like the original: versions go on, expiry still counts
        last = stores[-1]
        assert await last.bot("a").kvs.set("counter", 0) == 5
        assert await last.bot("a").memory.get_user_variable("u/1", "firstname") == "Ada"
        clock.advance(3600)
        assert await last.bot("a").memory.get_user_variable("u/1", "firstname") is None


async def test_dump_leaves_out_what_expired(tmp_path: Path) -> None:
    clock = FakeClock()
    async with open_test_store("sqlite", tmp_path, clock=clock) as store:
        await store.bot("a").kvs.set("short", 1, expiry="10s")
        await store.bot("a").kvs.set("long", 2, expiry="1h")
        clock.advance(11)
        buffer = io.BytesIO()
        summary = await dumpfile.write_dump(store, buffer)
    lines = [json.loads(line) for line in buffer.getvalue().splitlines()]
    assert summary.count == 1
    assert [e["key"] for e in lines[1:-1]] == ["long"]
    assert lines[0]["format"] == "botmemory-dump" and lines[0]["source"] == "sqlite"
    assert lines[-1] == {"end": True, "count": 1}


async def test_default_restore_is_exact_too(tmp_path: Path) -> None:
    """The derived restore (delete + mutate, for backends without BulkLoad) writes the same rows as the fast ones."""
    rows = [
        Row("a", b'{"x":1}', 7, 4_000_000_000.0, 1_700_000_000.5),
        Row("b", b"2", 1, None, 1_700_000_001.25),
    ]
    async with open_test_store("sqlite", tmp_path) as store:
        await store.backend.restore("bot1", [rows[0]._replace(version=99)])  # overwritten below
        await derived_restore(store.backend, "bot1", rows)
        assert sorted(await store.backend.get_many("bot1", ["a", "b"], 1_800_000_000.0)) == rows


# -- through the command line ---------------------------------------------------------


def cli(*args: str, input: bytes | str | None = None) -> Result:
    return CliRunner().invoke(app, list(args), input=input)


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def filled_sqlite(path: Path) -> str:
    async def go() -> None:
        async with await botmemory.open(sqlite_url(path)) as store:
            await store.bot("a").kvs.set("k", {"v": 1}, expiry="1h")
            await store.bot("a").kvs.set("k", {"v": 2}, keep_ttl=True)
            await store.bot("a").memory.set_user_variable("u1", "name", "Ada")
            await store.bot("b").kvs.set("k", "of b")
            await store.global_kvs.set("g", True)
            await store.private_kvs(sessions_ns("a")).set("c1", {"user_id": "u1"})
            await store.private_kvs(sessions_ns("b")).set("c9", {"user_id": "u9"})

    asyncio.run(go())
    return sqlite_url(path)


def snap(url: str) -> Snapshot:
    async def go() -> Snapshot:
        async with await botmemory.open(url) as store:
            return await snapshot(store)

    return asyncio.run(go())


@pytest.fixture
def source(tmp_path: Path) -> str:
    return filled_sqlite(tmp_path / "source.db")


@pytest.fixture
def dump_bytes(source: str) -> bytes:
    result = cli("--store", source, "dump")
    assert result.exit_code == 0, result.stderr
    return result.stdout_bytes


def test_cli_dump_and_load_round_trip(tmp_path: Path, source: str, dump_bytes: bytes) -> None:
    lines = dump_bytes.splitlines()
    assert len(lines) == 2 + 6
    file = tmp_path / "all.jsonl"
    file.write_bytes(dump_bytes)
    target = sqlite_url(tmp_path / "target.db")
    result = cli("--store", target, "--json", "load", str(file))
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["loaded"] == 6 and report["skipped_expired"] == 0
    assert snap(target) == snap(source)
    assert snap(target)["a"]["k"].version == 2


def test_cli_dump_to_file_and_load_from_stdin(tmp_path: Path, source: str) -> None:
    file = tmp_path / "out.jsonl"
    result = cli("--store", source, "--json", "dump", "-o", str(file), "--bot", "a")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["count"] == 3  # a's kvs entries and a's session; no b, no global
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left
    target = sqlite_url(tmp_path / "target.db")
    loaded = cli("--store", target, "load", "-", input=file.read_bytes())
    assert loaded.exit_code == 0, loaded.stderr
    assert set(snap(target)) == {"a", sessions_ns("a")}


def test_progress_bar_goes_to_stderr_only(tmp_path: Path, source: str, dump_bytes: bytes) -> None:
    result = cli("--store", source, "dump", "--progress")
    assert result.exit_code == 0
    assert result.stdout_bytes.splitlines()[1:] == dump_bytes.splitlines()[1:]  # headers differ by time only


def test_load_refuses_a_non_empty_store_unless_replace(tmp_path: Path, dump_bytes: bytes) -> None:
    file = tmp_path / "all.jsonl"
    file.write_bytes(dump_bytes)
    target = sqlite_url(tmp_path / "target.db")
    assert cli("--store", target, "kvs", "set", "a", "mine", "1").exit_code == 0
    refused = cli("--store", target, "load", str(file))
    assert refused.exit_code == 2
    assert "--replace" in refused.stderr
    assert set(snap(target)) == {"a"} and set(snap(target)["a"]) == {"mine"}
    replaced = cli("--store", target, "load", str(file), "--replace")
    assert replaced.exit_code == 0, replaced.stderr
    assert "mine" not in snap(target)["a"]
    assert snap(target)["a"]["k"].version == 2


def test_load_with_bot_filter_writes_only_that_bot(tmp_path: Path, dump_bytes: bytes) -> None:
    file = tmp_path / "mixed.jsonl"
    file.write_bytes(dump_bytes)
    target = sqlite_url(tmp_path / "target.db")
    result = cli("--store", target, "--json", "load", str(file), "--bot", "a")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["skipped_other_bots"] == 3
    assert set(snap(target)) == {"a", sessions_ns("a")}
    both = cli("--store", sqlite_url(tmp_path / "t2.db"), "load", str(file), "--bot", "b", "--bot", "@global")
    assert both.exit_code == 0
    assert set(snap(sqlite_url(tmp_path / "t2.db"))) == {"b", "__global__", sessions_ns("b")}


def test_load_with_a_bot_the_file_does_not_hold(tmp_path: Path, dump_bytes: bytes) -> None:
    file = tmp_path / "mixed.jsonl"
    file.write_bytes(dump_bytes)
    target = tmp_path / "target.db"
    result = cli("--store", sqlite_url(target), "load", str(file), "--bot", "c")
    assert result.exit_code == 2
    assert "no data of c" in result.stderr
    assert snap(sqlite_url(target)) == {}


def _edit(dump: bytes, line: int, text: bytes | None) -> bytes:
    lines = dump.splitlines(keepends=True)
    if text is None:
        del lines[line - 1]
    else:
        lines[line - 1] = text
    return b"".join(lines)


def _bad_files(dump: bytes) -> dict[str, tuple[bytes, str]]:
    lines = dump.splitlines(keepends=True)
    entry = json.loads(lines[1])
    return {
        "empty": (b"", "empty file"),
        "no trailer": (b"".join(lines[:-1]), f"line {len(lines) - 1}: truncated"),
        "cut mid-line": (dump[: len(dump) - len(lines[-1]) - 7], "not valid JSON"),
        "line dropped": (_edit(dump, 3, None), "trailer says 6 entries, the file has 5"),
        "not json": (_edit(dump, 3, b"{oops\n"), "line 3: not valid JSON"),
        "not utf-8": (_edit(dump, 3, b'"\xff"\n'), "line 3: not valid UTF-8"),
        "blank line": (_edit(dump, 3, b"\n"), "line 3: empty line"),
        "no header": (b"".join(lines[1:]), "line 1: not a botmemory dump"),
        "future version": (_edit(dump, 1, lines[0].replace(b'"version":1', b'"version":2')), "unsupported dump"),
        "data after trailer": (dump + lines[1], "data after the trailer"),
        "duplicate": (_edit(dump, 3, lines[2] + lines[2]), "duplicate entry"),
        "out of order": (b"".join([lines[0], lines[2], lines[1], *lines[3:]]), "out of order"),
        "extra field": (_edit(dump, 2, json.dumps({**entry, "bot_id": "x"}).encode() + b"\n"), "unexpected"),
        "bad namespace": (_edit(dump, 2, json.dumps({**entry, "ns": "../x"}).encode() + b"\n"), "invalid namespace"),
        "bad key": (_edit(dump, 2, json.dumps({**entry, "key": "a\nb"}).encode() + b"\n"), "line 2: invalid key"),
        "lone surrogate": (_edit(dump, 2, lines[1].replace(b'"key":"', b'"key":"\\ud800')), "line 2"),
        "bad version": (_edit(dump, 2, json.dumps({**entry, "version": 0}).encode() + b"\n"), "version"),
        "bool version": (_edit(dump, 2, json.dumps({**entry, "version": True}).encode() + b"\n"), "version"),
        "bad expiry": (_edit(dump, 2, json.dumps({**entry, "expires_at": "soon"}).encode() + b"\n"), "expires_at"),
        "far expiry": (_edit(dump, 2, json.dumps({**entry, "expires_at": 1e13}).encode() + b"\n"), "100 years"),
        "NaN value": (_edit(dump, 2, lines[1].replace(b'"value":', b'"value":[NaN],"x":')), "line 2"),
        "too deep": (_edit(dump, 2, json.dumps({**entry, "value": [[[[0]]]] * 1}).encode().replace(
            b"[[[[0]]]]", b"[" * 70 + b"0" + b"]" * 70) + b"\n"), "line 2: value of key"),
        "huge int": (_edit(dump, 2, json.dumps({**entry, "value": 2**64}).encode() + b"\n"), "64-bit"),
        "duplicate key": (_edit(dump, 2, lines[1].replace(b'"ns":', b'"ns":"a","ns":')), "duplicate object key"),
    }


BAD_CASES = list(_bad_files(b'{"h":1}\n{"x":1}\n{"y":2}\n{"t":1}\n'))


@pytest.mark.parametrize("case", BAD_CASES)
def test_load_refuses_bad_files_and_writes_nothing(tmp_path: Path, dump_bytes: bytes, case: str) -> None:
    content, expected = _bad_files(dump_bytes)[case]
    file = tmp_path / "bad.jsonl"
    file.write_bytes(content)
    target = tmp_path / "target.db"
    result = cli("--store", sqlite_url(target), "load", str(file))
    assert result.exit_code == 2, (case, result.output)
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert expected in result.stderr, result.stderr
    assert snap(sqlite_url(target)) == {}


def test_load_skips_entries_expired_by_load_time(tmp_path: Path) -> None:
    now = time.time()
    entries = [
        {"ns": "a", "key": "old", "version": 3, "expires_at": now - 60, "modified_at": now - 120, "value": 1},
        {"ns": "a", "key": "young", "version": 2, "expires_at": now + 3600, "modified_at": now - 1, "value": [2]},
    ]
    header = {"format": "botmemory-dump", "version": 1, "source": "hand", "time": "2026-01-01T00:00:00Z"}
    lines = [header, *entries, {"end": True, "count": 2}]
    file = tmp_path / "hand.jsonl"
    file.write_text("".join(json.dumps(x) + "\n" for x in lines))
    target = sqlite_url(tmp_path / "t.db")
    result = cli("--store", target, "--json", "load", str(file))
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["skipped_expired"] == 1
    rows = snap(target)["a"]
    assert list(rows) == ["young"]
    assert rows["young"].version == 2 and rows["young"].expires_at == entries[1]["expires_at"]


def test_load_of_a_missing_file(tmp_path: Path) -> None:
    result = cli("--store", sqlite_url(tmp_path / "t.db"), "load", str(tmp_path / "nope.jsonl"))
    assert result.exit_code == 2
    assert "cannot read" in result.stderr


async def test_a_backend_failure_midway_changes_nothing_and_can_be_resumed_or_aborted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    async with open_test_store("memory", tmp_path, clock=clock) as source, open_test_store(
        "sqlite", tmp_path, clock=clock
    ) as target:
        await fill(source, clock)
        await target.bot("other").kvs.set("untouched", 1)
        buffer = io.BytesIO()
        await dumpfile.write_dump(source, buffer)
        plan = dumpfile.validate(io.BytesIO(buffer.getvalue()), target.limits, clock.now())
        calls = 0
        real_restore = target.backend.restore

        async def failing_restore(ns: str, rows: Any) -> None:
            nonlocal calls
            calls += 1
            if calls == 4:
                raise botmemory.StoreUnavailableError("the disk went away")
            await real_restore(ns, rows)

        def visible(snap: Snapshot) -> set[str]:
            return {ns for ns in snap if not ns.startswith(dumpfile.STAGING_PREFIX)}

        for finish in ("resume", "abort"):
            calls = 0
            monkeypatch.setattr(target.backend, "restore", failing_restore)
            progress = dumpfile.LoadProgress()
            with pytest.raises(botmemory.StoreUnavailableError):
                await dumpfile.load(target, io.BytesIO(buffer.getvalue()), plan, batch=100, progress=progress)
            assert calls == 4 and progress.staging and not progress.done
            assert visible(await snapshot(target)) == {"other"}  # the targets never saw a row
            (pending,) = await dumpfile.pending_loads(target)
            assert pending["staged"] == progress.staged and 0 < progress.staged < plan.to_write
            monkeypatch.setattr(target.backend, "restore", real_restore)
            with pytest.raises(dumpfile.DumpError, match="--resume"):  # a fresh load would double it: refused
                await dumpfile.load(target, io.BytesIO(buffer.getvalue()), plan)
            if finish == "resume":
                await dumpfile.load(target, io.BytesIO(buffer.getvalue()), plan, resume=True)
                assert await snapshot(target) == {**await snapshot(source), "other": (await snapshot(target))["other"]}
                await target.backend.replace_namespaces({ns: None for ns in plan.namespaces})  # empty again
            else:
                assert await dumpfile.abort_loads(target) == 1
                assert set(await snapshot(target)) == {"other"}
            assert await dumpfile.pending_loads(target) == []


async def test_load_twice_needs_replace(tmp_path: Path) -> None:
    clock = FakeClock()
    async with open_test_store("memory", tmp_path, clock=clock) as source, open_test_store(
        "sqlite", tmp_path, clock=clock
    ) as target:
        await fill(source, clock)
        await copy(source, target)
        with pytest.raises(dumpfile.DumpError, match="--replace"):
            await copy(source, target)
        await target.bot("a").kvs.set("extra", 1)
        await copy(source, target, replace=True)
        assert await snapshot(target) == await snapshot(source)
