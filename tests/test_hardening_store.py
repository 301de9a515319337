"""Store URLs and ``botmemory.open``: refused at open with a typed error, or working (issue 11, items 8, 9, 14)."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

import botmemory
from botmemory.cli import app
from botmemory.testing.backends import POSTGRES_URL, REDIS_URL, unique_suffix
from conftest import require_backend


# -- item 8: URLs that cannot mean what they say ----------------------------------------
@pytest.mark.parametrize(
    "url",
    [
        "memory://?foo=1",
        "memory://host",
        "memory:///path",
        "sqlite:///:memory:",
        "sqlite:///file:x.db?mode=memory",
        "sqlite:///a\x00b.db",
        "sqlite:///a\nb.db",
    ],
)
async def test_urls_that_cannot_work_are_refused_at_open(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(botmemory.InvalidInputError):
        await botmemory.open(url)
    assert list(tmp_path.iterdir()) == []  # nothing created


def test_the_cli_exits_2_on_those_urls(tmp_path: Path) -> None:
    for url in ("memory://host", "sqlite:///:memory:", "redis://127.0.0.1:6379/abc"):
        result = CliRunner().invoke(app, ["--store", url, "kvs", "set", "@global", "k", "1"])
        assert result.exit_code == 2, (url, result.stdout, result.stderr)
        assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr


async def test_redis_database_must_be_a_number() -> None:
    require_backend("redis")
    base = REDIS_URL.rsplit("/", 1)[0]
    for db in ("abc", "1x", "-1", "٣"):
        with pytest.raises(botmemory.InvalidInputError, match="database must be a number"):
            await botmemory.open(f"{base}/{db}", prefix=f"t:{unique_suffix()}:")
    store = await botmemory.open(f"{base}/1", prefix=f"botmemory-test:{unique_suffix()}:")
    try:
        assert store.backend.describe()["db"] == "1"
    finally:
        await store.close()


async def test_a_device_or_fifo_is_not_a_sqlite_store(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.db"
    os.mkfifo(fifo)
    for path in ("/dev/null", str(fifo)):
        with pytest.raises(botmemory.StoreUnavailableError, match="not a regular file"):
            await botmemory.open(f"sqlite:///{path}")


def test_memory_url_still_opens() -> None:
    with botmemory.open_sync("memory://") as store:
        store.bot("b").kvs.set("k", 1)
        assert store.bot("b").kvs.get("k") == 1


# -- item 9: opening without creating ---------------------------------------------------
async def test_create_false_refuses_a_missing_sqlite_store_and_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "typo.db"
    with pytest.raises(botmemory.StoreUnavailableError, match="no botmemory store"):
        await botmemory.open(f"sqlite:///{path}", create=False)
    path.write_bytes(b"")
    with pytest.raises(botmemory.StoreUnavailableError, match="no botmemory store"):
        await botmemory.open(f"sqlite:///{path}", create=False)
    path.unlink()
    other = sqlite3.connect(path)  # a SQLite file of nobody: not ours to read either
    other.execute("PRAGMA user_version = 1")
    other.close()
    with pytest.raises(botmemory.StoreUnavailableError, match="no botmemory store"):
        await botmemory.open(f"sqlite:///{path}", create=False)
    path.unlink()
    assert list(tmp_path.iterdir()) == []
    async with botmemory.open(f"sqlite:///{path}") as store:
        await store.bot("b").kvs.set("k", 1)
    async with botmemory.open(f"sqlite:///{path}", create=False) as store:
        assert await store.bot("b").kvs.get("k") == 1


async def test_create_false_refuses_a_missing_postgres_schema() -> None:
    require_backend("postgres")
    schema = unique_suffix()
    with pytest.raises(botmemory.StoreUnavailableError, match="no botmemory store"):
        await botmemory.open(POSTGRES_URL, schema=schema, create=False)
    store = await botmemory.open(POSTGRES_URL, schema=schema)
    try:
        async with botmemory.open(POSTGRES_URL, schema=schema, create=False) as again:
            assert await again.bot("b").kvs.get("k") is None
        # the refused open created nothing: the schema came from the second open
    finally:
        await store.backend.drop_everything()  # type: ignore[attr-defined]
        await store.close()


# -- item 14: open() both ways ----------------------------------------------------------
async def test_open_works_with_and_without_await(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    async with botmemory.open(url) as store:  # no await: the README's guess works
        await store.bot("b").kvs.set("k", 1)
    assert store.backend._closed  # type: ignore[attr-defined]  # closed by the block
    store = await botmemory.open(url)
    try:
        assert await store.bot("b").kvs.get("k") == 1
    finally:
        await store.close()
    async with await botmemory.open(url) as store:  # the form the README used stays valid
        assert await store.bot("b").kvs.get("k") == 1


def test_a_sync_with_says_what_to_write() -> None:
    with pytest.raises(TypeError, match=r"async with botmemory\.open"), botmemory.open("memory://"):
        pass


def test_retention_config_is_importable_from_botmemory() -> None:
    from botmemory import RetentionConfig

    config = RetentionConfig.parse({"policies": {"kvs:carts/*": "7d"}})
    assert config.policy_for("carts/1") is not None
