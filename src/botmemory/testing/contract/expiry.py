"""Expiry: ttl, expire, persist, the Redis expiry rules, and expired data never returned."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ...errors import (
    InvalidExpiryError,
    InvalidInputError,
    KeyNotFoundError,
    VersionConflictError,
)
from ...store import Store
from ..clock import FakeClock
from ._support import _version, _with_expired, all_keys, assert_same, dump_store

# -- expiry: ttl / expire / persist / purge -------------------------------------------------


class ExpiryContract:
    """ttl, expire, persist, the accepted expiry forms and ``store.purge_expired``."""

    async def test_relative_expiry_forms(self, store: Store, clock: FakeClock) -> None:
        kvs = store.bot("b1").kvs
        forms: list[tuple[Any, float]] = [
            ("30s", 30),
            ("10 m", 600),
            ("1.5h", 5400),
            ("30 days", 30 * 86400),
            ("2 hours", 7200),
            ("PT10M", 600),
            ("P2D", 172800),
            ("P1W", 604800),
            ("P1DT2H30.5S", 86400 + 7200 + 30.5),
            ("250ms", 0.25),
            ("0.0001ms", 0.001),
            (45, 45),
            (1.1, 1.1),
            (timedelta(days=1, seconds=1), 86401),
            (timedelta(microseconds=1), 0.001),
        ]
        t0 = clock.now()
        for i, (expiry, seconds) in enumerate(forms):
            await kvs.set(f"k{i}", 1, expiry=expiry)
            entry = await kvs.get_entry(f"k{i}")
            assert entry is not None and entry.expires_at == pytest.approx(t0 + seconds, abs=1e-3), expiry
            assert await kvs.ttl(f"k{i}") == pytest.approx(seconds, abs=1e-3), expiry

    async def test_absolute_expiry(self, store: Store, clock: FakeClock) -> None:
        kvs = store.bot("b1").kvs
        at = datetime.fromtimestamp(clock.now() + 3600, tz=UTC)
        await kvs.set("k", 1, expiry=at)
        assert await kvs.ttl("k") == pytest.approx(3600, abs=1e-3)
        clock.advance(3600)
        assert not await kvs.exists("k")

    async def test_absolute_expiry_rounds_up_to_whole_ms(self, store: Store, clock: FakeClock) -> None:
        kvs = store.bot("b1").kvs
        at = datetime.fromtimestamp(clock.now() + 10, tz=UTC) + timedelta(microseconds=500)
        await kvs.set("k", 1, expiry=at)
        entry = await kvs.get_entry("k")
        assert entry is not None and entry.expires_at == pytest.approx(clock.now() + 10.001, abs=1e-6)

    async def test_up_to_100_years(self, store: Store) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set("k", 1, expiry="36525d")
        assert await kvs.ttl("k") == pytest.approx(36_525 * 86_400, abs=1e-3)
        await kvs.set("w", 1, expiry=timedelta(days=36_525))
        assert await kvs.get("w") == 1
        with pytest.raises(InvalidExpiryError):
            await kvs.set("k", 2, expiry=36_525 * 86_400 + 1)
        assert await kvs.get("k") == 1

    async def test_expired_at_exactly_expires_at(self, store: Store, clock: FakeClock) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set("k", 1, expiry=10)
        clock.advance(9.99)
        assert await kvs.get("k") == 1
        clock.advance(0.01)
        assert await kvs.get("k") is None

    async def test_ttl(self, store: Store, clock: FakeClock) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set("never", 1)
        await kvs.set("soon", 1, expiry="10s")
        assert await kvs.ttl("never") is None
        assert await kvs.ttl("soon") == pytest.approx(10, abs=1e-3)
        clock.advance(4)
        assert await kvs.ttl("soon") == pytest.approx(6, abs=1e-3)
        with pytest.raises(KeyNotFoundError):
            await kvs.ttl("missing")
        with pytest.raises(KeyError):  # KeyNotFoundError is also a KeyError
            await kvs.ttl("missing")

    async def test_expire_sets_ttl_and_keeps_version(self, store: Store, clock: FakeClock) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set("k", 1)
        before = await kvs.get_entry("k")
        clock.advance(7)
        assert await kvs.expire("k", "1m") is True
        after = await kvs.get_entry("k")
        assert before is not None and after is not None
        assert (after.version, after.modified_at, after.value) == (before.version, before.modified_at, 1)
        assert after.expires_at == pytest.approx(clock.now() + 60, abs=1e-3)
        assert await kvs.expire("k", 5) is True
        assert await kvs.ttl("k") == pytest.approx(5, abs=1e-3)
        clock.advance(5)
        assert not await kvs.exists("k")

    async def test_expire_missing_is_false(self, store: Store) -> None:
        kvs = store.bot("b1").kvs
        assert await kvs.expire("missing", "1m") is False
        assert not await kvs.exists("missing")

    @pytest.mark.parametrize("expiry", [None, "never"])
    async def test_expire_never_is_refused(self, store: Store, expiry: Any) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set("k", 1, expiry="1m")
        with pytest.raises(InvalidExpiryError):
            await kvs.expire("k", expiry)
        assert await kvs.ttl("k") == pytest.approx(60, abs=1e-3)

    @pytest.mark.parametrize("expiry", ["-5m", 0, "0s", "abc", float("nan"), True, "5 M"])
    async def test_expire_bad_expiry_changes_nothing(self, store: Store, expiry: Any) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set("k", 1, expiry="1m")
        before = await dump_store(store)
        with pytest.raises(InvalidExpiryError):
            await kvs.expire("k", expiry)
        assert await dump_store(store) == before

    async def test_persist(self, store: Store, clock: FakeClock) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set("k", 1, expiry="10s")
        before = await kvs.get_entry("k")
        clock.advance(3)
        assert await kvs.persist("k") is True
        after = await kvs.get_entry("k")
        assert before is not None and after is not None
        assert after.expires_at is None
        assert (after.version, after.modified_at) == (before.version, before.modified_at)
        assert await kvs.persist("k") is False  # had no expiry
        assert await kvs.persist("missing") is False
        clock.advance(3600)
        assert await kvs.get("k") == 1

    async def test_purge_expired(self, store: Store, clock: FakeClock) -> None:
        b1, b2 = store.bot("b1").kvs, store.bot("b2").kvs
        t0 = clock.now()
        await b1.set_many({"e1": 1, "e2": 2, "e3": 3}, expiry="10s")
        await b2.set("e4", 4, expiry="5s")
        await store.global_kvs.set("e5", 5, expiry="5s")
        await b1.set("live", 1)
        await b2.set("later", 1, expiry="1h")
        assert await store.purge_expired() == 0
        clock.advance(10)
        assert await store.purge_expired(limit=2) == 2
        assert await store.purge_expired(limit=2) == 2
        assert await store.purge_expired(limit=2) == 1
        assert await store.purge_expired(limit=2) == 0
        # purged rows are gone, not merely hidden: read as of t0, when they were live
        assert [r.key for r in await b1.rows(["e1", "e2", "e3", "live"], at=t0)] == ["live"]
        assert [r.key for r in await b2.rows(["e4", "later"], at=t0)] == ["later"]
        assert await store.global_kvs.rows(["e5"], at=t0) == []

    async def test_a_clock_moving_back_does_not_revive_what_expired(self, store: Store, clock: FakeClock) -> None:
        kvs, memory = store.bot("b1").kvs, store.bot("b1").memory
        t0 = clock.now()
        await kvs.set("short", 1, expiry="10s")
        await kvs.set("long", 2, expiry="1h")
        await memory.set_user_variable("u", "v", 3, expiry="10s")
        clock.advance(20)
        assert await kvs.get("short") is None
        clock.set(t0)  # the clock steps back (NTP, a restored VM): the store's time stands still
        assert store.clock.now() == t0 + 20
        assert await kvs.get("short") is None
        assert await kvs.get_entry("short") is None
        assert await kvs.exists("short") is False
        assert await kvs.get_many(["short", "long"]) == {"long": 2}
        assert await all_keys(kvs) == ["long"]  # the expired memory variable is not listed either
        assert await memory.get_user_variable("u", "v") is None
        assert await kvs.ttl("long") == pytest.approx(3600 - 20, abs=1e-3)  # remaining TTLs do not grow
        await kvs.set("new", 4, expiry="10s")  # deadlines come from the store's time
        entry = await kvs.get_entry("new")
        assert entry is not None and entry.expires_at == pytest.approx(t0 + 30)
        clock.set(t0 + 29)
        assert await kvs.get("new") == 4
        clock.set(t0 + 30)
        assert await kvs.get("new") is None

    async def test_purge_expired_takes_the_oldest_first(self, store: Store, clock: FakeClock) -> None:
        kvs = store.bot("b1").kvs
        t0 = clock.now()
        for seconds in (3, 1, 2):
            await kvs.set(f"e{seconds}", seconds, expiry=seconds)
        clock.advance(3)
        assert await store.purge_expired(limit=1) == 1
        # what was not purged is still stored (read as of t0, when all three were live)
        assert sorted(r.key for r in await kvs.rows(["e1", "e2", "e3"], at=t0)) == ["e2", "e3"]
        assert await store.purge_expired(limit=1) == 1
        assert [r.key for r in await kvs.rows(["e1", "e2", "e3"], at=t0)] == ["e3"]

    async def test_purge_expired_leaves_live_and_private_data(self, store: Store, clock: FakeClock) -> None:
        private = store.private_kvs("__rt/contract")
        await private.set("session", 1, expiry="1s")
        await store.bot("b1").kvs.set("live", 1, expiry="1h")
        clock.advance(1)
        assert await private.get("session") is None  # expired is never returned, even there
        assert await store.purge_expired() == 0  # its owner purges it, not the store-wide janitor
        assert await store.bot("b1").kvs.get("live") == 1
        assert "__rt/contract" not in await store.bots()

    async def test_purge_expired_many(self, store: Store, clock: FakeClock) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set_many({f"k{i}": i for i in range(1001)}, expiry="1s")
        clock.advance(1)
        assert await store.purge_expired() == 1000
        assert await store.purge_expired() == 1
        assert await store.purge_expired() == 0

    @pytest.mark.parametrize("limit", [0, -1, 1.5, True])
    async def test_purge_expired_limit_must_be_positive(self, store: Store, limit: Any) -> None:
        with pytest.raises(InvalidInputError):
            await store.purge_expired(limit=limit)


# -- Redis expiry rules -----------------------------------------------------------


class ExpiryRulesContract:
    """What each write does to an existing expiry (Redis semantics)."""

    async def test_set_without_expiry_removes_it(self, store: Store) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set("k", 1, expiry="1h")
        await kvs.set("k", 2)
        assert await kvs.ttl("k") is None

    async def test_set_never_removes_it(self, store: Store) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set("k", 1, expiry="1h")
        await kvs.set("k", 2, expiry="never")
        assert await kvs.ttl("k") is None

    async def test_set_with_expiry_replaces_it(self, store: Store, clock: FakeClock) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set("k", 1, expiry="1h")
        clock.advance(10)
        await kvs.set("k", 2, expiry="5s")
        assert await kvs.ttl("k") == pytest.approx(5, abs=1e-3)

    async def test_keep_ttl_keeps_it(self, store: Store, clock: FakeClock) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set("k", 1, expiry="1h")
        clock.advance(600)
        assert await kvs.set("k", 2, keep_ttl=True) == 2
        assert await kvs.ttl("k") == pytest.approx(3000, abs=1e-3)
        assert await kvs.get("k") == 2

    async def test_keep_ttl_on_a_key_without_expiry(self, store: Store) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set("k", 1)
        await kvs.set("k", 2, keep_ttl=True)
        assert await kvs.ttl("k") is None
        await kvs.set("new", 1, keep_ttl=True)
        assert await kvs.ttl("new") is None

    @pytest.mark.parametrize("expiry", ["1h", "never", 5])
    async def test_keep_ttl_with_expiry_is_refused(self, store: Store, expiry: Any) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set("k", 1, expiry="1m")
        before = await dump_store(store)
        with pytest.raises(InvalidInputError):
            await kvs.set("k", 2, expiry=expiry, keep_ttl=True)
        assert await dump_store(store) == before

    async def test_incr_keeps_it(self, store: Store, clock: FakeClock) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set("n", 1, expiry="1m")
        clock.advance(20)
        assert await kvs.incr("n") == 2
        assert await kvs.ttl("n") == pytest.approx(40, abs=1e-3)

    async def test_path_set_keeps_it(self, store: Store, clock: FakeClock) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set("k", {"a": 1}, expiry="1m")
        clock.advance(20)
        await kvs.set("k", 2, "b")
        assert await kvs.ttl("k") == pytest.approx(40, abs=1e-3)

    async def test_path_set_with_expiry_sets_it(self, store: Store) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set("k", {"a": 1}, expiry="1m")
        await kvs.set("k", 2, "b", expiry="1h")
        assert await kvs.ttl("k") == pytest.approx(3600, abs=1e-3)
        await kvs.set("plain", {"a": 1})
        await kvs.set("plain", 2, "b", "10s")
        assert await kvs.ttl("plain") == pytest.approx(10, abs=1e-3)

    async def test_set_if_version_without_expiry_removes_it(self, store: Store) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set("k", 1, expiry="1m")
        await kvs.set("k", 2, if_version=1)
        assert await kvs.ttl("k") is None

    async def test_set_many_without_expiry_removes_it(self, store: Store) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set("k", 1, expiry="1m")
        await kvs.set_many({"k": 2})
        assert await kvs.ttl("k") is None

    async def test_bad_expiry_writes_nothing(self, store: Store) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set("k", 1)
        before = await dump_store(store)
        for expiry in (
            "-5m",
            -1,
            0,
            "0",
            "0s",
            "30",
            "1e309 ms",
            "inf",
            float("inf"),
            "nan",
            float("nan"),
            "5 fortnights",
            "5 M",
            "none",
            "Never",
            " 5m ",
            "５m",
            "1_000s",
            ".5s",
            "6000 weeks",
            "36526d",
            2**63,
            True,
            "5m\n",
            "2030-01-01T00:00:00",
            "P1Y",
            "P1M",
        ):
            with pytest.raises(InvalidExpiryError):
                await kvs.set("k", 2, expiry=expiry)
            with pytest.raises(InvalidExpiryError):
                await kvs.set("new", 2, expiry=expiry)
            with pytest.raises(InvalidExpiryError):
                await kvs.set_if_absent("new", 2, expiry=expiry)
        assert await dump_store(store) == before

    async def test_absolute_expiry_in_the_past_or_now_is_refused(self, store: Store, clock: FakeClock) -> None:
        kvs = store.bot("b1").kvs
        for when in (clock.now(), clock.now() - 1):
            with pytest.raises(InvalidExpiryError):
                await kvs.set("k", 1, expiry=datetime.fromtimestamp(when, tz=UTC))
        with pytest.raises(InvalidExpiryError):
            await kvs.set("k", 1, expiry=datetime(2099, 1, 1))  # naive
        assert not await kvs.exists("k")


class ExpiredContract:
    """Once ``now >= expires_at`` no call returns, counts or lists a key."""

    async def test_reads(self, store: Store, clock: FakeClock) -> None:
        kvs = await _with_expired(store, clock)
        assert await kvs.get("gone") is None
        assert await kvs.get("gone", default="d") == "d"
        assert await kvs.get("gone", "a", default="d") == "d"
        assert await kvs.get_entry("gone") is None
        assert await kvs.exists("gone") is False
        assert await kvs.get_many(["gone", "live"]) == {"live": {"v": 1}}
        assert await all_keys(kvs) == ["live"]
        assert await all_keys(kvs, "go") == []
        with pytest.raises(KeyNotFoundError):
            await kvs.ttl("gone")
        assert await kvs.get_storage_with_expiry("gone") is None

    async def test_deletes_do_not_count_it(self, store: Store, clock: FakeClock) -> None:
        kvs = await _with_expired(store, clock)
        assert await kvs.delete("gone") is False
        kvs = await _with_expired(store, clock)
        assert await kvs.delete_many(["gone", "live"]) == 1
        kvs = await _with_expired(store, clock)
        assert await kvs.delete_prefix("g") == 0
        assert await kvs.delete_prefix("", all=True) == 1

    async def test_expire_and_persist_do_not_revive_it(self, store: Store, clock: FakeClock) -> None:
        kvs = await _with_expired(store, clock)
        assert await kvs.expire("gone", "1h") is False
        assert await kvs.persist("gone") is False
        assert await kvs.get("gone") is None

    async def test_set_starts_over(self, store: Store, clock: FakeClock) -> None:
        kvs = await _with_expired(store, clock)
        assert await kvs.set("gone", "new") == 1
        assert await kvs.ttl("gone") is None

    async def test_keep_ttl_does_not_keep_a_dead_expiry(self, store: Store, clock: FakeClock) -> None:
        kvs = await _with_expired(store, clock)
        assert await kvs.set("gone", "new", keep_ttl=True) == 1
        assert await kvs.get("gone") == "new"
        assert await kvs.ttl("gone") is None

    async def test_set_if_absent_and_if_version_zero(self, store: Store, clock: FakeClock) -> None:
        kvs = await _with_expired(store, clock)
        assert await kvs.set_if_absent("gone", "x") is True
        assert await _version(kvs, "gone") == 1
        kvs = await _with_expired(store, clock)
        with pytest.raises(VersionConflictError):
            await kvs.set("gone", "x", if_version=3)
        assert await kvs.set("gone", "y", if_version=0) == 1
        assert await kvs.get("gone") == "y"

    async def test_incr_restarts_at_zero(self, store: Store, clock: FakeClock) -> None:
        kvs = store.bot("b1").kvs
        await kvs.set("n", 41, expiry="1s")
        clock.advance(1)
        assert await kvs.incr("n") == 1
        assert await _version(kvs, "n") == 1
        assert await kvs.ttl("n") is None

    async def test_path_set_starts_from_nothing(self, store: Store, clock: FakeClock) -> None:
        kvs = await _with_expired(store, clock)
        assert await kvs.set("gone", 5, "b") == 1
        assert_same(await kvs.get("gone"), {"b": 5})
        kvs = await _with_expired(store, clock)
        assert await kvs.incr("gone", 2, path="a") == 2
        assert_same(await kvs.get("gone"), {"a": 2})

    async def test_set_many_starts_over(self, store: Store, clock: FakeClock) -> None:
        kvs = await _with_expired(store, clock)
        assert await kvs.set_many({"gone": 1, "live": 2}) == [1, 2]

    async def test_memory_scopes_hide_it(self, store: Store, clock: FakeClock) -> None:
        memory = store.bot("b1").memory
        await memory.set_user_variable("u", "gone", 1, expiry="1s")
        await memory.set_user_variable("u", "live", 2)
        await memory.set_conversation_variable("c", "gone", 1, expiry="1s")
        clock.advance(1)
        assert await memory.get_user_variable("u", "gone", "d") == "d"
        assert await memory.user("u").items() == {"live": 2}
        assert await memory.delete_user_variable("u", "gone") is False
        assert await memory.end_conversation("c") == 0
        assert await memory.user("u").clear() == 1
