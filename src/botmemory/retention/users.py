"""GDPR export and erasure of a user, legal hold, and the hooks a bot's KVS runs on writes.

``bot.users`` is a ``Users``: ``export``, ``forget``, ``hold``, ``release``,
``link_conversation``, ``conversations`` and ``end_conversation``.

A user's data is: their variables and every other KVS key under their
prefix ``storage/users/<enc user>/``; the variables of every conversation
they took part in (linked in ``__rt/links/<bot>`` by ``link_conversation``,
or recorded as theirs in a runtime session); those conversations' sessions
(``__rt/sessions/<bot>``); the records that they own those conversations
(``__rt/owners/<bot>``); and the links themselves.

Erasure and racing writes
-------------------------
``forget`` must win against a write that read the user's state before the
erasure and writes after it (a bot turn in flight, another replica). Per-key
locks would make every write pay for a rare event, and deleting twice only
narrows the window. Instead, with ``T`` a per-user (and per-conversation)
erasure tombstone in ``__rt/erased/<bot>``:

* ``forget`` (1) writes ``T = {started, ended: None}``, (2) deletes all of
  the user's data, (3) sets ``T.ended = now`` and returns.
* Every write of a user's or conversation's key through a bot handle (and of
  a session or link) runs a guard after the backend write: it reads ``T``
  and, if ``T`` exists and the write started before ``T.ended`` (or ``T`` is
  still in progress), erases what it wrote, provided the key is still at the
  version it wrote (so a newer, legitimate write is never touched).

Claim: a write that started before ``forget`` returned leaves no data
behind. If its backend write landed before step (2), step (2) deleted it.
Otherwise it landed after (2), hence after (1); its guard runs after its
write, so it reads ``T`` (in progress, or ended at a time not before the
write's start) and erases the value. Writes that start after ``forget``
returned are kept: the user may come back. Tombstones hold no user id (the
key is a hash of the encoded id) and expire after ``ERASURE_GUARD_TTL``
(one day), longer than any write can be in flight. The guard is installed
on every ``Bot`` handle; writes made with a raw ``Backend`` bypass it.

On SQLite, ``forget`` also checkpoints the WAL (``secure_delete`` is on), so
no erased value remains in the database, ``-wal`` or ``-shm`` files.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Final

from ..backends.base import PRIVATE_NS_PREFIX, Mutation, Row
from ..codec import decode, encode
from ..errors import InvalidKeyError, LegalHoldError, ValueTypeError
from ..keys import decode_component, encode_component, validate_key
from ..memory import CONVERSATION_PREFIX, USERS_PREFIX, conversation_prefix, user_prefix
from .audit import AuditLog, describe_key, records_for_keys, user_of_key
from .layout import holds_ns, link_key, links_ns, owners_ns, sessions_ns, user_links_prefix
from .policy import DEFAULT_AUDIT_RETENTION, first_write_time

if TYPE_CHECKING:
    from ..kvs import KVS
    from ..store import Bot, Store

__all__ = [
    "ERASURE_GUARD_TTL",
    "ErasureChecks",
    "Users",
    "deferred_erasure_checks",
    "erased_ns",
    "install_hooks",
]

log = logging.getLogger(__name__)

ERASURE_GUARD_TTL: Final = 86_400.0
"""Seconds an erasure tombstone guards against writes that were in flight."""

_PAGE: Final = 500
_EXPIRED_LIMIT: Final = 100_000


def erased_ns(bot_id: str) -> str:
    """The private namespace of erasure tombstones."""
    return f"{PRIVATE_NS_PREFIX}erased/{bot_id}"


def _tomb(kind: str, encoded_id: str) -> str:
    # a hash: the tombstone must not keep the erased user's id around
    return kind + "/" + hashlib.sha256(encoded_id.encode("utf-8")).hexdigest()


def _user_tomb(user_id: str) -> str:
    return _tomb("u", encode_component(user_id))


def _conversation_tomb(conversation_id: str) -> str:
    return _tomb("c", encode_component(conversation_id))


def _memory_tombs(key: str) -> list[str]:
    """Tombstones that guard a bot KVS key: its user's or its conversation's."""
    for prefix, kind in ((USERS_PREFIX, "u"), (CONVERSATION_PREFIX, "c")):
        if key.startswith(prefix):
            owner, slash, _ = key[len(prefix) :].partition("/")
            return [_tomb(kind, owner)] if slash else []
    return []


def _session_tombs(key: str) -> list[str]:
    return [_tomb("c", encode_component(key))]


def _link_tombs(key: str) -> list[str]:
    user, _, conversation = key.partition("/")
    return [_tomb("u", user), _tomb("c", conversation)]


class _Guard:
    """A KVS write hook: retention policies (bot KVS only) and the erasure guard."""

    __slots__ = ("bot", "namespace", "policies", "tombs")

    def __init__(self, bot: Bot, namespace: str, tombs: Any, policies: bool) -> None:
        self.bot = bot
        self.namespace = namespace
        self.tombs = tombs
        self.policies = policies

    def wants(self, key: str) -> bool:
        if self.policies:
            config = self.bot.retention
            if config is not None and config.policies:
                return True
        return bool(self.tombs(key))

    async def cap(self, key: str, now: float) -> tuple[float, bool] | None:
        config = self.bot.retention if self.policies else None
        if config is None or not config.policies:
            return None
        policy = config.policy_for(key)
        if policy is None:
            return None
        if policy.mode == "sliding":
            return now + policy.period, True
        store = self.bot.store
        first = await first_write_time(store, self.bot.id, key, now, policy.period, store.limits)
        return first + policy.period, False

    async def written(self, items: Sequence[tuple[str, int]], started: float) -> None:
        guarded = [(key, version, tombs) for key, version in items if (tombs := self.tombs(key))]
        if not guarded:
            return
        checks = deferred_erasure_checks.get()
        if checks is not None and checks.defer(self, guarded, started):
            return  # checked once, after the unit of work's writes landed (see ErasureChecks)
        found = await _read_tombs(self.bot, sorted({t for _, _, tombs in guarded for t in tombs}))
        await self.undo_racing(guarded, started, found, {})

    async def undo_racing(
        self,
        guarded: Sequence[tuple[str, int, list[str]]],
        started: float,
        found: Mapping[str, Any],
        versions: Mapping[tuple[str, str], int],
    ) -> None:
        """Erase the writes of ``guarded`` that raced an erasure, given the tombstones ``found`` after them.

        ``versions`` gives the version a key ended up at when it differs from
        the one recorded (a batched write that had to be replayed).
        """
        if not found:
            return
        store = self.bot.store
        for key, version, tombs in guarded:
            for t in tombs:
                tomb = found.get(t)
                if tomb is not None and (tomb.get("ended") is None or started <= tomb["ended"]):
                    version = versions.get((self.namespace, key), version)
                    await _erase_if_version(store.kvs(self.namespace), key, version, store)
                    log.info("a write to %r raced an erasure and was undone", self.namespace)
                    break


async def _read_tombs(bot: Bot, names: Sequence[str]) -> dict[str, Any]:
    """The erasure tombstones among ``names`` of the bot, decoded, by name."""
    erased = bot.store.private_kvs(erased_ns(bot.id))
    if len(names) == 1:  # the common case, and a cheaper lookup than an IN list
        one = await erased.row(names[0])
        rows = [] if one is None else [one]
    else:
        rows = await erased.rows(names)
    return {r.key: decode(r.value) for r in rows}


class ErasureChecks:
    """The erasure guard of a unit of work (a runtime turn), checked once at its end.

    While ``deferred_erasure_checks`` holds one, guarded writes record what
    to check instead of reading their tombstones after each write; ``run``
    then reads every tombstone they need (one read per bot) and undoes the
    writes that raced an erasure. The claim of the module docstring holds as
    long as ``run`` is called after the last of those writes landed: the
    check only has to come after the write, not right after it. Writes made
    after ``run`` started (bot code that outlived its turn) are checked at
    once, as without a unit of work.
    """

    __slots__ = ("_entries", "open")

    def __init__(self) -> None:
        self._entries: list[tuple[_Guard, list[tuple[str, int, list[str]]], float]] = []
        self.open = True

    def defer(self, guard: _Guard, guarded: list[tuple[str, int, list[str]]], started: float) -> bool:
        """Record a guarded write for ``run``; False when closed (the caller checks at once)."""
        if not self.open:
            return False
        self._entries.append((guard, guarded, started))
        return True

    def __bool__(self) -> bool:
        return bool(self._entries)

    async def run(self, versions: Mapping[tuple[str, str], int] | None = None) -> None:
        """Check every recorded write; ``versions``: see ``_Guard.undo_racing``."""
        self.open = False
        entries, self._entries = self._entries, []
        by_bot: dict[int, list[tuple[_Guard, list[tuple[str, int, list[str]]], float]]] = {}
        for entry in entries:
            by_bot.setdefault(id(entry[0].bot), []).append(entry)
        for group in by_bot.values():
            names = sorted({t for _, guarded, _ in group for _, _, tombs in guarded for t in tombs})
            found = await _read_tombs(group[0][0].bot, names)
            for guard, guarded, started in group:
                await guard.undo_racing(guarded, started, found, versions or {})


#: The unit of work whose erasure checks are deferred (the runtime sets it for a turn).
deferred_erasure_checks: ContextVar[ErasureChecks | None] = ContextVar("botmemory_erasure_checks", default=None)


async def _erase_if_version(kvs: KVS, key: str, version: int, store: Store) -> None:
    """Blank and expire ``key`` if it is still at ``version`` (a newer write is left alone)."""
    blank = Mutation(encode(None, store.limits), store.clock.now())  # expired at once; the value is overwritten

    def change(row: Row | None) -> Mutation | None:
        return blank if row is not None and row.version == version else None

    await kvs.mutate_row(key, change)


def install_hooks(bot: Bot) -> None:
    """Plug retention into a new bot handle (a bot hook: ``Bot.__init__`` calls it, see ``botmemory.store``).

    Its KVS then applies ``bot.retention``'s policies to writes, records
    ``delete_prefix`` in the audit log while ``bot.retention`` is set, and,
    with the bot's sessions and links, runs the erasure guard.
    """
    store = bot.store
    bot.kvs.write_hook = _Guard(bot, bot.id, _memory_tombs, True)
    sessions = store.private_kvs(sessions_ns(bot.id))
    if sessions.write_hook is None:
        sessions.write_hook = _Guard(bot, sessions.namespace, _session_tombs, False)
    links = store.private_kvs(links_ns(bot.id))
    if links.write_hook is None:
        links.write_hook = _Guard(bot, links.namespace, _link_tombs, False)
    owners = store.private_kvs(owners_ns(bot.id))
    if owners.write_hook is None:  # an owner record names the user: a racing claim must not outlive forget
        owners.write_hook = _Guard(bot, owners.namespace, _session_tombs, False)

    async def on_delete(prefix: str, count: int) -> None:
        config = bot.retention
        if config is None:
            return
        audit = AuditLog(store, retention=config.audit_retention)
        await audit.record(
            bot.id,
            scope="kvs",
            owner_id=None,
            key=prefix + "*",
            reason="delete_prefix",
            user_id=user_of_key(prefix),
            count=count,
        )

    bot.kvs.on_delete = on_delete


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
        tombs = [_user_tomb(user_id), *(_conversation_tomb(c) for c in conversations)]
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
                    {_conversation_tomb(c): {"started": started, "ended": None} for c in new},
                    expiry=ERASURE_GUARD_TTL,
                )
                tombs.extend(_conversation_tomb(c) for c in new)
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
