"""Retention policies: parsing (fail closed), precedence, and how writes follow them."""

from __future__ import annotations

import pytest

import botmemory
from botmemory.retention import AuditLog, Policy, RetentionConfig
from botmemory.testing import FakeClock

DAY = 86_400.0


def config(policies: dict[str, object], **settings: object) -> RetentionConfig:
    return RetentionConfig.parse({**settings, "policies": policies})


# -- parsing -------------------------------------------------------------------


def test_parse_spec_example() -> None:
    cfg = RetentionConfig.parse(
        {
            "janitor_interval": "2m",
            "policies": {
                "user.email": {"expire": "60d", "mode": "sliding"},
                "user.*": {"expire": "365d"},
                "conversation.*": {"expire": "1d"},
                "kvs:carts/*": {"expire": "7d", "mode": "absolute"},
            },
        }
    )
    assert cfg.janitor_interval == 120
    assert cfg.audit_retention == 365 * DAY
    assert cfg.policies == [
        Policy("user.email", 60 * 86_400_000, "sliding"),
        Policy("user.*", 365 * 86_400_000, "sliding"),
        Policy("conversation.*", 86_400_000, "sliding"),
        Policy("kvs:carts/*", 7 * 86_400_000, "absolute"),
    ]


def test_parse_defaults_and_shorthand() -> None:
    assert RetentionConfig.parse(None).policies == []
    assert RetentionConfig.parse({}).janitor_interval == 300
    cfg = RetentionConfig.parse({"audit_retention": "30d", "policies": {"global.*": "2h"}})
    assert cfg.audit_retention == 30 * DAY
    assert cfg.policies == [Policy("global.*", 7_200_000)]


@pytest.mark.parametrize(
    ("mapping", "names"),
    [
        ({"policies": {"user.*": {"expire": "0d"}}}, "policies.user.*.expire"),
        ({"policies": {"user.*": {"expire": "-1d"}}}, "policies.user.*.expire"),
        ({"policies": {"user.*": {"expire": "abc"}}}, "policies.user.*.expire"),
        ({"policies": {"user.*": {"expire": "36526d"}}}, "policies.user.*.expire"),
        ({"policies": {"user.*": {"expire": "6000 weeks"}}}, "policies.user.*.expire"),
        ({"policies": {"user.*": {"expire": "never"}}}, "policies.user.*.expire"),
        ({"policies": {"user.*": {"expire": None}}}, "policies.user.*.expire"),
        ({"policies": {"user.*": {"expire": 0}}}, "policies.user.*.expire"),
        ({"policies": {"user.*": "forever"}}, "policies.user.*.expire"),
        ({"policies": {"user.*": {"mode": "sliding"}}}, "policies.user.*.expire"),
        ({"policies": {"user.*": {"expire": "1d", "mode": "rolling"}}}, "policies.user.*.mode"),
        ({"policies": {"user.*": {"expire": "1d", "ttl": "2d"}}}, "policies.user.*.ttl"),
        ({"policies": {"session.*": "1d"}}, "policies.session.*"),
        ({"policies": {"user": "1d"}}, "policies.user"),
        ({"policies": {"kvs:": "1d"}}, "policies.kvs:"),
        ({"policies": {"user.a*": "1d"}}, "policies.user.a*"),
        ({"policies": ["user.*"]}, "policies"),
        ({"janitor_interval": "0s"}, "janitor_interval"),
        ({"audit_retention": "-5d"}, "audit_retention"),
        ({"keep": "1d"}, "keep"),
    ],
)
def test_bad_config_fails_closed_naming_the_setting(mapping: dict[str, object], names: str) -> None:
    with pytest.raises(botmemory.InvalidInputError) as info:
        RetentionConfig.parse(mapping, source="bots/shop/bot.yaml")
    assert f"retention.{names}" in str(info.value)
    assert "bots/shop/bot.yaml" in str(info.value)


def test_precedence_most_specific_wins() -> None:
    cfg = config(
        {
            "kvs:*": "9d",
            "kvs:storage/*": "8d",
            "user.*": "7d",
            "user.email": "6d",
            "kvs:carts/*": "5d",
            "kvs:carts/vip/*": "4d",
            "kvs:carts/vip/7": "3d",
            "conversation.*": "2d",
        }
    )

    def pattern(key: str) -> str | None:
        found = cfg.policy_for(key)
        return None if found is None else found.pattern

    assert pattern("storage/users/u1/email") == "user.email"
    assert pattern("storage/users/u1/name") == "user.*"
    assert pattern("storage/conversation/c1/x") == "conversation.*"
    assert pattern("storage/global/x") == "kvs:storage/*"  # no global.* policy: the KVS patterns apply
    assert pattern("storage/users/u1/a/b") == "kvs:storage/*"  # not a variable key
    assert pattern("carts/1") == "kvs:carts/*"
    assert pattern("carts/vip/1") == "kvs:carts/vip/*"
    assert pattern("carts/vip/7") == "kvs:carts/vip/7"
    assert pattern("other") == "kvs:*"
    # "*" is the only wildcard: "?" and "[" are literal
    literal = config({"kvs:a?[b]*": "1d"})
    assert literal.policy_for("a?[b]x") is not None
    assert literal.policy_for("ax[b]x") is None
    assert RetentionConfig.empty().policy_for("storage/users/u/x") is None


def test_equally_specific_globs_keep_declaration_order() -> None:
    cfg = config({"kvs:a*c": "1d", "kvs:*bc": "2d"})
    found = cfg.policy_for("abc")
    assert found is not None and found.pattern == "kvs:a*c"


# -- writes through a bot with a policy ------------------------------------------


async def test_no_policy_changes_nothing(store: botmemory.Store) -> None:
    bot = store.bot("b")
    assert bot.retention is None
    await bot.memory.set_user_variable("u", "x", 1)
    assert await bot.kvs.ttl("storage/users/u/x") is None
    bot.retention = RetentionConfig.empty()
    await bot.memory.set_user_variable("u", "x", 2)
    assert await bot.kvs.ttl("storage/users/u/x") is None


async def test_sliding_restarts_on_every_write(store: botmemory.Store, clock: FakeClock) -> None:
    bot = store.bot("b")
    bot.retention = config({"user.*": "10d"})
    key = "storage/users/u/x"
    await bot.memory.set_user_variable("u", "x", 1)
    assert await bot.kvs.ttl(key) == pytest.approx(10 * DAY)
    clock.advance(6 * DAY)
    await bot.memory.set_user_variable("u", "x", 2)
    assert await bot.kvs.ttl(key) == pytest.approx(10 * DAY)
    clock.advance(6 * DAY)
    assert await bot.memory.user("u").incr("n") == 1  # a new key gets the policy too
    assert await bot.memory.user("u").incr("x") == 3  # incr is a write: the timer restarts
    assert await bot.kvs.ttl(key) == pytest.approx(10 * DAY)
    clock.advance(10 * DAY)
    assert await bot.memory.get_user_variable("u", "x") is None
    assert await bot.memory.get_user_variable("u", "n") is None


async def test_explicit_shorter_wins_longer_is_capped(store: botmemory.Store, clock: FakeClock) -> None:
    bot = store.bot("b")
    bot.retention = config({"user.*": "10d", "kvs:carts/*": "1h"})
    await bot.memory.set_user_variable("u", "short", 1, expiry="1d")
    await bot.memory.set_user_variable("u", "long", 1, expiry="30d")
    await bot.memory.set_user_variable("u", "never", 1, expiry="never")
    assert await bot.kvs.ttl("storage/users/u/short") == pytest.approx(DAY)
    assert await bot.kvs.ttl("storage/users/u/long") == pytest.approx(10 * DAY)
    assert await bot.kvs.ttl("storage/users/u/never") == pytest.approx(10 * DAY)
    # the KVS API follows the same rules
    await bot.kvs.set("carts/1", {"n": 1}, expiry="2h")
    assert await bot.kvs.ttl("carts/1") == pytest.approx(3600)
    assert await bot.kvs.set_if_absent("carts/2", 1)
    assert await bot.kvs.ttl("carts/2") == pytest.approx(3600)
    await bot.kvs.set("carts/1", 5, "n")  # a path set keeps the expiry, within the policy
    assert await bot.kvs.ttl("carts/1") == pytest.approx(3600)
    assert await bot.kvs.expire("carts/1", "5h")
    assert await bot.kvs.ttl("carts/1") == pytest.approx(3600)
    assert await bot.kvs.expire("carts/1", "10m")
    assert await bot.kvs.ttl("carts/1") == pytest.approx(600)
    assert await bot.kvs.persist("carts/1")  # "never" is capped too
    assert await bot.kvs.ttl("carts/1") == pytest.approx(3600)
    # keys no policy covers are untouched
    await bot.kvs.set("other", 1)
    assert await bot.kvs.ttl("other") is None


async def test_set_many_gives_each_key_its_policy(store: botmemory.Store) -> None:
    bot = store.bot("b")
    bot.retention = config({"kvs:a/*": "1h", "kvs:b/*": "2h"})
    assert await bot.kvs.set_many({"a/1": 1, "b/1": 2, "c": 3}) == [1, 1, 1]
    assert await bot.kvs.ttl("a/1") == pytest.approx(3600)
    assert await bot.kvs.ttl("b/1") == pytest.approx(7200)
    assert await bot.kvs.ttl("c") is None
    await bot.kvs.set_many({"a/1": 1, "b/1": 2}, expiry="90m")
    assert await bot.kvs.ttl("a/1") == pytest.approx(3600)
    assert await bot.kvs.ttl("b/1") == pytest.approx(5400)


async def test_absolute_counts_from_first_write(store: botmemory.Store, clock: FakeClock) -> None:
    bot = store.bot("b")
    bot.retention = config({"kvs:carts/*": {"expire": "7d", "mode": "absolute"}})
    t0 = clock.now()
    await bot.kvs.set("carts/1", {"items": 1})
    clock.advance(3 * DAY)
    await bot.kvs.set("carts/1", {"items": 2})  # a later write does not restart it
    await bot.kvs.incr("carts/1", path="items")
    entry = await bot.kvs.get_entry("carts/1")
    assert entry is not None and entry.value == {"items": 3}
    assert entry.expires_at == pytest.approx(t0 + 7 * DAY)
    await bot.kvs.set("carts/1", {"items": 4}, expiry="1h")  # shorter explicit wins
    assert await bot.kvs.ttl("carts/1") == pytest.approx(3600)
    await bot.kvs.set("carts/1", {"items": 5})  # without one: the absolute deadline again
    assert await bot.kvs.ttl("carts/1") == pytest.approx(4 * DAY)
    clock.advance(4 * DAY)
    assert await bot.kvs.get("carts/1") is None
    t1 = clock.now()
    await bot.kvs.set("carts/1", {"items": 1})  # re-created: a new first write
    assert (await bot.kvs.get_entry("carts/1")).expires_at == pytest.approx(t1 + 7 * DAY)  # type: ignore[union-attr]
    await bot.kvs.delete("carts/1")
    clock.advance(DAY)
    await bot.kvs.set("carts/1", 1)  # deleted then written: a new first write
    assert await bot.kvs.ttl("carts/1") == pytest.approx(7 * DAY)


async def test_absolute_keeps_an_explicit_shorter_expiry_on_incr(store: botmemory.Store) -> None:
    bot = store.bot("b")
    bot.retention = config({"user.*": {"expire": "7d", "mode": "absolute"}})
    await bot.memory.set_user_variable("u", "n", 1, expiry="1h")
    await bot.memory.user("u").incr("n")
    assert await bot.kvs.ttl("storage/users/u/n") == pytest.approx(3600)


async def test_delete_prefix_is_audited_when_retention_is_set(store: botmemory.Store) -> None:
    bot = store.bot("b")
    await bot.kvs.set_many({"p/1": "secret-1", "p/2": "secret-2"})
    assert await bot.kvs.delete_prefix("p/") == 2
    audit = AuditLog(store)
    assert await audit.query("b") == []  # no retention configured: no audit sink
    bot.retention = RetentionConfig.empty()
    await bot.kvs.set_many({"p/1": "secret-1", "p/2": "secret-2", "storage/users/u1/a/b": "secret-3"})
    assert await bot.kvs.remove_storage_keys_starting_with("p/") == 2
    assert await bot.kvs.delete_prefix("storage/users/u1/") == 1
    assert await bot.kvs.delete_prefix("nothing/") == 0
    records = await audit.query("b")
    assert [(r["scope"], r["key"], r["count"], r["reason"]) for r in records] == [
        ("kvs", "p/*", 2, "delete_prefix"),
        ("kvs", "storage/users/u1/*", 1, "delete_prefix"),
    ]
    assert [r["key"] for r in await audit.query("b", user_id="u1")] == ["storage/users/u1/*"]
    assert "secret" not in repr(records)


def test_the_sync_facade_can_set_a_policy() -> None:
    with botmemory.open_sync("memory://", clock=FakeClock()) as store:
        bot = store.bot("b")
        bot.retention = config({"user.*": "1d"})
        bot.memory.set_user_variable("u", "x", 1)
        assert bot.kvs.ttl("storage/users/u/x") == DAY
