"""Every expiry form botmemory accepts, parsed and normalised in one place.

Relative forms (numbers of seconds, ``timedelta``, ``"30s"``, ``"1.5h"``,
``"PT10M"``) become whole milliseconds, rounded up, so a positive duration
never becomes 0 and every backend stores the same absolute epoch time.
Absolute forms (an aware ``datetime``, an RFC 3339 string with an offset)
become epoch seconds rounded up to whole milliseconds. Only ``None`` and the
exact string ``"never"`` mean "no expiry".

Parsing is strict on purpose: Python's own ``int()``/``float()`` accept
``"١٢"``, ``"５"``, ``"1_000"``, ``" 5"``, ``"inf"`` and ``"nan"``, and a
lenient parser that stores an unparseable expiry as "already expired" (or as
"never") loses data silently.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from functools import lru_cache

from botmemory.errors import InvalidExpiryError
from botmemory.errors import show_value as _show

__all__ = ["MAX_EXPIRY_MS", "check_expiry_arg", "duration_ms", "expires_at"]

MAX_EXPIRY_MS = 36_525 * 86_400_000
"""100 years (36,525 days): the longest expiry accepted, in milliseconds."""

_MAX_SECONDS = MAX_EXPIRY_MS // 1000

# No real expiry needs more characters; the cap also keeps int() far below
# Python's int-string-length limit and bounds the work done on hostile input.
_MAX_STRING_LENGTH = 128

_UNIT_MS: dict[str, int] = {}
for _names, _ms in (
    (("ms", "msec", "millisecond", "milliseconds"), 1),
    (("s", "sec", "secs", "second", "seconds"), 1_000),
    (("m", "min", "mins", "minute", "minutes"), 60_000),
    (("h", "hr", "hrs", "hour", "hours"), 3_600_000),
    (("d", "day", "days"), 86_400_000),
    (("w", "week", "weeks"), 604_800_000),
):
    for _name in _names:
        _UNIT_MS[_name] = _ms
del _names, _ms, _name

# fullmatch, not match + "$": "$" also matches before a trailing "\n".
# re.ASCII keeps [a-z] and [0-9] from ever meaning anything but ASCII.
# The unit is matched case-insensitively only to say "units are lower-case";
# the lookup in _UNIT_MS is exact.
_HUMAN_RE = re.compile(r"([0-9]+)(?:\.([0-9]+))? ?([A-Za-z]+)", re.ASCII)

_N = r"([0-9]+)(?:\.([0-9]+))?"
# (?=.) after P: at least one component; (?=[0-9]) after T: T is never bare.
_ISO_RE = re.compile(
    rf"P(?=.)(?:{_N}W)?(?:{_N}D)?(?:T(?=[0-9])(?:{_N}H)?(?:{_N}M)?(?:{_N}S)?)?",
    re.ASCII,
)
_ISO_UNITS = (604_800_000, 86_400_000, 3_600_000, 60_000, 1_000)

# RFC 3339 date-time (section 5.6), offset required; "t"/"z" are allowed
# lower-case by the RFC. No space separator, no week dates, no leap second.
_RFC3339_RE = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(?:\.([0-9]+))?(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))",
    re.ASCII,
)

# Looks like a date-time but has no offset: said apart for a clearer message.
_NAIVE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}(?:[Tt ][0-9:.]*)?", re.ASCII)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_DURATION_HINT = "expected a duration like '30s', '10 m', '1.5h', '2 hours' or 'PT10M'"
_HINT = (
    "expected None, 'never', seconds, a timedelta, a duration like '30s', '1.5h' "
    "or 'PT10M', an aware datetime, or an RFC 3339 time like '2030-01-01T00:00:00Z'"
)




def _refuse(value: object, reason: str) -> InvalidExpiryError:
    return InvalidExpiryError(f"invalid expiry {_show(value)}: {reason}")


def _ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


def _exact_ms(parts: list[tuple[str, str | None, int]]) -> int:
    """Sum decimal ``int.frac`` numbers times their unit, exactly, rounded up."""
    scale = max((len(frac) for _, frac, _ in parts if frac), default=0)
    total = 0
    for whole, frac, unit_ms in parts:
        digits = whole + (frac or "").ljust(scale, "0")
        total += int(digits) * unit_ms
    return _ceil_div(total, 10**scale)


def _check_range(value: object, ms: int) -> int:
    if ms <= 0:
        raise _refuse(value, "must be positive")
    if ms > MAX_EXPIRY_MS:
        raise _refuse(value, "more than 100 years (36,525 days)")
    return ms


# The same few duration strings ("30 days", "PT10M") come back on every write
# from bot configs; refusals raise and so are never cached.
@lru_cache(maxsize=512)
def _string_duration_ms(text: str) -> int | None:
    """Milliseconds for a duration string, or None when it is not one."""
    m = _HUMAN_RE.fullmatch(text)
    if m is not None:
        unit = m.group(3)
        unit_ms = _UNIT_MS.get(unit)
        if unit_ms is None:
            # "M" is refused, not guessed: the ms package reads it as minutes.
            hint = " (units are lower-case)" if unit.lower() in _UNIT_MS else ""
            raise _refuse(text, f"unknown unit {unit!r}{hint}")
        return _check_range(text, _exact_ms([(m.group(1), m.group(2), unit_ms)]))
    m = _ISO_RE.fullmatch(text)
    if m is not None:
        groups = m.groups()
        parts = [
            (groups[2 * i], groups[2 * i + 1], unit_ms)
            for i, unit_ms in enumerate(_ISO_UNITS)
            if groups[2 * i] is not None
        ]
        return _check_range(text, _exact_ms(parts))
    return None


def _parse_rfc3339(text: str) -> tuple[datetime, str | None] | None:
    """The whole-second aware datetime and fraction digits, or None if not RFC 3339."""
    m = _RFC3339_RE.fullmatch(text)
    if m is None:
        return None
    year, month, day, hour, minute, second, frac, zulu, sign, off_h, off_m = m.groups()
    offset = timedelta(0)
    if zulu is None:
        if int(off_h) > 23 or int(off_m) > 59:
            raise _refuse(text, "offset out of range")
        offset = timedelta(hours=int(off_h), minutes=int(off_m))
        if sign == "-":
            offset = -offset
    try:
        # The constructor refuses 2030-02-30, 24:00:00 and 23:59:60 for us.
        when = datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            int(second),
            tzinfo=timezone(offset),
        )
    except ValueError as exc:
        raise _refuse(text, f"not a valid date and time ({exc})") from None
    return when, frac


def _epoch_ms(when: datetime, frac: str | None, original: object) -> int:
    """Epoch milliseconds of an aware datetime (plus fraction digits), rounded up."""
    try:
        delta = when - _EPOCH
    except (OverflowError, ValueError) as exc:  # pragma: no cover - defensive
        raise _refuse(original, f"out of range ({exc})") from None
    # Exact integer arithmetic: total_seconds() would round through a float.
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    ms = _ceil_div(micros, 1000)
    if frac:
        ms += _ceil_div(int(frac) * 1000, 10 ** len(frac))
    return ms


def _require_aware(when: datetime) -> None:
    if when.utcoffset() is None:
        raise _refuse(when, "a naive datetime has no time zone; give an aware datetime")


def duration_ms(value: object) -> int:
    """Normalise a relative duration to whole milliseconds, rounded up.

    Args:
        value: seconds as ``int`` or ``float`` (a float is read as its
            shortest repr, so ``1.1`` is 1,100 ms), a ``datetime.timedelta``,
            or a string: a number (``[0-9]+(.[0-9]+)?``, ASCII digits, exact
            decimal), at most one space and a lower-case unit (``ms``,
            ``msec``, ``millisecond(s)``, ``s``, ``sec(s)``, ``second(s)``,
            ``m``, ``min(s)``, ``minute(s)``, ``h``, ``hr(s)``, ``hour(s)``,
            ``d``, ``day(s)``, ``w``, ``week(s)``), or an ISO 8601 duration
            ``P[nW][nD][T[nH][nM][nS]]`` without years or months.

    Returns:
        The duration in milliseconds, from 1 to ``MAX_EXPIRY_MS``.

    Raises:
        InvalidExpiryError: for zero, negative, NaN or infinite durations,
            bools, None, ``"never"``, datetimes (absolute, not durations),
            strings of any other form, durations over 100 years (36,525
            days) and any other type.
    """
    if isinstance(value, bool):
        raise _refuse(value, "a bool is not a duration")
    if isinstance(value, int):
        if value > _MAX_SECONDS:  # before multiplying: 2**10000 is an int too
            raise _refuse(value, "more than 100 years (36,525 days)")
        return _check_range(value, value * 1000)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _refuse(value, "must be finite")
        if value <= 0:
            raise _refuse(value, "must be positive")
        if value > _MAX_SECONDS:
            raise _refuse(value, "more than 100 years (36,525 days)")
        # The shortest repr is what the caller wrote; the binary value of 1.1
        # is a hair above it and would round up to 1,101 ms.
        num, den = Decimal(float.__repr__(value)).as_integer_ratio()
        return _check_range(value, _ceil_div(num * 1000, den))
    if isinstance(value, timedelta):
        micros = (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds
        return _check_range(value, _ceil_div(micros, 1000))
    if isinstance(value, str):
        if len(value) > _MAX_STRING_LENGTH:
            raise _refuse(value, f"longer than {_MAX_STRING_LENGTH} characters")
        ms = _string_duration_ms(value)
        if ms is None:
            raise _refuse(value, _DURATION_HINT)
        return ms
    if isinstance(value, datetime):
        raise _refuse(value, "a datetime is an absolute time, not a duration")
    if value is None:
        raise _refuse(value, "None means no expiry, not a duration")
    raise _refuse(value, f"a {type(value).__name__} is not a duration; {_HINT}")


def _classify(expiry: object) -> int | tuple[datetime, str | None] | None:
    """None for no expiry, milliseconds for a duration, or the absolute time named."""
    if expiry is None:
        return None
    if isinstance(expiry, str):
        if expiry == "never":
            return None
        if len(expiry) > _MAX_STRING_LENGTH:
            raise _refuse(expiry, f"longer than {_MAX_STRING_LENGTH} characters")
        ms = _string_duration_ms(expiry)
        if ms is not None:
            return ms
        parsed = _parse_rfc3339(expiry)
        if parsed is None:
            if _NAIVE_RE.fullmatch(expiry):
                raise _refuse(expiry, "an absolute time needs an offset such as 'Z' or '+02:00'")
            raise _refuse(expiry, _HINT)
        return parsed
    if isinstance(expiry, datetime):
        _require_aware(expiry)
        return expiry, None
    return duration_ms(expiry)


def expires_at(expiry: object, now: float) -> float | None:
    """The absolute epoch time at which a value written at ``now`` expires.

    Besides the forms of :func:`duration_ms` (relative to ``now``), this
    accepts absolute expire-at times: an aware ``datetime``, and, as an
    extension for JSON and HTTP callers who cannot send a datetime, a string
    in RFC 3339 form with an explicit offset (``"2030-01-01T00:00:00Z"``,
    ``"2030-01-01T00:00:00.5+02:00"``). Absolute times are rounded up to
    whole milliseconds.

    Args:
        expiry: ``None`` or ``"never"`` for no expiry (the only two
            spellings), a relative duration, or an absolute time.
        now: the current epoch time in seconds, from the store's clock.

    Returns:
        Epoch seconds, or ``None`` when the value never expires.

    Raises:
        InvalidExpiryError: for anything :func:`duration_ms` refuses other
            than absolute times, naive datetimes and naive strings, invalid
            dates (``2030-02-30``, ``23:59:60``), absolute times not strictly
            after ``now``, and absolute times more than 100 years after it.
    """
    form = _classify(expiry)
    if form is None:
        return None
    if isinstance(form, int):
        return now + form / 1000
    ms = _epoch_ms(form[0], form[1], expiry)
    at = ms / 1000
    if not at > now:
        raise _refuse(expiry, "not in the future")
    if at - now > _MAX_SECONDS:
        raise _refuse(expiry, "more than 100 years (36,525 days) ahead")
    return at


def check_expiry_arg(expiry: object) -> None:
    """Check that ``expiry`` is an accepted form, without looking at a clock.

    Used to validate configuration (bot files) before any value is written;
    accepts exactly what :func:`expires_at` accepts, except that an absolute
    time is not checked against the current time.

    Args:
        expiry: the expiry as a caller or a config file gave it.

    Raises:
        InvalidExpiryError: when :func:`expires_at` would refuse it whatever
            the time.
    """
    form = _classify(expiry)
    if isinstance(form, tuple):
        _epoch_ms(form[0], form[1], expiry)
