"""The small interface every backend implements.

Backends store opaque rows ``(namespace, key) -> (value bytes, version,
expires_at, modified_at)`` and know nothing of JSON, paths, users or flows:
the KVS layer (``botmemory.kvs``) validates and encodes, then calls these
primitives. Every primitive takes ``now`` (epoch seconds from the store's
clock) and treats a row with ``expires_at <= now`` as absent: it is never
returned, counted or listed, and a write to it starts over at version 1.

Each backend translates its driver's exceptions into ``StoreError``
subclasses in one place (its ``_translate`` seam).
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

__all__ = [
    "KEEP",
    "PRIVATE_NS_PREFIX",
    "Backend",
    "Keep",
    "LockLease",
    "Mutation",
    "Purged",
    "Row",
    "keep_cancellation",
]


@contextlib.contextmanager
def keep_cancellation() -> Iterator[None]:
    """Around a driver call: a cancellation of the calling task is never lost.

    Python 3.11's ``asyncio.wait_for``, which redis-py (socket I/O) and
    psycopg_pool (waiting for a connection) use, returns or raises as if
    nothing happened when the task is cancelled just as the awaited
    operation completes (fixed in 3.12). The task then goes on, and a loop
    such as the janitor's never stops. If a cancellation was requested during
    the block (``Task.cancelling()`` grew), it is delivered on the way out.
    """
    task = asyncio.current_task()
    before = task.cancelling() if task is not None else 0
    try:
        yield
    finally:
        if task is not None and task.cancelling() > before:
            raise asyncio.CancelledError


#: Namespaces starting with this hold runtime state (sessions, links) that
#: its owner expires itself: ``purge_expired(ns=None)`` leaves them alone, so
#: a timed-out session is ended (hooks run, variables discarded) by the
#: runtime's janitor instead of silently vanishing.
PRIVATE_NS_PREFIX: Final = "__rt/"


class Keep:
    """Sentinel type: keep the row's current expiry."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "KEEP"


KEEP: Final = Keep()


class Row(NamedTuple):
    """A live stored entry as a backend returns it."""

    key: str
    value: bytes
    version: int
    expires_at: float | None
    modified_at: float


@dataclass(frozen=True, slots=True)
class Mutation:
    """What a ``mutate`` callback asks the backend to write.

    ``expires_at`` is an absolute epoch time, ``None`` for no expiry, or
    ``KEEP`` to keep the current row's expiry (none for a new row).
    """

    value: bytes
    expires_at: float | Keep | None = KEEP


class Purged(NamedTuple):
    """One row deleted by ``purge_expired``."""

    namespace: str
    key: str
    expires_at: float


class LockLease(NamedTuple):
    """A held lock: ``token`` is a fencing token that grows with every grant."""

    name: str
    owner: str
    token: int
    expires_at: float


MutateFn = Callable[[Row | None], Mutation | None]
"""Called with the live row (or None); returns what to write, or None for no write.

It may be called more than once (optimistic backends retry), so it must not
have side effects; it may raise to abort without writing anything.
"""


def _constant(mutation: Mutation) -> MutateFn:
    return lambda _row: mutation


class Backend(ABC):
    """Primitives a storage engine provides; the KVS derives the rest."""

    #: the URL scheme, for messages
    name: str = "backend"
    #: whether the backend may only be used from the event loop that opened
    #: it (connection pools are); the sync facade then keeps to that loop
    loop_bound: bool = True

    # -- reads -------------------------------------------------------------
    @abstractmethod
    async def get(self, ns: str, key: str, now: float) -> Row | None:
        """The live row, or None when missing or expired."""

    @abstractmethod
    async def get_many(self, ns: str, keys: Sequence[str], now: float) -> list[Row]:
        """Live rows among ``keys`` (any order; missing and expired left out)."""

    @abstractmethod
    async def scan(
        self, ns: str, prefix: str, after: str | None, limit: int, now: float
    ) -> list[str]:
        """Up to ``limit`` live keys starting with the literal ``prefix``.

        Ordered by code point; only keys strictly greater than ``after``.
        """

    @abstractmethod
    async def count(self, ns: str, now: float) -> int:
        """Number of live keys in ``ns``."""

    @abstractmethod
    async def namespaces(self) -> list[str]:
        """Every namespace that holds rows (live or not), sorted."""

    # -- writes ------------------------------------------------------------
    @abstractmethod
    async def mutate(
        self, ns: str, key: str, fn: MutateFn, now: float, max_keys: int | None
    ) -> int | None:
        """Atomic read-modify-write of one key.

        Reads the live row, calls ``fn``, writes what it returns (version =
        old + 1, or 1 for a new/expired row; ``modified_at = now``) and
        returns the new version; returns None when ``fn`` returns None.
        With ``max_keys`` set, creating a key when ``count(ns) >= max_keys``
        raises ``QuotaExceededError``. Exceptions from ``fn`` propagate and
        nothing is written.
        """

    async def put(
        self,
        ns: str,
        key: str,
        value: bytes,
        expires_at: float | Keep | None,
        now: float,
        max_keys: int | None,
    ) -> int:
        """Upsert; returns the new version. Backends override this for speed."""
        mutation = Mutation(value, expires_at)
        version = await self.mutate(ns, key, lambda _row: mutation, now, max_keys)
        assert version is not None
        return version

    @abstractmethod
    async def put_many(
        self,
        ns: str,
        items: Sequence[tuple[str, bytes]],
        expires_at: float | None,
        now: float,
        max_keys: int | None,
    ) -> list[int]:
        """Upsert several keys all-or-nothing; versions in the order given."""

    async def restore(self, ns: str, rows: Sequence[Row]) -> None:
        """Write rows exactly as given: value, version, expires_at and modified_at.

        For ``botmemory load``, which must reproduce another store's entries
        byte for byte; existing rows with the same keys are overwritten, no
        quota applies. This default works on any backend through ``delete``
        and ``mutate`` but costs ``version`` writes per row and is not atomic:
        backends override it with one transaction per call.
        """
        for row in rows:
            # mutate stamps modified_at with ``now``: pass the row's own, and
            # write placeholders until the version counter reaches the row's.
            await self.delete(ns, [row.key], row.modified_at)
            placeholder = _constant(Mutation(b"null", None))
            for _ in range(row.version - 1):
                await self.mutate(ns, row.key, placeholder, row.modified_at, None)
            await self.mutate(ns, row.key, _constant(Mutation(row.value, row.expires_at)), row.modified_at, None)

    @abstractmethod
    async def delete(self, ns: str, keys: Sequence[str], now: float) -> int:
        """Delete keys (live or expired); returns how many were live."""

    @abstractmethod
    async def delete_prefix(self, ns: str, prefix: str, now: float) -> int:
        """Delete every key under the literal prefix ("" = all of ``ns``).

        Returns how many of them were live.
        """

    @abstractmethod
    async def set_expiry(
        self, ns: str, key: str, expires_at: float | None, now: float
    ) -> bool:
        """Change the expiry of a live key without touching version or modified_at.

        With ``expires_at=None`` (persist) returns False when the key is
        missing or had no expiry; otherwise False only when missing.
        """

    @abstractmethod
    async def purge_expired(
        self, now: float, limit: int, ns: str | None = None, keep: Sequence[tuple[str, str]] = ()
    ) -> list[Purged]:
        """Delete up to ``limit`` expired rows, oldest first.

        With ``ns=None``: of every namespace except those starting with
        ``PRIVATE_NS_PREFIX``; otherwise of ``ns`` only. Rows under any
        ``(namespace, literal key prefix)`` pair of ``keep`` are left alone
        (legal hold: a held user's expired data must survive); match them
        with a range test, never LIKE. An empty prefix keeps the whole
        namespace.
        """

    @abstractmethod
    async def scan_expired(
        self, ns: str, prefix: str, now: float, limit: int
    ) -> list[Row]:
        """Up to ``limit`` expired rows under ``prefix``, oldest deadline first (not deleted)."""

    # -- locks -------------------------------------------------------------
    @abstractmethod
    async def acquire_lock(
        self, name: str, owner: str, ttl: float, now: float
    ) -> LockLease | None:
        """Take (or renew, for the same owner) the named lock until ``now + ttl``.

        Returns None while another owner holds an unexpired lease.
        """

    @abstractmethod
    async def release_lock(self, name: str, owner: str) -> bool:
        """Release the lock if ``owner`` still holds it."""

    # -- lifecycle ---------------------------------------------------------
    async def ping(self) -> None:  # noqa: B027 - optional hook, no-op by default
        """Raise ``StoreUnavailableError`` when the backend cannot be reached."""

    @abstractmethod
    async def close(self) -> None:
        """Release connections and threads; idempotent."""

    def describe(self) -> dict[str, Any]:
        """A few facts for status output (no secrets)."""
        return {"backend": self.name}
