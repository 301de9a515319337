"""Clock jumps (issue 16, item 4): nothing expired is ever returned, whatever the clock does.

Expiry is an absolute deadline (``expires_at``) computed from the store's
clock when the key is written, and every read compares it with the clock's
``now()`` at that moment (never the database's time, never a cached TTL).
So, on every backend:

- a jump forward hides at once everything whose deadline it passes, on every
  read path (get, get_entry, exists, get_many, keys, ttl, memory, export,
  quotas, set_if_absent, incr);
- a jump back does not take the store back: the store reads its clock
  through a ``NonDecreasingClock``, so its time stands still until the clock
  has caught up. A key once expired stays expired (purged or not: the rows
  are still there, read as of an earlier instant), remaining TTLs do not
  grow, and deadlines never move. That is the documented behaviour (README,
  "Decisions where the spec is silent"; RELIABILITY.md).

A FakeClock drives the library (the server's process-wide offset is
``test_http_clock.py``). The last test walks a random mix of small steps, ±1 h jumps
and purges, checking every key against a model after every step.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from botmemory import KeyNotFoundError, Limits, QuotaExceededError, Store
from botmemory.testing import FakeClock
from botmemory.testing.backends import open_test_store
from botmemory.testing.contract import all_keys
from reliability_suite import record, size

HOUR = 3600.0
TTLS = {"t30s": "30s", "t10m": "10m", "t59m": "59m", "t1h": "1h", "t61m": "61m", "t2h": "2h", "never": None}


async def _write_all(store: Store) -> dict[str, float | None]:
    kvs = store.bot("b").kvs
    deadlines: dict[str, float | None] = {}
    for key, ttl in TTLS.items():
        await kvs.set(key, {"key": key}, expiry=ttl)
        entry = await kvs.get_entry(key)
        assert entry is not None
        deadlines[key] = entry.expires_at
    await store.bot("b").memory.set_user_variable("u", "short", "s", expiry="10m")
    await store.bot("b").memory.set_user_variable("u", "long", "l", expiry="2h")
    await store.global_kvs.set("g", 1, expiry="30m")
    return deadlines


async def _visible(store: Store) -> set[str]:
    """Every key some read path returns, checking that all the paths agree."""
    kvs = store.bot("b").kvs
    listed = set(await all_keys(kvs))
    many = set(await kvs.get_many(list(TTLS)))
    one_by_one = set()
    for key in TTLS:
        value = await kvs.get(key)
        entry = await kvs.get_entry(key)
        exists = await kvs.exists(key)
        assert (value is not None) == (entry is not None) == exists, key
        if entry is not None:
            one_by_one.add(key)
            ttl = await kvs.ttl(key)
            assert ttl is None or ttl > 0, (key, ttl)
        else:
            with pytest.raises(KeyNotFoundError):
                await kvs.ttl(key)
    assert listed & set(TTLS) == many == one_by_one
    return many


async def test_a_jump_forward_hides_everything_it_passes(store: Store, clock: FakeClock) -> None:
    deadlines = await _write_all(store)
    clock.advance(HOUR)
    now = clock.now()
    expected = {k for k, d in deadlines.items() if d is None or d > now}
    assert await _visible(store) == expected == {"t61m", "t2h", "never"}
    memory = store.bot("b").memory
    assert await memory.user("u").items() == {"long": "l"}
    assert await store.global_kvs.get("g") is None
    export = await store.bot("b").users.export("u")
    assert set(export["user"]) == {"long"}
    kvs = store.bot("b").kvs
    # writes see the expired keys as absent too
    assert await kvs.set_if_absent("t10m", "new") is True
    assert (await kvs.get_entry("t10m")).version == 1  # type: ignore[union-attr]
    assert await kvs.incr("t30s") == 1
    assert await kvs.expire("t59m", "1h") is False
    assert await kvs.persist("t1h") is False


async def test_a_jump_forward_frees_quota(backend_name: str, tmp_path: Any) -> None:
    clock = FakeClock()
    async with open_test_store(backend_name, tmp_path, clock=clock, limits=Limits(max_keys_per_bot=3)) as store:
        kvs = store.bot("q").kvs
        for i in range(3):
            await kvs.set(f"k{i}", i, expiry="10m")
        with pytest.raises(QuotaExceededError):
            await kvs.set("k3", 3)
        clock.advance(HOUR)
        for i in range(3, 6):
            await kvs.set(f"k{i}", i)  # the expired keys no longer count


async def test_a_jump_back_keeps_what_expired_expired(store: Store, clock: FakeClock) -> None:
    deadlines = await _write_all(store)
    t0 = clock.now()
    kvs = store.bot("b").kvs
    clock.advance(HOUR)
    assert await _visible(store) == {"t61m", "t2h", "never"}
    clock.set(t0)  # back by an hour, nothing purged meanwhile: the store's time stands still
    assert store.clock.now() == t0 + HOUR
    assert await _visible(store) == {"t61m", "t2h", "never"}  # what expired stays expired
    for key in ("t61m", "t2h"):
        entry = await kvs.get_entry(key)
        assert entry is not None and entry.expires_at == deadlines[key]  # deadlines never move
    assert await kvs.ttl("t2h") == pytest.approx(HOUR, abs=1e-3)  # remaining TTLs do not grow
    assert await store.bot("b").memory.get_user_variable("u", "short") is None
    assert await store.global_kvs.get("g") is None
    # the expired rows are still stored (not purged): as of t0 every one was live
    assert {r.key for r in await kvs.rows(list(TTLS), at=t0)} == set(TTLS)

    clock.set(t0 + HOUR)  # the clock has caught up
    assert await store.purge_expired(limit=1000) == 6  # four keys, a memory variable, the global key
    assert {r.key for r in await kvs.rows(list(TTLS), at=t0)} == {"t61m", "t2h", "never"}  # purged for good
    clock.set(t0)  # back again
    assert await _visible(store) == {"t61m", "t2h", "never"}
    assert await store.bot("b").memory.user("u").items() == {"long": "l"}
    # and nothing is returned past its deadline once time gets there
    clock.set(t0 + HOUR + 60)
    assert await _visible(store) == {"t2h", "never"}


async def test_ttls_written_while_the_clock_is_ahead(store: Store, clock: FakeClock) -> None:
    t0 = clock.now()
    clock.advance(HOUR)  # a clock an hour fast...
    kvs = store.bot("b").kvs
    await kvs.set("k", 1, expiry="10m")
    clock.set(t0)  # ...is corrected: the store's time stands still until the clock catches up
    assert await kvs.ttl("k") == pytest.approx(600, abs=1e-3)
    clock.set(t0 + HOUR + 599)
    assert await kvs.get("k") == 1
    clock.set(t0 + HOUR + 600)
    assert await kvs.get("k") is None


async def test_stepped_clock_boundaries(store: Store, clock: FakeClock) -> None:
    """A coarse clock that moves in whole seconds: sub-step TTLs and the exact deadline."""
    kvs = store.bot("b").kvs
    clock.set(1_800_000_000.0)
    await kvs.set("half", 1, expiry="500ms")
    await kvs.set("one", 1, expiry="1s")
    await kvs.set("tiny", 1, expiry="0.0001ms")  # rounded up to 1 ms, never to 0
    entry = await kvs.get_entry("one")
    assert entry is not None and entry.expires_at == 1_800_000_001.0
    assert set(await kvs.get_many(["half", "one", "tiny"])) == {"half", "one", "tiny"}
    clock.set(1_800_000_000.001)  # the deadline itself: expired
    assert set(await kvs.get_many(["half", "one", "tiny"])) == {"half", "one"}
    clock.set(1_800_000_001.0)  # one step
    assert await kvs.get_many(["half", "one", "tiny"]) == {}
    assert await all_keys(kvs) == []


@pytest.mark.parametrize("seed", range(size(2, 10)))
async def test_random_walk_of_the_clock(store: Store, clock: FakeClock, backend_name: str, seed: int) -> None:
    """Small steps, jumps of ±1 h, writes and purges; after every step every key agrees with the model."""
    rng = random.Random(seed)
    kvs = store.bot("walk").kvs
    keys = [f"k{i}" for i in range(12)]
    ttls = [0.001, 0.5, 1, 30, 600, 3599, 3600, 3601, 7200, None]
    model: dict[str, tuple[int, float | None]] = {}  # key -> (value, deadline), until deleted or purged
    jumps = 0
    for step in range(size(120, 600)):
        move = rng.random()
        if move < 0.1:
            clock.set(clock.now() + rng.choice([HOUR, -HOUR]))
            jumps += 1
        elif move < 0.6:
            clock.advance(rng.choice([0.0005, 0.001, 0.3, 1.0, 29.0, 600.0]))
        now = store.clock.now()  # the store's time: never behind what it has read before
        assert now >= clock.now()
        action = rng.random()
        key = rng.choice(keys)
        if action < 0.4:
            ttl = rng.choice(ttls)
            await kvs.set(key, step, expiry=ttl)
            entry = await kvs.get_entry(key)
            assert entry is not None
            model[key] = (step, entry.expires_at)
            assert entry.expires_at is None if ttl is None else entry.expires_at >= now + ttl
        elif action < 0.5:
            await store.purge_expired(limit=1000)
            model = {k: v for k, v in model.items() if v[1] is None or v[1] > now}
        elif action < 0.6:
            await kvs.delete(key)
            model.pop(key, None)
        live = {k: v for k, (v, d) in model.items() if d is None or d > now}
        assert await kvs.get_many(keys) == live, f"step {step} at {now}"
        assert await all_keys(kvs) == sorted(live)
        if key in live:
            assert await kvs.get(key) == live[key]
        else:
            assert await kvs.get(key, default="absent") == "absent"
    record(f"clock.walk.{backend_name}.seed{seed}", steps=size(120, 600), jumps=jumps, violations=0)
