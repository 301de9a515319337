"""Turning framework names (keys, namespaces, thread ids) into KVS key parts.

Frameworks accept strings that botmemory refuses as keys (empty, with
spaces, control characters or lone surrogates, too long). Integrations
store them as percent-encoded parts instead, and a part that would be too
long becomes a hash (the framework's name is then kept in the value).
"""

from __future__ import annotations

import hashlib
import re
from typing import Final
from urllib.parse import quote, unquote

__all__ = ["HASH_MARK", "decode", "encode", "hashed", "part"]

_UNRESERVED: Final = re.compile(r"[A-Za-z0-9._~-]*", re.ASCII)

HASH_MARK: Final = "#"
"""Starts a hashed part; never produced by ``encode`` (which writes ``%23``)."""


def encode(text: str) -> str:
    """Percent-encode ``text`` (RFC 3986 unreserved characters kept), lone surrogates included.

    The result has only ``A-Z a-z 0-9 - . _ ~ %`` in it, so it never holds
    ``/``, ``:``, ``=`` or ``#`` and can be joined with them unambiguously.
    """
    if _UNRESERVED.fullmatch(text):  # the common case, without quote()'s overhead
        return text
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


def decode(part: str) -> str:
    """Invert ``encode``."""
    return unquote(part, encoding="utf-8", errors="surrogatepass")


def hashed(text: str) -> str:
    """A fixed-length part standing for ``text``."""
    return HASH_MARK + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def part(text: str, max_bytes: int = 96) -> str:
    """``encode(text)`` when it fits in ``max_bytes``, else ``hashed(text)``."""
    encoded = encode(text)
    return encoded if len(encoded) <= max_bytes else hashed(text)
