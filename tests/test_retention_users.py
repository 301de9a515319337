"""GDPR export / forget, legal hold, end of conversation, and erasure against racing writes."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

import botmemory
from botmemory.retention import AuditLog, RetentionConfig
from botmemory.retention.layout import sessions_ns
from botmemory.testing import FakeClock
from botmemory.testing.backends import open_test_store


async def seed(store: botmemory.Store, user: str = "u/1", canary: str = "CANARY-0001") -> botmemory.Bot:
    """A user with variables, a raw KVS key under their prefix, two conversations and a session."""
    bot = store.bot("b")
    mem = bot.memory
    await mem.set_user_variable(user, "email", f"{canary}@example.com")
    await mem.set_user_variable(user, "name", canary)
    await bot.kvs.set(f"storage/users/{user.replace('/', '%2F')}/files/1", {"doc": canary})
    await bot.users.link_conversation(user, "c1")
    await bot.users.link_conversation(user, "c2")
    await mem.set_conversation_variable("c1", "topic", canary)
    await mem.set_conversation_variable("c2", "step", 2)
    sessions = store.private_kvs(sessions_ns("b"))
    await sessions.set("c3", {"user_id": user, "flow": "main", "node": "n", "temp": {"x": canary}})
    await mem.set_conversation_variable("c3", "cart", canary)
    # somebody else's data, which must survive
    await mem.set_user_variable("other", "email", "other@example.com")
    await mem.set_conversation_variable("c9", "topic", "other")
    await bot.users.link_conversation("other", "c9")
    return bot


async def test_export_lists_everything_about_the_user(store: botmemory.Store, clock: FakeClock) -> None:
    bot = await seed(store)
    data = await bot.users.export("u/1")
    assert data["bot_id"] == "b" and data["user_id"] == "u/1" and data["held"] is False
    assert data["time"] == clock.now()
    assert {k: v["value"] for k, v in data["user"].items()} == {
        "email": "CANARY-0001@example.com",
        "name": "CANARY-0001",
    }
    assert {k: v["value"] for k, v in data["kvs"].items()} == {"storage/users/u%2F1/files/1": {"doc": "CANARY-0001"}}
    assert data["conversations"] == ["c1", "c2", "c3"]
    assert {c: {n: e["value"] for n, e in vs.items()} for c, vs in data["conversation"].items()} == {
        "c1": {"topic": "CANARY-0001"},
        "c2": {"step": 2},
        "c3": {"cart": "CANARY-0001"},
    }
    assert list(data["sessions"]) == ["c3"] and data["sessions"]["c3"]["flow"] == "main"
    entry = data["user"]["email"]
    assert entry["version"] == 1 and entry["expires_at"] is None and entry["modified_at"] == clock.now()
    assert "other" not in json.dumps(data)
    json.dumps(data)  # JSON-ready


async def test_export_leaves_out_expired_data_of_a_user_not_held(store: botmemory.Store, clock: FakeClock) -> None:
    bot = store.bot("b")
    await bot.memory.set_user_variable("u", "old", 1, expiry="1s")
    clock.advance(2)
    assert (await bot.users.export("u"))["user"] == {}


async def test_forget_dry_run_counts_and_changes_nothing(store: botmemory.Store) -> None:
    bot = await seed(store)
    before = await bot.users.export("u/1")
    receipt = await bot.users.forget("u/1", dry_run=True)
    assert receipt == {
        "bot_id": "b",
        "user_id": "u/1",
        "dry_run": True,
        "time": store.clock.now(),
        "counts": {"user": 2, "conversation": 3, "sessions": 1, "conversations": 3, "kvs": 1},
    }
    assert await bot.users.export("u/1") == before
    assert await AuditLog(store).query("b") == []


async def test_forget_erases_everything_and_audits_without_values(store: botmemory.Store) -> None:
    bot = await seed(store)
    receipt = await bot.users.forget("u/1")
    assert receipt["dry_run"] is False
    assert receipt["counts"] == {"user": 2, "conversation": 3, "sessions": 1, "conversations": 3, "kvs": 1}
    assert "CANARY" not in json.dumps(receipt)
    data = await bot.users.export("u/1")
    assert data["user"] == {} and data["kvs"] == {} and data["conversation"] == {}
    assert data["conversations"] == [] and data["sessions"] == {}
    mem = bot.memory
    assert await mem.get_user_variable("u/1", "email") is None
    assert await mem.get_conversation_variable("c1", "topic") is None
    assert await store.private_kvs(sessions_ns("b")).get("c3") is None
    assert [k async for k in bot.kvs.keys("storage/users/u%2F1/")] == []
    # nothing of anybody else
    assert await mem.get_user_variable("other", "email") == "other@example.com"
    assert await mem.get_conversation_variable("c9", "topic") == "other"
    assert await bot.users.conversations("other") == ["c9"]
    records = await AuditLog(store).query("b", user_id="u/1")
    assert {r["reason"] for r in records} == {"forget"}
    assert {(r["scope"], r["key"]) for r in records} >= {
        ("user", "email"),
        ("user", "name"),
        ("kvs", "storage/users/u%2F1/files/1"),
        ("conversation", "topic"),
        ("conversation", "cart"),
        ("conversation", "(session)"),
        ("user", "*"),
    }
    assert "CANARY" not in json.dumps(records)
    # forgetting again finds nothing
    again = await bot.users.forget("u/1")
    assert again["counts"] == {"user": 0, "conversation": 0, "sessions": 0, "conversations": 0, "kvs": 0}


async def test_legal_hold_blocks_forget_and_end_of_conversation(store: botmemory.Store, clock: FakeClock) -> None:
    bot = await seed(store)
    users = bot.users
    assert not await users.is_held("u/1")
    await users.hold("u/1", reason="case 42")
    assert await users.is_held("u/1")
    assert list(await users.holds()) == ["u/1"]
    with pytest.raises(botmemory.LegalHoldError):
        await users.forget("u/1", dry_run=True)
    with pytest.raises(botmemory.LegalHoldError):
        await users.forget("u/1")
    assert await users.end_conversation("c1", user_id="u/1") == 0
    assert await users.end_conversation("c3") == 0  # the user taken from the session
    assert await bot.memory.get_conversation_variable("c1", "topic") == "CANARY-0001"
    assert await bot.memory.get_conversation_variable("c3", "cart") == "CANARY-0001"
    assert (await users.export("u/1"))["held"] is True
    assert await users.release("u/1")
    assert not await users.release("u/1")
    assert await users.end_conversation("c1", user_id="u/1") == 1
    assert (await users.forget("u/1"))["counts"]["user"] == 2
    reasons = [r["reason"] for r in await AuditLog(store).query("b", user_id="u/1")]
    assert reasons[:2] == ["hold", "release"]


async def test_end_conversation_discards_and_audits(store: botmemory.Store) -> None:
    bot = store.bot("b")
    bot.retention = RetentionConfig.parse({"policies": {"conversation.*": "1d"}})
    await bot.memory.set_conversation_variable("c1", "a", "secret-a")
    await bot.memory.set_conversation_variable("c1", "b", "secret-b")
    await bot.memory.set_conversation_variable("c2", "a", 1)
    assert await bot.users.end_conversation("c1", user_id="u1", reason="timeout") == 2
    assert await bot.memory.conversation("c1").items() == {}
    assert await bot.memory.conversation("c2").items() == {"a": 1}
    records = await AuditLog(store).query("b", user_id="u1")
    assert [(r["scope"], r["conversation_id"], r["key"], r["reason"], r["policy"]) for r in records] == [
        ("conversation", "c1", "a", "timeout", "conversation.*"),
        ("conversation", "c1", "b", "timeout", "conversation.*"),
    ]
    assert "secret" not in repr(records)
    assert await bot.users.end_conversation("c1") == 0


async def test_bad_ids_are_refused(store: botmemory.Store) -> None:
    users = store.bot("b").users
    for bad in ("", " u", "a\nb", "\ud800"):
        with pytest.raises(botmemory.InvalidKeyError):
            await users.forget(bad)
        with pytest.raises(botmemory.InvalidKeyError):
            await users.export(bad)
    with pytest.raises(botmemory.InvalidKeyError):
        await users.link_conversation("u", "")


async def test_a_write_that_lands_after_the_erasure_is_undone(
    store: botmemory.Store, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that read the state before forget and writes after it cannot resurrect the data."""
    bot = await seed(store)
    gate, reached = asyncio.Event(), asyncio.Event()
    real_put = store.backend.put

    async def slow_put(ns: str, key: str, *args: Any) -> Any:
        if ns == "b" and key.endswith("/late"):
            reached.set()
            await gate.wait()  # the write is in flight while forget runs
        return await real_put(ns, key, *args)

    monkeypatch.setattr(store.backend, "put", slow_put)
    late_user = asyncio.create_task(bot.memory.set_user_variable("u/1", "late", "CANARY-late"))
    late_conv = asyncio.create_task(bot.memory.set_conversation_variable("c1", "late", "CANARY-late"))
    await reached.wait()
    await bot.users.forget("u/1")
    gate.set()
    await asyncio.gather(late_user, late_conv)
    assert await bot.memory.get_user_variable("u/1", "late") is None
    assert await bot.memory.get_conversation_variable("c1", "late") is None
    data = await bot.users.export("u/1")
    assert data["user"] == {} and data["conversation"] == {}
    # writes that start after forget returned are kept: the user may come back
    clock.advance(0.001)
    await bot.memory.set_user_variable("u/1", "name", "again")
    assert await bot.memory.get_user_variable("u/1", "name") == "again"


async def test_concurrent_writers_cannot_resurrect_a_forgotten_user(store: botmemory.Store) -> None:
    bot = await seed(store)

    async def writer(i: int) -> None:
        await asyncio.sleep(0)
        await bot.memory.set_user_variable("u/1", f"v{i}", "CANARY")
        await bot.memory.user("u/1").incr("n")
        await bot.memory.set_conversation_variable("c2", f"v{i}", "CANARY")
        await bot.kvs.set_many({f"storage/users/u%2F1/x{i}": 1})
        await store.private_kvs(sessions_ns("b")).set("c2", {"user_id": "u/1", "flow": "main"})

    # every writer starts before forget returns (the clock does not move)
    await asyncio.gather(bot.users.forget("u/1"), *(writer(i) for i in range(20)))
    data = await bot.users.export("u/1")
    assert data["user"] == {} and data["kvs"] == {} and data["conversation"] == {} and data["sessions"] == {}
    assert await bot.memory.get_user_variable("other", "email") == "other@example.com"


async def test_forget_leaves_no_value_in_the_sqlite_files(tmp_path: Path, clock: FakeClock) -> None:
    canary = "ZQXJ-canary-7731"
    async with open_test_store("sqlite", tmp_path, clock=clock) as store:
        bot = await seed(store, canary=canary)
        path = Path(store.backend.path)  # type: ignore[attr-defined]

        def raw() -> bytes:
            return b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists())

        assert canary.encode() in raw()  # the test can fail: the value is on disk before
        await store.backend.checkpoint()  # type: ignore[attr-defined]
        assert canary.encode() in raw()
        await bot.users.forget("u/1")
        assert canary.encode() not in raw()
        assert await bot.memory.get_user_variable("other", "email") == "other@example.com"
    assert canary.encode() not in path.read_bytes()


def test_the_sync_facade_reaches_users(tmp_path: Path) -> None:
    with botmemory.open_sync(f"sqlite:///{tmp_path / 'sync.db'}") as store:
        bot = store.bot("b")
        bot.memory.set_user_variable("u", "x", 1)
        bot.users.link_conversation("u", "c")
        assert bot.users.export("u")["user"]["x"]["value"] == 1
        assert bot.users.forget("u", dry_run=True)["counts"]["user"] == 1
        bot.users.hold("u")
        with pytest.raises(botmemory.LegalHoldError):
            bot.users.forget("u")
        assert bot.users.release("u")
        assert bot.users.forget("u")["counts"] == {
            "user": 1, "conversation": 0, "sessions": 0, "conversations": 1, "kvs": 0
        }
