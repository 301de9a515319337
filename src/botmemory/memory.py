"""Dialog memory: user, conversation and global variables of one bot.

Variables live in the bot's KVS under the Botpress key layout
``storage/users/<user_id>/<name>``, ``storage/conversation/<conversation_id>/<name>``
and ``storage/global/<name>``, with every id and name percent-encoded, so no
id can reach another user's or scope's data, and KVS prefix operations,
export and erasure see memory too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .errors import InvalidKeyError
from .keys import decode_component, encode_component, validate_key
from .kvs import KVS

__all__ = [
    "CONVERSATION_PREFIX",
    "GLOBAL_PREFIX",
    "USERS_PREFIX",
    "DialogMemory",
    "Scope",
    "conversation_prefix",
    "conversation_variable_key",
    "global_variable_key",
    "parse_memory_key",
    "user_prefix",
    "user_variable_key",
]

# -- the key layout ----------------------------------------------------------

USERS_PREFIX = "storage/users/"
CONVERSATION_PREFIX = "storage/conversation/"
GLOBAL_PREFIX = "storage/global/"


def user_variable_key(user_id: str, name: str) -> str:
    """The KVS key of a user variable (ids are not validated here)."""
    return f"{USERS_PREFIX}{encode_component(user_id)}/{encode_component(name)}"


def user_prefix(user_id: str) -> str:
    """The KVS prefix of all of one user's variables."""
    return f"{USERS_PREFIX}{encode_component(user_id)}/"


def conversation_variable_key(conversation_id: str, name: str) -> str:
    """The KVS key of a conversation variable (ids are not validated here)."""
    return f"{CONVERSATION_PREFIX}{encode_component(conversation_id)}/{encode_component(name)}"


def conversation_prefix(conversation_id: str) -> str:
    """The KVS prefix of all of one conversation's variables."""
    return f"{CONVERSATION_PREFIX}{encode_component(conversation_id)}/"


def global_variable_key(name: str) -> str:
    """The KVS key of a bot-global variable (the name is not validated here)."""
    return f"{GLOBAL_PREFIX}{encode_component(name)}"


def _decode_id(s: str) -> str | None:
    try:
        decoded = decode_component(s)
        # An id the memory API would refuse was not written by it.
        validate_key(decoded, None)
    except InvalidKeyError:
        return None
    return decoded


def parse_memory_key(key: str) -> tuple[str, str | None, str] | None:
    """Split a KVS key of the dialog-memory layout into scope, id and name.

    Args:
        key: any KVS key.

    Returns:
        ``("user", user_id, name)``, ``("conversation", conversation_id,
        name)`` or ``("global", None, name)``; None for any key that the
        memory layout functions could not have built from valid ids.
    """
    if key.startswith(USERS_PREFIX):
        scope, rest = "user", key[len(USERS_PREFIX) :]
    elif key.startswith(CONVERSATION_PREFIX):
        scope, rest = "conversation", key[len(CONVERSATION_PREFIX) :]
    elif key.startswith(GLOBAL_PREFIX):
        name = _decode_id(key[len(GLOBAL_PREFIX) :])
        return None if name is None else ("global", None, name)
    else:
        return None
    owner_part, slash, name_part = rest.partition("/")
    if not slash:
        return None
    owner = _decode_id(owner_part)
    name = _decode_id(name_part)  # a second "/" makes this fail: encoded names have none
    if owner is None or name is None:
        return None
    return scope, owner, name


# -- the handles -------------------------------------------------------------


class Scope:
    """The variables of one user, one conversation, or the bot's global scope."""

    sync_handle = True  # the sync facade wraps it (botmemory.sync)
    __slots__ = ("_kvs", "_max_id", "prefix", "scope")

    def __init__(self, kvs: KVS, scope: str, prefix: str, max_id_bytes: int) -> None:
        self._kvs = kvs
        self._max_id = max_id_bytes
        self.scope = scope
        self.prefix = prefix

    def __repr__(self) -> str:
        return f"<Scope {self.scope} {self.prefix!r}>"

    def key(self, name: str) -> str:
        """The KVS key of variable ``name`` (validated)."""
        return self.prefix + encode_component(validate_key(name, self._max_id, "variable name"))

    async def get(self, name: str, default: Any = None) -> Any:
        """The variable's value, or ``default`` when unset or expired."""
        return await self._kvs._get(self.key(name), None, default)

    async def set(self, name: str, value: Any, expiry: Any = None) -> int:
        """Set the variable; returns its new version. ``expiry`` as in the KVS."""
        return await self._kvs._set(self.key(name), value, None, expiry)

    async def delete(self, name: str) -> bool:
        """Delete the variable; True when it was set."""
        return await self._kvs._delete([self.key(name)]) > 0

    async def incr(self, name: str, amount: int | float = 1) -> int | float:
        """Add ``amount`` atomically (unset counts as 0); returns the new number."""
        return await self._kvs._incr(self.key(name), amount, None)

    async def items(self) -> dict[str, Any]:
        """Every live variable of the scope, by name."""
        # Only keys this layout builds from valid ids are variables: a raw KVS
        # write under the prefix (Botpress code does not percent-encode) is
        # skipped rather than failing the whole listing.
        names: dict[str, str] = {}
        async for key in self._kvs._keys(self.prefix):
            parsed = parse_memory_key(key)
            if parsed is not None:
                names[key] = parsed[2]
        values = await self._kvs._get_many(list(names))
        return {names[k]: v for k, v in values.items()}

    async def clear(self) -> int:
        """Delete every key under the scope's prefix; the number of live keys deleted."""
        return await self._kvs._delete_prefix(self.prefix)


class DialogMemory:
    """``bot.memory``: the three Botpress scopes over the bot's KVS."""

    sync_handle = True  # the sync facade wraps it (botmemory.sync)
    __slots__ = ("_kvs", "_max_id")

    def __init__(self, kvs: KVS, max_id_bytes: int) -> None:
        self._kvs = kvs
        self._max_id = max_id_bytes

    def _id(self, value: object, what: str) -> str:
        return validate_key(value, self._max_id, what)

    def user(self, user_id: str) -> Scope:
        """The variables of one user (they survive conversations)."""
        return Scope(self._kvs, "user", user_prefix(self._id(user_id, "user id")), self._max_id)

    def conversation(self, conversation_id: str) -> Scope:
        """The variables of one conversation (discarded when its session ends)."""
        cid = self._id(conversation_id, "conversation id")
        return Scope(self._kvs, "conversation", conversation_prefix(cid), self._max_id)

    def global_scope(self) -> Scope:
        """The bot's global variables, shared by all its users and conversations."""
        return Scope(self._kvs, "global", GLOBAL_PREFIX, self._max_id)

    def scope(self, scope: str, owner_id: str | None = None) -> Scope:
        """A scope by name: ``"user"``, ``"conversation"`` (with an owner id) or ``"global"``."""
        factories: dict[str, Callable[[], Scope]] = {
            "user": lambda: self.user(owner_id),  # type: ignore[arg-type]
            "conversation": lambda: self.conversation(owner_id),  # type: ignore[arg-type]
            "global": self.global_scope,
        }
        if scope not in factories:
            from .errors import InvalidInputError

            raise InvalidInputError(f"unknown scope {scope!r}: expected user, conversation or global")
        return factories[scope]()

    # -- user ----------------------------------------------------------------
    async def set_user_variable(self, user_id: str, name: str, value: Any, expiry: Any = None) -> int:
        """Set a user variable; returns its new version."""
        return await self.user(user_id).set(name, value, expiry)

    async def get_user_variable(self, user_id: str, name: str, default: Any = None) -> Any:
        """A user variable, or ``default``."""
        return await self.user(user_id).get(name, default)

    async def delete_user_variable(self, user_id: str, name: str) -> bool:
        """Delete a user variable; True when it was set."""
        return await self.user(user_id).delete(name)

    # -- conversation ----------------------------------------------------------
    async def set_conversation_variable(
        self, conversation_id: str, name: str, value: Any, expiry: Any = None
    ) -> int:
        """Set a conversation variable; returns its new version."""
        return await self.conversation(conversation_id).set(name, value, expiry)

    async def get_conversation_variable(self, conversation_id: str, name: str, default: Any = None) -> Any:
        """A conversation variable, or ``default``."""
        return await self.conversation(conversation_id).get(name, default)

    async def delete_conversation_variable(self, conversation_id: str, name: str) -> bool:
        """Delete a conversation variable; True when it was set."""
        return await self.conversation(conversation_id).delete(name)

    async def end_conversation(self, conversation_id: str) -> int:
        """Discard every variable of the conversation; returns how many were live."""
        return await self.conversation(conversation_id).clear()

    # -- global ----------------------------------------------------------------
    async def set_global_variable(self, name: str, value: Any, expiry: Any = None) -> int:
        """Set a global variable of this bot; returns its new version."""
        return await self.global_scope().set(name, value, expiry)

    async def get_global_variable(self, name: str, default: Any = None) -> Any:
        """A global variable of this bot, or ``default``."""
        return await self.global_scope().get(name, default)

    async def delete_global_variable(self, name: str) -> bool:
        """Delete a global variable; True when it was set."""
        return await self.global_scope().delete(name)
