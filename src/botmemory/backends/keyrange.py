"""Literal prefixes as key ranges, for the backends' range scans."""

from __future__ import annotations

__all__ = ["prefix_upper_bound"]


def prefix_upper_bound(prefix: str) -> str | None:
    """The smallest string greater than every string that starts with ``prefix``.

    For range scans ``key >= prefix AND key < bound`` in code point order
    (= UTF-8 byte order), which need no LIKE/GLOB and so no escaping of
    ``%``, ``_``, ``*`` or ``[``.

    Args:
        prefix: a literal prefix.

    Returns:
        The bound, or None when there is none (an empty prefix, or one made
        only of U+10FFFF): scan to the end.
    """
    end = len(prefix)
    while end:
        code = ord(prefix[end - 1])
        if code != 0x10FFFF:
            # Surrogates cannot be stored (nor encoded as UTF-8): skip them.
            following = 0xE000 if code == 0xD7FF else code + 1
            return prefix[: end - 1] + chr(following)
        end -= 1
    return None
