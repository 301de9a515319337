"""Backend options given as store URL query parameters (``…/db?schema=x&timeout=5``).

A store URL is often all a deployment can pass (``botmemory --store URL``,
an environment variable), so each backend reads its own options from the
query string too. The backend strips them before the URL reaches the driver,
keeps the driver's own parameters (libpq's ``sslmode``, redis-py's ``db``)
untouched, and refuses any other name. An option given as a keyword argument
to ``botmemory.open`` wins over the same option in the URL.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import unquote

from ..errors import InvalidInputError, show_value

__all__ = ["positive_seconds", "seconds", "take_query_options", "text"]


def seconds(name: str, value: str) -> float:
    """A query parameter that is a finite number of seconds (the backend checks the range)."""
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise InvalidInputError(f"{name} in the store URL must be a number of seconds, got {show_value(value)}")
    return number


def positive_seconds(name: str, value: Any) -> float:
    """Check a backend option that is a positive, finite number of seconds (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not (value > 0 and math.isfinite(value)):
        raise InvalidInputError(f"{name} must be a positive number of seconds, got {show_value(value)}")
    return float(value)


def text(name: str, value: str) -> str:
    """A query parameter taken as it is (percent-decoded; the backend validates it)."""
    return value


def take_query_options(
    url: str,
    accepted: Mapping[str, Callable[[str, str], Any]],
    options: dict[str, Any],
    *,
    backend: str,
    driver_parameter: Callable[[str], bool] = lambda name: False,
    driver_note: str = "",
) -> str:
    """Move the query parameters named in ``accepted`` into ``options``; the URL without them.

    Args:
        url: the store URL.
        accepted: option name -> converter ``(name, raw text) -> value``.
        options: the keyword options given to ``botmemory.open``; a name
            already there wins over the URL (it is left unchanged).
        backend: the backend's name, for messages.
        driver_parameter: whether a name is the driver's own parameter, left
            in the URL for the driver.
        driver_note: what the message about an unknown parameter adds about
            the driver's own parameters.

    Raises:
        InvalidInputError: a parameter is neither ours nor the driver's, is
            given twice, or has a malformed value.
    """
    head, has_query, rest = url.partition("?")
    if not has_query:
        return url
    query, has_fragment, fragment = rest.partition("#")
    if not query:
        return url  # nothing to take: the driver (or the backend's own check) sees the URL as given
    kept: list[str] = []
    seen: set[str] = set()
    unknown: list[str] = []
    for piece in query.split("&"):
        if not piece:
            continue
        raw_name, _, raw_value = piece.partition("=")
        name = _unquote(raw_name, backend)
        if name in accepted:
            if name in seen:
                raise InvalidInputError(f"{name} is given twice in the {backend} store URL")
            seen.add(name)
            value = accepted[name](name, _unquote(raw_value, backend))
            options.setdefault(name, value)
        elif driver_parameter(name):
            kept.append(piece)
        else:
            unknown.append(name)
    if unknown:
        names = ", ".join(show_value(n) for n in sorted(set(unknown)))
        ours = ", ".join(sorted(accepted))
        raise InvalidInputError(
            f"unknown {backend} store URL parameter(s) {names}: botmemory reads {ours}{driver_note}"
        )
    out = head + ("?" + "&".join(kept) if kept else "")
    return out + ("#" + fragment if has_fragment else "")


def _unquote(raw: str, backend: str) -> str:
    # not unquote_plus: "+" stays a plus (a key prefix may hold one), as libpq reads it
    try:
        return unquote(raw, errors="strict")
    except UnicodeDecodeError:
        raise InvalidInputError(
            f"the {backend} store URL has a percent-encoded query that is not UTF-8: {show_value(raw)}"
        ) from None
