r"""The small interface every backend implements.

Backends store opaque rows ``(namespace, key) -> (value bytes, version,
expires_at, modified_at)`` and know nothing of JSON, paths, users or flows:
the KVS layer (``botmemory.kvs``) validates and encodes, then calls these
primitives. Every primitive takes ``now`` (epoch seconds from the store's
clock) and treats a row with ``expires_at <= now`` as absent: it is never
returned, counted or listed, and a write to it starts over at version 1.

``Backend`` has eight abstract primitives: ``get_many``, ``scan``,
``namespaces``, ``mutate``, ``put_many``, ``delete``, ``purge_expired`` and
``close``. Everything else the store needs (``get``, ``put``, ``count``,
``set_expiry``, ``delete_prefix``, ``scan_expired``, ``restore``) is derived
from them once, in ``botmemory.backends.ops``. Optional powers are
capabilities, small ``Protocol``\s that the store checks with
``isinstance``:

- ``FastPaths``: single-key and counting shortcuts the derived forms would
  otherwise do with primitives (the built-in backends have them all);
- ``Locks``: leases with fencing tokens (the runtime serialises the turns of
  a conversation with them; every built-in backend has them);
- ``BulkLoad``: ``restore`` rows verbatim in one transaction and
  ``replace_namespaces`` atomically (``botmemory load``);
- ``Checkpoint``: flush a write-ahead log into the database (after erasure);
- ``DropAll``: delete everything the store holds (test clean-up);
- ``TurnBatching``: a runtime turn's lease taken with its reads across
  namespaces, and its writes with the lease's release in one
  compare-and-set batch (every built-in backend has it).

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
    "BulkLoad",
    "Checkpoint",
    "DropAll",
    "FastPaths",
    "Keep",
    "LockLease",
    "Locks",
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

    ``bump=False`` changes the expiry of a live row only: its version and
    ``modified_at`` stay as they are and ``value`` must be the row's own
    (``mutate`` then returns the unchanged version). The KVS derives
    ``expire``/``persist`` from it on backends without ``FastPaths``.
    """

    value: bytes
    expires_at: float | Keep | None = KEEP
    bump: bool = True


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
    """The eight primitives a storage engine provides; ``botmemory.backends.ops`` derives the rest."""

    #: the URL scheme, for messages
    name: str = "backend"
    #: whether the backend may only be used from the event loop that opened
    #: it (connection pools are); the sync facade then keeps to that loop
    loop_bound: bool = True

    # -- reads -------------------------------------------------------------
    @abstractmethod
    async def get_many(self, ns: str, keys: Sequence[str], now: float) -> list[Row]:
        """Live rows among ``keys`` (any order; missing and expired left out)."""

    @abstractmethod
    async def scan(
        self, ns: str, prefix: str, after: str | None, limit: int, now: float, *, expired: bool = False
    ) -> list[str]:
        """Up to ``limit`` keys starting with the literal ``prefix``.

        Live keys by default: ordered by code point, only keys strictly
        greater than ``after``. With ``expired=True``: the keys of expired
        rows not purged yet, oldest deadline first (ties by key), and
        ``after`` is None (callers page by deleting what they handled).
        """

    @abstractmethod
    async def namespaces(self) -> list[str]:
        """Every namespace that holds rows (live or not), sorted."""

    # -- writes ------------------------------------------------------------
    @abstractmethod
    async def mutate(self, ns: str, key: str, fn: MutateFn, now: float, max_keys: int | None) -> int | None:
        """Atomic read-modify-write of one key.

        Reads the live row, calls ``fn``, writes what it returns (version =
        old + 1, or 1 for a new/expired row; ``modified_at = now``; with
        ``Mutation.bump`` false only the expiry changes) and returns the
        new version; returns None when ``fn`` returns None. With
        ``max_keys`` set, creating a key when the namespace already holds
        ``max_keys`` live keys raises ``QuotaExceededError``. Exceptions
        from ``fn`` propagate and nothing is written.
        """

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

    @abstractmethod
    async def delete(self, ns: str, keys: Sequence[str], now: float, *, prefix: str | None = None) -> int:
        """Delete ``keys``, or with ``prefix`` every key under that literal prefix ("" = all of ``ns``).

        Rows are deleted live or expired; returns how many of them were live.
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

    # -- lifecycle ---------------------------------------------------------
    @abstractmethod
    async def close(self) -> None:
        """Release connections and threads; idempotent."""

    async def ping(self) -> None:  # noqa: B027 - optional hook, no-op by default
        """Raise ``StoreUnavailableError`` when the backend cannot be reached."""

    def describe(self) -> dict[str, Any]:
        """A few facts for status output (no secrets)."""
        return {"backend": self.name}


# -- optional capabilities ----------------------------------------------------
# A backend declares one by defining its methods; the store checks it with
# isinstance. A backend wrapper (botmemory.backends.wrapper) declares those
# of the backend it wraps.


@runtime_checkable
class FastPaths(Protocol):
    """Shortcuts for operations ``botmemory.backends.ops`` can derive, same meaning, fewer round trips."""

    async def get(self, ns: str, key: str, now: float) -> Row | None:
        """The live row, or None when missing or expired."""

    async def put(
        self, ns: str, key: str, value: bytes, expires_at: float | Keep | None, now: float, max_keys: int | None
    ) -> int:
        """Upsert one key (``KEEP``: keep its expiry); returns the new version."""

    async def count(self, ns: str, now: float) -> int:
        """Number of live keys in ``ns``."""

    async def set_expiry(self, ns: str, key: str, expires_at: float | None, now: float) -> bool:
        """Change the expiry of a live key without touching version or modified_at.

        With ``expires_at=None`` (persist) returns False when the key is
        missing or had no expiry; otherwise False only when missing.
        """

    async def delete_prefix(self, ns: str, prefix: str, now: float) -> int:
        """``delete(ns, (), now, prefix=prefix)``."""

    async def scan_expired(self, ns: str, prefix: str, now: float, limit: int) -> list[Row]:
        """Up to ``limit`` expired rows under ``prefix``, oldest deadline first (not deleted)."""


@runtime_checkable
class Locks(Protocol):
    """Named leases with fencing tokens (the runtime's conversation leases)."""

    async def acquire_lock(self, name: str, owner: str, ttl: float, now: float) -> LockLease | None:
        """Take (or renew, for the same owner) the named lock until ``now + ttl``.

        Returns None while another owner holds an unexpired lease. The token
        grows with every grant to a new owner (renewals keep it).
        """

    async def release_lock(self, name: str, owner: str) -> bool:
        """Release the lock if ``owner`` still holds it."""


@runtime_checkable
class BulkLoad(Protocol):
    """Verbatim, transactional writes for ``botmemory load``."""

    async def restore(self, ns: str, rows: Sequence[Row]) -> None:
        """Write rows exactly as given (value, version, expires_at, modified_at) in one transaction.

        Existing rows with the same keys are overwritten; no quota applies.
        """

    async def replace_namespaces(self, moves: Mapping[str, str | None]) -> None:
        """Make each target namespace hold exactly what its source held, all targets in one atomic step.

        ``moves`` maps a target namespace to a source namespace (or to None:
        the target is emptied). Every row of a target is deleted and every
        row of its source, live or expired, is moved to the target with its
        value, version, expiry and modification time; the sources are left
        empty. Either every move happens or none does, also when the process
        is killed or the connection drops midway.

        Raises:
            InvalidInputError: a namespace is both a source and a target, or a source twice (``check_moves``).
            StoreError: the backend failed (nothing changed).
        """


@runtime_checkable
class Checkpoint(Protocol):
    """A backend with a write-ahead log that erasure should flush (SQLite)."""

    async def checkpoint(self) -> None:
        """Copy the log into the database and truncate it."""


@runtime_checkable
class DropAll(Protocol):
    """Test clean-up: delete every row, lock and schema object this store owns."""

    async def drop_everything(self) -> None:
        """Delete everything this store holds."""
