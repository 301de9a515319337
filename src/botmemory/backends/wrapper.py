"""A backend around another one: the eight primitives by delegation, and its capabilities.

``BackendWrapper`` subclasses override ``_call`` to act around every call
(the runtime's metering does). ``wrap(cls, inner)`` makes an instance of
``cls`` that also declares each capability ``inner`` has (and only those),
so ``isinstance(wrapper, Locks)`` answers as for ``inner``::

    metered = wrap(MeteredBackend, store_backend)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

from .base import (
    Backend,
    BatchWrite,
    BulkLoad,
    Checkpoint,
    DropAll,
    FastPaths,
    Keep,
    LockLease,
    Locks,
    MutateFn,
    Purged,
    Row,
    TurnBatching,
)

__all__ = ["BackendWrapper", "wrap"]

T = TypeVar("T")
W = TypeVar("W", bound="BackendWrapper")


class BackendWrapper(Backend):
    """Every primitive delegated to ``inner`` through ``_call``."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.name = inner.name
        self.loop_bound = inner.loop_bound

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.inner!r}>"

    async def _call(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """Await ``fn(*args, **kwargs)``: override to act around every call."""
        return await fn(*args, **kwargs)

    async def get_many(self, ns: str, keys: Sequence[str], now: float) -> list[Row]:
        return await self._call(self.inner.get_many, ns, keys, now)

    async def scan(
        self, ns: str, prefix: str, after: str | None, limit: int, now: float, *, expired: bool = False
    ) -> list[str]:
        return await self._call(self.inner.scan, ns, prefix, after, limit, now, expired=expired)

    async def namespaces(self) -> list[str]:
        return await self._call(self.inner.namespaces)

    async def mutate(self, ns: str, key: str, fn: MutateFn, now: float, max_keys: int | None) -> int | None:
        return await self._call(self.inner.mutate, ns, key, fn, now, max_keys)

    async def put_many(
        self, ns: str, items: Sequence[tuple[str, bytes]], expires_at: float | None, now: float, max_keys: int | None
    ) -> list[int]:
        return await self._call(self.inner.put_many, ns, items, expires_at, now, max_keys)

    async def delete(self, ns: str, keys: Sequence[str], now: float, *, prefix: str | None = None) -> int:
        return await self._call(self.inner.delete, ns, keys, now, prefix=prefix)

    async def purge_expired(
        self, now: float, limit: int, ns: str | None = None, keep: Sequence[tuple[str, str]] = ()
    ) -> list[Purged]:
        return await self._call(self.inner.purge_expired, now, limit, ns, keep)

    async def close(self) -> None:
        await self.inner.close()

    async def ping(self) -> None:
        await self.inner.ping()

    def describe(self) -> dict[str, Any]:
        return self.inner.describe()


# One mixin per capability: wrap() adds those the inner backend declares.


class _FastPaths(BackendWrapper):
    inner: Any

    async def get(self, ns: str, key: str, now: float) -> Row | None:
        return await self._call(self.inner.get, ns, key, now)

    async def put(
        self, ns: str, key: str, value: bytes, expires_at: float | Keep | None, now: float, max_keys: int | None
    ) -> int:
        return await self._call(self.inner.put, ns, key, value, expires_at, now, max_keys)

    async def count(self, ns: str, now: float) -> int:
        return await self._call(self.inner.count, ns, now)

    async def set_expiry(self, ns: str, key: str, expires_at: float | None, now: float) -> bool:
        return await self._call(self.inner.set_expiry, ns, key, expires_at, now)

    async def delete_prefix(self, ns: str, prefix: str, now: float) -> int:
        return await self._call(self.inner.delete_prefix, ns, prefix, now)

    async def scan_expired(self, ns: str, prefix: str, now: float, limit: int) -> list[Row]:
        return await self._call(self.inner.scan_expired, ns, prefix, now, limit)


class _Locks(BackendWrapper):
    inner: Any

    async def acquire_lock(self, name: str, owner: str, ttl: float, now: float) -> LockLease | None:
        return await self._call(self.inner.acquire_lock, name, owner, ttl, now)

    async def release_lock(self, name: str, owner: str) -> bool:
        return await self._call(self.inner.release_lock, name, owner)


class _BulkLoad(BackendWrapper):
    inner: Any

    async def restore(self, ns: str, rows: Sequence[Row]) -> None:
        await self._call(self.inner.restore, ns, rows)

    async def replace_namespaces(self, moves: Mapping[str, str | None]) -> None:
        await self._call(self.inner.replace_namespaces, moves)


class _Checkpoint(BackendWrapper):
    inner: Any

    async def checkpoint(self) -> None:
        await self._call(self.inner.checkpoint)


class _TurnBatching(BackendWrapper):
    inner: Any

    async def read_many(self, keys: Sequence[tuple[str, str]], now: float) -> list[tuple[str, Row]]:
        return await self._call(self.inner.read_many, keys, now)

    async def acquire_and_read(
        self, name: str, owner: str, ttl: float, keys: Sequence[tuple[str, str]], now: float
    ) -> tuple[LockLease | None, list[tuple[str, Row]]]:
        return await self._call(self.inner.acquire_and_read, name, owner, ttl, keys, now)

    async def write_batch(self, writes: Sequence[BatchWrite], now: float, release: tuple[str, str] | None) -> bool:
        return await self._call(self.inner.write_batch, writes, now, release)


class _DropAll(BackendWrapper):
    inner: Any

    async def drop_everything(self) -> None:
        await self._call(self.inner.drop_everything)


_MIXINS: tuple[tuple[type, type[BackendWrapper]], ...] = (
    (FastPaths, _FastPaths),
    (Locks, _Locks),
    (BulkLoad, _BulkLoad),
    (Checkpoint, _Checkpoint),
    (DropAll, _DropAll),
    (TurnBatching, _TurnBatching),
)
_classes: dict[tuple[type[BackendWrapper], tuple[type, ...]], type[BackendWrapper]] = {}


def wrap(cls: type[W], inner: Backend) -> W:
    """An instance of ``cls`` around ``inner`` that declares exactly the capabilities ``inner`` has."""
    mixins = tuple(mixin for protocol, mixin in _MIXINS if isinstance(inner, protocol))
    made = _classes.get((cls, mixins))
    if made is None:
        made = _classes[(cls, mixins)] = type(cls.__name__, (cls, *mixins), {"__module__": cls.__module__})
    return made(inner)  # type: ignore[return-value]
