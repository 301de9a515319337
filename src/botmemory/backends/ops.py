"""Every operation the store needs, derived once from a backend's eight primitives.

``operations(backend)`` is the backend itself when it declares the
``FastPaths`` capability, else ``Derived(backend)``, which implements those
operations with the ``Backend`` primitives only (the functions below). The
KVS calls ``ops.get(...)``, ``ops.put(...)`` on it, exactly as it would call
the backend's own methods, so the hot paths cost what they cost before.

The capabilities that cannot be derived (``Locks``, ``Checkpoint``,
``DropAll``, the atomic half of ``BulkLoad``) are checked by the store with
``isinstance``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final, Protocol, cast

from .base import Backend, FastPaths, Keep, MutateFn, Mutation, Purged, Row

__all__ = [
    "Derived",
    "Ops",
    "count",
    "delete_prefix",
    "get",
    "operations",
    "put",
    "restore",
    "scan_expired",
    "set_expiry",
]

_PAGE: Final = 1000
_ALL_ROWS: Final = float("-inf")  # a ``now`` before every deadline: get_many returns expired rows too


def _constant(mutation: Mutation) -> Callable[[Row | None], Mutation]:
    return lambda _row: mutation


async def get(backend: Backend, ns: str, key: str, now: float) -> Row | None:
    """The live row of ``key``, or None."""
    rows = await backend.get_many(ns, (key,), now)
    return rows[0] if rows else None


async def put(
    backend: Backend, ns: str, key: str, value: bytes, expires_at: float | Keep | None, now: float, max_keys: int | None
) -> int:
    """Upsert one key; returns the new version."""
    mutation = Mutation(value, expires_at)
    version = await backend.mutate(ns, key, lambda _row: mutation, now, max_keys)
    assert version is not None
    return version


async def count(backend: Backend, ns: str, now: float) -> int:
    """The number of live keys of ``ns`` (a scan, page by page)."""
    total, after = 0, None
    while True:
        page = await backend.scan(ns, "", after, _PAGE, now)
        total += len(page)
        if len(page) < _PAGE:
            return total
        after = page[-1]


async def set_expiry(backend: Backend, ns: str, key: str, expires_at: float | None, now: float) -> bool:
    """Change a live key's expiry, version and ``modified_at`` unchanged (see ``FastPaths.set_expiry``)."""

    def change(row: Row | None) -> Mutation | None:
        if row is None or (expires_at is None and row.expires_at is None):
            return None
        return Mutation(row.value, expires_at, bump=False)

    return await backend.mutate(ns, key, change, now, None) is not None


async def delete_prefix(backend: Backend, ns: str, prefix: str, now: float) -> int:
    """Delete every key under the literal ``prefix``; how many were live."""
    return await backend.delete(ns, (), now, prefix=prefix)


async def scan_expired(backend: Backend, ns: str, prefix: str, now: float, limit: int) -> list[Row]:
    """Up to ``limit`` expired rows under ``prefix``, oldest deadline first, not deleted."""
    keys = await backend.scan(ns, prefix, None, limit, now, expired=True)
    if not keys:
        return []
    # get_many at a ``now`` before every deadline returns the expired rows
    # too; a row rewritten in between (live again) is left out.
    rows = {
        r.key: r
        for r in await backend.get_many(ns, keys, _ALL_ROWS)
        if r.expires_at is not None and r.expires_at <= now
    }
    return [rows[k] for k in keys if k in rows]


async def restore(backend: Backend, ns: str, rows: Sequence[Row]) -> None:
    """Write rows as given (value, version, expiry, modified_at) with the primitives.

    The fallback of ``BulkLoad.restore``: costs ``version`` writes per row
    and is not atomic.
    """
    for row in rows:
        # mutate stamps modified_at with ``now``: pass the row's own, and
        # write placeholders until the version counter reaches the row's.
        await backend.delete(ns, [row.key], row.modified_at)
        for _ in range(row.version - 1):
            await backend.mutate(ns, row.key, _constant(Mutation(b"null", None)), row.modified_at, None)
        await backend.mutate(ns, row.key, _constant(Mutation(row.value, row.expires_at)), row.modified_at, None)


class Ops(FastPaths, Protocol):
    """What the KVS calls: the primitives and the ``FastPaths`` operations (a backend with both, or ``Derived``)."""

    name: str

    async def get_many(self, ns: str, keys: Sequence[str], now: float) -> list[Row]: ...

    async def scan(
        self, ns: str, prefix: str, after: str | None, limit: int, now: float, *, expired: bool = False
    ) -> list[str]: ...

    async def namespaces(self) -> list[str]: ...

    async def mutate(self, ns: str, key: str, fn: MutateFn, now: float, max_keys: int | None) -> int | None: ...

    async def put_many(
        self, ns: str, items: Sequence[tuple[str, bytes]], expires_at: float | None, now: float, max_keys: int | None
    ) -> list[int]: ...

    async def delete(self, ns: str, keys: Sequence[str], now: float, *, prefix: str | None = None) -> int: ...

    async def purge_expired(
        self, now: float, limit: int, ns: str | None = None, keep: Sequence[tuple[str, str]] = ()
    ) -> list[Purged]: ...


class Derived:
    """``Ops`` over a backend without ``FastPaths``: primitives passed on, the rest derived."""

    __slots__ = ("backend", "name")

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.name = backend.name

    async def get_many(self, ns: str, keys: Sequence[str], now: float) -> list[Row]:
        return await self.backend.get_many(ns, keys, now)

    async def scan(
        self, ns: str, prefix: str, after: str | None, limit: int, now: float, *, expired: bool = False
    ) -> list[str]:
        return await self.backend.scan(ns, prefix, after, limit, now, expired=expired)

    async def namespaces(self) -> list[str]:
        return await self.backend.namespaces()

    async def mutate(self, ns: str, key: str, fn: MutateFn, now: float, max_keys: int | None) -> int | None:
        return await self.backend.mutate(ns, key, fn, now, max_keys)

    async def put_many(
        self, ns: str, items: Sequence[tuple[str, bytes]], expires_at: float | None, now: float, max_keys: int | None
    ) -> list[int]:
        return await self.backend.put_many(ns, items, expires_at, now, max_keys)

    async def delete(self, ns: str, keys: Sequence[str], now: float, *, prefix: str | None = None) -> int:
        return await self.backend.delete(ns, keys, now, prefix=prefix)

    async def purge_expired(
        self, now: float, limit: int, ns: str | None = None, keep: Sequence[tuple[str, str]] = ()
    ) -> list[Purged]:
        return await self.backend.purge_expired(now, limit, ns, keep)

    async def get(self, ns: str, key: str, now: float) -> Row | None:
        return await get(self.backend, ns, key, now)

    async def put(
        self, ns: str, key: str, value: bytes, expires_at: float | Keep | None, now: float, max_keys: int | None
    ) -> int:
        return await put(self.backend, ns, key, value, expires_at, now, max_keys)

    async def count(self, ns: str, now: float) -> int:
        return await count(self.backend, ns, now)

    async def set_expiry(self, ns: str, key: str, expires_at: float | None, now: float) -> bool:
        return await set_expiry(self.backend, ns, key, expires_at, now)

    async def delete_prefix(self, ns: str, prefix: str, now: float) -> int:
        return await delete_prefix(self.backend, ns, prefix, now)

    async def scan_expired(self, ns: str, prefix: str, now: float, limit: int) -> list[Row]:
        return await scan_expired(self.backend, ns, prefix, now, limit)


def operations(backend: Backend) -> Ops:
    """``backend`` itself when it declares ``FastPaths``, else ``Derived(backend)``."""
    return cast(Ops, backend) if isinstance(backend, FastPaths) else Derived(backend)
