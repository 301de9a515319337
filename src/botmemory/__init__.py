"""botmemory: bot memory and data retention.

A key-value store with expiry, dialog memory in three scopes (user,
conversation, global), retention, and a bot runtime, over SQLite (the
default), memory, PostgreSQL or Redis.

    store = await botmemory.open("sqlite:///bots.db")
    await store.bot("welcome-bot").memory.set_user_variable("u-17", "firstname", "Ada")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .clock import Clock, SystemClock
from .errors import (
    BotMemoryError,
    ConversationNotFoundError,
    InvalidExpiryError,
    InvalidInputError,
    InvalidKeyError,
    InvalidPathError,
    KeyNotFoundError,
    LegalHoldError,
    QuotaExceededError,
    StoreError,
    StoreFullError,
    StoreTimeoutError,
    StoreUnavailableError,
    ValueTooLargeError,
    ValueTypeError,
    VersionConflictError,
)
from .kvs import KVS, Entry
from .limits import Limits
from .memory import DialogMemory, Scope
from .store import DEFAULT_URL, Bot, Store, StoreOpener, open, register_bot_extension, register_bot_hook
from .sync import SyncStore, open_sync
from .version import __version__

if TYPE_CHECKING:
    from .retention.policy import RetentionConfig
    from .runtime import Runtime

# Retention attaches itself to every bot handle from here, the package's
# top, so the store below never imports it. The import waits for the first
# handle, so `import botmemory` stays cheap.
def _attach_retention(bot: Bot) -> None:
    from .retention.guard import install_hooks

    install_hooks(bot)


def _users(bot: Bot) -> Any:
    from .retention.users import Users

    return Users(bot)


register_bot_hook(_attach_retention)
register_bot_extension("users", _users)


def __getattr__(name: str) -> Any:
    # The runtime pulls in Jinja2 and YAML: load it on first use, so that
    # `import botmemory` (and every CLI command) stays cheap.
    if name == "Runtime":
        from .runtime import Runtime

        return Runtime
    if name == "RetentionConfig":
        from .retention.policy import RetentionConfig

        return RetentionConfig
    raise AttributeError(f"module 'botmemory' has no attribute {name!r}")

__all__ = [
    "DEFAULT_URL",
    "KVS",
    "Bot",
    "BotMemoryError",
    "Clock",
    "ConversationNotFoundError",
    "DialogMemory",
    "Entry",
    "InvalidExpiryError",
    "InvalidInputError",
    "InvalidKeyError",
    "InvalidPathError",
    "KeyNotFoundError",
    "LegalHoldError",
    "Limits",
    "QuotaExceededError",
    "RetentionConfig",
    "Runtime",
    "Scope",
    "Store",
    "StoreError",
    "StoreFullError",
    "StoreOpener",
    "StoreTimeoutError",
    "StoreUnavailableError",
    "SyncStore",
    "SystemClock",
    "ValueTooLargeError",
    "ValueTypeError",
    "VersionConflictError",
    "__version__",
    "open",
    "open_sync",
]
