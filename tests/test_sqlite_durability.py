"""SQLite durability levels: synchronous=normal (default, inline commits) and full (fsync per commit)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

import botmemory


@pytest.mark.parametrize("how", ["option", "url"])
async def test_full_durability_commits_every_write_and_groups_concurrent_ones(tmp_path: Path, how: str) -> None:
    db = tmp_path / "full.db"
    if how == "option":
        store = await botmemory.open(f"sqlite:///{db}", synchronous="full")
    else:
        store = await botmemory.open(f"sqlite:///{db}?synchronous=full")
    async with store:
        assert store.backend.describe()["synchronous"] == "full"
        kvs = store.bot("b").kvs
        versions = await asyncio.gather(*(kvs.incr("n") for _ in range(64)))
        assert sorted(versions) == list(range(1, 65))
        await asyncio.gather(*(kvs.set(f"k{i}", i) for i in range(64)))
    # every write is in the file, read by a plain sqlite3 connection
    conn = sqlite3.connect(db)
    try:
        (count,) = conn.execute("SELECT count(*) FROM kv WHERE ns = 'b'").fetchone()
    finally:
        conn.close()
    assert count == 65


async def test_normal_is_the_default(tmp_path: Path) -> None:
    async with await botmemory.open(f"sqlite:///{tmp_path / 'n.db'}") as store:
        assert store.backend.describe()["synchronous"] == "normal"


@pytest.mark.parametrize("bad", ["FULL", "off", "extra", ""])
async def test_unknown_durability_is_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(botmemory.InvalidInputError):
        await botmemory.open(f"sqlite:///{tmp_path / 'x.db'}", synchronous=bad)
    assert not (tmp_path / "x.db").exists()
