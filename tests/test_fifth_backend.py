"""A fifth backend, written against the ``Backend`` ABC only, passes the whole contract suite.

``DictBackend`` implements the eight primitives, ``LockingDictBackend``
adds the ``Locks`` capability (the runtime needs leases), and nothing else: no ``FastPaths``
(``get``, ``put``, ``count``, ``set_expiry``… are derived by
``botmemory.backends.ops``), no ``BulkLoad`` (``restore`` is derived,
``replace_namespaces`` is refused and its test skipped), no ``Checkpoint``,
no ``DropAll``. It is what the README's "Testing your own backend" shows.
"""

from __future__ import annotations

import heapq
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

import botmemory
from botmemory.backends.base import (
    KEEP,
    PRIVATE_NS_PREFIX,
    Backend,
    BulkLoad,
    FastPaths,
    LockLease,
    Locks,
    MutateFn,
    Purged,
    Row,
)
from botmemory.errors import InvalidInputError, QuotaExceededError, StoreUnavailableError
from botmemory.runtime.metrics import MeteredBackend, TurnStats, current_turn
from botmemory.testing import FakeClock
from botmemory.testing.backends import open_test_store, register_test_backend
from botmemory.testing.contract import BulkLoadContract, ConcurrencyContract, ContractSuite, LocksContract


def _live(row: Row | None, now: float) -> Row | None:
    return row if row is not None and (row.expires_at is None or row.expires_at > now) else None


class DictBackend(Backend):
    """Rows in a dict of dicts; every method runs without awaiting, so each is atomic."""

    name = "dict"
    loop_bound = False

    def __init__(self) -> None:
        self._data: dict[str, dict[str, Row]] | None = {}

    def _ns(self, ns: str) -> dict[str, Row]:
        if self._data is None:
            raise StoreUnavailableError("the dict store is closed")
        return self._data.setdefault(ns, {})

    async def get_many(self, ns: str, keys: Sequence[str], now: float) -> list[Row]:
        rows = self._ns(ns)
        return [row for key in dict.fromkeys(keys) if (row := _live(rows.get(key), now)) is not None]

    async def scan(
        self, ns: str, prefix: str, after: str | None, limit: int, now: float, *, expired: bool = False
    ) -> list[str]:
        rows = [r for k, r in self._ns(ns).items() if k.startswith(prefix)]
        if expired:
            gone = [r for r in rows if r.expires_at is not None and r.expires_at <= now]
            return [r.key for r in heapq.nsmallest(limit, gone, key=lambda r: (r.expires_at, r.key))]
        keys = sorted(r.key for r in rows if _live(r, now) is not None and (after is None or r.key > after))
        return keys[:limit]

    async def namespaces(self) -> list[str]:
        if self._data is None:
            raise StoreUnavailableError("the dict store is closed")
        return sorted(ns for ns, rows in self._data.items() if rows)

    def _check_quota(self, ns: str, new: int, now: float, max_keys: int | None) -> None:
        live = sum(1 for r in self._ns(ns).values() if _live(r, now) is not None)
        if max_keys is not None and new and live + new > max_keys:
            raise QuotaExceededError(f"{ns!r} would hold more than {max_keys} keys")

    async def mutate(self, ns: str, key: str, fn: MutateFn, now: float, max_keys: int | None) -> int | None:
        rows = self._ns(ns)
        current = _live(rows.get(key), now)
        mutation = fn(current)
        if mutation is None:
            return None
        expires = mutation.expires_at
        if expires is KEEP:
            expires = None if current is None else current.expires_at
        assert not isinstance(expires, type(KEEP))
        if not mutation.bump and current is not None:
            rows[key] = current._replace(expires_at=expires)
            return current.version
        if current is None:
            self._check_quota(ns, 1, now, max_keys)
        version = 1 if current is None else current.version + 1
        rows[key] = Row(key, mutation.value, version, expires, now)
        return version

    async def put_many(
        self, ns: str, items: Sequence[tuple[str, bytes]], expires_at: float | None, now: float, max_keys: int | None
    ) -> list[int]:
        rows = self._ns(ns)
        self._check_quota(ns, sum(1 for k in dict.fromkeys(k for k, _ in items) if _live(rows.get(k), now) is None),
                          now, max_keys)  # fmt: skip
        versions = []
        for key, value in items:
            current = _live(rows.get(key), now)
            versions.append(1 if current is None else current.version + 1)
            rows[key] = Row(key, value, versions[-1], expires_at, now)
        return versions

    async def delete(self, ns: str, keys: Sequence[str], now: float, *, prefix: str | None = None) -> int:
        rows = self._ns(ns)
        doomed = [k for k in rows if k.startswith(prefix)] if prefix is not None else list(dict.fromkeys(keys))
        return sum(_live(rows.pop(k, None), now) is not None for k in doomed)

    async def purge_expired(
        self, now: float, limit: int, ns: str | None = None, keep: Sequence[tuple[str, str]] = ()
    ) -> list[Purged]:
        if self._data is None:
            raise StoreUnavailableError("the dict store is closed")
        names = [n for n in self._data if not n.startswith(PRIVATE_NS_PREFIX)] if ns is None else [ns]
        expired = [
            Purged(n, r.key, r.expires_at)
            for n in names
            for r in self._ns(n).values()
            if r.expires_at is not None and r.expires_at <= now
            and not any(n == kept_ns and r.key.startswith(kept) for kept_ns, kept in keep)
        ]  # fmt: skip
        doomed = heapq.nsmallest(limit, expired, key=lambda p: p.expires_at)
        for p in doomed:
            del self._ns(p.namespace)[p.key]
        return doomed

    async def close(self) -> None:
        self._data = None


class LockingDictBackend(DictBackend):
    """``DictBackend`` with the ``Locks`` capability."""

    def __init__(self) -> None:
        super().__init__()
        self._locks: dict[str, LockLease] = {}
        self._fence = 0

    async def acquire_lock(self, name: str, owner: str, ttl: float, now: float) -> LockLease | None:
        held = self._locks.get(name)
        if held is not None and held.expires_at > now and held.owner != owner:
            return None
        if held is None or held.expires_at <= now or held.owner != owner:
            self._fence += 1
        lease = self._locks[name] = LockLease(name, owner, self._fence, now + ttl)
        return lease

    async def release_lock(self, name: str, owner: str) -> bool:
        held = self._locks.get(name)
        if held is None or held.owner != owner:
            return False
        del self._locks[name]
        return True


register_test_backend("dict", LockingDictBackend)


@pytest.fixture
def backend_name() -> str:
    return "dict"


@pytest.fixture
async def store(clock: FakeClock, tmp_path: Path) -> AsyncIterator[botmemory.Store]:
    async with open_test_store("dict", tmp_path, clock=clock) as s:
        yield s


def test_it_declares_locks_and_nothing_else() -> None:
    assert len(Backend.__abstractmethods__) <= 8
    backend = LockingDictBackend()
    assert isinstance(backend, Locks)
    assert not isinstance(backend, FastPaths) and not isinstance(backend, BulkLoad)
    assert not isinstance(DictBackend(), Locks)


async def test_the_runtime_needs_locks(store: botmemory.Store, clock: FakeClock, tmp_path: Path) -> None:
    runtime = await botmemory.Runtime.open(store, tmp_path)  # no bots: the lock check is what runs
    assert runtime.bots == {}
    without = botmemory.Store(DictBackend(), clock=clock)
    with pytest.raises(InvalidInputError, match="locks"):
        await botmemory.Runtime.open(without, tmp_path)


async def test_the_example_bot_runs_on_it(store: botmemory.Store) -> None:
    """The runtime needs nothing but the primitives and Locks: no TurnBatching, no FastPaths."""
    from botmemory.backends.base import TurnBatching

    assert not store.supports(TurnBatching)
    bots = Path(__file__).resolve().parents[1] / "bots"
    runtime = await botmemory.Runtime.open(store, bots, only=["example"])
    try:
        first = await runtime.converse("example", user_id="u1", text="hello")
        cid = first[0]["conversation_id"]
        await runtime.converse("example", user_id="u1", text="call me Ada", conversation_id=cid)
        replies = await runtime.converse("example", user_id="u1", text="echo 1", conversation_id=cid)
        assert replies and all(r["conversation_id"] == cid for r in replies)
        assert await store.bot("example").memory.user("u1").items()  # the user scope was written
        export = await store.bot("example").users.export("u1")
        assert cid in export["conversations"]
    finally:
        await runtime.close()


async def test_metering_wraps_the_one_store_and_keeps_its_capabilities(store: botmemory.Store) -> None:
    inner = store.backend
    metered = store.wrap_backend(MeteredBackend)
    assert store.wrap_backend(MeteredBackend) is metered and metered.inner is inner  # installed once
    assert store.supports(Locks) and not store.supports(FastPaths) and not store.supports(BulkLoad)
    kvs = store.bot("b").kvs
    await kvs.set("k", 1)  # outside a turn: passed through, not counted
    stats = TurnStats()
    token = current_turn.set(stats)
    try:
        assert await kvs.get("k") == 1
        assert await store.acquire_lock("l", "me", 10) is not None
    finally:
        current_turn.reset(token)
    assert stats.store_calls == 2


class TestContract(ContractSuite):
    pass


class TestConcurrency(ConcurrencyContract):
    pass


class TestWithoutLocks(LocksContract, BulkLoadContract):
    """The capability tests skip, rather than fail, for the lock-less ``DictBackend``."""

    @pytest.fixture
    async def store(self, clock: FakeClock) -> AsyncIterator[botmemory.Store]:
        s = botmemory.Store(DictBackend(), clock=clock)
        yield s
        await s.close()
