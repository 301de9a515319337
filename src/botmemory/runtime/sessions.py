"""Sessions, per-conversation leases and the user's current conversation.

A session (one per bot and conversation) is a row of the private namespace
``__rt/sessions/<bot>`` (``botmemory.retention.layout``): key = conversation id,
value ``{"user_id", "flow", "node", "temp", "started_at", "last_activity"}``,
KVS expiry = ``last_activity + session_timeout``. The store-wide purge never
touches it, so a timed-out session stays findable (``scan_expired``) until
the runtime ends it properly: variables discarded, hook called.

Turns of one conversation are serialised by a lease in the backend
(``acquire_lock``/``release_lock``), not by a transaction held for the whole
turn: hooks and actions write through the KVS meanwhile. Waiting for the
lease polls in real time with a short backoff; the lease's own expiry and
every session time come from the store's clock. Saving a session is a
compare-and-set on the version read at the start of the turn, so a turn
whose lease was lost (it outlived the lease's TTL) cannot overwrite a newer
session.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from ..backends.base import LockLease, Row
from ..codec import decode
from ..errors import StoreTimeoutError
from ..keys import encode_component
from ..retention.layout import current_ns, owners_ns, sessions_ns
from ..store import Store

__all__ = ["ConversationLease", "Session", "SessionStore"]

logger = logging.getLogger("botmemory.runtime")

_EXPIRED_SCAN: Final = 100
_HOST: Final = f"{socket.gethostname()}:{os.getpid()}"


@dataclass(slots=True)
class Session:
    """Where a conversation stands: flow, node and ``temp``, with its times (epoch seconds)."""

    user_id: str
    flow: str
    node: str
    temp: dict[str, Any] = field(default_factory=dict)
    started_at: float = 0.0
    last_activity: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "flow": self.flow,
            "node": self.node,
            "temp": self.temp,
            "started_at": self.started_at,
            "last_activity": self.last_activity,
        }

    @classmethod
    def from_json(cls, data: Any) -> Session:
        if not isinstance(data, dict):
            raise ValueError(f"a session row must be an object, got {type(data).__name__}")
        temp = data.get("temp")
        return cls(
            user_id=str(data["user_id"]),
            flow=str(data["flow"]),
            node=str(data["node"]),
            temp=temp if isinstance(temp, dict) else {},
            started_at=float(data.get("started_at", 0.0)),
            last_activity=float(data.get("last_activity", 0.0)),
        )


def _readable(key: str, value: bytes) -> Session:
    """The session in a (timed-out) row, or a stand-in (no user) that lets it be ended when it is unreadable."""
    try:
        return Session.from_json(decode(value))
    except (KeyError, TypeError, ValueError) as exc:
        logger.warning("unreadable timed-out session %s: %s", key, exc)
        return Session(user_id="", flow="", node="")


class SessionStore:
    """The sessions of one bot (and the pointers to its users' current conversations)."""

    __slots__ = ("_current", "_kvs", "_owners", "_store", "bot_id")

    def __init__(self, store: Store, bot_id: str) -> None:
        self._store = store
        self.bot_id = bot_id
        self._kvs = store.private_kvs(sessions_ns(bot_id))
        self._current = store.private_kvs(current_ns(bot_id))
        self._owners = store.private_kvs(owners_ns(bot_id))

    async def get(self, conversation_id: str) -> tuple[Session, int] | None:
        """The live session and its version, or None (missing or timed out)."""
        entry = await self._kvs.get_entry(conversation_id)
        if entry is None:
            return None
        try:
            return Session.from_json(entry.value), entry.version
        except (KeyError, TypeError, ValueError) as exc:
            # A row this runtime cannot read would fail every turn of the
            # conversation: drop it, and the conversation starts over.
            logger.warning("bot %s: unreadable session %s dropped: %s", self.bot_id, conversation_id, exc)
            await self._kvs.delete(conversation_id)
            return None

    async def find_expired(self, conversation_id: str) -> Session | None:
        """The timed-out session of a conversation that no one has ended yet, if any."""
        rows = await self._kvs.expired_rows(conversation_id, _EXPIRED_SCAN)
        for row in rows:
            if row.key == conversation_id:
                return _readable(row.key, row.value)
        return None

    async def expired(self, limit: int) -> list[tuple[str, Session]]:
        """Up to ``limit`` timed-out sessions, oldest deadline first."""
        rows = await self._kvs.expired_rows("", limit)
        return [(row.key, _readable(row.key, row.value)) for row in rows]

    async def save(self, conversation_id: str, session: Session, version: int, timeout: float) -> int:
        """Write the session if it is still at ``version`` (0: new); expiry = now + ``timeout``.

        Raises:
            VersionConflictError: someone else wrote the session meanwhile.
        """
        return await self._kvs.set(conversation_id, session.to_json(), expiry=timeout, if_version=version)

    async def delete(self, conversation_id: str) -> None:
        """Remove the session row (live or timed out)."""
        await self._kvs.delete(conversation_id)

    # -- who a conversation belongs to ---------------------------------------
    async def owner(self, conversation_id: str) -> str | None:
        """The user who started the conversation, or None when nobody has yet.

        Conversations started before owners were recorded have no owner
        record: while their session is live, its user owns them.
        """
        value = await self._owners.get(conversation_id)
        user = value.get("user_id") if isinstance(value, dict) else None
        if isinstance(user, str):
            return user
        found = await self.get(conversation_id)
        return found[0].user_id if found is not None and found[0].user_id else None

    async def claim(self, conversation_id: str, user_id: str) -> bool:
        """Record ``user_id`` as the conversation's owner if it has none (atomic); True when recorded."""
        record = {"user_id": user_id, "since": self._store.clock.now()}
        return await self._owners.set_if_absent(conversation_id, record)

    # -- the user's current conversation -------------------------------------
    async def current(self, user_id: str) -> str | None:
        """The conversation ``converse(conversation_id=None)`` continues, or None."""
        value = await self._current.get(user_id)
        cid = value.get("conversation_id") if isinstance(value, dict) else None
        return cid if isinstance(cid, str) else None

    async def set_current(self, user_id: str, conversation_id: str) -> None:
        """Make ``conversation_id`` the user's current conversation."""
        await self._current.set(user_id, {"conversation_id": conversation_id, "since": self._store.clock.now()})

    async def clear_current(self, user_id: str, conversation_id: str) -> None:
        """Forget the pointer if it still points at ``conversation_id``."""
        if await self.current(user_id) == conversation_id:
            await self._current.delete(user_id)


class ConversationLease:
    """The lease that serialises the turns of one conversation (``async with``).

    Args:
        store: the store whose backend keeps the lease.
        bot_id: the bot.
        conversation_id: the conversation.
        ttl: seconds (store clock) after which an abandoned lease can be taken over.
        wait: seconds (real time) to wait for the lease before ``StoreTimeoutError``;
            0 tries once and raises at once.
    """

    __slots__ = ("_store", "lease", "name", "owner", "rows", "ttl", "wait")

    def __init__(self, store: Store, bot_id: str, conversation_id: str, *, ttl: float, wait: float) -> None:
        self._store = store
        self.name = f"{sessions_ns(bot_id)}/{encode_component(conversation_id)}"
        # a fresh owner per turn: two turns of one process must exclude each other too
        self.owner = f"{_HOST}:{uuid.uuid4().hex}"
        self.ttl = ttl
        self.wait = wait
        self.lease: LockLease | None = None
        #: rows read with the lease (``acquire(read=…)``), as ``(namespace, row)``
        self.rows: list[tuple[str, Row]] = []

    async def try_acquire(self, read: Sequence[tuple[str, str]] = (), reader: Any = None) -> bool:
        """Take the lease if it is free; True when taken.

        Args:
            read: ``(namespace, key)`` pairs to read right after taking it, in
                the same call, with ``reader`` (a ``TurnBatching`` backend); see ``rows``.
            reader: what reads them (the runtime's ``turnbatch.TurnBackend``).
        """
        if read and reader is not None:
            self.lease, self.rows = await reader.acquire_and_read(
                self.name, self.owner, self.ttl, read, self._store.clock.now()
            )
        else:
            self.lease = await self._store.acquire_lock(self.name, self.owner, self.ttl)
        return self.lease is not None

    async def acquire(self, read: Sequence[tuple[str, str]] = (), reader: Any = None) -> list[tuple[str, Row]]:
        """Wait (polling with backoff, real time) until the lease is ours; returns the rows of ``read``.

        Raises:
            StoreTimeoutError: not free within ``wait`` seconds.
        """
        deadline = time.monotonic() + self.wait
        delay = 0.002
        while not await self.try_acquire(read, reader):
            if time.monotonic() >= deadline:
                raise StoreTimeoutError(f"conversation is busy: no turn lease within {self.wait:g}s ({self.name})")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)
        return self.rows

    async def release(self) -> None:
        """Give the lease back (no-op when not held)."""
        if self.lease is not None:
            self.lease = None
            await self._store.release_lock(self.name, self.owner)

    async def __aenter__(self) -> ConversationLease:
        await self.acquire()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.release()
