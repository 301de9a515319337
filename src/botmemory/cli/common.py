"""What every command shares: global options, opening the store, output, errors.

The global options live on the root callback (``--store``, ``--bots``,
``--json``) and reach commands through ``typer.Context.obj``. Commands are
thin: they open the store with :func:`run`, call the library, and print with
:class:`Output`. Every failure leaves through :func:`report_error`: one line
on stderr, exit 2 for bad input and 1 for the rest, never a traceback.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import sys
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

import orjson
import typer
import yaml
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .. import store as store_module
from ..errors import (
    BotMemoryError,
    InvalidInputError,
    KeyNotFoundError,
    LegalHoldError,
    ValueTooLargeError,
    ValueTypeError,
    VersionConflictError,
)
from ..keys import GLOBAL_NS, validate_bot_id
from ..kvs import KVS
from ..retention.policy import RetentionConfig
from ..store import Bot, Store

if TYPE_CHECKING:
    from ..runtime import Runtime

__all__ = [
    "BAD_INPUT",
    "FAILURE",
    "GLOBAL_BOT",
    "Output",
    "Settings",
    "exit_code_for",
    "kvs_for",
    "parse_json_arg",
    "print_note",
    "report_error",
    "run",
    "settings",
    "show",
    "value_text",
    "writing_bot",
    "writing_kvs",
]

T = TypeVar("T")

BAD_INPUT: Final = 2
FAILURE: Final = 1

#: What ``kvs`` commands take instead of a bot id for the server-wide KVS.
#: Bot ids start with a letter or digit, so this can never name a bot.
GLOBAL_BOT: Final = "@global"

# Bad input: the caller can fix it. VersionConflictError counts as input (the
# --if-version given did not match), as HTTP answers it with a 4xx (409).
_BAD_INPUT_ERRORS = (InvalidInputError, KeyNotFoundError, LegalHoldError, VersionConflictError)


@dataclass(frozen=True, slots=True)
class Settings:
    """The global options, as the root callback received them."""

    store_url: str
    bots_dir: str
    json: bool
    timeout: float | None = None


def settings(ctx: typer.Context) -> Settings:
    """The global options of this invocation."""
    obj = ctx.find_root().obj
    if not isinstance(obj, Settings):  # a command invoked without the root callback
        return Settings(store_module.DEFAULT_URL, "./bots", False)
    return obj


# -- display -------------------------------------------------------------------

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


# -- input ---------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueTypeError(f"{name} is not a JSON number")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise InvalidInputError(f"duplicate object key {show(key)}")
            seen.add(key)
    return obj


def parse_json_arg(text: str, what: str = "value") -> Any:
    """Parse JSON strictly: no NaN/Infinity, no duplicate object keys.

    Raises:
        InvalidInputError: not JSON, or duplicate keys.
        ValueTypeError: NaN or Infinity.
        ValueTooLargeError: nested too deeply to parse.
    """
    try:
        return json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_no_duplicates)
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


# -- the store -----------------------------------------------------------------


def kvs_for(store: Store, bot: str) -> KVS:
    """The KVS named on the command line: a bot's, or the server-wide one for ``@global``."""
    if bot == GLOBAL_BOT:
        return store.global_kvs
    return store.bot(validate_bot_id(bot)).kvs


async def writing_kvs(store: Store, bot: str, opts: Settings) -> tuple[KVS, str | None]:
    """:func:`kvs_for` for a write: a bot's KVS follows its retention policies (:func:`writing_bot`)."""
    if bot == GLOBAL_BOT:
        return store.global_kvs, None  # the server-wide KVS has no retention policies
    handle, note = await writing_bot(store, bot, opts)
    return handle.kvs, note


def namespace_for(bot: str) -> str:
    """The backend namespace of a ``BOT`` argument (``@global`` included)."""
    return GLOBAL_NS if bot == GLOBAL_BOT else validate_bot_id(bot)


async def open_store(url: str, timeout: float | None = None, *, create: bool = True) -> Store:
    """``botmemory.open(url)``, refusing a URL that is not valid UTF-8 (from a byte-mangled environment).

    ``timeout`` (seconds) goes to the backend: how long SQLite waits for a
    locked database, PostgreSQL and Redis for a connection and each call.
    ``create=False`` (commands that only read or delete): a store that does
    not exist is an error, never created empty.
    """
    check_argv([url], what="--store URL")
    if timeout is None or url.startswith("memory:"):
        return await store_module.open(url, create=create)
    return await store_module.open(url, timeout=timeout, create=create)


def run(ctx: typer.Context, command: Callable[[Store], Awaitable[T]], *, create: bool = True) -> T:
    """Open the store named by ``--store``, run ``command`` with it, close it.

    ``create=False`` for commands that only read (or delete): they never
    create a store, so a mistyped ``--store`` is an error, not a new empty store.
    """
    opts = settings(ctx)

    async def main() -> T:
        store = await open_store(opts.store_url, opts.timeout, create=create)
        try:
            return await command(store)
        finally:
            await store.close()

    return asyncio.run(main())


def _not_a_load_error(record: logging.LogRecord) -> bool:
    return not getattr(record, "load_error", False)


async def open_runtime(store: Store, bots_dir: str, *, only: Collection[str] | None = None) -> Runtime:
    """``await botmemory.Runtime.open(store, bots_dir)``: the bots of the folder (or ``only`` those), mounted.

    The loader logs each bot that fails to load; commands report
    ``runtime.load_errors`` themselves, once, so those records are dropped here.
    """
    from ..runtime import Runtime  # imported on use: kvs commands need no flows or Jinja2

    runtime_logger = logging.getLogger("botmemory.runtime")
    runtime_logger.addFilter(_not_a_load_error)
    try:
        return await Runtime.open(store, bots_dir, only=only)
    finally:
        runtime_logger.removeFilter(_not_a_load_error)


def _folder_retention(bots_dir: str, bot_id: str) -> tuple[bool, RetentionConfig | None]:
    """Whether ``bots_dir`` holds bot ``bot_id``, and the retention section of its ``bot.yaml``.

    Raises:
        InvalidInputError: the section is invalid (the runtime would not mount that bot either).
    """
    root = Path(bots_dir)
    try:
        folders = sorted(p for p in root.iterdir() if (p / "bot.yaml").is_file()) if root.is_dir() else []
    except OSError:
        return False, None
    for folder in folders:
        try:
            doc = yaml.safe_load((folder / "bot.yaml").read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            continue  # a broken bot folder names no bot
        if not isinstance(doc, dict) or doc.get("id", folder.name) != bot_id:
            continue
        raw = doc.get("retention")
        if raw is None:
            return True, None
        if not isinstance(raw, dict):
            raise InvalidInputError(f"{folder.name}/bot.yaml: retention must be a mapping")
        return True, RetentionConfig.parse(raw, source=f"{folder.name}/bot.yaml")
    return False, None


def retention_of(bots_dir: str, bot_id: str) -> RetentionConfig | None:
    """The retention section of bot ``bot_id``'s ``bot.yaml`` in ``bots_dir``, if that folder has the bot.

    Raises:
        InvalidInputError: the section is invalid (the runtime would not mount that bot either).
    """
    return _folder_retention(bots_dir, bot_id)[1]


def bot_with_policies(store: Store, bot_id: str, opts: Settings) -> Bot:
    """``store.bot(bot_id)`` following the retention policies of its ``bot.yaml`` under ``--bots``.

    So erasure records name the policies. Commands that write data use
    :func:`writing_bot`, which also finds the policies a runtime recorded.
    """
    bot = store.bot(bot_id)
    config = retention_of(opts.bots_dir, bot.id)
    if config is not None:
        bot.retention = config
    return bot


async def writing_bot(store: Store, bot_id: str, opts: Settings) -> tuple[Bot, str | None]:
    """``store.bot(bot_id)`` with the retention policies its writes must follow, and a note for stderr.

    The policies come from the bot's ``bot.yaml`` under ``--bots``; when
    that folder does not hold the bot, from the policies a runtime recorded
    in the store when it last mounted the bot (``serve``, ``chat``,
    ``janitor``). When neither knows the bot, the write goes ahead without
    policies and the note (print it once the write succeeded) says so: the
    CLI cannot know what it was never told.
    """
    from ..retention.policy import declared_config

    bot = store.bot(validate_bot_id(bot_id))
    note = None
    found, config = _folder_retention(opts.bots_dir, bot.id)
    if not found:
        config = await declared_config(store, bot.id)
        if config is None:
            note = (
                f"note: bot {show(bot.id)} is not in {show(opts.bots_dir)} (--bots) and no runtime has recorded "
                "its retention policies in this store: written without retention policies"
            )
    if config is not None:
        bot.retention = config
    return bot, note


def print_note(note: str | None) -> None:
    """A note from :func:`writing_bot`, on stderr, after the command succeeded."""
    if note:
        sys.stderr.write(note + "\n")


def has_bots(bots_dir: str) -> bool:
    """Whether ``bots_dir`` is a folder with at least one bot folder (one with a bot.yaml)."""
    folder = Path(bots_dir)
    try:
        return folder.is_dir() and any((child / "bot.yaml").is_file() for child in folder.iterdir())
    except OSError:
        return False


# -- errors --------------------------------------------------------------------


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


def debug_enabled() -> bool:
    """``BOTMEMORY_DEBUG=1`` lets unexpected exceptions through with their traceback."""
    return os.environ.get("BOTMEMORY_DEBUG", "") not in ("", "0")
