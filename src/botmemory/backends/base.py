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

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, NamedTuple, Protocol, runtime_checkable

__all__ = [
    "KEEP",
    "PRIVATE_NS_PREFIX",
    "Backend",
    "BatchWrite",
    "Keep",
    "LockLease",
    "Mutation",
    "Purged",
    "Row",
    "TurnBatching",
    "check_moves",
]


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


class BatchWrite(NamedTuple):
    """One row of a ``write_batch``: written only if the key is still at ``expected``.

    ``expected`` is the live version the key must have when the batch runs
    (0: missing or expired); ``version`` is the version to store (the caller
    knows it: ``expected`` plus the writes it folded into this one).
    ``expires_at`` is absolute, None for none, or ``KEEP`` (the live row's
    expiry; none when ``expected`` is 0).
    """

    ns: str
    key: str
    value: bytes
    expires_at: float | Keep | None
    version: int
    expected: int


MutateFn = Callable[[Row | None], Mutation | None]
"""Called with the live row (or None); returns what to write, or None for no write.

It may be called more than once (optimistic backends retry), so it must not
have side effects; it may raise to abort without writing anything.
"""


def _constant(mutation: Mutation) -> MutateFn:
    return lambda _row: mutation


def check_moves(moves: Mapping[str, str | None]) -> list[tuple[str, str | None]]:
    """The ``replace_namespaces`` moves as a list, refused when a namespace is used twice.

    Raises:
        InvalidInputError: a namespace is both a source and a target, or a source twice.
    """
    from ..errors import InvalidInputError

    pairs = list(moves.items())
    sources = [source for _, source in pairs if source is not None]
    if len(set(sources)) != len(sources) or set(sources) & set(moves):
        raise InvalidInputError("replace_namespaces: a namespace may appear once, as a source or as a target")
    return pairs


@runtime_checkable
class TurnBatching(Protocol):
    """Optional capability: a runtime turn's reads and writes in one round trip each.

    The runtime reads what a turn needs from several namespaces at once, and
    writes what the turn changed as one compare-and-set batch that also
    gives back the conversation's lease. Backends without it get one call
    per read and write (the runtime checks with ``isinstance``).
    """

    async def read_many(self, keys: Sequence[tuple[str, str]], now: float) -> list[tuple[str, Row]]:
        """Live rows among ``(namespace, key)`` pairs, as ``(namespace, row)`` (any order)."""

    async def acquire_and_read(
        self, name: str, owner: str, ttl: float, keys: Sequence[tuple[str, str]], now: float
    ) -> tuple[LockLease | None, list[tuple[str, Row]]]:
        """``acquire_lock`` and, when granted, ``read_many`` right after it, in one round trip.

        The rows are read after the lock is taken, so they include every
        write its previous holder made before releasing it. Not granted:
        ``(None, [])``.
        """

    async def write_batch(self, writes: Sequence[BatchWrite], now: float, release: tuple[str, str] | None) -> bool:
        """All of ``writes`` (distinct keys) atomically, or none if a key is not at its ``expected`` version.

        ``modified_at`` is ``now``; no quota is checked (the runtime batches
        only rows that exist or live in quota-free namespaces). With
        ``release = (lock name, owner)`` the lock is released in the same
        atomic step when the writes are made (if the owner still holds it).

        Returns:
            True when written (and released); False, with nothing changed, on a version mismatch.
        """


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

    async def replace_namespaces(self, moves: Mapping[str, str | None]) -> None:
        """Make each target namespace hold exactly what its source held, all targets in one atomic step.

        ``moves`` maps a target namespace to a source namespace (or to None:
        the target is emptied). Every row of a target is deleted and every
        row of its source, live or expired, is moved to the target with its
        value, version, expiry and modification time; the sources are left
        empty. Either every move happens or none does, also when the process
        is killed or the connection drops midway: ``botmemory load`` stages
        a dump in private namespaces, then swaps them in with this (and
        removes its progress record in the same step).

        An optional capability: the built-in backends implement it; this
        default refuses, so a load never swaps half-way.

        Raises:
            InvalidInputError: a namespace is both a source and a target, or a source twice.
            StoreError: the backend cannot do it (this default), or failed (nothing changed).
        """
        from ..errors import StoreError

        raise StoreError(f"the {self.name} backend cannot replace namespaces atomically")

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
