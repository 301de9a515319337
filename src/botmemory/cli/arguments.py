"""Reading command-line input: JSON values (strict), ``-``/``@FILE`` values, argv checks.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

import typer

from ..codec import loads_strict
from ..errors import (
    BotMemoryError,
    InvalidInputError,
    ValueTooLargeError,
)

if TYPE_CHECKING:
    pass
from .output import show

__all__ = [
    "MAX_VALUE_TEXT",
    "check_argv",
    "hoist_json_flag",
    "parse_json_arg",
    "value_text",
]



def parse_json_arg(text: str, what: str = "value") -> Any:
    """Parse JSON strictly: no NaN/Infinity, no duplicate object keys.

    Raises:
        InvalidInputError: not JSON, or duplicate keys.
        ValueTypeError: NaN or Infinity.
        ValueTooLargeError: nested too deeply to parse.
    """
    try:
        return loads_strict(text)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"{what} is not valid JSON: {exc.msg} at column {exc.colno}") from None
    except RecursionError:
        raise ValueTooLargeError(f"{what} is nested too deeply") from None
    except ValueError as exc:
        if isinstance(exc, BotMemoryError):
            raise
        # int() refuses numbers with thousands of digits
        raise InvalidInputError(f"{what} is not valid JSON: {exc}") from None


#: the most JSON text ``-`` or ``@FILE`` may hold (values are refused at the store's own limit, 1 MiB by default)
MAX_VALUE_TEXT: Final = 64 * 1024 * 1024


def value_text(arg: str, what: str = "VALUE_JSON") -> str:
    """The JSON text of a value argument: the argument itself, ``-`` for stdin, ``@FILE`` for a file.

    Neither ``-`` nor ``@…`` is JSON, so they cannot be mistaken for a value;
    they lift the operating system's argument size limit (~128 KB).

    Raises:
        InvalidInputError: the file cannot be read, or the text is not UTF-8.
        ValueTooLargeError: more than ``MAX_VALUE_TEXT`` bytes.
    """
    if arg == "-":
        raw = typer.get_binary_stream("stdin").read(MAX_VALUE_TEXT + 1)
        source = "stdin"
    elif arg.startswith("@"):
        source = arg[1:]
        try:
            with open(source, "rb") as stream:
                raw = stream.read(MAX_VALUE_TEXT + 1)
        except OSError as exc:
            raise InvalidInputError(f"cannot read {what} from {show(source)}: {exc.strerror}") from None
    else:
        return arg
    if len(raw) > MAX_VALUE_TEXT:
        raise ValueTooLargeError(f"{what} from {show(source)} is longer than {MAX_VALUE_TEXT} bytes")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInputError(f"{what} from {show(source)} is not valid UTF-8") from None


def check_argv(args: Sequence[str], *, what: str = "argument") -> None:
    """Refuse arguments that were not valid UTF-8 (K7).

    Python decodes argv (and the environment) with ``surrogateescape``, so
    undecodable bytes arrive as lone surrogates; no key, id or option can
    contain one.
    """
    for position, arg in enumerate(args, start=1):
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            name = f"{what} {position}" if len(args) > 1 or what == "argument" else what
            raise InvalidInputError(f"{name} is not valid UTF-8: {arg!r}") from None


def hoist_json_flag(args: Sequence[str]) -> list[str]:
    """Move ``--json`` given after the command (``botmemory kvs ls b --json``) to the global options.

    Only before a ``--`` separator: after it, ``--json`` is an argument.
    """
    end = args.index("--") if "--" in args else len(args)
    head = [a for a in args[:end] if a != "--json"]
    if len(head) == end:
        return list(args)
    return ["--json", *head, *args[end:]]
