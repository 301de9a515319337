"""GDPR export and erasure of a user, and legal hold.

``bot.users`` is a ``Users``: ``export``, ``forget``, ``hold``, ``release``,
``link_conversation``, ``conversations`` and ``end_conversation``.

A user's data is: their variables and every other KVS key under their
prefix ``storage/users/<enc user>/``; the variables of every conversation
they took part in (linked in ``__rt/links/<bot>`` by ``link_conversation``,
or recorded as theirs in a runtime session); those conversations' sessions
(``__rt/sessions/<bot>``); the records that they own those conversations
(``__rt/owners/<bot>``); and the links themselves.

A write racing ``forget`` cannot bring the user's data back: ``forget``
writes an erasure tombstone first and closes it last, and every guarded
write checks it (``botmemory.retention.guard`` has the protocol and its
proof).

On SQLite, ``forget`` also checkpoints the WAL (``secure_delete`` is on), so
no erased value remains in the database, ``-wal`` or ``-shm`` files.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Final

from ..backends.base import Row
from ..codec import decode
from ..errors import InvalidKeyError, LegalHoldError, ValueTypeError
from ..keys import decode_component, encode_component, validate_key
from ..memory import conversation_prefix, user_prefix
from .audit import AuditLog, describe_key, records_for_keys
from .guard import ERASURE_GUARD_TTL, conversation_tomb, erased_ns, user_tomb
from .layout import holds_ns, link_key, links_ns, owners_ns, sessions_ns, user_links_prefix
from .policy import DEFAULT_AUDIT_RETENTION

if TYPE_CHECKING:
    from ..store import Bot

__all__ = ["Users"]

log = logging.getLogger(__name__)


_PAGE: Final = 500
_EXPIRED_LIMIT: Final = 100_000


def _entry(row: Row, expired: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "value": decode(row.value),
        "version": row.version,
        "expires_at": row.expires_at,
        "modified_at": row.modified_at,
    }
    if expired:
        out["expired"] = True
    return out


class Users:
    """Export, erasure and legal hold of one bot's users (``bot.users``).

    Args:
        bot: the bot handle.
    """

    sync_handle = True  # the sync facade wraps it (botmemory.sync)

    def __init__(self, bot: Bot) -> None:
        self.bot = bot
        self.store = bot.store

    def __repr__(self) -> str:
        return f"<Users of {self.bot.id!r}>"

    @property
    def audit(self) -> AuditLog:
        """The audit log, with the bot's audit retention."""
        config = self.bot.retention
        return AuditLog(self.store, retention=DEFAULT_AUDIT_RETENTION if config is None else config.audit_retention)

    def _policy_pattern(self, key: str) -> str | None:
        config = self.bot.retention
        policy = None if config is None else config.policy_for(key)
        return None if policy is None else policy.pattern

    @staticmethod
    def _uid(user_id: object) -> str:
        return validate_key(user_id, None, "user id")

    @staticmethod
    def _cid(conversation_id: object) -> str:
        return validate_key(conversation_id, None, "conversation id")

    # -- reading helpers -----------------------------------------------------
    async def _live_rows(self, ns: str, prefix: str) -> list[Row]:
        kvs = self.store.kvs(ns)
        rows: list[Row] = []
        after: str | None = None
        while True:
            keys = await kvs.scan_keys(prefix, after, _PAGE)
            if keys:
                got = {r.key: r for r in await kvs.rows(keys)}
                rows.extend(got[k] for k in keys if k in got)
                after = keys[-1]
            if len(keys) < _PAGE:
                return rows

    async def _live_keys(self, ns: str, prefix: str) -> list[str]:
        kvs = self.store.kvs(ns)
        out: list[str] = []
        after: str | None = None
        while True:
            keys = await kvs.scan_keys(prefix, after, _PAGE)
            out.extend(keys)
            if len(keys) < _PAGE:
                return out
            after = keys[-1]

    async def _session_conversations(self, user_id: str) -> dict[str, Any]:
        """Sessions (by conversation id) whose ``user_id`` is this user."""
        out = {}
        for row in await self._live_rows(sessions_ns(self.bot.id), ""):
            session = decode(row.value)
            if isinstance(session, dict) and session.get("user_id") == user_id:
                out[row.key] = session
        return out

    # -- links and holds -------------------------------------------------------
    async def link_conversation(self, user_id: str, conversation_id: str) -> None:
        """Record that ``user_id`` takes part in ``conversation_id`` (the runtime calls this)."""
        user_id, conversation_id = self._uid(user_id), self._cid(conversation_id)
        links = self.store.private_kvs(links_ns(self.bot.id))
        await links.set(link_key(user_id, conversation_id), {"linked_at": self.store.clock.now()})

    async def conversations(self, user_id: str) -> list[str]:
        """Ids of the conversations the user took part in (links and live sessions), sorted."""
        user_id = self._uid(user_id)
        prefix = user_links_prefix(user_id)
        found = set()
        for key in await self._live_keys(links_ns(self.bot.id), prefix):
            try:
                found.add(decode_component(key[len(prefix) :]))
            except InvalidKeyError:
                continue
        found.update(await self._session_conversations(user_id))
        return sorted(found)

    async def is_held(self, user_id: str) -> bool:
        """Whether the user is under legal hold."""
        row = await self.store.private_kvs(holds_ns(self.bot.id)).row(encode_component(self._uid(user_id)))
        return row is not None

    async def holds(self) -> dict[str, Any]:
        """Every held user of the bot: ``{user_id: {"since", "reason"}}``."""
        out = {}
        for row in await self._live_rows(holds_ns(self.bot.id), ""):
            try:
                out[decode_component(row.key)] = decode(row.value)
            except InvalidKeyError:
                continue
        return out

    async def hold(self, user_id: str, *, reason: str | None = None) -> None:
        """Put the user under legal hold: nothing of theirs is deleted until ``release``.

        The janitor keeps their expired entries (reads still treat them as
        absent), ``end_conversation`` keeps their conversations' variables,
        and ``forget`` raises ``LegalHoldError``.
        """
        user_id = self._uid(user_id)
        if reason is not None:
            validate_key(reason, 1024, "hold reason")
        holds = self.store.private_kvs(holds_ns(self.bot.id))
        await holds.set(encode_component(user_id), {"since": self.store.clock.now(), "reason": reason})
        await self.audit.record(self.bot.id, scope="user", owner_id=user_id, key="*", reason="hold")

    async def release(self, user_id: str) -> bool:
        """Lift the legal hold; False when the user was not held."""
        user_id = self._uid(user_id)
        holds = self.store.private_kvs(holds_ns(self.bot.id))
        released = await holds.delete(encode_component(user_id))
        if released:
            await self.audit.record(self.bot.id, scope="user", owner_id=user_id, key="*", reason="release")
        return released

    async def held_prefixes(self) -> list[tuple[str, str]]:
        """``(namespace, key prefix)`` pairs of every held user's data (for the janitor's ``keep``)."""
        keep: list[tuple[str, str]] = []
        for user_id in await self.holds():
            keep.append((self.bot.id, user_prefix(user_id)))
            keep.extend((self.bot.id, conversation_prefix(c)) for c in await self.conversations(user_id))
        return keep

    # -- export ----------------------------------------------------------------
    async def _rows_with_expired(self, prefix: str, held: bool) -> list[tuple[Row, bool]]:
        rows = [(r, False) for r in await self._live_rows(self.bot.id, prefix)]
        if held:
            expired = await self.bot.kvs.expired_rows(prefix, _EXPIRED_LIMIT)
            rows.extend((r, True) for r in expired)
            rows.sort(key=lambda t: t[0].key)
        return rows

    async def export(self, user_id: str) -> dict[str, Any]:
        """Every piece of data about the user, with versions and times.

        Returns:
            ``{"bot_id", "user_id", "time", "held", "user": {name: entry},
            "kvs": {key: entry}, "conversations": [ids], "conversation":
            {conversation_id: {name: entry}}, "sessions": {conversation_id:
            session}}``; an entry is ``{"value", "version", "expires_at",
            "modified_at"}``, plus ``"expired": true`` for an expired entry
            kept by a legal hold. ``user`` holds the user's variables,
            ``kvs`` every other key under the user's prefix.
        """
        user_id = self._uid(user_id)
        held = await self.is_held(user_id)
        user_vars: dict[str, Any] = {}
        other: dict[str, Any] = {}
        for row, expired in await self._rows_with_expired(user_prefix(user_id), held):
            scope, _owner, name = describe_key(row.key)
            if scope == "user":
                user_vars[name] = _entry(row, expired)
            else:
                other[row.key] = _entry(row, expired)
        conversations = await self.conversations(user_id)
        conversation_vars: dict[str, Any] = {}
        for cid in conversations:
            variables = {}
            for row, expired in await self._rows_with_expired(conversation_prefix(cid), held):
                scope, _owner, name = describe_key(row.key)
                variables[name if scope == "conversation" else row.key] = _entry(row, expired)
            if variables:
                conversation_vars[cid] = variables
        sessions = await self._session_conversations(user_id)
        session_rows = await self.store.private_kvs(sessions_ns(self.bot.id)).rows(conversations)
        for row in session_rows:
            sessions.setdefault(row.key, decode(row.value))
        return {
            "bot_id": self.bot.id,
            "user_id": user_id,
            "time": self.store.clock.now(),
            "held": held,
            "user": user_vars,
            "kvs": other,
            "conversations": conversations,
            "conversation": conversation_vars,
            "sessions": dict(sorted(sessions.items())),
        }

    # -- erasure ---------------------------------------------------------------
    async def forget(self, user_id: str, *, dry_run: bool = False) -> dict[str, Any]:
        """Erase everything about the user (see ``export``) and end their sessions.

        Args:
            user_id: the user.
            dry_run: only count what would be erased.

        Returns:
            The receipt ``{"bot_id", "user_id", "dry_run", "time", "counts":
            {"user", "conversation", "sessions", "conversations", "kvs"}}``
            (no values). Writes that race the erasure cannot bring the data
            back (see the module docstring).

        Raises:
            LegalHoldError: the user is under legal hold (dry run included).
            ValueTypeError: ``dry_run`` is not a bool (``"no"`` is truthy: guessing
                would erase, or not, against the caller's intent).
        """
        if not isinstance(dry_run, bool):
            raise ValueTypeError(f"dry_run must be True or False, got {dry_run!r:.40}")
        user_id = self._uid(user_id)
        if await self.is_held(user_id):
            raise LegalHoldError(f"user {user_id!r} of bot {self.bot.id!r} is under legal hold; release it first")
        store, bot_id = self.store, self.bot.id
        kvs = self.bot.kvs
        sessions = store.private_kvs(sessions_ns(bot_id))
        uprefix = user_prefix(user_id)
        conversations = await self.conversations(user_id)
        user_keys = await self._live_keys(bot_id, uprefix)
        counts = {
            "user": sum(1 for k in user_keys if describe_key(k)[0] == "user"),
            "kvs": sum(1 for k in user_keys if describe_key(k)[0] != "user"),
            "conversation": 0,
            "sessions": len(await sessions.rows(conversations)),
            "conversations": len(conversations),
        }
        conv_keys = {c: await self._live_keys(bot_id, conversation_prefix(c)) for c in conversations}
        counts["conversation"] = sum(len(v) for v in conv_keys.values())
        if dry_run:
            return self._receipt(user_id, True, counts)

        # (1) tombstones first: from here on, racing writes undo themselves
        started = store.clock.now()
        erased = store.private_kvs(erased_ns(bot_id))
        tombs = [user_tomb(user_id), *(conversation_tomb(c) for c in conversations)]
        await erased.set_many({t: {"started": started, "ended": None} for t in tombs}, expiry=ERASURE_GUARD_TTL)
        if await self.is_held(user_id):  # a hold placed meanwhile wins
            await erased.delete_many(tombs)
            raise LegalHoldError(f"user {user_id!r} of bot {self.bot.id!r} was put under legal hold")

        # (2) delete, live and expired rows alike; again for links that appeared meanwhile
        done: set[str] = set()
        records = records_for_keys(user_keys, "forget", self._policy_pattern)
        while True:
            todo = [c for c in await self.conversations(user_id) if c not in done]
            if not todo:
                break
            new = [c for c in todo if c not in conv_keys]
            if new:
                await erased.set_many(
                    {conversation_tomb(c): {"started": started, "ended": None} for c in new},
                    expiry=ERASURE_GUARD_TTL,
                )
                tombs.extend(conversation_tomb(c) for c in new)
            for cid in todo:
                keys = conv_keys.get(cid) or await self._live_keys(bot_id, conversation_prefix(cid))
                await kvs.delete_under(conversation_prefix(cid))
                records += records_for_keys(keys, "forget", self._policy_pattern, user_id)
                records.append(
                    {"scope": "conversation", "owner_id": cid, "key": "(session)", "reason": "forget",
                     "user_id": user_id}
                )
                done.add(cid)
            await sessions.delete_keys(todo)
            await store.private_kvs(owners_ns(bot_id)).delete_keys(todo)
        await kvs.delete_under(uprefix)
        await store.private_kvs(links_ns(bot_id)).delete_under(user_links_prefix(user_id))
        records.append({"scope": "user", "owner_id": user_id, "key": "*", "reason": "forget"})
        await self.audit.record_many(bot_id, records)

        # (3) the erasure is complete: writes that start from now on are kept
        ended = store.clock.now()
        await erased.set_many({t: {"started": started, "ended": ended} for t in tombs}, expiry=ERASURE_GUARD_TTL)
        try:
            await store.checkpoint()  # a backend with a write-ahead log (Checkpoint): the erased rows leave it
        except Exception:  # the erasure is done; the next checkpoint clears the WAL
            log.warning("checkpoint after erasing a user failed", exc_info=True)
        return self._receipt(user_id, False, counts)

    def _receipt(self, user_id: str, dry_run: bool, counts: dict[str, int]) -> dict[str, Any]:
        return {
            "bot_id": self.bot.id,
            "user_id": user_id,
            "dry_run": dry_run,
            "time": self.store.clock.now(),
            "counts": counts,
        }

    # -- end of conversation ---------------------------------------------------
    async def end_conversation(
        self, conversation_id: str, *, user_id: str | None = None, reason: str = "end_of_conversation"
    ) -> int:
        """Discard the conversation's variables (kept while its user is held) and audit it.

        Args:
            conversation_id: the conversation.
            user_id: its user; when None, taken from its session if there is one.
            reason: recorded in the audit log (``end_of_conversation``, ``timeout``…).

        Returns:
            How many live variables were discarded (0 when the user is held).
        """
        conversation_id = self._cid(conversation_id)
        validate_key(reason, 64, "audit reason")
        if user_id is None:
            row = await self.store.private_kvs(sessions_ns(self.bot.id)).row(conversation_id)
            session = None if row is None else decode(row.value)
            if isinstance(session, dict) and isinstance(session.get("user_id"), str):
                user_id = session["user_id"]
        else:
            user_id = self._uid(user_id)
        if user_id is not None and await self.is_held(user_id):
            return 0
        prefix = conversation_prefix(conversation_id)
        keys = await self._live_keys(self.bot.id, prefix)
        count = await self.bot.kvs.delete_under(prefix)
        if keys:
            await self.audit.record_many(
                self.bot.id, records_for_keys(keys, reason, self._policy_pattern, user_id)
            )
        return count
