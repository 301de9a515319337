"""The server's own state in the store: API tokens, one-time login codes, the signing secret, leases.

Everything lives in private KVS namespaces (``store.private_kvs``), so every
``serve`` replica sharing a store sees the same tokens at once, and no bot
can reach them. This is the one module that knows where: moving the state
elsewhere means changing only this file.

- ``__rt/http/tokens``: key = token id (12 hex digits); value
  ``{"id", "hash", "scope", "bot", "name", "created_at"}``, where ``hash``
  is the SHA-256 of the token's secret part (the token itself is never
  stored). Tokens read ``bm_<id>_<secret>``.
- ``__rt/http/login``: one-time login codes: key = SHA-256 of the code;
  value ``{"token_id"}``; expires after ``LOGIN_CODE_TTL``.
- ``__rt/http/secret``: ``signing``: the key that signs listing cursors and
  admin UI session cookies (created by the first replica, shared by all).
- ``__rt/http/leases``: ``janitor``: which replica runs the janitor now.

It also reads (never writes) two of the runtime's namespaces for the admin
UI: the live sessions of a bot and a user's current conversation.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import socket
import uuid
from dataclasses import dataclass
from typing import Any, Final

from ..errors import InvalidInputError, KeyNotFoundError
from ..keys import validate_bot_id
from ..kvs import KVS
from ..retention.layout import current_ns, sessions_ns
from ..store import Store

__all__ = [
    "LOGIN_CODE_TTL",
    "Lease",
    "TokenInfo",
    "consume_login_code",
    "create_login_code",
    "create_token",
    "current_conversation",
    "get_token",
    "has_tokens",
    "list_tokens",
    "live_sessions",
    "revoke_token",
    "signing_key",
    "verify_token",
]

TOKENS_NS: Final = "__rt/http/tokens"
LOGIN_NS: Final = "__rt/http/login"
SECRET_NS: Final = "__rt/http/secret"  # noqa: S105 - a namespace name, not a secret
LEASES_NS: Final = "__rt/http/leases"

LOGIN_CODE_TTL: Final = 900.0
"""Seconds a one-time login link stays valid."""

_TOKEN_RE: Final = re.compile(r"bm_([0-9a-f]{12})_([A-Za-z0-9_-]{20,100})", re.ASCII)
_ID_RE: Final = re.compile(r"[0-9a-f]{12}", re.ASCII)
# compared against when the token id is unknown, so a miss costs what a hit costs
_DUMMY_HASH: Final = hashlib.sha256(b"no such token").hexdigest()


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """What a token may do: ``scope`` is ``"admin"`` or ``"bot"`` (then ``bot`` names the bot)."""

    id: str
    scope: str
    bot: str | None
    name: str | None
    created_at: float

    @property
    def is_admin(self) -> bool:
        return self.scope == "admin"

    def may_use(self, bot_id: str) -> bool:
        """Whether the token reaches bot ``bot_id``'s data."""
        return self.is_admin or self.bot == bot_id

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "scope": self.scope, "bot": self.bot, "name": self.name, "created_at": self.created_at}


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def _info(value: Any) -> TokenInfo | None:
    if not isinstance(value, dict):
        return None
    scope = value.get("scope")
    if scope not in ("admin", "bot"):
        return None
    return TokenInfo(
        id=str(value.get("id")),
        scope=scope,
        bot=value.get("bot") if scope == "bot" else None,
        name=value.get("name"),
        created_at=float(value.get("created_at") or 0.0),
    )


def _tokens(store: Store) -> KVS:
    return store.private_kvs(TOKENS_NS)


async def create_token(
    store: Store, *, bot: str | None = None, admin: bool = False, name: str | None = None
) -> tuple[str, TokenInfo]:
    """Create a token for one bot (``bot=``) or for everything (``admin=True``).

    Returns:
        ``(token, info)``: the token text, shown once (only its hash is stored).

    Raises:
        InvalidInputError: neither or both of ``bot`` and ``admin``; a bad bot id or name.
    """
    if admin == (bot is not None):
        raise InvalidInputError("a token is either for one bot (--bot BOT) or admin (--admin)")
    if bot is not None:
        validate_bot_id(bot)
    if name is not None and (
        not isinstance(name, str) or not name.strip() or len(name) > 200 or not name.isprintable()
    ):
        raise InvalidInputError("a token name is 1 to 200 printable characters")
    kvs = _tokens(store)
    while True:
        token_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        record = {
            "id": token_id,
            "hash": _hash(secret),
            "scope": "admin" if admin else "bot",
            "bot": bot,
            "name": name,
            "created_at": store.clock.now(),
        }
        if await kvs.set_if_absent(token_id, record):
            info = _info(record)
            assert info is not None
            return f"bm_{token_id}_{secret}", info


async def verify_token(store: Store, token: str) -> TokenInfo | None:
    """The token's rights, or None when it is malformed, unknown or revoked (compared in constant time)."""
    match = _TOKEN_RE.fullmatch(token)
    if match is None:
        return None
    token_id, secret = match.groups()
    record = await _tokens(store).get(token_id)
    stored = record.get("hash") if isinstance(record, dict) else None
    ok = hmac.compare_digest(stored if isinstance(stored, str) else _DUMMY_HASH, _hash(secret))
    return _info(record) if ok and stored is not None else None


async def get_token(store: Store, token_id: str) -> TokenInfo | None:
    """The token with this id, if it exists (not revoked)."""
    if not isinstance(token_id, str) or not _ID_RE.fullmatch(token_id):
        return None
    return _info(await _tokens(store).get(token_id))


async def list_tokens(store: Store) -> list[TokenInfo]:
    """Every token (without secrets), oldest first."""
    kvs = _tokens(store)
    ids = [key async for key in kvs.keys()]
    values = await kvs.get_many(ids)
    found = [info for value in values.values() if (info := _info(value)) is not None]
    return sorted(found, key=lambda t: (t.created_at, t.id))


async def has_tokens(store: Store) -> bool:
    """Whether at least one token exists."""
    async for _ in _tokens(store).keys(limit=1):
        return True
    return False


async def revoke_token(store: Store, token_id: str) -> None:
    """Delete a token: it stops working at once, on every replica.

    Raises:
        KeyNotFoundError: no such token.
    """
    if not isinstance(token_id, str) or not _ID_RE.fullmatch(token_id):
        raise KeyNotFoundError(f"no token {token_id!r} (ids are 12 hex digits, see 'botmemory token list')")
    if not await _tokens(store).delete(token_id):
        raise KeyNotFoundError(f"no token {token_id!r}")


async def create_login_code(store: Store, token_id: str) -> str:
    """A one-time code that signs a browser in with token ``token_id`` (for the login link)."""
    code = secrets.token_urlsafe(24)
    await store.private_kvs(LOGIN_NS).set(_hash(code), {"token_id": token_id}, expiry=LOGIN_CODE_TTL)
    return code


async def consume_login_code(store: Store, code: str) -> TokenInfo | None:
    """The token a login code stands for; the code works once (the first caller wins)."""
    if not isinstance(code, str) or not re.fullmatch(r"[A-Za-z0-9_-]{10,100}", code):
        return None
    kvs = store.private_kvs(LOGIN_NS)
    key = _hash(code)
    value = await kvs.get(key)
    if not isinstance(value, dict) or not await kvs.delete(key):
        return None
    return await get_token(store, str(value.get("token_id")))


async def signing_key(store: Store) -> bytes:
    """The key that signs cursors and session cookies; created once, shared by every replica."""
    kvs = store.private_kvs(SECRET_NS)
    value = await kvs.get("signing")
    if not isinstance(value, str):
        await kvs.set_if_absent("signing", secrets.token_hex(32))
        value = await kvs.get("signing")
    if not isinstance(value, str):
        raise InvalidInputError("the server's signing key could not be created")
    return bytes.fromhex(value)


class Lease:
    """A named lease in the store: at most one holder at a time across every replica.

    Taken with ``set_if_absent`` on a key that expires after ``ttl`` seconds
    (so a crashed holder's lease lapses), released with a compare-and-set
    on the version taken.
    """

    def __init__(self, store: Store, name: str, ttl: float) -> None:
        self._kvs = store.private_kvs(LEASES_NS)
        self.name = name
        self.ttl = ttl
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    async def try_acquire(self) -> bool:
        """Take the lease when nobody holds it; True when taken."""
        return await self._kvs.set_if_absent(self.name, {"owner": self.owner}, expiry=self.ttl)

    async def release(self) -> None:
        """Give the lease back if it is still ours."""
        entry = await self._kvs.get_entry(self.name)
        if entry is None or not isinstance(entry.value, dict) or entry.value.get("owner") != self.owner:
            return
        # A lease that lapsed and was taken between the read and the delete
        # would be deleted too: the lease's ttl is far longer than a run, so
        # only a holder stalled for that long could do it.
        await self._kvs.delete(self.name)


async def live_sessions(store: Store, bot_id: str, limit: int) -> tuple[dict[str, Any], bool]:
    """Up to ``limit`` live sessions of a bot (conversation id -> session), and whether there are more."""
    kvs = store.private_kvs(sessions_ns(bot_id))
    ids = [key async for key in kvs.keys(limit=limit + 1)]
    more = len(ids) > limit
    values = await kvs.get_many(ids[:limit])
    return {cid: value for cid, value in values.items() if isinstance(value, dict)}, more


async def current_conversation(store: Store, bot_id: str, user_id: str) -> str | None:
    """The conversation ``converse(conversation_id=None)`` continues for this user, if any."""
    value = await store.private_kvs(current_ns(bot_id)).get(user_id)
    cid = value.get("conversation_id") if isinstance(value, dict) else None
    return cid if isinstance(cid, str) else None
