"""JSON paths: parse, get, set and increment one part of a stored value.

A path is a string (``"profile.address.city"``, ``"items[0].name"``,
``"[0]"``) or a tuple/list of segments (``("a.b", 0)``), the way to reach
keys that contain ``.`` or ``[``. Key segments starting with ``__`` are
refused (``__proto__``, ``__class__``: the classic prototype-pollution and
gadget-chain spellings), and indexes are bounded so that ``a[10000000]``
cannot allocate a huge list.

Nothing here mutates a value it was given: ``set_path`` copies the
containers along the path, so a failed write leaves nothing half-done.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache
from typing import TypeAlias

from botmemory.errors import InvalidPathError, ValueTypeError
from botmemory.errors import show_value as _show

__all__ = [
    "MAX_INDEX",
    "MAX_PATH_DEPTH",
    "Segment",
    "get_path",
    "incr_value",
    "parse_path",
    "set_path",
]

Segment: TypeAlias = str | int

MAX_PATH_DEPTH = 32
MAX_INDEX = 10_000

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1

# One spelling per index: no sign, no leading zeros, ASCII digits only.
_KEY = r"[^.\[\]]+"
_INDEX = r"\[(?:0|[1-9][0-9]*)\]"
_PATH_RE = re.compile(rf"(?:{_KEY}|{_INDEX})(?:\.{_KEY}|{_INDEX})*")
_SEGMENT_RE = re.compile(r"([^.\[\]]+)|\[([0-9]+)\]")
_SURROGATE_RE = re.compile("[\ud800-\udfff]")

# Long strings are parsed but not cached, so hostile paths cannot fill memory.
_CACHED_PATH_LENGTH = 256




def _refuse(path: object, reason: str) -> InvalidPathError:
    return InvalidPathError(f"invalid path {_show(path)}: {reason}")


def _check_key_segment(path: object, segment: str) -> None:
    if not segment:
        raise _refuse(path, "a key segment must not be empty")
    if segment.startswith("__"):
        raise _refuse(path, f"key segment {_show(segment)} starts with '__'")
    if _SURROGATE_RE.search(segment):
        raise _refuse(path, "a key segment must not contain lone surrogates")


def _check_index(path: object, index: int) -> None:
    if not 0 <= index <= MAX_INDEX:
        raise _refuse(path, f"index {_show(index)} is outside 0..{MAX_INDEX}")


def _parse_string(path: str) -> tuple[Segment, ...]:
    if not _PATH_RE.fullmatch(path):
        raise _refuse(
            path,
            "expected keys joined by '.' and indexes like [0], e.g. 'items[0].name'",
        )
    segments: list[Segment] = []
    for key, digits in _SEGMENT_RE.findall(path):
        if key:
            _check_key_segment(path, key)
            segments.append(key)
        else:
            if len(digits) > len(str(MAX_INDEX)):  # before int(): bound the work
                raise _refuse(path, f"index {digits[:20]} is outside 0..{MAX_INDEX}")
            index = int(digits)
            _check_index(path, index)
            segments.append(index)
        if len(segments) > MAX_PATH_DEPTH:
            raise _refuse(path, f"more than {MAX_PATH_DEPTH} segments")
    return tuple(segments)


_parse_string_cached = lru_cache(maxsize=1024)(_parse_string)


def parse_path(path: object) -> tuple[Segment, ...]:
    """Parse a path into its segments.

    Args:
        path: a str such as ``"profile.address.city"``, ``"items[0].name"``,
            ``"[0]"`` or ``"a[1][2]"``, or a tuple/list of segments: str keys
            and int indexes (not bools).

    Returns:
        The segments, at least one, at most ``MAX_PATH_DEPTH``.

    Raises:
        InvalidPathError: for an empty path, an empty key segment
            (``"a..b"``, ``"a."``, ``".a"``), a key segment starting with
            ``__`` or containing a lone surrogate, an index outside
            0..``MAX_INDEX`` or not written in ASCII digits (``"a[-1]"``,
            ``"a[+1]"``, ``"a[01]"``), unbalanced brackets, more than
            ``MAX_PATH_DEPTH`` segments, or any other type.
    """
    if type(path) is str:
        if len(path) <= _CACHED_PATH_LENGTH:
            return _parse_string_cached(path)
        return _parse_string(path)
    if isinstance(path, str):
        return _parse_string(str(path))
    if isinstance(path, (tuple, list)):
        if not path:
            raise _refuse(path, "must have at least one segment")
        if len(path) > MAX_PATH_DEPTH:
            raise _refuse(path, f"more than {MAX_PATH_DEPTH} segments")
        segments: list[Segment] = []
        for segment in path:
            if isinstance(segment, str):
                _check_key_segment(path, segment)
                segments.append(str(segment))
            elif isinstance(segment, int) and not isinstance(segment, bool):
                _check_index(path, segment)
                segments.append(int(segment))
            else:
                raise _refuse(
                    path,
                    f"a segment must be a str key or an int index, not {type(segment).__name__}",
                )
        return tuple(segments)
    raise _refuse(path, f"must be a str, tuple or list, not {type(path).__name__}")


def get_path(root: object, segments: tuple[Segment, ...]) -> tuple[bool, object]:
    """Follow a parsed path into a value.

    Args:
        root: the whole stored value.
        segments: from :func:`parse_path`.

    Returns:
        ``(True, value)`` when the path leads to a value (a stored null
        included), ``(False, None)`` when it leads nowhere: a missing key, an
        index out of range, a scalar on the way, or a segment of the wrong
        kind for the container it meets.
    """
    current = root
    for segment in segments:
        if type(segment) is int:
            if isinstance(current, (list, tuple)) and segment < len(current):
                current = current[segment]
                continue
        elif isinstance(current, dict) and segment in current:
            current = current[segment]
            continue
        return False, None
    return True, current


def _kind(value: object) -> str:
    if value is True or value is False:
        return "a bool"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "an array"
    return f"a {type(value).__name__}"


def set_path(
    root: object,
    segments: tuple[Segment, ...],
    value: object,
    *,
    missing_root: bool,
) -> object:
    """Return a new root with ``value`` set at the path.

    ``root`` itself is never changed: each container along the path is
    copied (shallowly), so an error part-way leaves nothing half-written.

    Args:
        root: the whole stored value (ignored when ``missing_root``).
        segments: from :func:`parse_path`; at least one.
        value: what to put at the path.
        missing_root: True when the key does not exist.

    Returns:
        The new whole value.

    Raises:
        InvalidPathError: for an index past the end of a list (an index equal
            to its length appends).
        ValueTypeError: for a string, number or bool on the way, an index
            into an object, or a key into an array.
    """
    # Each entry: a fresh copy of a container on the path, and the segment
    # into it; they are linked together only once the whole walk is valid.
    copies: list[tuple[dict[str, object] | list[object], Segment]] = []
    current: object = None if missing_root else root
    for depth, segment in enumerate(segments):
        copy: dict[str, object] | list[object]
        if isinstance(segment, int):
            if current is None:  # missing, or null on the way: create
                copy = []
            elif isinstance(current, (list, tuple)):
                copy = list(current)
            else:
                where = _describe(segments, depth)
                raise ValueTypeError(f"cannot index {_kind(current)} with [{segment}] at {where}")
            if segment > len(copy):
                raise InvalidPathError(
                    f"index [{segment}] at {_describe(segments, depth)} is past the end "
                    f"of an array of length {len(copy)}"
                )
            current = copy[segment] if segment < len(copy) else None
        else:
            if current is None:
                copy = {}
            elif isinstance(current, dict):
                copy = dict(current)
            else:
                where = _describe(segments, depth)
                raise ValueTypeError(f"cannot read key {_show(segment)} of {_kind(current)} at {where}")
            current = copy.get(segment)
        copies.append((copy, segment))

    child = value
    for copy, segment in reversed(copies):
        # The walk above paired lists with int segments and dicts with str ones.
        if isinstance(copy, list) and isinstance(segment, int):
            if segment == len(copy):
                copy.append(child)
            else:
                copy[segment] = child
        elif isinstance(copy, dict) and isinstance(segment, str):
            copy[segment] = child
        child = copy
    return child


def _describe(segments: tuple[Segment, ...], depth: int) -> str:
    """The path up to and including segment ``depth``, for messages."""
    text = "".join(
        f"[{s}]" if type(s) is int else ("" if i == 0 else ".") + str(s) for i, s in enumerate(segments[: depth + 1])
    )
    return _show(text)


def incr_value(current_found: bool, current: object, amount: int | float) -> int | float:
    """The result of ``incr``: ``current + amount``, checked.

    Args:
        current_found: whether the key (or path) holds a value; a missing
            one counts as 0.
        current: that value.
        amount: an int or a finite float (not a bool).

    Returns:
        The incremented number.

    Raises:
        ValueTypeError: when ``amount`` is not an int or finite float, when
            the current value is not a number (bools and null included), or
            when the result is outside the 64-bit integer range or not finite.
    """
    if isinstance(amount, bool) or not isinstance(amount, (int, float)):
        raise ValueTypeError(f"incr amount must be an int or float, not {_kind(amount)}")
    if isinstance(amount, float) and not math.isfinite(amount):
        raise ValueTypeError(f"incr amount must be finite, not {amount!r}")
    if not current_found:
        current = 0
    elif current is None:
        raise ValueTypeError("incr on a null: the current value is not a number")
    elif isinstance(current, bool) or not isinstance(current, (int, float)):
        raise ValueTypeError(f"incr on {_kind(current)}: the current value is not a number")
    try:
        result = current + amount
    except OverflowError:  # an int too large for a float, added to a float
        raise ValueTypeError("incr result is out of range") from None
    if isinstance(result, int):
        if not _INT64_MIN <= result <= _INT64_MAX:
            raise ValueTypeError(f"incr result {_show(result)} is outside the 64-bit range")
    elif not math.isfinite(result):
        raise ValueTypeError(f"incr result {result!r} is not finite")
    return result
