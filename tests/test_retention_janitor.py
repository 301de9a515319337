"""The janitor: batched purge (R3), policy re-application, holds, audit retention, errors."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import botmemory
from botmemory.retention import AuditLog, Janitor, RetentionConfig
from botmemory.testing import FakeClock

DAY = 86_400.0
B = 7


def cfg(policies: dict[str, object], **settings: object) -> RetentionConfig:
    return RetentionConfig.parse({**settings, "policies": policies})


async def count_rows(store: botmemory.Store, ns: str) -> int:
    """Rows of ``ns``, live or expired (expired ones seen through scan_expired)."""
    now = store.clock.now()
    live = await store.backend.count(ns, now)
    expired = await store.backend.scan_expired(ns, "", now, 1_000_000)
    return live + len(expired)


@pytest.mark.parametrize("n", [0, 1, B - 1, B, B + 1, 10 * B])
async def test_one_run_purges_every_batch_boundary(store: botmemory.Store, clock: FakeClock, n: int) -> None:
    bot = store.bot("b")
    if n:
        await bot.kvs.set_many({f"k{i:03d}": i for i in range(n)}, expiry="1s")
        await store.global_kvs.set("g", 1, expiry="1s")
    await bot.kvs.set("live", 1)
    clock.advance(2)
    report = await Janitor(store, batch_size=B).run_once()
    expected = n + (1 if n else 0)
    assert report.purged == expected
    assert report.errors == 0
    assert report.batches == expected // B + 1  # stops at the first short batch
    assert await count_rows(store, "b") == 1
    assert await count_rows(store, "__global__") == 0
    assert await bot.kvs.get("live") == 1
    records = await AuditLog(store).query("b", limit=100_000)
    assert sorted(r["key"] for r in records) == [f"k{i:03d}" for i in range(n)]
    assert {r["reason"] for r in records} <= {"expired"}
    if n:
        assert [r["key"] for r in await AuditLog(store).query("__global__")] == ["g"]
    again = await Janitor(store, batch_size=B).run_once()
    assert again.purged == 0 and again.batches == 1


async def test_audit_of_expiry_names_scope_owner_and_policy_never_the_value(
    store: botmemory.Store, clock: FakeClock
) -> None:
    bot = store.bot("b")
    config = cfg({"user.email": "1d"})
    bot.retention = config
    await bot.memory.set_user_variable("u/1", "email", "secret@example.com")
    await bot.memory.set_conversation_variable("c1", "topic", "secret-topic", expiry="1h")
    await bot.memory.set_global_variable("motd", "secret-motd", expiry="1h")
    clock.advance(2 * DAY)
    report = await Janitor(store, {"b": config}).run_once()
    assert report.purged == 3
    records = await AuditLog(store).query("b")
    by_scope = {r["scope"]: r for r in records}
    assert by_scope["user"]["owner_id"] == "u/1" and by_scope["user"]["user_id"] == "u/1"
    assert by_scope["user"]["key"] == "email" and by_scope["user"]["policy"] == "user.email"
    assert by_scope["conversation"]["conversation_id"] == "c1" and by_scope["conversation"]["policy"] is None
    assert by_scope["global"]["key"] == "motd"
    assert all(r["reason"] == "expired" and r["bot"] == "b" for r in records)
    assert "secret" not in repr(records)
    assert [r["key"] for r in await AuditLog(store).query("b", user_id="u/1")] == ["email"]


async def test_bots_without_config_are_swept_too(store: botmemory.Store, clock: FakeClock) -> None:
    await store.bot("gone").kvs.set("x", 1, expiry="1s")  # a deleted or renamed bot (R2)
    clock.advance(2)
    assert (await Janitor(store, {"other": cfg({"user.*": "1d"})}).run_once()).purged == 1
    assert await count_rows(store, "gone") == 0


async def test_shortening_deletes_what_is_now_too_old(store: botmemory.Store, clock: FakeClock) -> None:
    bot = store.bot("b")
    bot.retention = cfg({"user.*": "30d"})
    await bot.memory.set_user_variable("u", "old", "v-old")
    clock.advance(8 * DAY)
    await bot.memory.set_user_variable("u", "recent", "v-recent")
    await bot.memory.set_user_variable("u", "short", "v", expiry="1d")
    await bot.kvs.set("plain", 1)
    clock.advance(2 * DAY)
    first = await Janitor(store, {"b": bot.retention}).run_once()
    assert first.policy_applied == 0  # nothing to change under the policy the writes followed
    shorter = cfg({"user.*": "5d"})
    bot.retention = shorter
    report = await Janitor(store, {"b": shorter}).run_once()
    assert report.policy_deleted == 1
    assert report.policy_capped == 1  # "recent": modified 2 days ago, 3 days left
    assert report.errors == 0
    assert await bot.memory.get_user_variable("u", "old") is None
    assert await bot.kvs.ttl("storage/users/u/recent") == pytest.approx(3 * DAY)
    assert await bot.kvs.ttl("plain") is None
    assert await count_rows(store, "b") == 2  # the deleted row is gone, not just expired
    records = await AuditLog(store).query("b", user_id="u")
    assert [(r["key"], r["reason"], r["policy"]) for r in records] == [
        ("short", "expired", "user.*"),  # purged by the first run
        ("old", "policy", "user.*"),
    ]
    # unchanged policies are not re-applied on every run
    again = await Janitor(store, {"b": shorter}).run_once()
    assert again.policy_applied == 0 and again.purged == 0


async def test_lengthening_extends_what_the_policy_set_only(store: botmemory.Store, clock: FakeClock) -> None:
    bot = store.bot("b")
    bot.retention = cfg({"user.*": "5d"})
    await bot.memory.set_user_variable("u", "a", 1)
    await bot.memory.set_user_variable("u", "explicit", 1, expiry="1d")
    await Janitor(store, {"b": bot.retention}).run_once()  # records the policy in force
    clock.advance(DAY / 2)
    longer = cfg({"user.*": "10d"})
    report = await Janitor(store, {"b": longer}).run_once()
    assert report.policy_extended == 1
    assert await bot.kvs.ttl("storage/users/u/a") == pytest.approx(9.5 * DAY)
    assert await bot.kvs.ttl("storage/users/u/explicit") == pytest.approx(0.5 * DAY)


async def test_policy_set_on_existing_data_caps_it(store: botmemory.Store, clock: FakeClock) -> None:
    bot = store.bot("b")
    await bot.kvs.set("carts/1", 1)
    await bot.kvs.set("carts/2", 1, expiry="30d")
    clock.advance(DAY)
    report = await Janitor(store, {"b": cfg({"kvs:carts/*": "7d"})}).run_once()
    assert report.policy_capped == 2
    assert await bot.kvs.ttl("carts/1") == pytest.approx(6 * DAY)
    assert await bot.kvs.ttl("carts/2") == pytest.approx(6 * DAY)


async def test_absolute_reapplication_judges_from_first_write(store: botmemory.Store, clock: FakeClock) -> None:
    bot = store.bot("b")
    absolute = cfg({"kvs:carts/*": {"expire": "10d", "mode": "absolute"}})
    sliding = cfg({"kvs:sessions/*": "10d"})
    bot.retention = RetentionConfig(policies=absolute.policies + sliding.policies)
    await bot.kvs.set("carts/1", 1)
    await bot.kvs.set("sessions/1", 1)
    clock.advance(3 * DAY)
    await bot.kvs.set("carts/1", 2)
    await bot.kvs.set("sessions/1", 2)
    clock.advance(2 * DAY)  # first write 5 days ago, last write 2 days ago
    shorter = cfg({"kvs:carts/*": {"expire": "4d", "mode": "absolute"}, "kvs:sessions/*": "4d"})
    report = await Janitor(store, {"b": shorter}).run_once()
    assert report.policy_deleted == 1
    assert await bot.kvs.get("carts/1") is None
    assert await bot.kvs.ttl("sessions/1") == pytest.approx(2 * DAY)


async def test_held_user_is_never_purged_and_release_re_enables(store: botmemory.Store, clock: FakeClock) -> None:
    bot = store.bot("b")
    bot.retention = cfg({"user.*": "1d", "conversation.*": "1d"})
    await bot.users.link_conversation("held", "c-held")
    await bot.memory.set_user_variable("held", "email", "h@example.com")
    await bot.kvs.set("storage/users/held/doc/1", "file", expiry="1h")
    await bot.memory.set_conversation_variable("c-held", "topic", "t")
    await bot.memory.set_user_variable("free", "email", "f@example.com")
    await bot.users.hold("held")
    clock.advance(2 * DAY)
    assert await bot.memory.get_user_variable("held", "email") is None  # reads treat it as absent
    janitor = Janitor(store, {"b": cfg({"user.*": "12h", "conversation.*": "1d"})})
    report = await janitor.run_once()
    assert report.purged == 1 and report.held_users == 1  # only "free"'s
    exported = await bot.users.export("held")
    assert exported["user"]["email"]["expired"] is True
    assert exported["user"]["email"]["value"] == "h@example.com"
    assert exported["kvs"]["storage/users/held/doc/1"]["expired"] is True
    assert exported["conversation"]["c-held"]["topic"]["expired"] is True
    assert await count_rows(store, "b") == 3
    assert await bot.users.release("held")
    report = await janitor.run_once()
    assert report.purged == 3
    assert await count_rows(store, "b") == 0
    reasons = [r["reason"] for r in await AuditLog(store).query("b", user_id="held")]
    assert reasons[:1] == ["hold"] and "release" in reasons and reasons.count("expired") == 3


async def test_audit_records_have_their_own_retention(store: botmemory.Store, clock: FakeClock) -> None:
    bot = store.bot("b")
    await bot.kvs.set("x", 1, expiry="1s")
    clock.advance(2)
    await Janitor(store).run_once()
    audit = AuditLog(store)
    assert len(await audit.query("b")) == 1
    clock.advance(300 * DAY)
    assert (await Janitor(store).run_once()).audit_purged == 0
    assert len(await audit.query("b")) == 1
    # a shortened audit retention applies to records written under the longer one
    report = await Janitor(store, {"b": cfg({}, audit_retention="30d")}).run_once()
    assert report.audit_purged == 1
    assert await audit.query("b") == []
    assert await count_rows(store, "__rt/audit/b") == 0


async def test_audit_record_expires_after_a_year_by_default(store: botmemory.Store, clock: FakeClock) -> None:
    await AuditLog(store).record("b", scope="kvs", owner_id=None, key="k", reason="delete_prefix")
    clock.advance(366 * DAY)
    assert await AuditLog(store).query("b") == []
    assert (await Janitor(store).run_once()).audit_purged == 1


async def test_query_by_time_range_and_limit(store: botmemory.Store, clock: FakeClock) -> None:
    audit = AuditLog(store)
    t0 = clock.now()
    for i in range(5):
        await audit.record("b", scope="user", owner_id=f"u{i % 2}", key=f"k{i}", reason="forget")
        clock.advance(10)
    assert [r["key"] for r in await audit.query("b", since=t0 + 10, until=t0 + 40)] == ["k1", "k2", "k3"]
    assert [r["key"] for r in await audit.query("b", user_id="u1")] == ["k1", "k3"]
    assert [r["key"] for r in await audit.query("b", limit=2)] == ["k0", "k1"]
    with pytest.raises(botmemory.InvalidInputError):
        await audit.query("b", limit=0)
    with pytest.raises(botmemory.InvalidKeyError):
        await audit.query("../x")


async def test_janitor_survives_backend_errors(
    store: botmemory.Store, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    bot = store.bot("b")
    await bot.kvs.set("x", 1, expiry="1s")
    clock.advance(2)
    real = store.backend.purge_expired
    calls = {"n": 0}

    async def failing_once(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise botmemory.StoreUnavailableError("backend went away")
        return await real(*args, **kwargs)

    monkeypatch.setattr(store.backend, "purge_expired", failing_once)
    sessions_ended = {"n": 0}

    async def end_sessions() -> int:
        sessions_ended["n"] += 1
        raise botmemory.StoreTimeoutError("sessions timed out")

    janitor = Janitor(store, end_timed_out_sessions=end_sessions)
    report = await janitor.run_once()
    assert report.errors == 2 and report.purged == 0
    assert "backend went away" in " ".join(report.error_messages)
    report = await janitor.run_once()
    assert report.purged == 1 and report.errors == 1
    assert janitor.totals.purged == 1 and janitor.totals.errors == 3 and janitor.runs == 2
    assert report.as_dict()["purged"] == 1


async def test_end_timed_out_sessions_is_called_first_and_counted(store: botmemory.Store) -> None:
    async def end_sessions() -> int:
        return 3

    report = await Janitor(store, end_timed_out_sessions=end_sessions).run_once()
    assert report.sessions_ended == 3


async def test_run_forever_runs_until_cancelled(store: botmemory.Store, clock: FakeClock) -> None:
    janitor = Janitor(store)
    with pytest.raises(botmemory.InvalidInputError):
        await janitor.run_forever(0)
    task = asyncio.create_task(janitor.run_forever(0.001))
    for _ in range(1000):
        if janitor.runs >= 2:
            break
        await asyncio.sleep(0.005)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert janitor.runs >= 2


def test_bad_batch_size() -> None:
    with pytest.raises(botmemory.InvalidInputError):
        Janitor(None, batch_size=0)  # type: ignore[arg-type]
