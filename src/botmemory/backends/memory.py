"""The in-process backend (``memory://``): dicts, for tests and notebooks.

Each primitive runs to completion without awaiting, so on one event loop it
is atomic; a lock makes it safe when several threads share one store.
"""

from __future__ import annotations

import bisect
import heapq
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import QuotaExceededError, StoreUnavailableError
from .base import KEEP, PRIVATE_NS_PREFIX, Backend, BatchWrite, Keep, LockLease, MutateFn, Purged, Row, check_moves

__all__ = ["MemoryBackend"]


class _Space:
    """One namespace: rows by key, plus a lazily sorted key list for scans."""

    __slots__ = ("rows", "sorted_keys")

    def __init__(self) -> None:
        self.rows: dict[str, Row] = {}
        self.sorted_keys: list[str] | None = []

    def ordered(self) -> list[str]:
        if self.sorted_keys is None:
            self.sorted_keys = sorted(self.rows)
        return self.sorted_keys


def _live(row: Row | None, now: float) -> Row | None:
    if row is None or (row.expires_at is not None and row.expires_at <= now):
        return None
    return row


class MemoryBackend(Backend):
    """Rows in dicts; nothing survives the process."""

    name = "memory"
    loop_bound = False

    def __init__(self) -> None:
        self._open_spaces: dict[str, _Space] = {}
        self._lock = threading.RLock()
        self._open_locks: dict[str, LockLease] = {}
        self._fence = 0
        self._closed = False

    # Every primitive reaches its data through these two properties, so a
    # closed store refuses work with StoreUnavailableError, as the other
    # backends do (behaviour differences between backends are bugs).
    @property
    def _spaces(self) -> dict[str, _Space]:
        if self._closed:
            raise StoreUnavailableError("the memory store is closed")
        return self._open_spaces

    @property
    def _locks(self) -> dict[str, LockLease]:
        if self._closed:
            raise StoreUnavailableError("the memory store is closed")
        return self._open_locks

    def _space(self, ns: str) -> _Space:
        space = self._spaces.get(ns)
        if space is None:
            space = self._spaces[ns] = _Space()
        return space

    def _count(self, space: _Space, now: float) -> int:
        return sum(1 for r in space.rows.values() if r.expires_at is None or r.expires_at > now)

    def _check_quota(self, space: _Space, ns: str, new: int, now: float, max_keys: int | None) -> None:
        if max_keys is not None and new and self._count(space, now) + new > max_keys:
            raise QuotaExceededError(f"{ns!r} would hold more than {max_keys} keys")

    def _store(self, space: _Space, row: Row) -> None:
        if row.key not in space.rows:
            space.sorted_keys = None
        space.rows[row.key] = row

    # -- reads -------------------------------------------------------------
    async def get(self, ns: str, key: str, now: float) -> Row | None:
        space = self._spaces.get(ns)
        return None if space is None else _live(space.rows.get(key), now)

    async def get_many(self, ns: str, keys: Sequence[str], now: float) -> list[Row]:
        space = self._spaces.get(ns)
        if space is None:
            return []
        out = []
        for key in keys:
            row = _live(space.rows.get(key), now)
            if row is not None:
                out.append(row)
        return out

    async def read_many(self, keys: Sequence[tuple[str, str]], now: float) -> list[tuple[str, Row]]:
        out = []
        for ns, key in keys:
            space = self._spaces.get(ns)
            row = None if space is None else _live(space.rows.get(key), now)
            if row is not None:
                out.append((ns, row))
        return out

    async def acquire_and_read(
        self, name: str, owner: str, ttl: float, keys: Sequence[tuple[str, str]], now: float
    ) -> tuple[LockLease | None, list[tuple[str, Row]]]:
        with self._lock:  # neither call suspends: one atomic step
            lease = await self.acquire_lock(name, owner, ttl, now)
            return (None, []) if lease is None else (lease, await self.read_many(keys, now))
    async def scan(
        self, ns: str, prefix: str, after: str | None, limit: int, now: float, *, expired: bool = False
    ) -> list[str]:
        if expired:
            return [row.key for row in await self.scan_expired(ns, prefix, now, limit)]
        with self._lock:
            space = self._spaces.get(ns)
            if space is None:
                return []
            ordered = space.ordered()
            start = prefix if after is None or after < prefix else after
            if after is not None and start == after:
                i = bisect.bisect_right(ordered, start)
            else:
                i = bisect.bisect_left(ordered, start)
            out: list[str] = []
            while i < len(ordered) and len(out) < limit:
                key = ordered[i]
                if not key.startswith(prefix):
                    break
                if _live(space.rows.get(key), now) is not None:
                    out.append(key)
                i += 1
            return out

    async def count(self, ns: str, now: float) -> int:
        space = self._spaces.get(ns)
        return 0 if space is None else self._count(space, now)

    async def namespaces(self) -> list[str]:
        return sorted(ns for ns, s in self._spaces.items() if s.rows)

    # -- writes ------------------------------------------------------------
    async def mutate(self, ns: str, key: str, fn: MutateFn, now: float, max_keys: int | None) -> int | None:
        with self._lock:
            space = self._space(ns)
            current = _live(space.rows.get(key), now)
            mutation = fn(current)
            if mutation is None:
                return None
            if current is None:
                self._check_quota(space, ns, 1, now, max_keys)
            expires = mutation.expires_at
            if isinstance(expires, Keep):
                expires = current.expires_at if current is not None else None
            if not mutation.bump and current is not None:
                space.rows[key] = current._replace(expires_at=expires)
                return current.version
            version = 1 if current is None else current.version + 1
            self._store(space, Row(key, mutation.value, version, expires, now))
            return version

    async def put(self, ns: str, key: str, value: bytes, expires_at: Any, now: float, max_keys: int | None) -> int:
        with self._lock:
            space = self._space(ns)
            current = _live(space.rows.get(key), now)
            if current is None:
                self._check_quota(space, ns, 1, now, max_keys)
                version = 1
                if expires_at is KEEP:
                    expires_at = None
            else:
                version = current.version + 1
                if expires_at is KEEP:
                    expires_at = current.expires_at
            self._store(space, Row(key, value, version, expires_at, now))
            return version

    async def write_batch(self, writes: Sequence[BatchWrite], now: float, release: tuple[str, str] | None) -> bool:
        with self._lock:
            current = []
            for w in writes:
                space = self._space(w.ns)
                row = _live(space.rows.get(w.key), now)
                if (0 if row is None else row.version) != w.expected:
                    return False
                current.append((space, row))
            for w, (space, row) in zip(writes, current, strict=True):
                expires = w.expires_at
                if isinstance(expires, Keep):
                    expires = None if row is None else row.expires_at
                self._store(space, Row(w.key, w.value, w.version, expires, now))
            if release is not None:
                held = self._locks.get(release[0])
                if held is not None and held.owner == release[1]:
                    del self._locks[release[0]]
            return True

    async def put_many(
        self, ns: str, items: Sequence[tuple[str, bytes]], expires_at: float | None, now: float, max_keys: int | None
    ) -> list[int]:
        with self._lock:
            space = self._space(ns)
            current = {k: _live(space.rows.get(k), now) for k, _ in items}
            self._check_quota(space, ns, sum(1 for r in current.values() if r is None), now, max_keys)
            versions = []
            for key, value in items:
                cur = current[key]
                version = 1 if cur is None else cur.version + 1
                row = Row(key, value, version, expires_at, now)
                current[key] = row
                self._store(space, row)
                versions.append(version)
            return versions

    async def restore(self, ns: str, rows: Sequence[Row]) -> None:
        with self._lock:
            space = self._space(ns)
            for row in rows:
                self._store(space, Row(*row))

    async def replace_namespaces(self, moves: Mapping[str, str | None]) -> None:
        pairs = check_moves(moves)
        with self._lock:  # no await inside: atomic for this loop, and the lock for other threads
            spaces = self._spaces
            for target, source in pairs:
                moved = spaces.pop(source, None) if source is not None else None
                if moved is None:
                    spaces.pop(target, None)
                else:
                    spaces[target] = moved

    async def delete(self, ns: str, keys: Sequence[str], now: float, *, prefix: str | None = None) -> int:
        if prefix is not None:
            return await self.delete_prefix(ns, prefix, now)
        with self._lock:
            space = self._spaces.get(ns)
            if space is None:
                return 0
            live = 0
            for key in keys:
                row = space.rows.pop(key, None)
                if row is not None:
                    space.sorted_keys = None
                    live += _live(row, now) is not None
            return live

    async def delete_prefix(self, ns: str, prefix: str, now: float) -> int:
        with self._lock:
            space = self._spaces.get(ns)
            if space is None:
                return 0
            doomed = [k for k in space.rows if k.startswith(prefix)]
            return await self.delete(ns, doomed, now)

    async def set_expiry(self, ns: str, key: str, expires_at: float | None, now: float) -> bool:
        with self._lock:
            space = self._spaces.get(ns)
            row = None if space is None else _live(space.rows.get(key), now)
            if row is None or space is None:
                return False
            if expires_at is None and row.expires_at is None:
                return False
            space.rows[key] = row._replace(expires_at=expires_at)
            return True

    async def purge_expired(
        self, now: float, limit: int, ns: str | None = None, keep: Sequence[tuple[str, str]] = ()
    ) -> list[Purged]:
        kept: dict[str, tuple[str, ...]] = {}
        for kept_ns, kept_prefix in keep:
            kept[kept_ns] = (*kept.get(kept_ns, ()), kept_prefix)
        with self._lock:
            spaces = (
                [(n, s) for n, s in self._spaces.items() if not n.startswith(PRIVATE_NS_PREFIX)]
                if ns is None
                else [(ns, self._spaces.get(ns) or _Space())]
            )
            expired = (
                Purged(name, row.key, row.expires_at)
                for name, space in spaces
                for row in space.rows.values()
                if row.expires_at is not None
                and row.expires_at <= now
                and not (name in kept and row.key.startswith(kept[name]))
            )
            doomed = heapq.nsmallest(limit, expired, key=lambda p: p.expires_at)
            for p in doomed:
                space = self._spaces[p.namespace]
                del space.rows[p.key]
                space.sorted_keys = None
            return doomed

    async def scan_expired(self, ns: str, prefix: str, now: float, limit: int) -> list[Row]:
        with self._lock:
            space = self._spaces.get(ns)
            if space is None:
                return []
            rows = (
                r
                for r in space.rows.values()
                if r.expires_at is not None and r.expires_at <= now and r.key.startswith(prefix)
            )
            return heapq.nsmallest(limit, rows, key=lambda r: (r.expires_at, r.key))

    # -- locks -------------------------------------------------------------
    async def acquire_lock(self, name: str, owner: str, ttl: float, now: float) -> LockLease | None:
        with self._lock:
            held = self._locks.get(name)
            if held is not None and held.owner != owner and held.expires_at > now:
                return None
            if held is not None and held.owner == owner and held.expires_at > now:
                token = held.token
            else:
                self._fence += 1
                token = self._fence
            lease = LockLease(name, owner, token, now + ttl)
            self._locks[name] = lease
            return lease

    async def release_lock(self, name: str, owner: str) -> bool:
        with self._lock:
            held = self._locks.get(name)
            if held is None or held.owner != owner:
                return False
            del self._locks[name]
            return True

    async def drop_everything(self) -> None:
        """Forget every row and lock."""
        with self._lock:
            self._spaces.clear()
            self._locks.clear()

    async def close(self) -> None:
        self._closed = True


async def open_backend(url: str, **options: Any) -> MemoryBackend:
    """``memory://`` exactly: a new, empty store (``create`` is accepted: there is nothing to find)."""
    from ..errors import InvalidInputError

    options.pop("create", None)
    if options:
        raise InvalidInputError(f"memory:// takes no options, got {sorted(options)}")
    rest = url.split("://", 1)[1]
    if rest:
        # a host, path or query would be silently ignored: say so instead
        raise InvalidInputError(f"bad memory URL {url!r}: write memory:// with nothing after it")
    return MemoryBackend()
