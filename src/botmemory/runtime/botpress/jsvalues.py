"""JavaScript values over JSON data: ``undefined``, coercions, equality, property reads.

Botpress conditions and Mustache templates see the bot's memory as
JavaScript sees JSON: ``null`` is Python ``None``, numbers are IEEE doubles
(Python ``int`` and ``float`` alike), arrays are lists and objects dicts.
This module gives those values JavaScript's rules (ECMAScript 2020,
sections 7.1 and 7.2), so ``temp.count == "3"``, ``[1] == 1`` and
``"10" < "9"`` come out as they do in Node. It never runs JavaScript.

Deliberate approximations, never reached by JSON data read through the
operators of the subset: objects have no prototype chain beyond
``toString`` (``{}.constructor`` is ``undefined`` here), and built-in
methods compare equal by name.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from typing import Any, Final

__all__ = [
    "UNDEFINED",
    "JSFunction",
    "JSTypeError",
    "get_property",
    "is_nullish",
    "js_typeof",
    "loose_equals",
    "number_to_string",
    "strict_equals",
    "to_boolean",
    "to_number",
    "to_primitive",
    "to_string",
]


class _Undefined:
    """JavaScript's ``undefined`` (a singleton; JSON ``null`` is ``None``)."""

    _instance: _Undefined | None = None
    __slots__ = ()

    def __new__(cls) -> _Undefined:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "undefined"

    def __bool__(self) -> bool:
        return False


UNDEFINED: Final = _Undefined()


class JSTypeError(Exception):
    """What JavaScript throws as a ``TypeError`` (reading a property of ``undefined``, calling a non-function)."""


class JSFunction:
    """A built-in method read as a value (``"a".includes``): truthy, printed as native code."""

    __slots__ = ("name",)
    name: str
    _cache: dict[str, JSFunction] = {}  # noqa: RUF012 - one object per name, as prototypes share them

    def __new__(cls, name: str) -> JSFunction:
        found = cls._cache.get(name)
        if found is None:
            found = cls._cache[name] = super().__new__(cls)
            found.name = name
        return found

    def __repr__(self) -> str:
        return f"function {self.name}() {{ [native code] }}"


# Which methods each kind of value has (what the subset may call).
_STRING_METHODS: Final = frozenset({"includes", "toLowerCase", "toString"})
_ARRAY_METHODS: Final = frozenset({"includes", "toString"})
_OTHER_METHODS: Final = frozenset({"toString"})

# ECMAScript WhiteSpace and LineTerminator code points (StringToNumber trims them).
_JS_SPACE: Final = (
    "\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000\ufeff"
)
_DECIMAL_RE: Final = re.compile(r"[+-]?(?:Infinity|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)")
_RADIX_RE: Final = re.compile(r"0(?:[xX][0-9a-fA-F]+|[oO][0-7]+|[bB][01]+)")
_INDEX_RE: Final = re.compile(r"0|[1-9][0-9]*")


def is_nullish(value: Any) -> bool:
    """``value == null`` in JavaScript: ``undefined`` or ``null``."""
    return value is None or value is UNDEFINED


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_object(value: Any) -> bool:
    return isinstance(value, list | dict | JSFunction)


def js_typeof(value: Any) -> str:
    """JavaScript's ``typeof`` of a value."""
    if value is UNDEFINED:
        return "undefined"
    if value is None:
        return "object"
    if isinstance(value, bool):
        return "boolean"
    if _is_number(value):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, JSFunction):
        return "function"
    return "object"


def utf16_length(text: str) -> int:
    """A string's ``length`` in JavaScript: UTF-16 code units."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _utf16_key(text: str) -> bytes:
    # big-endian UTF-16 bytes sort as JavaScript compares strings (by code unit)
    return text.encode("utf-16-be", "surrogatepass")


def number_to_string(value: int | float) -> str:
    """ECMAScript Number::toString: ``1`` not ``1.0``, ``1e+21``, ``1.5e-7``, ``NaN``, ``-Infinity``."""
    x = float(value)
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    if x == 0:
        return "0"  # -0 too
    sign = "-" if x < 0 else ""
    # repr() gives the shortest digits that round-trip, as JavaScript does
    digits_tuple = Decimal(repr(abs(x))).as_tuple()
    digits = "".join(map(str, digits_tuple.digits)).rstrip("0") or "0"
    exponent = int(digits_tuple.exponent)
    # value = 0.digits × 10^n, with k digits
    k = len(digits)
    n = exponent + len(digits_tuple.digits)
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return sign + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * (-n) + digits
    e = n - 1
    mantissa = digits if k == 1 else digits[0] + "." + digits[1:]
    return f"{sign}{mantissa}e{'+' if e >= 0 else '-'}{abs(e)}"


def to_string(value: Any) -> str:
    """ECMAScript ToString (arrays join with ``,``; objects are ``[object Object]``)."""
    if isinstance(value, str):
        return value
    if value is UNDEFINED:
        return "undefined"
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if _is_number(value):
        return number_to_string(value)
    return to_string(to_primitive(value))


def to_primitive(value: Any) -> Any:
    """ECMAScript ToPrimitive with the default hint (``valueOf`` of objects is the object, so ``toString``)."""
    if isinstance(value, list):
        return ",".join("" if is_nullish(item) else to_string(item) for item in value)
    if isinstance(value, dict):
        return "[object Object]"
    if isinstance(value, JSFunction):
        return repr(value)
    return value


def _string_to_number(text: str) -> float:
    text = text.strip(_JS_SPACE)
    if not text:
        return 0.0
    if _DECIMAL_RE.fullmatch(text):
        return float(text.replace("Infinity", "inf"))
    if _RADIX_RE.fullmatch(text):
        return float(int(text, 0))
    return math.nan


def to_number(value: Any) -> float:
    """ECMAScript ToNumber (``""`` is 0, ``" 12 "`` is 12, ``"0x1f"`` is 31, ``"1_0"`` is NaN)."""
    if value is UNDEFINED:
        return math.nan
    if value is None or value is False:
        return 0.0
    if value is True:
        return 1.0
    if _is_number(value):
        return float(value)
    if isinstance(value, str):
        return _string_to_number(value)
    return to_number(to_primitive(value))


def to_boolean(value: Any) -> bool:
    """ECMAScript ToBoolean: ``undefined null false 0 NaN ""`` are false; every object is true."""
    if value is UNDEFINED or value is None:
        return False
    if isinstance(value, bool):
        return value
    if _is_number(value):
        return not (value == 0 or math.isnan(value))
    if isinstance(value, str):
        return value != ""
    return True


def strict_equals(a: Any, b: Any) -> bool:
    """``a === b``."""
    if _is_number(a) and _is_number(b):
        return float(a) == float(b)  # NaN is never equal; +0 equals -0
    kind_a, kind_b = js_typeof(a), js_typeof(b)
    if kind_a != kind_b:
        return False
    if kind_a in ("undefined",):
        return True
    if a is None or b is None:
        return a is b
    if isinstance(a, str | bool):
        return bool(a == b)
    return a is b  # objects: the same object


def loose_equals(a: Any, b: Any) -> bool:
    """``a == b`` (ECMAScript IsLooselyEqual)."""
    kind_a, kind_b = js_typeof(a), js_typeof(b)
    if a is None:
        kind_a = "null"
    if b is None:
        kind_b = "null"
    if kind_a == kind_b:
        return strict_equals(a, b)
    nullish = ("null", "undefined")
    if kind_a in nullish or kind_b in nullish:
        return kind_a in nullish and kind_b in nullish
    if kind_a == "number" and kind_b == "string":
        return float(a) == _string_to_number(b)
    if kind_a == "string" and kind_b == "number":
        return _string_to_number(a) == float(b)
    if kind_a == "boolean":
        return loose_equals(to_number(a), b)
    if kind_b == "boolean":
        return loose_equals(a, to_number(b))
    if kind_a in ("number", "string") and _is_object(b):
        return loose_equals(a, to_primitive(b))
    if _is_object(a) and kind_b in ("number", "string"):
        return loose_equals(to_primitive(a), b)
    return False


def less_than(a: Any, b: Any) -> bool | None:
    """ECMAScript IsLessThan(a, b): True, False, or None (``undefined``: a NaN was involved)."""
    pa, pb = to_primitive(a), to_primitive(b)
    if isinstance(pa, str) and isinstance(pb, str):
        return _utf16_key(pa) < _utf16_key(pb)
    na, nb = to_number(pa), to_number(pb)
    if math.isnan(na) or math.isnan(nb):
        return None
    return na < nb


def _array_index(key: str, size: int) -> int | None:
    if _INDEX_RE.fullmatch(key):
        index = int(key)
        if index < size:
            return index
    return None


def get_property(obj: Any, key: str) -> Any:
    """``obj[key]`` for JSON data (``key`` already converted to a string).

    Raises:
        JSTypeError: ``obj`` is ``undefined`` or ``null``.
    """
    if obj is UNDEFINED or obj is None:
        raise JSTypeError(f"Cannot read properties of {to_string(obj)} (reading '{key}')")
    if isinstance(obj, dict):
        if key in obj:
            return obj[key]
        return JSFunction(key) if key in _OTHER_METHODS else UNDEFINED
    if isinstance(obj, str):
        if key == "length":
            return utf16_length(obj)
        units = _utf16_key(obj)
        index = _array_index(key, len(units) // 2)
        if index is not None:
            return units[2 * index : 2 * index + 2].decode("utf-16-be", "surrogatepass")
        return JSFunction(key) if key in _STRING_METHODS else UNDEFINED
    if isinstance(obj, list):
        if key == "length":
            return len(obj)
        index = _array_index(key, len(obj))
        if index is not None:
            return obj[index]
        return JSFunction(key) if key in _ARRAY_METHODS else UNDEFINED
    if key in _OTHER_METHODS:
        return JSFunction(key)
    return UNDEFINED


def has_property(obj: Any, key: str) -> bool:
    """Whether ``key`` is a property of ``obj`` (own or built-in), as mustache.js's lookup asks."""
    if isinstance(obj, dict):
        return key in obj or key in _OTHER_METHODS
    if isinstance(obj, list):
        return key == "length" or _array_index(key, len(obj)) is not None or key in _ARRAY_METHODS
    if isinstance(obj, str):
        return key == "length" or _array_index(key, utf16_length(obj)) is not None
    return False


def same_value_zero(a: Any, b: Any) -> bool:
    """SameValueZero (``Array.prototype.includes``): like ``===`` but NaN equals NaN."""
    if _is_number(a) and _is_number(b) and math.isnan(a) and math.isnan(b):
        return True
    return strict_equals(a, b)


def call_method(receiver: Any, name: str, args: list[Any]) -> Any:
    """``receiver.name(...args)`` for the methods of the subset.

    Raises:
        JSTypeError: ``receiver`` is nullish, or has no such method.
    """
    method = get_property(receiver, name)
    if not isinstance(method, JSFunction):
        raise JSTypeError(f"{name} is not a function")
    if name == "toString":
        return to_string(receiver)
    if name == "toLowerCase" and isinstance(receiver, str):
        return receiver.lower()
    if name == "includes":
        target = args[0] if args else UNDEFINED
        if isinstance(receiver, str):
            return to_string(target) in receiver
        if isinstance(receiver, list):
            return any(same_value_zero(item, target) for item in receiver)
    raise JSTypeError(f"{name} is not a function")
