"""The hooks a bot's KVS runs on writes: retention policies and the erasure guard.

``install_hooks`` is registered as a bot hook (``botmemory/__init__``), so
every ``Bot`` handle's KVS, and the bot's private session, link and owner
namespaces, run a ``_Guard`` after each write: it applies ``bot.retention``'s
policies (bot KVS only) and the erasure guard below. ``delete_prefix`` calls
are recorded in the audit log while ``bot.retention`` is set.

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

A runtime turn defers the checks of its guarded writes to one check at the
end of the turn (``ErasureChecks``, ``deferred_erasure_checks``): the claim
above needs the check after the write, not right after it.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Final

from ..backends.base import PRIVATE_NS_PREFIX, Mutation, Row
from ..codec import decode, encode
from ..keys import encode_component
from ..memory import CONVERSATION_PREFIX, USERS_PREFIX
from .audit import AuditLog, user_of_key
from .layout import links_ns, owners_ns, sessions_ns
from .policy import first_write_time

if TYPE_CHECKING:
    from ..kvs import KVS
    from ..store import Bot, Store

__all__ = ["ERASURE_GUARD_TTL", "ErasureChecks", "deferred_erasure_checks", "erased_ns", "install_hooks"]

log = logging.getLogger(__name__)

ERASURE_GUARD_TTL: Final = 86_400.0
"""Seconds an erasure tombstone guards against writes that were in flight."""


def erased_ns(bot_id: str) -> str:
    """The private namespace of erasure tombstones."""
    return f"{PRIVATE_NS_PREFIX}erased/{bot_id}"


def _tomb(kind: str, encoded_id: str) -> str:
    # a hash: the tombstone must not keep the erased user's id around
    return kind + "/" + hashlib.sha256(encoded_id.encode("utf-8")).hexdigest()


def user_tomb(user_id: str) -> str:
    return _tomb("u", encode_component(user_id))


def conversation_tomb(conversation_id: str) -> str:
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
