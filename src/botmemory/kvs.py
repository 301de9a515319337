"""The KVS API over a backend: validation, encoding, expiry, versions.

One ``KVS`` serves one namespace: a bot's store (``bot.kvs``) or the
server-wide one (``store.global_kvs``). Everything here is derived from the
backend's few primitives, so every backend behaves alike.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from .backends.base import KEEP, Keep, Mutation, Purged, Row
from .backends.ops import Ops
from .clock import Clock
from .codec import decode, encode
from .errors import (
    InvalidExpiryError,
    InvalidInputError,
    KeyNotFoundError,
    ValueTypeError,
    VersionConflictError,
)
from .expiry import expires_at
from .jsonpath import Segment, get_path, incr_value, parse_path, set_path
from .keys import validate_key, validate_prefix
from .limits import Limits

__all__ = ["KVS", "Entry", "WriteHook"]

_PAGE: Final = 500
_MISSING: Final = object()


@dataclass(frozen=True, slots=True)
class Entry:
    """A stored value with its metadata; times are epoch seconds."""

    key: str
    value: Any
    version: int
    expires_at: float | None
    modified_at: float


class WriteHook(Protocol):
    """What a bot handle plugs into its KVS for retention (``botmemory.retention``).

    The KVS stays ignorant of policies and erasure; it only asks the hook.
    """

    def wants(self, key: str) -> bool:
        """Whether a write of ``key`` needs this hook at all (checked first, without I/O)."""

    async def cap(self, key: str, now: float) -> tuple[float, bool] | None:
        """The policy deadline for a write of ``key`` at ``now``, or None when no policy covers it.

        Returns ``(expires_at, slide)``: writes without an expiry get
        ``expires_at``, longer ones are capped to it; with ``slide`` false,
        writes that keep the current expiry (``incr``, path ``set``,
        ``keep_ttl``) keep it only up to ``expires_at``.
        """

    async def written(self, items: Sequence[tuple[str, int]], started: float) -> None:
        """Called after ``(key, version)`` pairs were written by a call that started at ``started``."""


def _capped(row: Row | None, cap: float) -> float:
    """A kept expiry, capped: the row's own one when shorter, else ``cap``."""
    if row is None or row.expires_at is None:
        return cap
    return min(row.expires_at, cap)


async def _apply_cap(
    hook: WriteHook, key: str, exp: float | Keep | None, now: float
) -> tuple[float | Keep | None, float | None]:
    """The expiry to write under the hook's policy, and the cap for a kept expiry (or None)."""
    cap = await hook.cap(key, now)
    if cap is None:
        return exp, None
    at, slide = cap
    if exp is None:
        return at, None
    if isinstance(exp, Keep):
        return (at, None) if slide else (exp, at)
    return min(exp, at), None


def _entry(row: Row) -> Entry:
    return Entry(row.key, decode(row.value), row.version, row.expires_at, row.modified_at)


def _check_amount(amount: object) -> int | float:
    if type(amount) is int:
        return amount
    if type(amount) is float and math.isfinite(amount):
        return amount
    raise ValueTypeError(f"incr amount must be an int or a finite float, got {type(amount).__name__}")


def _check_version(if_version: object) -> int:
    if type(if_version) is not int or if_version < 0:
        raise InvalidInputError(f"if_version must be an int >= 0, got {if_version!r}")
    return if_version


def _check_limit(limit: object) -> int | None:
    if limit is None:
        return None
    if type(limit) is not int or limit <= 0:
        raise InvalidInputError(f"limit must be a positive int, got {limit!r}")
    return limit


class KVS:
    """Key-value storage with expiry for one namespace.

    Keys are strings; values are JSON. See the table in the API spec: every
    write bumps the key's version, expired keys are never returned.
    """

    sync_handle = True  # the sync facade wraps it (botmemory.sync)
    __slots__ = ("_clock", "_limits", "_max_keys", "_ops", "namespace", "on_delete", "write_hook")

    def __init__(self, ops: Ops, namespace: str, clock: Clock, limits: Limits, *, quota: bool = True) -> None:
        self._ops = ops
        self._clock = clock
        self._limits = limits
        self._max_keys = limits.max_keys_per_bot if quota else None
        self.namespace = namespace
        #: retention's hook on writes (policies, erasure guard); None: plain KVS
        self.write_hook: WriteHook | None = None
        #: awaited with (prefix, live count) after a public delete_prefix, for the audit log
        self.on_delete: Callable[[str, int], Awaitable[None]] | None = None

    def __repr__(self) -> str:
        return f"<KVS {self.namespace!r} on {self._ops.name}>"

    def rebind(self, ops: Ops) -> None:
        """Send this handle's calls to ``ops`` (the store does, when it wraps its backend)."""
        self._ops = ops

    # -- key checks: callers' writes obey max_key_bytes; reads also take the
    # longer keys dialog memory builds.
    def _wkey(self, key: object) -> str:
        return validate_key(key, self._limits.max_key_bytes)

    def _hook_for(self, key: str) -> WriteHook | None:
        # Most writes need no retention work: skip its coroutines for them.
        hook = self.write_hook
        return hook if hook is not None and hook.wants(key) else None

    @staticmethod
    def _rkey(key: object) -> str:
        return validate_key(key, None)

    @staticmethod
    def _expiry(expiry: object, keep: bool, now: float) -> float | Keep | None:
        return KEEP if keep else expires_at(expiry, now)

    # -- reads -------------------------------------------------------------
    async def get(self, key: str, path: Any = None, *, default: Any = None) -> Any:
        """The value at ``key`` (or the part at ``path``); ``default`` when absent.

        Args:
            key: the key.
            path: optional JSON path (``"a.b[0]"`` or a tuple of segments).
            default: returned when the key is missing or expired, or the path leads nowhere.

        Raises:
            InvalidKeyError: bad key. InvalidPathError: bad path.
        """
        key = validate_key(key, None)
        if path is None:
            # the hot path, inline: one coroutine less than going through _get
            row = await self._ops.get(self.namespace, key, self._clock.now())
            return default if row is None else decode(row.value)
        return await self._get(key, parse_path(path), default)

    async def _get(self, key: str, segments: tuple[Segment, ...] | None, default: Any = None) -> Any:
        row = await self._ops.get(self.namespace, key, self._clock.now())
        if row is None:
            return default
        value = decode(row.value)
        if segments is None:
            return value
        found, part = get_path(value, segments)
        return part if found else default

    async def get_entry(self, key: str) -> Entry | None:
        """The value with its version and times, or None when missing or expired."""
        row = await self._ops.get(self.namespace, self._rkey(key), self._clock.now())
        return None if row is None else _entry(row)

    async def exists(self, key: str) -> bool:
        """True for any live stored value, including ``0``, ``False``, ``""`` and ``None``."""
        return await self._ops.get(self.namespace, self._rkey(key), self._clock.now()) is not None

    async def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """Live keys among ``keys`` with their values, in the order asked."""
        wanted = [self._rkey(k) for k in _iter_keys(keys)]
        return await self._get_many(wanted)

    async def _get_many(self, keys: list[str]) -> dict[str, Any]:
        if not keys:
            return {}
        rows = {r.key: r for r in await self._ops.get_many(self.namespace, keys, self._clock.now())}
        return {k: decode(rows[k].value) for k in keys if k in rows}

    def keys(self, prefix: str = "", *, limit: int | None = None, after: str | None = None) -> AsyncIterator[str]:
        """Live keys starting with the literal ``prefix``, in code point order, streamed in pages.

        ``after`` resumes a listing: only keys strictly greater than it (the
        last key of the previous page) are listed, so pages can be served
        one request at a time (the HTTP API's cursors).
        """
        if after is not None:
            after = validate_key(after, None)
        return self._keys(validate_prefix(prefix), _check_limit(limit), after)

    async def _keys(self, prefix: str, limit: int | None = None, after: str | None = None) -> AsyncIterator[str]:
        left = limit
        while left is None or left > 0:
            page = _PAGE if left is None else min(_PAGE, left)
            batch = await self._ops.scan(self.namespace, prefix, after, page, self._clock.now())
            for key in batch:
                yield key
            if len(batch) < page:
                return
            after = batch[-1]
            if left is not None:
                left -= len(batch)

    async def ttl(self, key: str) -> float | None:
        """Seconds left; None when the key never expires.

        Raises:
            KeyNotFoundError: the key is missing or expired.
        """
        key = self._rkey(key)
        now = self._clock.now()
        row = await self._ops.get(self.namespace, key, now)
        if row is None:
            raise KeyNotFoundError(f"key {key!r} does not exist")
        return None if row.expires_at is None else row.expires_at - now

    async def is_expired(self, key: str) -> bool:
        """True when ``key`` holds an expired entry not deleted yet (reads treat it as absent).

        For metrics of expired reads refused: call it after a read missed.
        """
        key = self._rkey(key)
        rows = await self._ops.scan_expired(self.namespace, key, self._clock.now(), 100)
        return any(row.key == key for row in rows)

    # -- rows: stored bytes with their metadata, for the features built on
    # the store (retention, sessions, dump/load, the CLI). No key checks, no
    # hooks: callers pass keys they read or built themselves.
    async def row(self, key: str) -> Row | None:
        """The live row of ``key`` (value still encoded), or None."""
        return await self._ops.get(self.namespace, key, self._clock.now())

    async def rows(self, keys: Sequence[str], *, at: float | None = None) -> list[Row]:
        """The live rows among ``keys`` (any order; missing and expired left out).

        ``at``: the instant that decides what is live (default: the clock's
        now), so that several reads see one instant (a dump).
        """
        if not keys:
            return []
        return await self._ops.get_many(self.namespace, keys, self._clock.now() if at is None else at)

    async def scan_keys(
        self, prefix: str = "", after: str | None = None, limit: int = _PAGE, *, at: float | None = None
    ) -> list[str]:
        """One page of live keys under the literal ``prefix``, strictly after ``after``, in code point order."""
        return await self._ops.scan(self.namespace, prefix, after, limit, self._clock.now() if at is None else at)

    async def expired_rows(self, prefix: str = "", limit: int = _PAGE) -> list[Row]:
        """Up to ``limit`` expired rows under ``prefix`` not purged yet, oldest deadline first."""
        return await self._ops.scan_expired(self.namespace, prefix, self._clock.now(), limit)

    async def count(self) -> int:
        """The number of live keys."""
        return await self._ops.count(self.namespace, self._clock.now())

    async def mutate_row(self, key: str, fn: Callable[[Row | None], Mutation | None]) -> int | None:
        """``Backend.mutate`` on this namespace, without quota or hooks: the new version, or None."""
        return await self._ops.mutate(self.namespace, key, fn, self._clock.now(), None)

    async def put_row(self, key: str, value: bytes, expires_at: float | Keep | None) -> int:
        """Write encoded ``value`` with an absolute expiry, without quota or hooks; the new version."""
        return await self._ops.put(self.namespace, key, value, expires_at, self._clock.now(), None)

    async def set_row_expiry(self, key: str, expires_at: float | None) -> bool:
        """Set a live key's absolute expiry (version unchanged), without hooks; False when missing."""
        return await self._ops.set_expiry(self.namespace, key, expires_at, self._clock.now())

    async def delete_keys(self, keys: Sequence[str]) -> int:
        """Delete ``keys`` (live or expired) without key checks or the audit hook; how many were live."""
        return await self._delete(list(keys)) if keys else 0

    async def delete_under(self, prefix: str) -> int:
        """Delete every key under the literal ``prefix`` without the audit hook; how many were live."""
        return await self._delete_prefix(prefix)

    async def purge_expired_rows(self, limit: int, keep: Sequence[str] = ()) -> list[Purged]:
        """Delete up to ``limit`` expired rows, oldest first, except under the literal prefixes ``keep``."""
        return await self._ops.purge_expired(
            self._clock.now(), limit, self.namespace, [(self.namespace, p) for p in keep]
        )

    # -- writes ------------------------------------------------------------
    async def set(
        self,
        key: str,
        value: Any,
        path: Any = None,
        expiry: Any = None,
        *,
        keep_ttl: bool = False,
        if_version: int | None = None,
    ) -> int:
        """Store ``value`` at ``key`` (or at ``path`` inside it); returns the new version.

        Args:
            key: the key (≤ max_key_bytes).
            value: JSON value.
            path: update one part of the stored value atomically.
            expiry: see the Expiry rules; without one the key's expiry is
                removed, unless ``keep_ttl`` or a ``path`` is given.
            keep_ttl: keep the current expiry.
            if_version: compare-and-set: write only if the current version is
                this (0: only if absent or expired).

        Raises:
            VersionConflictError: ``if_version`` did not match.
            InvalidInputError and subclasses: refused, nothing written.
        """
        return await self._set(
            self._wkey(key), value, None if path is None else parse_path(path), expiry, keep_ttl, if_version
        )

    async def _set(
        self,
        key: str,
        value: Any,
        segments: tuple[Segment, ...] | None,
        expiry: Any,
        keep_ttl: bool = False,
        if_version: int | None = None,
    ) -> int:
        now = self._clock.now()
        if keep_ttl and expiry is not None:
            raise InvalidInputError("expiry and keep_ttl=True cannot be combined")
        # a path set without an expiry keeps the key's expiry, like incr
        exp = self._expiry(expiry, keep_ttl or (segments is not None and expiry is None), now)
        expected = None if if_version is None else _check_version(if_version)
        limits = self._limits
        data = encode(value, limits)  # also validates the part written at a path
        hook = self._hook_for(key)
        keep_cap: float | None = None
        if hook is not None:
            exp, keep_cap = await _apply_cap(hook, key, exp, now)
        if segments is None and expected is None and keep_cap is None:
            version = await self._ops.put(self.namespace, key, data, exp, now, self._max_keys)
        else:

            def change(row: Row | None) -> Mutation:
                if expected is not None:
                    current = 0 if row is None else row.version
                    if current != expected:
                        raise VersionConflictError(f"key {key!r} is at version {current}, not {expected}")
                new_exp = exp if keep_cap is None else _capped(row, keep_cap)
                if segments is None:
                    return Mutation(data, new_exp)
                root = None if row is None else decode(row.value)
                return Mutation(encode(set_path(root, segments, value, missing_root=row is None), limits), new_exp)

            mutated = await self._ops.mutate(self.namespace, key, change, now, self._max_keys)
            assert mutated is not None
            version = mutated
        if hook is not None:
            await hook.written(((key, version),), now)
        return version

    async def set_if_absent(self, key: str, value: Any, *, expiry: Any = None) -> bool:
        """Store ``value`` only if no live value exists; True when it was stored."""
        key = self._wkey(key)
        now = self._clock.now()
        exp: float | Keep | None = expires_at(expiry, now)
        hook = self._hook_for(key)
        if hook is not None:
            exp, _ = await _apply_cap(hook, key, exp, now)
        mutation = Mutation(encode(value, self._limits), exp)
        version = await self._ops.mutate(
            self.namespace, key, lambda row: mutation if row is None else None, now, self._max_keys
        )
        if version is not None and hook is not None:
            await hook.written(((key, version),), now)
        return version is not None

    async def incr(self, key: str, amount: int | float = 1, *, path: Any = None) -> int | float:
        """Add ``amount`` atomically; a missing key or path counts as 0. Returns the new number.

        Raises:
            ValueTypeError: the stored value is not a number (bools and null
                included) or the result leaves the 64-bit integer range.
        """
        return await self._incr(self._wkey(key), amount, None if path is None else parse_path(path))

    async def _incr(self, key: str, amount: object, segments: tuple[Segment, ...] | None) -> int | float:
        step = _check_amount(amount)
        limits = self._limits
        result: list[int | float] = []
        now = self._clock.now()
        hook = self._hook_for(key)
        exp: float | Keep | None = KEEP
        keep_cap: float | None = None
        if hook is not None:
            exp, keep_cap = await _apply_cap(hook, key, exp, now)

        def change(row: Row | None) -> Mutation:
            root = _MISSING if row is None else decode(row.value)
            if segments is None:
                number = incr_value(root is not _MISSING, None if root is _MISSING else root, step)
                new_root: Any = number
            else:
                base = None if root is _MISSING else root
                found, current = (False, None) if root is _MISSING else get_path(base, segments)
                number = incr_value(found, current, step)
                new_root = set_path(base, segments, number, missing_root=root is _MISSING)
            result[:] = [number]
            return Mutation(encode(new_root, limits), exp if keep_cap is None else _capped(row, keep_cap))

        version = await self._ops.mutate(self.namespace, key, change, now, self._max_keys)
        if hook is not None and version is not None:
            await hook.written(((key, version),), now)
        return result[0]

    async def delete(self, key: str) -> bool:
        """Delete ``key``; True when a live value existed."""
        return await self._delete([self._rkey(key)]) > 0

    async def _delete(self, keys: list[str]) -> int:
        return await self._ops.delete(self.namespace, keys, self._clock.now()) if keys else 0

    async def _delete_prefix(self, prefix: str) -> int:
        return await self._ops.delete_prefix(self.namespace, prefix, self._clock.now())

    async def set_many(self, mapping: Mapping[str, Any], *, expiry: Any = None) -> list[int]:
        """Store several keys, all or nothing; the new versions in the mapping's order."""
        if not isinstance(mapping, Mapping):
            raise InvalidInputError(f"set_many takes a mapping, got {type(mapping).__name__}")
        items = [(self._wkey(k), encode(v, self._limits)) for k, v in mapping.items()]
        if not items:
            return []
        now = self._clock.now()
        exp = expires_at(expiry, now)
        hook = self.write_hook
        if hook is None or not any(hook.wants(key) for key, _ in items):
            return await self._ops.put_many(self.namespace, items, exp, now, self._max_keys)
        return await self._set_many_with_hook(hook, items, exp, now)

    async def _set_many_with_hook(
        self, hook: WriteHook, items: list[tuple[str, bytes]], exp: float | None, now: float
    ) -> list[int]:
        # put_many takes one expiry for all keys; policies may give each key
        # its own. Write all with the shortest (never longer than any policy
        # allows, even if what follows fails), then lengthen the others.
        wanted: dict[str, float | None] = {}
        for key, _ in items:
            capped, _keep = await _apply_cap(hook, key, exp, now)
            assert not isinstance(capped, Keep)
            wanted[key] = capped
        deadlines = [w for w in wanted.values() if w is not None]
        first = min(deadlines) if deadlines else None
        versions = await self._ops.put_many(self.namespace, items, first, now, self._max_keys)
        for key, want in wanted.items():
            if want != first:
                await self._ops.set_expiry(self.namespace, key, want, now)
        await hook.written(list(zip((k for k, _ in items), versions, strict=True)), now)
        return versions

    async def delete_many(self, keys: Iterable[str]) -> int:
        """Delete several keys; the number of live keys deleted."""
        return await self._delete([self._rkey(k) for k in _iter_keys(keys)])

    async def delete_prefix(self, prefix: str, *, all: bool = False) -> int:  # noqa: A002 - the spec's name
        """Delete every key under the literal ``prefix`` in this KVS only (live and expired).

        Returns the number of live keys deleted. An empty prefix needs ``all=True``.
        """
        prefix = validate_prefix(prefix)
        if not prefix and all is not True:
            raise InvalidInputError("delete_prefix with an empty prefix deletes everything: pass all=True")
        count = await self._delete_prefix(prefix)
        if self.on_delete is not None and count:
            await self.on_delete(prefix, count)
        return count

    async def expire(self, key: str, expiry: Any) -> bool:
        """Set the expiry of a live key (version unchanged); False when missing."""
        key = self._rkey(key)
        if expiry is None or expiry == "never":
            raise InvalidExpiryError("expire() needs an expiry; use persist() to remove one")
        now = self._clock.now()
        exp: float | Keep | None = expires_at(expiry, now)
        hook = self._hook_for(key)
        if hook is not None:  # a retention policy caps a longer expiry
            exp, _ = await _apply_cap(hook, key, exp, now)
        assert not isinstance(exp, Keep)
        return await self._ops.set_expiry(self.namespace, key, exp, now)

    async def persist(self, key: str) -> bool:
        """Remove the expiry; False when the key is missing or had none.

        Under a retention policy the key keeps the policy's expiry instead ("never" is capped).
        """
        key = self._rkey(key)
        now = self._clock.now()
        hook = self._hook_for(key)
        if hook is not None:
            cap = await hook.cap(key, now)
            if cap is not None:
                return await self._ops.set_expiry(self.namespace, key, cap[0], now)
        return await self._ops.set_expiry(self.namespace, key, None, now)

    # -- Botpress names ------------------------------------------------------
    async def get_storage_with_expiry(self, key: str) -> Any:
        """Botpress ``getStorageWithExpiry``: the live value or None."""
        return await self.get(key)

    async def set_storage_with_expiry(self, key: str, value: Any, expiry: Any = None) -> int:
        """Botpress ``setStorageWithExpiry``."""
        return await self.set(key, value, expiry=expiry)

    async def remove_storage_keys_starting_with(self, prefix: str) -> int:
        """Botpress ``removeStorageKeysStartingWith``, scoped to this bot only."""
        return await self.delete_prefix(prefix)


def _iter_keys(keys: Iterable[str]) -> Iterable[Any]:
    if isinstance(keys, str | bytes) or not isinstance(keys, Iterable):
        raise InvalidInputError(f"expected an iterable of keys, got {type(keys).__name__}")
    return keys
