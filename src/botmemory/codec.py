"""Values to bytes and back: compact UTF-8 JSON, checked against the limits.

Never pickle. orjson alone would accept too much (it writes NaN as ``null``,
serialises datetimes, dataclasses, enums, UUIDs and subclasses, and takes
unsigned 64-bit integers), so :func:`encode` walks the value first and
admits exactly ``dict`` (str keys), ``list``, ``tuple``, ``str``, ``int``,
``float``, ``bool`` and ``None``. The walk is iterative with a depth bound,
so deep nesting and cycles raise ``ValueTooLargeError``, never
``RecursionError``, and it counts a lower bound of the encoded size so that
huge values are refused before orjson builds them.
"""

from __future__ import annotations

import json
import math
from typing import Any, cast

import orjson

from botmemory.errors import InvalidInputError, ValueTooLargeError, ValueTypeError, show_value
from botmemory.limits import Limits

__all__ = ["decode", "encode", "loads_strict"]

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1

_Container = dict[Any, Any] | list[Any] | tuple[Any, ...]


def _int_out_of_range(value: int) -> ValueTypeError:
    # str() of a huge int raises ValueError (int's digit limit): say its size instead.
    bits = value.bit_length()
    text = str(value) if bits <= 256 else f"of {bits} bits"
    return ValueTypeError(f"integer {text} is outside the 64-bit range")


def _too_deep(max_depth: int) -> ValueTooLargeError:
    return ValueTooLargeError(f"value is nested more than {max_depth} levels deep (or contains a cycle)")


def _too_large(at_least: int, max_bytes: int) -> ValueTooLargeError:
    return ValueTooLargeError(f"value is at least {at_least} bytes as JSON, more than the {max_bytes} allowed")


def _not_json(value: object) -> ValueTypeError:
    kind = type(value).__name__
    return ValueTypeError(f"a {kind} is not a JSON value (allowed: dict, list, str, int, float, bool, None)")


def _check_scalar(value: Any) -> int:
    """Check a non-container; return a lower bound of its encoded size beyond 1 byte."""
    kind = type(value)
    if kind is str:
        return len(value)
    if kind is int:
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise _int_out_of_range(value)
        return 0
    if kind is float:
        if not math.isfinite(value):
            raise ValueTypeError(f"{value!r} is not a JSON number")
        return 0
    if value is None or kind is bool:
        return 0
    raise _not_json(value)


def _walk(value: _Container, max_depth: int, max_bytes: int) -> None:
    """Check every node below a container; raise on the first problem."""
    if max_depth < 1:
        raise _too_deep(max_depth)
    stack: list[tuple[_Container, int]] = [(value, 1)]
    pop, push = stack.pop, stack.append
    size = 0  # a lower bound of the encoded size of everything seen so far
    # str and int are checked inline: a function call per scalar would double
    # the cost of this walk, which runs on every write.
    while stack:
        node, depth = pop()
        if type(node) is dict:
            # '{', '}', and per entry '"":' plus a value of >= 1 byte and a ','.
            size += 5 * len(node) + 1
            if size > max_bytes:  # before iterating: a 10**7-entry object is refused at once
                raise _too_large(size, max_bytes)
            for key, item in node.items():
                if type(key) is not str:
                    raise ValueTypeError(f"object keys must be str, not {type(key).__name__}")
                size += len(key)
                kind = type(item)
                if kind is str:
                    size += len(item)
                elif kind is int:
                    if not _INT64_MIN <= item <= _INT64_MAX:
                        raise _int_out_of_range(item)
                elif kind is dict or kind is list or kind is tuple:
                    if depth >= max_depth:
                        raise _too_deep(max_depth)
                    push((item, depth + 1))
                else:
                    size += _check_scalar(item)
        else:
            size += 2 * len(node) + 1
            if size > max_bytes:
                raise _too_large(size, max_bytes)
            for item in node:
                kind = type(item)
                if kind is str:
                    size += len(item)
                elif kind is int:
                    if not _INT64_MIN <= item <= _INT64_MAX:
                        raise _int_out_of_range(item)
                elif kind is dict or kind is list or kind is tuple:
                    if depth >= max_depth:
                        raise _too_deep(max_depth)
                    push((item, depth + 1))
                else:
                    size += _check_scalar(item)
        # Checked per container, so a value that repeats a big part many times
        # (a DAG, [[big] * 1000] * 1000) is refused long before it is walked entirely.
        if size > max_bytes:
            raise _too_large(size, max_bytes)


def encode(value: object, limits: Limits) -> bytes:
    """Encode a value as compact UTF-8 JSON, checked against ``limits``.

    Object key order is kept; tuples become arrays; floats are written so
    that they read back exactly as Python reads them (``-0.0``, ``5e-324``).

    Args:
        value: dict (str keys), list, tuple, str, int, float, bool or None,
            nested; exact types only (subclasses other than bool are refused).
        limits: the store's limits (``max_depth``, ``max_value_bytes``).

    Returns:
        The encoded bytes.

    Raises:
        ValueTypeError: for any other type, a non-str object key, an integer
            outside −2⁶³…2⁶³−1, NaN or ±Infinity, or a string with a lone
            surrogate.
        ValueTooLargeError: when the value is nested deeper than
            ``limits.max_depth`` (cycles included) or its encoding is longer
            than ``limits.max_value_bytes``.
    """
    max_bytes = limits.max_value_bytes
    kind = type(value)
    if kind is dict or kind is list or kind is tuple:
        _walk(cast(_Container, value), limits.max_depth, max_bytes)
    else:
        at_least = _check_scalar(value) + (2 if kind is str else 1)
        if at_least > max_bytes:
            raise _too_large(at_least, max_bytes)
    try:
        data = orjson.dumps(value)
    except orjson.JSONEncodeError as exc:
        # Everything else was checked above; what orjson still refuses is a
        # str that is not valid UTF-8, or nesting past its own limit when
        # Limits.max_depth is set higher than that.
        message = str(exc)
        if "recursion" in message.lower():
            raise ValueTooLargeError(f"value is nested too deeply ({message})") from None
        raise ValueTypeError(f"value has a string with a lone surrogate ({message})") from None
    if len(data) > max_bytes:
        raise ValueTooLargeError(f"value is {len(data)} bytes as JSON, more than the {max_bytes} allowed")
    return data


def decode(data: bytes | str) -> Any:
    """Decode what :func:`encode` wrote.

    Args:
        data: UTF-8 JSON.

    Returns:
        The value; arrays come back as lists.
    """
    return orjson.loads(data)


def _reject_constant(name: str) -> Any:
    raise ValueTypeError(f"{name} is not a JSON number")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise InvalidInputError(f"duplicate object key {show_value(key)}")
            seen.add(key)
    return obj


def loads_strict(text: str) -> Any:
    """JSON text from outside (an HTTP body, a CLI argument, a dump line), read strictly.

    ``NaN``/``Infinity`` and duplicate object keys are refused (orjson and
    the standard library accept them silently: the last duplicate wins).

    Raises:
        json.JSONDecodeError: not JSON (a ``ValueError``).
        ValueTypeError: ``NaN``, ``Infinity`` or ``-Infinity``.
        InvalidInputError: an object has the same key twice.
        RecursionError: nested too deeply to parse.
    """
    return json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_no_duplicates)
