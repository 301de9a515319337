"""Identifiers: validation and percent-encoding of bot ids, keys and prefixes.

Keys are taken exactly as given: no Unicode normalisation, no case folding,
no trimming. What is refused is what some backend, log or terminal would
mangle: control characters (PostgreSQL cannot store NUL; newlines forge log
lines), U+2028/U+2029, lone surrogates (not encodable as UTF-8) and
leading/trailing whitespace (which some layer would trim silently).

``encode_component`` is how ids become key parts: the dialog-memory layout
(``botmemory.memory``) and the runtime's private namespaces use it so that
``/``, ``..`` or ``%`` in an id can never reach another user's keys.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

from botmemory.errors import InvalidKeyError
from botmemory.errors import show_value as _show

__all__ = [
    "GLOBAL_NS",
    "decode_component",
    "encode_component",
    "validate_bot_id",
    "validate_key",
    "validate_prefix",
]

GLOBAL_NS = "__global__"
"""The namespace of the server-wide KVS; never a valid bot id."""

_MAX_PREFIX_BYTES = 65_536

_BOT_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", re.ASCII)

# C0, DEL, C1, LINE/PARAGRAPH SEPARATOR, and lone surrogates.
_FORBIDDEN_RE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")

_UNRESERVED_RE = re.compile(r"[A-Za-z0-9._~-]*", re.ASCII)
_ENCODED_RE = re.compile(r"(?:[A-Za-z0-9._~-]|%[0-9A-F]{2})*", re.ASCII)
_QUOTED_BYTES = tuple(chr(b) if _UNRESERVED_RE.fullmatch(chr(b)) else f"%{b:02X}" for b in range(256))




def _check_characters(text: str, what: str) -> None:
    bad = _FORBIDDEN_RE.search(text)
    if bad is not None:
        raise InvalidKeyError(
            f"invalid {what} {_show(text)}: contains U+{ord(bad.group()):04X} "
            "(control characters, U+2028/U+2029 and lone surrogates are not allowed)"
        )


def _check_bytes(text: str, max_bytes: int, what: str) -> None:
    # UTF-8 takes at most 4 bytes a code point: most keys need no encoding.
    if len(text) * 4 <= max_bytes:
        return
    size = len(text.encode("utf-8"))
    if size > max_bytes:
        raise InvalidKeyError(f"{what} is {size} bytes, more than the {max_bytes} allowed")


def validate_bot_id(bot_id: object) -> str:
    """Check a bot id: ``[A-Za-z0-9][A-Za-z0-9_.-]{0,63}``.

    Args:
        bot_id: the bot id as given.

    Returns:
        The bot id, unchanged.

    Raises:
        InvalidKeyError: when it is not a str matching the pattern (so
            ``__global__``, ``../x`` and ``a/b`` are refused).
    """
    if isinstance(bot_id, str) and _BOT_ID_RE.fullmatch(bot_id):
        return bot_id
    raise InvalidKeyError(f"invalid bot id {_show(bot_id)}: must match [A-Za-z0-9][A-Za-z0-9_.-]{{0,63}}")


def validate_key(key: object, max_bytes: int | None, what: str = "key") -> str:
    """Check a key, user id, conversation id or variable name.

    Args:
        key: the value as given; taken exactly, without normalisation.
        max_bytes: the most UTF-8 bytes allowed, or None for no limit.
        what: the noun used in error messages ("key", "user id", ...).

    Returns:
        The key, unchanged.

    Raises:
        InvalidKeyError: when it is not a str, is empty, contains a control
            character (C0, DEL, C1), U+2028/U+2029 or a lone surrogate,
            starts or ends with whitespace, or is longer than ``max_bytes``.
    """
    # Every read and write checks its key: the common one, printable ASCII
    # (so no C0 or DEL, and no whitespace but " ") with no space at either
    # end, passes with three C-level scans instead of a regex search.
    if (
        type(key) is str
        and key
        and key.isascii()
        and key.isprintable()
        and key[0] != " "
        and key[-1] != " "
        and (max_bytes is None or len(key) <= max_bytes)
    ):
        return key
    if not isinstance(key, str):
        raise InvalidKeyError(f"invalid {what}: must be a str, not {type(key).__name__}")
    if not key:
        raise InvalidKeyError(f"invalid {what}: must not be empty")
    _check_characters(key, what)
    if key[0].isspace() or key[-1].isspace():
        raise InvalidKeyError(f"invalid {what} {_show(key)}: must not start or end with whitespace")
    if max_bytes is not None:
        _check_bytes(key, max_bytes, what)
    return key


def validate_prefix(prefix: object) -> str:
    """Check a literal key prefix for listing or deleting keys.

    A prefix follows the key rules, except that it may be empty and may end
    in whitespace (a key may contain spaces, so ``"my "`` is a useful
    prefix); it is never stripped.

    Args:
        prefix: the prefix as given.

    Returns:
        The prefix, unchanged.

    Raises:
        InvalidKeyError: when it is not a str, contains a forbidden
            character, starts with whitespace or is more than 64 KiB.
    """
    if not isinstance(prefix, str):
        raise InvalidKeyError(f"invalid prefix: must be a str, not {type(prefix).__name__}")
    if not prefix:
        return prefix
    _check_characters(prefix, "prefix")
    if prefix[0].isspace():
        raise InvalidKeyError(f"invalid prefix {_show(prefix)}: must not start with whitespace")
    _check_bytes(prefix, _MAX_PREFIX_BYTES, "prefix")
    return prefix


def encode_component(s: str) -> str:
    """Percent-encode one id or name for the memory key layout (RFC 3986).

    Keeps only the unreserved characters ``A-Z a-z 0-9 - . _ ~``; every other
    character becomes its UTF-8 bytes as ``%XX`` with upper-case hex, so the
    result never contains ``/``.

    Args:
        s: a validated id or name.

    Returns:
        The encoded component.

    Raises:
        InvalidKeyError: when ``s`` has a lone surrogate (not encodable).
    """
    if _UNRESERVED_RE.fullmatch(s):
        return s
    try:
        data = s.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidKeyError(f"invalid id or name {_show(s)}: contains a lone surrogate") from None
    # Same output as urllib.parse.quote(s, safe="") (a test pins it), without its per-call overhead.
    return "".join(map(_QUOTED_BYTES.__getitem__, data))


def decode_component(s: str) -> str:
    """Invert :func:`encode_component`.

    Only the exact output of :func:`encode_component` is accepted, so that a
    key maps to one id and back: ``%41`` (for ``A``), lower-case hex and
    percent-encoded invalid UTF-8 are refused.

    Args:
        s: an encoded component.

    Returns:
        The decoded id or name.

    Raises:
        InvalidKeyError: when ``s`` is not something encode_component returns.
    """
    if "%" not in s:
        if _UNRESERVED_RE.fullmatch(s):
            return s
    elif _ENCODED_RE.fullmatch(s):
        try:
            decoded = unquote_to_bytes(s).decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            if encode_component(decoded) == s:
                return decoded
    raise InvalidKeyError(f"invalid encoded component {_show(s)}")
