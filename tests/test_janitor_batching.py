"""The janitor's batch sizing (batch_time) and gathered audit writes (audit_group), on every backend."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from typing import Any

import pytest

import botmemory
from botmemory.backends.base import Purged
from botmemory.retention import AuditLog, Janitor
from botmemory.retention.layout import audit_ns
from botmemory.testing import FakeClock


def watch_limits(store: botmemory.Store, monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """(limit asked, rows purged) of every purge_expired call on the real backend."""
    calls: list[tuple[int, int]] = []
    real = store.backend.purge_expired

    async def purge_expired(
        now: float, limit: int, ns: str | None = None, keep: Sequence[tuple[str, str]] = ()
    ) -> list[Purged]:
        batch = await real(now, limit, ns, keep)
        calls.append((limit, len(batch)))
        return batch

    monkeypatch.setattr(store.backend, "purge_expired", purge_expired)
    return calls


async def expire_rows(store: botmemory.Store, clock: FakeClock, n: int) -> None:
    await store.bot("b").kvs.set_many({f"k{i:04d}": i for i in range(n)}, expiry="1s")
    await store.bot("b").kvs.set("live", 1)
    clock.advance(2)


async def test_fast_batches_grow_to_batch_size_and_all_rows_go_in_one_run(
    store: botmemory.Store, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    await expire_rows(store, clock, 700)
    calls = watch_limits(store, monkeypatch)
    # no batch takes an hour: each is sized up (at most doubled) until batch_size
    report = await Janitor(store, batch_size=100, batch_time=3600.0).run_once()
    assert [limit for limit, _ in calls] == [16, 32, 64, 100, 100, 100, 100, 100, 100]
    assert [got for _, got in calls] == [16, 32, 64, 100, 100, 100, 100, 100, 88]
    assert report.purged == 700 and report.batches == 9 and report.errors == 0
    assert await store.bot("b").kvs.get("live") == 1
    assert await store.backend.scan_expired("b", "", clock.now(), 10) == []
    records = await AuditLog(store).query("b", limit=10_000)
    assert sorted(r["key"] for r in records) == [f"k{i:04d}" for i in range(700)]


async def test_slow_batches_stay_at_the_floor_and_a_full_last_batch_needs_one_more(
    store: botmemory.Store, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    await expire_rows(store, clock, 48)  # exactly three batches of 16
    calls = watch_limits(store, monkeypatch)
    report = await Janitor(store, batch_size=1000, batch_time=1e-9).run_once()
    assert calls == [(16, 16), (16, 16), (16, 16), (16, 0)]
    assert report.purged == 48 and report.batches == 4


async def test_batch_size_below_the_floor_is_used_as_is(
    store: botmemory.Store, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    await expire_rows(store, clock, 10)
    calls = watch_limits(store, monkeypatch)
    await Janitor(store, batch_size=4, batch_time=1e-9).run_once()
    assert calls == [(4, 4), (4, 4), (4, 2)]


async def test_without_batch_time_every_batch_asks_for_batch_size(
    store: botmemory.Store, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    await expire_rows(store, clock, 25)
    calls = watch_limits(store, monkeypatch)
    await Janitor(store, batch_size=10, batch_time=None).run_once()
    assert calls == [(10, 10), (10, 10), (10, 5)]


async def test_the_size_found_is_kept_for_the_next_run(
    store: botmemory.Store, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    await expire_rows(store, clock, 200)
    calls = watch_limits(store, monkeypatch)
    janitor = Janitor(store, batch_size=64, batch_time=3600.0)
    await janitor.run_once()
    await expire_rows(store, clock, 5)
    calls.clear()
    await janitor.run_once()
    assert calls[0] == (64, 5)


async def test_audit_records_are_gathered_into_groups_and_the_rest_written_at_the_end(
    store: botmemory.Store, clock: FakeClock
) -> None:
    await expire_rows(store, clock, 10)
    report = await Janitor(store, batch_size=4, batch_time=None, audit_group=3).run_once()
    assert report.purged == 10 and report.audit_records == 10
    now = clock.now()
    assert await store.backend.count(audit_ns("b"), now) == math.ceil(10 / 3)  # 3 + 3 + 3 + 1
    records = await AuditLog(store).query("b")
    assert sorted(r["key"] for r in records) == [f"k{i:04d}" for i in range(10)]
    assert {r["reason"] for r in records} == {"expired"}


async def test_cancelled_run_still_audits_what_it_purged(store: botmemory.Store, clock: FakeClock) -> None:
    await expire_rows(store, clock, 30)
    janitor = Janitor(store, batch_size=4, batch_time=None, audit_group=1000)
    real = store.backend.purge_expired
    calls = {"n": 0}

    async def purge_expired(*args: Any, **kwargs: Any) -> list[Purged]:
        calls["n"] += 1
        if calls["n"] == 3:  # cancelled (say, at shutdown) while waiting for the third batch
            task.cancel()
            await asyncio.sleep(0)
        return await real(*args, **kwargs)

    store.backend.purge_expired = purge_expired  # type: ignore[method-assign]
    task = asyncio.create_task(janitor.run_once())
    with pytest.raises(asyncio.CancelledError):
        await task
    left = await store.backend.scan_expired("b", "", clock.now(), 100)
    records = await AuditLog(store).query("b")
    assert len(records) == 8 and len(left) == 22  # two batches purged, and their 8 records written
    assert {r["key"] for r in records}.isdisjoint(r.key for r in left)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"batch_time": 0},
        {"batch_time": -1.0},
        {"batch_time": math.inf},
        {"batch_time": math.nan},
        {"batch_time": True},
        {"batch_time": "1ms"},
        {"audit_group": 0},
        {"audit_group": 2.0},
        {"audit_group": True},
    ],
)
def test_bad_settings(kwargs: dict[str, Any]) -> None:
    with pytest.raises(botmemory.InvalidInputError):
        Janitor(None, **kwargs)  # type: ignore[arg-type]
