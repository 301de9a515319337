"""The botmemory exception tree.

One root; backend exceptions (sqlite3, psycopg, redis) are translated into
``StoreError`` subclasses at one seam per backend, with ``raise ... from exc``.

::

    BotMemoryError
    ├── InvalidInputError (also ValueError)       # refused before anything is written
    │   ├── InvalidKeyError
    │   ├── InvalidPathError
    │   ├── InvalidExpiryError
    │   ├── ValueTypeError (also TypeError)
    │   └── ValueTooLargeError
    ├── KeyNotFoundError (also KeyError)
    │   └── ConversationNotFoundError              # no such conversation for this user
    ├── VersionConflictError
    ├── QuotaExceededError
    ├── LegalHoldError
    └── StoreError
        ├── StoreUnavailableError                  # cannot reach/open the backend
        ├── StoreTimeoutError
        └── StoreFullError                         # no space left: writes fail, reads work
"""

from __future__ import annotations

__all__ = [
    "BotMemoryError",
    "ConversationNotFoundError",
    "InvalidExpiryError",
    "InvalidInputError",
    "InvalidKeyError",
    "InvalidPathError",
    "KeyNotFoundError",
    "LegalHoldError",
    "QuotaExceededError",
    "StoreError",
    "StoreFullError",
    "StoreTimeoutError",
    "StoreUnavailableError",
    "ValueTooLargeError",
    "ValueTypeError",
    "VersionConflictError",
    "show_value",
]


def show_value(value: object) -> str:
    """repr for error messages: control characters escaped, at most 80 characters, never failing."""
    if isinstance(value, str) and len(value) > 80:
        value = value[:80]  # repr of a 1 MiB string only to cut it would be waste
    elif isinstance(value, int) and value.bit_length() > 256:
        # repr of a huge int raises ValueError (int's digit limit)
        return f"<int of {value.bit_length()} bits>"
    try:
        text = repr(value)
    except Exception:  # a broken __repr__ must not replace the typed error
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 80 else text[:77] + "..."


class BotMemoryError(Exception):
    """Root of every error botmemory raises on purpose."""


class InvalidInputError(BotMemoryError, ValueError):
    """The call was refused before anything was written."""


class InvalidKeyError(InvalidInputError):
    """A key, prefix, bot id, user id, conversation id or variable name is invalid."""


class InvalidPathError(InvalidInputError):
    """A JSON path is malformed or out of range."""


class InvalidExpiryError(InvalidInputError):
    """An expiry is not one of the accepted forms, or is out of range."""


class ValueTypeError(InvalidInputError, TypeError):
    """A value is not JSON of the accepted kinds, or an operation met the wrong type."""


class ValueTooLargeError(InvalidInputError):
    """A value is larger or deeper than the store's limits."""


class KeyNotFoundError(BotMemoryError, KeyError):
    """The key (or bot) does not exist, or has expired."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the message readable
        return str(self.args[0]) if self.args else ""


class ConversationNotFoundError(KeyNotFoundError):
    """The conversation does not exist for this user.

    Raised when a user names a conversation that another user started: the
    message never says whose it is (or that it exists at all), so it reads
    the same as a conversation that never existed.
    """


class VersionConflictError(BotMemoryError):
    """A compare-and-set found another version than the one expected."""


class QuotaExceededError(BotMemoryError):
    """A write would create more keys than the bot's quota allows."""


class LegalHoldError(BotMemoryError):
    """The user is under legal hold: their data cannot be erased."""


class StoreError(BotMemoryError):
    """The backend failed."""


class StoreUnavailableError(StoreError):
    """The backend cannot be reached or opened."""


class StoreTimeoutError(StoreError):
    """The backend did not answer in time."""


class StoreFullError(StoreError):
    """The backend has no room left (disk full, Redis ``maxmemory``): writes fail, reads still work.

    Nothing acknowledged before is lost, and writes succeed again once space
    is freed, on the same store (HTTP: 507 Insufficient Storage).
    """
