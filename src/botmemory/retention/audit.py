"""The audit log: why each piece of data disappeared (never what it was).

Every deletion by expiry (the janitor's purge), by a retention policy, at
the end of a conversation, by erasure (``forget``) and by ``delete_prefix``,
and every legal hold and release, is one record::

    {"time": 1800000000.0, "bot": "shop", "scope": "user", "owner_id": "u1",
     "user_id": "u1", "conversation_id": null, "key": "email",
     "reason": "expired", "policy": "user.email", "count": 1}

``scope`` is ``user``, ``conversation`` or ``global`` for a dialog-memory
variable (``key`` is then the variable's name and ``owner_id`` the user or
conversation id), and ``kvs`` for any other KVS key (``key`` is the key; for
``delete_prefix`` it is ``prefix + "*"`` and ``count`` the number deleted).
``user_id`` is also filled in for a conversation's variables when the
conversation's user is known, so a query by user finds them.

Records live in the private namespace ``__rt/audit/<bot>`` under keys
``<13-digit epoch ms>/<12 hex digits of a per-process counter><16 random hex
digits>``, so a key range is a time range. Records written together (a
janitor batch, one erasure) share a row, up to ``GROUP`` records a row
(value ``{"records": [...]}``): auditing a purged batch of 1,000 rows costs
a few row writes, not 1,000, so the janitor holds the write lock for less.
Each row has a KVS expiry equal to the audit retention (default one year),
which the janitor enforces by purging that namespace explicitly (``purge``).
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

from ..codec import decode
from ..errors import InvalidInputError, InvalidKeyError
from ..keys import GLOBAL_NS, decode_component, validate_bot_id, validate_key
from ..memory import USERS_PREFIX, parse_memory_key
from .layout import audit_ns
from .policy import DEFAULT_AUDIT_RETENTION

if TYPE_CHECKING:
    from ..store import Store

__all__ = ["REASONS", "AuditLog", "describe_key", "records_for_keys", "user_of_key"]

REASONS: Final = (
    "expired",
    "janitor",
    "policy",
    "end_of_conversation",
    "forget",
    "delete_prefix",
    "hold",
    "release",
)
"""The reasons botmemory itself records; callers (the runtime) may add their own, e.g. ``timeout``."""

_SCOPES: Final = ("user", "conversation", "global", "kvs")
_PAGE: Final = 100
GROUP: Final = 250
"""At most this many records share one stored row."""
_SEQUENCE: Final = itertools.count()
_MAX_LIMIT: Final = 100_000


def describe_key(key: str) -> tuple[str, str | None, str]:
    """``(scope, owner id, name)`` of a bot's KVS key: a memory variable, or ``("kvs", None, key)``."""
    parsed = parse_memory_key(key)
    if parsed is None:
        return "kvs", None, key
    return parsed


def _check_bot(bot_id: object) -> str:
    if bot_id == GLOBAL_NS:  # the server-wide KVS's expiries are audited too
        return GLOBAL_NS
    return validate_bot_id(bot_id)


def _ms_key(ms: int) -> str:
    return f"{ms:013d}"


class AuditLog:
    """Records and queries the audit log of every bot in a store.

    Args:
        store: the store.
        retention: how long a record is kept, in seconds (default one year).
    """

    sync_handle = True  # the sync facade wraps it (botmemory.sync)

    def __init__(self, store: Store, *, retention: float = DEFAULT_AUDIT_RETENTION) -> None:
        if isinstance(retention, bool) or not isinstance(retention, int | float) or not retention > 0:
            raise InvalidInputError(f"audit retention must be a positive number of seconds, got {retention!r}")
        self.store = store
        self.retention = float(retention)

    def _record(
        self,
        bot_id: str,
        now: float,
        *,
        scope: str,
        owner_id: str | None,
        key: str,
        reason: str,
        policy: str | None = None,
        user_id: str | None = None,
        count: int = 1,
    ) -> dict[str, Any]:
        if scope not in _SCOPES:
            raise InvalidInputError(f"audit scope must be one of {', '.join(_SCOPES)}, got {scope!r}")
        validate_key(reason, 64, "audit reason")
        if user_id is None and scope == "user":
            user_id = owner_id
        return {
            "time": now,
            "bot": bot_id,
            "scope": scope,
            "owner_id": owner_id,
            "user_id": user_id,
            "conversation_id": owner_id if scope == "conversation" else None,
            "key": key,
            "reason": reason,
            "policy": policy,
            "count": count,
        }

    async def record(
        self,
        bot_id: str,
        *,
        scope: str,
        owner_id: str | None,
        key: str,
        reason: str,
        policy: str | None = None,
        user_id: str | None = None,
        count: int = 1,
    ) -> dict[str, Any]:
        """Record one deletion (or hold/release); returns the record.

        Args:
            bot_id: the bot (or ``"__global__"`` for the server-wide KVS).
            scope: ``user``, ``conversation``, ``global`` or ``kvs``.
            owner_id: the user or conversation id (None for global and kvs).
            key: the variable name, or the KVS key (``prefix*`` for a prefix delete).
            reason: why (see ``REASONS``).
            policy: the pattern of the policy that applied, if any.
            user_id: the user a conversation belongs to, when known.
            count: how many entries this record stands for.
        """
        (rec,) = await self.record_many(
            bot_id,
            [
                {
                    "scope": scope,
                    "owner_id": owner_id,
                    "key": key,
                    "reason": reason,
                    "policy": policy,
                    "user_id": user_id,
                    "count": count,
                }
            ],
        )
        return rec

    async def record_many(self, bot_id: str, records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Record several entries at once (one write); each mapping takes ``record``'s keyword arguments."""
        bot_id = _check_bot(bot_id)
        now = self.store.clock.now()
        built = [self._record(bot_id, now, **dict(r)) for r in records]
        if not built:
            return []
        ms = _ms_key(int(now * 1000))
        # the counter keeps one process's rows of one millisecond in order
        mapping = {
            f"{ms}/{next(_SEQUENCE):012x}{uuid.uuid4().hex[:16]}": {"records": built[i : i + GROUP]}
            for i in range(0, len(built), GROUP)
        }
        await self.store.private_kvs(audit_ns(bot_id)).set_many(mapping, expiry=self.retention)
        return built

    async def query(
        self,
        bot_id: str,
        *,
        user_id: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        """Audit records of a bot, oldest first.

        Args:
            bot_id: the bot (or ``"__global__"``).
            user_id: only records about this user (their variables, their KVS
                keys, their conversations' variables when the user was known).
            since: epoch seconds, inclusive.
            until: epoch seconds, exclusive.
            limit: at most this many records (1 to 100,000).

        Returns:
            The records (dicts as described in the module docstring).
        """
        bot_id = _check_bot(bot_id)
        if type(limit) is not int or not 0 < limit <= _MAX_LIMIT:
            raise InvalidInputError(f"limit must be an int from 1 to {_MAX_LIMIT}, got {limit!r}")
        if user_id is not None:
            validate_key(user_id, None, "user id")
        for name, bound in (("since", since), ("until", until)):
            if bound is not None and (isinstance(bound, bool) or not isinstance(bound, int | float)):
                raise InvalidInputError(f"{name} must be epoch seconds, got {bound!r}")
        log = self.store.private_kvs(audit_ns(bot_id))
        # keys are "<ms>/<hex>": every key of millisecond m sorts after "<m>/"
        after = None if since is None else _ms_key(max(0, int(since * 1000))) + "."
        stop = None if until is None else _ms_key(max(0, int(until * 1000)))
        out: list[dict[str, Any]] = []
        while len(out) < limit:
            keys = await log.scan_keys("", after, _PAGE)
            if stop is not None:
                keys = [k for k in keys if k[:13] < stop]
            if keys:
                rows = {r.key: r for r in await log.rows(keys)}
                for k in keys:
                    row = rows.get(k)
                    if row is None:
                        continue
                    for rec in decode(row.value)["records"]:
                        if user_id is None or rec.get("user_id") == user_id:
                            out.append(rec)
                            if len(out) >= limit:
                                break
                    if len(out) >= limit:
                        break
                after = keys[-1]
            if len(keys) < _PAGE:
                break
        return out

    async def purge(self, bot_id: str, *, batch_size: int = 1000) -> int:
        """Delete the bot's audit rows older than the audit retention; returns how many rows.

        Records expire on their own (each is written with the retention as
        its expiry); this purges those, and also records written under a
        longer retention that has since been shortened.
        """
        bot_id = _check_bot(bot_id)
        log = self.store.private_kvs(audit_ns(bot_id))
        now = self.store.clock.now()
        total = 0
        while True:
            batch = await log.purge_expired_rows(batch_size)
            total += len(batch)
            if len(batch) < batch_size:
                break
        cutoff = _ms_key(max(0, int((now - self.retention) * 1000)))
        while True:
            keys = [k for k in await log.scan_keys("", None, batch_size) if k[:13] < cutoff]
            if not keys:
                break
            total += await log.delete_keys(keys)
            if len(keys) < batch_size:
                break
        return total


def user_of_key(key: str) -> str | None:
    """The user whose prefix ``storage/users/<enc user>/`` holds ``key`` (a variable or not), or None."""
    if not key.startswith(USERS_PREFIX):
        return None
    owner, slash, _rest = key[len(USERS_PREFIX) :].partition("/")
    if not slash:
        return None
    try:
        return decode_component(owner)
    except InvalidKeyError:
        return None


def records_for_keys(
    keys: Iterable[str],
    reason: str,
    policy_for: Callable[[str], str | None] | None = None,
    user_id: str | None = None,
) -> list[dict[str, Any]]:
    """Audit records for deleted KVS keys of one bot (memory keys decoded to scope, owner and name).

    Args:
        keys: the deleted keys.
        reason: why they were deleted.
        policy_for: gives the pattern of the policy that governed a key.
        user_id: the user the conversations belong to, when known.
    """
    out = []
    for key in keys:
        scope, owner, name = describe_key(key)
        out.append(
            {
                "scope": scope,
                "owner_id": owner,
                "key": name,
                "reason": reason,
                "policy": None if policy_for is None else policy_for(key),
                "user_id": user_id if scope == "conversation" else user_of_key(key),
            }
        )
    return out
