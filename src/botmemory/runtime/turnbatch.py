"""A turn's own rows, read with its lease in one round trip and written with its release in one.

A steady-state turn reads and writes rows that only turns of its own
conversation write: the conversation's owner record, its session and its
conversation variables. The turn's lease serialises those turns, so the
runtime reads all of these rows in the call that takes the lease
(``acquire_and_read`` of the ``TurnBatching`` capability; ``TurnBackend.load``
keeps them), serves the turn's reads of them from that copy, and keeps the turn's writes to them (compare-and-set on
the version it read) until the turn ends, when one ``write_batch`` writes
them and releases the lease. The erasure guard of every write of the turn is
checked once, after that (``retention.guard.ErasureChecks``).

What stays as before:

- read-your-writes: a read of a buffered row sees the turn's own writes;
- write order: any other call (a write of another row, a scan, a count…)
  first writes what is buffered, so writes land in the order they were made;
- atomicity of ``mutate``: a buffered write lands only if the row is still
  at the version the turn read; otherwise (a writer outside the turn, an
  erasure, an expiry) the buffered writes are replayed one by one with
  ``mutate``, their functions run again on the current rows;
- a failed turn keeps the writes it made before the error: they are
  written when the turn ends, as any others (the session is not saved);
- a write racing ``forget``: the guard's check comes after the write landed,
  which is all its proof needs (see ``retention.guard``).

Bot code that outlives its turn (an abandoned hook task) finds the batch
closed and goes straight to the backend.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from ..backends.base import Backend, BatchWrite, Keep, MutateFn, Mutation, Row, TurnBatching
from ..backends.wrapper import BackendWrapper
from ..retention.guard import ErasureChecks, deferred_erasure_checks

__all__ = ["TurnBackend", "TurnBatch", "current_batch"]

logger = logging.getLogger("botmemory.runtime")

T = TypeVar("T")

#: conversation variables read ahead per turn at most (names mentioned in the bot's flows)
MAX_READ_AHEAD: Final = 64

#: Backend methods that change rows: after one, the copies of its namespace are dropped.
_WRITES: Final = frozenset(
    {"put_many", "delete", "delete_prefix", "set_expiry", "restore", "replace_namespaces", "purge_expired"}
)
#: Methods that neither read nor write rows: no need to write what is buffered first.
_NEUTRAL: Final = frozenset({"acquire_lock", "release_lock", "ping", "close", "describe"})


def _live(row: Row | None, now: float) -> Row | None:
    if row is None or (row.expires_at is not None and row.expires_at <= now):
        return None
    return row


@dataclass(slots=True)
class _Buffered:
    """What the batch will write to one row: the folded writes, and each write for a replay."""

    expected: int
    value: bytes
    expires_at: float | Keep | None
    version: int
    replay: list[tuple[MutateFn, int | None]]


class TurnBatch:
    """The rows of one turn (see the module docstring); ``TurnBackend`` consults it through ``current_batch``."""

    __slots__ = ("buffered", "checks", "open", "order", "rows")

    def __init__(self) -> None:
        #: rows read ahead, with the turn's writes applied (None: missing)
        self.rows: dict[tuple[str, str], Row | None] = {}
        self.buffered: dict[tuple[str, str], _Buffered] = {}
        self.order: list[tuple[str, str]] = []
        self.checks = ErasureChecks()
        self.open = True

    def write(self, ns: str, key: str, fn: MutateFn, now: float, max_keys: int | None) -> tuple[bool, int | None]:
        """Apply a ``mutate`` to the copy of a read-ahead row: ``(True, version)``; ``(False, None)``: not here."""
        ident = (ns, key)
        if not self.open or ident not in self.rows:
            return False, None
        row = _live(self.rows[ident], now)
        if row is None and max_keys is not None:
            # creating a key under a quota: the backend counts, so write it directly
            del self.rows[ident]
            return False, None
        mutation: Mutation | None = fn(row)
        if mutation is None:
            return True, None
        version = 1 if row is None else row.version + 1
        expires = mutation.expires_at
        if isinstance(expires, Keep):
            expires = None if row is None else row.expires_at
        self.rows[ident] = Row(key, mutation.value, version, expires, now)
        pending = self.buffered.get(ident)
        if pending is None:
            self.buffered[ident] = _Buffered(
                0 if row is None else row.version, mutation.value, mutation.expires_at, version, [(fn, max_keys)]
            )
            self.order.append(ident)
        else:
            pending.value, pending.version = mutation.value, version
            if not isinstance(mutation.expires_at, Keep) or row is None:
                # an explicit expiry replaces the one before; KEEP over a missing row means none
                pending.expires_at = None if isinstance(mutation.expires_at, Keep) else mutation.expires_at
            pending.replay.append((fn, max_keys))
        return True, version


class TurnBackend(BackendWrapper):
    """The backend wrapper of the runtime's turns: a turn's read rows served and written from its ``TurnBatch``.

    Install it with ``store.wrap_backend(TurnBackend)`` above the metering
    (so rows served from a batch are not counted as calls) and set ``clock``.
    Outside a turn (no batch in the context, or a closed one) every call goes
    straight to ``inner``.
    """

    def __init__(self, inner: Backend) -> None:
        super().__init__(inner)
        self.batching = isinstance(inner, TurnBatching)
        self.clock: Any = None  # the store's clock, set by the runtime

    @staticmethod
    def _batch() -> TurnBatch | None:
        batch = current_batch.get()
        return batch if batch is not None and batch.open else None

    # -- the turn ------------------------------------------------------------
    def begin(self) -> tuple[TurnBatch, Any]:
        """A new batch for this context (and its erasure checks); pass the result to ``end``."""
        batch = TurnBatch()
        # without the capability every write is checked at once, as it lands (one read each)
        checks = batch.checks if self.batching else None
        return batch, (current_batch.set(batch), deferred_erasure_checks.set(checks))

    @staticmethod
    def load(batch: TurnBatch, keys: Sequence[tuple[str, str]], rows: Sequence[tuple[str, Row]]) -> None:
        """Keep ``rows``, read for ``keys`` (missing ones as None), as the turn's copies."""
        found = {(ns, row.key): row for ns, row in rows}
        for ident in keys:
            batch.rows.setdefault(ident, found.get(ident))

    async def end(self, batch: TurnBatch, tokens: Any, release: tuple[str, str] | None) -> None:
        """Write what the turn buffered and release the lease (one call), then run the erasure checks.

        Raises:
            StoreError, VersionConflictError, QuotaExceededError: a replayed
                write failed (the writes before it are kept, the lease is released).
        """
        batch_token, checks_token = tokens
        current_batch.reset(batch_token)
        deferred_erasure_checks.reset(checks_token)
        versions: dict[tuple[str, str], int] = {}
        error: BaseException | None = None
        batch.open = False  # from here on, bot code that outlived the turn writes straight through
        try:
            released = await self._flush(batch, release, versions)
        except BaseException as exc:  # the replay failed: still release the lease and check what landed
            error, released = exc, False
        try:
            if not released and release is not None:
                await self.inner.release_lock(*release)  # type: ignore[attr-defined]
        finally:
            if batch.checks:
                await batch.checks.run(versions)
            batch.checks.open = False
        if error is not None:
            raise error

    async def _flush(
        self, batch: TurnBatch, release: tuple[str, str] | None, versions: dict[tuple[str, str], int]
    ) -> bool:
        """Write the buffered rows (and release when given); True when released with them."""
        order, buffered = batch.order, batch.buffered
        batch.order, batch.buffered = [], {}
        if not order:
            return False
        writes = [
            BatchWrite(ns, key, b.value, b.expires_at, b.version, b.expected)
            for (ns, key), b in ((ident, buffered[ident]) for ident in order)
        ]
        inner: Any = self.inner
        if await inner.write_batch(writes, self.clock.now(), release):
            return release is not None
        # A row moved under the turn (a writer outside it, an erasure, an
        # expiry): replay each write on the current row, in order, and stop
        # trusting the copies.
        logger.info("a turn's batched writes met a newer row; replaying them one by one")
        batch.rows.clear()
        for ident in order:
            ns, key = ident
            for fn, max_keys in buffered[ident].replay:
                version = await inner.mutate(ns, key, fn, self.clock.now(), max_keys)
                if version is not None:
                    versions[ident] = version
        return False

    async def _flush_before(self, batch: TurnBatch) -> None:
        """Write what is buffered before another call, so writes land in order and scans see them."""
        if batch.order:
            versions: dict[tuple[str, str], int] = {}
            await self._flush(batch, None, versions)
            # the erasure checks of replayed rows need their real versions: check those now
            if versions and batch.checks:
                await batch.checks.run(versions)
                batch.checks.open = True

    # -- Backend calls -------------------------------------------------------
    async def _call(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        batch = self._batch()
        if batch is None:
            return await fn(*args, **kwargs)
        name = getattr(fn, "__name__", "")
        if name not in _NEUTRAL:
            await self._flush_before(batch)
        try:
            return await fn(*args, **kwargs)
        finally:
            if name in _WRITES:  # the copies of rows it may have changed are stale
                ns = args[0] if args and isinstance(args[0], str) else None
                for ident in [i for i in batch.rows if ns is None or i[0] == ns]:
                    del batch.rows[ident]

    async def get(self, ns: str, key: str, now: float) -> Row | None:
        batch = self._batch()
        if batch is not None and (ns, key) in batch.rows:
            return _live(batch.rows[(ns, key)], now)
        row: Row | None = await self.inner.get(ns, key, now)  # type: ignore[attr-defined]
        return row

    async def get_many(self, ns: str, keys: Sequence[str], now: float) -> list[Row]:
        batch = self._batch()
        if batch is None:
            return await self.inner.get_many(ns, keys, now)
        here = [k for k in keys if (ns, k) in batch.rows]
        rest = [k for k in keys if (ns, k) not in batch.rows]
        out = [row for k in here if (row := _live(batch.rows[(ns, k)], now)) is not None]
        if rest:  # rows not read ahead: the turn has no buffered write to them
            out += await self.inner.get_many(ns, rest, now)
        return out

    async def mutate(self, ns: str, key: str, fn: MutateFn, now: float, max_keys: int | None) -> int | None:
        batch = self._batch()
        if batch is not None:
            done, version = batch.write(ns, key, fn, now, max_keys)
            if done:
                return version
            await self._flush_before(batch)
        return await self.inner.mutate(ns, key, fn, now, max_keys)

    async def put(
        self, ns: str, key: str, value: bytes, expires_at: float | Keep | None, now: float, max_keys: int | None
    ) -> int:
        batch = self._batch()
        if batch is not None:
            mutation = Mutation(value, expires_at)
            done, version = batch.write(ns, key, lambda _row: mutation, now, max_keys)
            if done:
                assert version is not None
                return version
            await self._flush_before(batch)
        result: int = await self.inner.put(ns, key, value, expires_at, now, max_keys)  # type: ignore[attr-defined]
        return result


#: The batch of the turn running in this context, if any.
current_batch: ContextVar[TurnBatch | None] = ContextVar("botmemory_runtime_batch", default=None)
