"""What commands print: results for people or as JSON, notes, errors, exit codes.

Every failure leaves through :func:`report_error`: one line on stderr, exit 2
for bad input and 1 for the rest, never a traceback. Data is shown escaped
(:func:`show`, :func:`to_json`) so that nothing stored can forge a line or
reorder what people read.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

import orjson
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..errors import (
    BotMemoryError,
    InvalidInputError,
    KeyNotFoundError,
    LegalHoldError,
    VersionConflictError,
)

if TYPE_CHECKING:
    pass

__all__ = [
    "BAD_INPUT",
    "FAILURE",
    "Output",
    "debug_enabled",
    "exit_code_for",
    "human_ttl",
    "iso_time",
    "print_note",
    "report_error",
    "safe_json_text",
    "show",
    "to_json",
]

BAD_INPUT: Final = 2


FAILURE: Final = 1


_BAD_INPUT_ERRORS = (InvalidInputError, KeyNotFoundError, LegalHoldError, VersionConflictError)


_NON_ASCII_OR_CONTROL = re.compile(r"[^\x20-\x7e\n]")


def show(text: str) -> str:
    """``text`` for a terminal: itself when every character prints, else its repr.

    Control characters, bidi overrides (U+202E), zero-width characters
    (U+200B), line separators and lone surrogates cannot forge a line or
    reorder what people read: the repr escapes them all, and quoting makes a
    literal backslash in the text distinguishable from an escape.
    """
    return text if text.isprintable() else repr(text)


def _escape_json_char(match: re.Match[str]) -> str:
    char = match.group()
    if char.isprintable():
        return char
    code = ord(char)
    if code > 0xFFFF:  # JSON escapes astral characters as a surrogate pair
        code -= 0x10000
        return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
    return f"\\u{code:04x}"


def safe_json_text(text: str) -> str:
    """JSON text with every non-printable character written as a ``\\uXXXX`` escape.

    Still the same JSON (outside strings JSON has only printable ASCII and
    whitespace), but safe to print on a terminal: no bidi override or
    zero-width character reaches it raw.
    """
    return _NON_ASCII_OR_CONTROL.sub(_escape_json_char, text)


def to_json(value: Any, *, pretty: bool = False) -> str:
    """``value`` as JSON text, safe for a terminal (see :func:`safe_json_text`)."""
    option = orjson.OPT_INDENT_2 if pretty else 0
    return safe_json_text(orjson.dumps(value, option=option).decode("utf-8"))


class Output:
    """Where commands print: rich text and tables for people, JSON for scripts."""

    def __init__(self, as_json: bool) -> None:
        self.json = as_json
        # file=None: rich writes to whatever sys.stdout is at print time (the
        # test runner swaps it). No markup, emoji or highlighting: data is
        # printed as data, never interpreted.
        self.console = Console(markup=False, emoji=False, highlight=False, soft_wrap=True)

    def data(self, value: Any, *, pretty: bool = False) -> None:
        """One JSON document on stdout (the --json form of a result)."""
        sys.stdout.write(to_json(value, pretty=pretty) + "\n")
        sys.stdout.flush()

    def json_line(self, value: Any) -> None:
        """Alias of :meth:`data` for streams of JSON lines."""
        self.data(value)

    def text(self, text: str, *, style: str | None = None) -> None:
        """A line for people (``text`` already escaped where it holds data)."""
        self.console.print(Text(text, style=style or ""))

    def pretty(self, value: Any) -> None:
        """A JSON value indented, for people."""
        self.console.print(Text(to_json(value, pretty=True)))

    def table(self, columns: Sequence[str], rows: Sequence[Sequence[str]], *, title: str | None = None) -> None:
        """A rich table; cells are escaped by the caller with :func:`show`."""
        table = Table(title=title, title_justify="left")
        for name in columns:
            table.add_column(name, overflow="fold")
        for row in rows:
            table.add_row(*(Text(cell) for cell in row))
        self.console.print(table)


def human_ttl(seconds: float | None) -> str:
    """``"never"`` or a short duration such as ``"29m 59s"``."""
    if seconds is None:
        return "never"
    total = max(0, int(seconds + 0.999))
    days, rest = divmod(total, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{n}{unit}" for n, unit in ((days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")) if n]
    return " ".join(parts[:2]) or "0s"


def iso_time(epoch: Any) -> str:
    """Epoch seconds as an RFC 3339 UTC time for people (anything else shown escaped)."""
    if isinstance(epoch, int | float) and not isinstance(epoch, bool):
        return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return show(str(epoch))


def print_note(note: str | None) -> None:
    """A note from :func:`writing_bot`, on stderr, after the command succeeded."""
    if note:
        sys.stderr.write(note + "\n")


def exit_code_for(exc: BaseException) -> int:
    """2 for input the caller can fix, 1 for every other failure."""
    if isinstance(exc, _BAD_INPUT_ERRORS):
        return BAD_INPUT
    if isinstance(exc, typer.TyperException):
        return int(getattr(exc, "exit_code", BAD_INPUT))
    return FAILURE


def _one_line(message: str) -> str:
    # An error message may quote input: it must not forge lines on stderr.
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in message) or "(no message)"


def report_error(exc: BaseException) -> int:
    """Print ``exc`` as one line on stderr; return the exit code it deserves."""
    if isinstance(exc, typer.TyperException):
        message = exc.format_message()
    elif isinstance(exc, BotMemoryError):
        message = str(exc) or type(exc).__name__
    elif isinstance(exc, OSError):
        message = f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
    else:
        message = f"internal error ({type(exc).__name__}): {exc}"
    try:
        sys.stderr.write(f"error: {_one_line(message)}\n")
        sys.stderr.flush()
    except (OSError, ValueError):  # stderr closed: the exit code still tells
        pass
    return exit_code_for(exc)


def debug_enabled() -> bool:
    """``BOTMEMORY_DEBUG=1`` lets unexpected exceptions through with their traceback."""
    return os.environ.get("BOTMEMORY_DEBUG", "") not in ("", "0")
