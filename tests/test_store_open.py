"""``botmemory.open(url)``: URL forms, schema creation and migration, and refusals that change nothing.

api.md: opening creates or migrates the schema (migrations recorded in a
table); a new or 0-byte file becomes a botmemory database; a directory, a
file that is not SQLite, a SQLite database with other tables and no
botmemory schema, a schema newer than this version, or an unreachable
server raise ``StoreUnavailableError`` and change nothing (no file written,
no ``-wal``/``-journal`` left).
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path

import pytest

import botmemory
from botmemory import InvalidInputError, StoreError, StoreUnavailableError
from botmemory.backends.sqlite import MIGRATIONS
from botmemory.testing import FakeClock

SIDE_FILES = ("-wal", "-shm", "-journal")


def _snapshot(directory: Path) -> dict[str, str]:
    """Every file under ``directory`` with a hash of its bytes."""
    out: dict[str, str] = {}
    for path in sorted(directory.rglob("*")):
        rel = str(path.relative_to(directory))
        out[rel] = "<dir>" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return out


async def _refused(url: str, directory: Path) -> None:
    before = _snapshot(directory)
    with pytest.raises(StoreUnavailableError):
        await botmemory.open(url)
    assert _snapshot(directory) == before


def _sqlite(path: Path, *statements: str) -> None:
    conn = sqlite3.connect(path)
    try:
        for statement in statements:
            conn.execute(statement)
        conn.commit()
    finally:
        conn.close()


# -- URL forms ---------------------------------------------------------------------


async def test_relative_url_is_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path)
    async with await botmemory.open("sqlite:///sub/rel.db") as store:
        await store.bot("b").kvs.set("k", 1)
    assert (tmp_path / "sub" / "rel.db").is_file()


async def test_absolute_url(tmp_path: Path) -> None:
    path = tmp_path / "abs.db"
    assert path.is_absolute()
    async with await botmemory.open(f"sqlite:///{path}") as store:  # "sqlite:////abs/..." once joined
        await store.bot("b").kvs.set("k", 1)
    assert path.is_file()
    async with await botmemory.open("sqlite:////" + str(path).lstrip("/")) as store:
        assert await store.bot("b").kvs.get("k") == 1


async def test_default_url_is_botmemory_db_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    async with await botmemory.open() as store:
        await store.bot("b").kvs.set("k", 1)
    assert (tmp_path / "botmemory.db").is_file()


@pytest.mark.parametrize("url", ["mysql://localhost/db", "file:///x.db", "sqlite3:///x.db", "http://x", "mongodb://x"])
async def test_unknown_scheme(url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InvalidInputError):
        await botmemory.open(url)
    assert _snapshot(tmp_path) == {}


@pytest.mark.parametrize("url", ["", "bots.db", "sqlite:", "sqlite://", "sqlite:///", "sqlite:///x.db?mode=ro",
                                 "sqlite:///x.db#frag", None, 5])
async def test_malformed_url(url: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InvalidInputError):
        await botmemory.open(url)  # type: ignore[arg-type]
    assert _snapshot(tmp_path) == {}


async def test_bad_options(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError):
        await botmemory.open(f"sqlite:///{tmp_path / 'a.db'}", bogus=1)
    with pytest.raises(InvalidInputError):
        await botmemory.open(f"sqlite:///{tmp_path / 'a.db'}", timeout=-1)
    with pytest.raises(InvalidInputError):
        await botmemory.open("memory://", timeout=1)
    with pytest.raises(InvalidInputError):
        await botmemory.open("memory://", clock=object())
    with pytest.raises(InvalidInputError):
        await botmemory.open("memory://", limits={"max_keys_per_bot": 1})
    assert _snapshot(tmp_path) == {}


# -- refusals that change nothing ------------------------------------------------------------


async def test_a_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "dir.db").mkdir()
    await _refused(f"sqlite:///{tmp_path / 'dir.db'}", tmp_path)


async def test_a_file_that_is_not_sqlite_is_refused(tmp_path: Path) -> None:
    for name, data in (("notes.db", b"hello, these are my notes\n"), ("short.db", b"SQLite"),
                       ("zeros.db", b"\x00" * 4096)):
        (tmp_path / name).write_bytes(data)
        await _refused(f"sqlite:///{tmp_path / name}", tmp_path)


async def test_a_sqlite_database_of_another_application_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    _sqlite(path, "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)", "INSERT INTO users VALUES (1, 'ada')")
    await _refused(f"sqlite:///{path}", tmp_path)
    # the same in WAL mode (a live -wal file must be read, not discarded)
    wal = tmp_path / "wal.db"
    _sqlite(wal, "PRAGMA journal_mode=WAL", "CREATE TABLE kv (ns TEXT, key TEXT)")
    await _refused(f"sqlite:///{wal}", tmp_path)


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "newer.db"
    async with await botmemory.open(f"sqlite:///{path}") as store:
        await store.bot("b").kvs.set("k", "keep me")
    _sqlite(path, "INSERT INTO botmemory_migrations (version, name, applied_at) VALUES (1000, 'from the future', 0)")
    assert not any((tmp_path / ("newer.db" + s)).exists() for s in SIDE_FILES)
    await _refused(f"sqlite:///{path}", tmp_path)
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT max(version) FROM botmemory_migrations").fetchone()[0] == 1000
    finally:
        conn.close()


async def test_a_missing_parent_directory_is_refused(tmp_path: Path) -> None:
    await _refused(f"sqlite:///{tmp_path / 'missing' / 'deeper' / 'x.db'}", tmp_path)
    assert not (tmp_path / "missing").exists()


@pytest.mark.parametrize(
    ("module", "url"),
    [("postgres", "postgresql://postgres@127.0.0.1:1/test"), ("redis", "redis://127.0.0.1:1/0")],
)
async def test_an_unreachable_server_is_refused(module: str, url: str) -> None:
    try:
        __import__(f"botmemory.backends.{module}")
    except ImportError as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"required in CI: {exc}")
        pytest.skip(f"{module} backend not available: {exc}")
    with pytest.raises(StoreUnavailableError):
        await botmemory.open(url, timeout=2)


# -- creation, reopening, migrations, WAL ----------------------------------------------------


async def test_a_new_file_becomes_a_botmemory_database(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    async with await botmemory.open(f"sqlite:///{path}") as store:
        assert await store.bot("b").kvs.set("k", 1) == 1
    assert path.read_bytes().startswith(b"SQLite format 3\x00")


async def test_a_zero_byte_file_becomes_a_botmemory_database(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    path.touch()
    async with await botmemory.open(f"sqlite:///{path}") as store:
        assert await store.bot("b").kvs.set("k", 1) == 1
    assert path.stat().st_size > 0
    async with await botmemory.open(f"sqlite:///{path}") as store:
        assert await store.bot("b").kvs.get("k") == 1


async def test_reopening_keeps_data_versions_and_expiry(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'keep.db'}"
    clock = FakeClock()
    async with await botmemory.open(url, clock=clock) as store:
        kvs = store.bot("b").kvs
        await kvs.set("k", {"b": 1, "a": [1.5, None]})
        await kvs.set("k", 2, "c")
        await kvs.set("ttl", 1, expiry="1h")
        await store.bot("b").memory.set_user_variable("u/x", "n", "Ada")
        before = (await kvs.get_entry("k"), await kvs.get_entry("ttl"))
    for _ in range(2):
        async with await botmemory.open(url, clock=clock) as store:
            kvs = store.bot("b").kvs
            assert (await kvs.get_entry("k"), await kvs.get_entry("ttl")) == before
            assert list((await kvs.get("k")).keys()) == ["b", "a", "c"]
            assert await store.bot("b").memory.get_user_variable("u/x", "n") == "Ada"
    clock.advance(3600)
    async with await botmemory.open(url, clock=clock) as store:
        assert await store.bot("b").kvs.get("ttl") is None


async def test_migrations_are_recorded_once(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    url = f"sqlite:///{path}"
    await (await botmemory.open(url)).close()

    def recorded() -> list[tuple[int, str, float]]:
        conn = sqlite3.connect(path)
        try:
            return list(conn.execute("SELECT version, name, applied_at FROM botmemory_migrations ORDER BY version"))
        finally:
            conn.close()

    first = recorded()
    assert [v for v, _, _ in first] == list(range(1, len(MIGRATIONS) + 1))
    assert [n for _, n, _ in first] == [name for name, _ in MIGRATIONS]
    await (await botmemory.open(url)).close()
    assert recorded() == first


async def test_an_older_schema_is_migrated(tmp_path: Path) -> None:
    """A database at migration 1 gets the later migrations applied on open, data kept."""
    if len(MIGRATIONS) < 2:
        pytest.skip("only one migration so far")
    path = tmp_path / "old.db"
    name, sql = MIGRATIONS[0]
    _sqlite(
        path,
        "PRAGMA journal_mode=WAL",
        "CREATE TABLE botmemory_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)",
        *[s for s in sql.split(";") if s.strip()],
        f"INSERT INTO botmemory_migrations VALUES (1, '{name}', 0)",
        "INSERT INTO kv (ns, key, value, version, expires_at, modified_at) VALUES ('b', 'k', '\"old\"', 3, NULL, 0)",
    )
    async with await botmemory.open(f"sqlite:///{path}") as store:
        entry = await store.bot("b").kvs.get_entry("k")
        assert entry is not None and (entry.value, entry.version) == ("old", 3)
    conn = sqlite3.connect(path)
    try:
        versions = [r[0] for r in conn.execute("SELECT version FROM botmemory_migrations ORDER BY version")]
    finally:
        conn.close()
    assert versions == list(range(1, len(MIGRATIONS) + 1))


async def test_wal_mode_is_on(tmp_path: Path) -> None:
    path = tmp_path / "wal.db"
    async with await botmemory.open(f"sqlite:///{path}") as store:
        await store.bot("b").kvs.set("k", 1)
        conn = sqlite3.connect(path)
        try:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        finally:
            conn.close()


async def test_a_closed_store_refuses_work(tmp_path: Path) -> None:
    store = await botmemory.open(f"sqlite:///{tmp_path / 'c.db'}")
    await store.close()
    await store.close()  # idempotent
    with pytest.raises(StoreError):
        await store.bot("b").kvs.set("k", 1)
