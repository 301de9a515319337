"""Bot Framework SDK for Python: botmemory as a bot's ``Storage``.

``BotMemoryStorage(store, bot_id="echo")`` replaces ``MemoryStorage``,
``BlobStorage`` or ``CosmosDbPartitionedStorage`` behind ``UserState``,
``ConversationState``, ``PrivateConversationState`` and dialogs::

    store = await botmemory.open("sqlite:///bot.db")
    storage = BotMemoryStorage(store, bot_id="echo")
    user_state = UserState(storage)
    conversation_state = ConversationState(storage)
    adapter.use(LinkConversations(storage))   # optional: forget(user) also erases their conversations

Where the value goes: a key that names a user (``UserState``'s
``<channel>/users/<user id>``, ``PrivateConversationState``'s
``<channel>/conversations/<conversation id>/users/<user id>/<name>``) is a
variable of that user in the bot's dialog memory, a ``ConversationState``
key (``<channel>/conversations/<conversation id>``) a variable of that
conversation, named after the whole key. So retention policies
(``user.*``, ``conversation.*``), the audit log, ``bot.users.export`` and
``bot.users.forget`` cover them like any other memory. Every other key is a
KVS key under ``prefix`` (default ``botframework/``), percent-encoded, so
keys that differ only in escaping stay apart (``CosmosDbKeyEscape`` maps
``a/b`` and ``a*47b`` to one document).

Values are flattened with jsonpickle, as the Bot Framework's Blob and Cosmos
DB storages do (so dialog state and custom classes come back as objects),
and stored as ``{"eTag": ..., "document": ...}``. Concurrency follows the
Bot Framework: a write whose ``e_tag`` is ``None`` or ``"*"`` overwrites;
any other ``e_tag`` must be the stored item's current one, or the write is
refused with ``EtagConflictError`` (a ``KeyError``, as ``MemoryStorage``
raises); of several concurrent writers holding the same eTag exactly one
wins; every write gives the item a new eTag.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Final

from botbuilder.core import Middleware, Storage, TurnContext
from jsonpickle.pickler import Pickler
from jsonpickle.unpickler import Unpickler

from ..errors import InvalidInputError, InvalidKeyError, VersionConflictError
from ..store import Store
from .keyparts import encode, hashed

__all__ = ["BotMemoryStorage", "EtagConflictError", "LinkConversations"]

# Most specific first: a private conversation key also looks like a conversation key.
_PRIVATE_RE: Final = re.compile(r"[^/]+/conversations/[^/]+/users/(?P<user>[^/]+)/[^/]+", re.DOTALL)
_USER_RE: Final = re.compile(r"[^/]+/users/(?P<user>.+)", re.DOTALL)
_CONVERSATION_RE: Final = re.compile(r"[^/]+/conversations/(?P<conversation>.+)", re.DOTALL)


class EtagConflictError(VersionConflictError, KeyError):
    """A write's eTag is not the stored item's current one (stale, made up, or the item is gone).

    A ``KeyError`` like ``MemoryStorage``'s "Etag conflict." and a
    ``botmemory.VersionConflictError``, so either family catches it.
    """

    def __str__(self) -> str:  # KeyError quotes its argument; keep the message readable
        return str(self.args[0]) if self.args else ""


def _etag_of(item: object) -> Any:
    if isinstance(item, Mapping):
        return item.get("e_tag")
    return getattr(item, "e_tag", None)


def _flatten(item: object) -> Any:
    """The item as JSON, the way the Bot Framework's Cosmos DB storage flattens it (eTag left out)."""
    document = Pickler().flatten(item)
    if isinstance(document, dict):
        document.pop("e_tag", None)
    return document


class BotMemoryStorage(Storage):  # type: ignore[misc]  # botbuilder ships no type hints
    """A Bot Framework ``Storage`` over one bot of a botmemory store.

    Args:
        store: an open ``botmemory.Store`` (async; open it in the bot's event loop).
        bot_id: the botmemory bot whose memory and KVS hold the state.
        prefix: KVS prefix of keys that name neither a user nor a conversation.

    Raises:
        InvalidKeyError: ``bot_id`` or ``prefix`` is invalid.
    """

    def __init__(self, store: Store, *, bot_id: str, prefix: str = "botframework/") -> None:
        super().__init__()
        if not isinstance(store, Store):
            raise InvalidInputError("BotMemoryStorage needs a botmemory.Store (from `await botmemory.open(url)`)")
        self.store = store
        self.bot = store.bot(bot_id)
        if not isinstance(prefix, str) or not prefix or prefix.startswith("storage/"):
            raise InvalidKeyError(f"prefix must be a non-empty KVS prefix outside storage/, got {prefix!r}")
        self.prefix = prefix
        self._max_key = store.limits.max_key_bytes
        self._max_id = store.limits.max_id_bytes

    def __repr__(self) -> str:
        return f"<BotMemoryStorage bot={self.bot.id!r} on {self.store!r}>"

    # -- where a key lives ---------------------------------------------------------
    def location(self, key: str) -> str:
        """The KVS key (in ``bot.kvs``) that holds the item stored under ``key``.

        A user's or conversation's state is a variable of that scope named
        ``key`` (a hash of it when the name is too long); everything else,
        and keys whose ids botmemory refuses, lives under ``prefix``.
        """
        if not isinstance(key, str):
            raise InvalidKeyError(f"Bot Framework storage keys are strings, got {type(key).__name__}")
        scoped = self._scoped(key)
        if scoped is not None:
            return scoped
        plain = self.prefix + encode(key)
        return plain if len(plain.encode("utf-8")) <= self._max_key else self.prefix + hashed(key)

    def _scoped(self, key: str) -> str | None:
        memory = self.bot.memory
        try:
            if (m := _PRIVATE_RE.fullmatch(key) or _USER_RE.fullmatch(key)) is not None:
                scope = memory.user(m["user"])
            elif (m := _CONVERSATION_RE.fullmatch(key)) is not None:
                scope = memory.conversation(m["conversation"])
            else:
                return None
            # A whole key as the variable's name: names with "/" never clash with a hash.
            name = key if len(key.encode("utf-8", "surrogatepass")) <= self._max_id else hashed(key)
            location = scope.key(name)
        except (InvalidKeyError, UnicodeError):
            return None  # an id or name botmemory refuses: kept under the plain prefix
        return location if len(location.encode("utf-8")) <= self._max_key else None

    # -- Storage ---------------------------------------------------------------------
    async def read(self, keys: Iterable[str]) -> dict[str, Any]:
        """The stored items among ``keys``, each with its current ``e_tag``; missing keys are left out.

        Raises:
            InvalidInputError: ``keys`` is None ("Keys are required when reading").
        """
        if keys is None:
            raise InvalidInputError("Keys are required when reading")
        wanted = {key: self.location(key) for key in keys}
        if not wanted:
            return {}
        found = await self.bot.kvs.get_many(list(dict.fromkeys(wanted.values())))
        items: dict[str, Any] = {}
        for key, location in wanted.items():
            stored = found.get(location)
            if not isinstance(stored, dict) or "document" not in stored:
                continue
            document = stored["document"]
            if isinstance(document, dict):
                document = {**document, "e_tag": stored.get("eTag")}
            items[key] = Unpickler().restore(document)
        return items

    async def write(self, changes: Mapping[str, Any]) -> None:
        """Store every item of ``changes``; each gets a new eTag.

        Raises:
            InvalidInputError: ``changes`` is None, or an item's ``e_tag`` is
                ``""`` (nothing is written then).
            EtagConflictError: an item's ``e_tag`` is not the stored one's
                (items before it in ``changes`` may have been written).
            ValueTypeError: an item does not flatten to JSON botmemory accepts.
        """
        if changes is None:
            raise InvalidInputError("Changes are required when writing")
        if not changes:
            return
        overwrite: dict[str, Any] = {}
        conditional: list[tuple[str, str, str, dict[str, Any]]] = []
        for key, item in changes.items():
            etag = _etag_of(item)
            if etag == "":
                raise InvalidInputError("BotMemoryStorage.write(): etag missing")
            value = {"eTag": uuid.uuid4().hex, "document": _flatten(item)}
            location = self.location(key)
            if etag is None or etag == "*":
                overwrite[location] = value
            else:
                conditional.append((key, location, str(etag), value))
        kvs = self.bot.kvs
        if overwrite:
            await kvs.set_many(overwrite)
        for key, location, etag, value in conditional:
            entry = await kvs.get_entry(location)
            current = entry.value.get("eTag") if entry is not None and isinstance(entry.value, dict) else None
            if entry is None or current != etag:
                raise EtagConflictError(f"Etag conflict.\nOriginal: {etag}\r\nCurrent: {current} (key {key!r})")
            try:
                await kvs.set(location, value, if_version=entry.version)
            except VersionConflictError:
                raise EtagConflictError(
                    f"Etag conflict.\nOriginal: {etag}\r\nCurrent: changed by a concurrent write (key {key!r})"
                ) from None

    async def delete(self, keys: Iterable[str]) -> None:
        """Delete the items stored under ``keys``; missing keys are ignored.

        Raises:
            InvalidInputError: ``keys`` is None.
        """
        if keys is None:
            raise InvalidInputError("Keys are required when deleting")
        locations = list(dict.fromkeys(self.location(key) for key in keys))
        if locations:
            await self.bot.kvs.delete_many(locations)


class LinkConversations(Middleware):  # type: ignore[misc]  # botbuilder ships no type hints
    """Middleware that records, on every turn, that the sender takes part in the conversation.

    With it, ``bot.users.forget(user_id)`` (and ``export``) also cover the
    ``ConversationState`` of the user's conversations, not only their
    ``UserState``. Add it with ``adapter.use(LinkConversations(storage))``.
    It links on every turn rather than once per process, because ``forget``
    removes the link and a conversation that goes on must be linked again.
    """

    def __init__(self, storage: BotMemoryStorage) -> None:
        self.users = storage.bot.users

    async def on_turn(self, context: TurnContext, logic: Callable[[], Awaitable[Any]]) -> Any:
        activity = context.activity
        user = getattr(getattr(activity, "from_property", None), "id", None)
        conversation = getattr(getattr(activity, "conversation", None), "id", None)
        if isinstance(user, str) and isinstance(conversation, str):
            try:
                await self.users.link_conversation(user, conversation)
            except InvalidKeyError:
                pass  # ids botmemory refuses are stored under the plain prefix, not in scopes
        return await logic()
