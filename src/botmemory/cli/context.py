"""The invocation's context: global options, opening the store and the runtime, bots' policies.

The global options live on the root callback (``--store``, ``--bots``,
``--json``) and reach commands through ``typer.Context.obj``. Commands are
thin: they open the store with :func:`run`, call the library, and print with
:class:`~botmemory.cli.output.Output`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final, TypeVar

import typer
import yaml

from .. import store as store_module
from ..errors import (
    InvalidInputError,
)
from ..keys import GLOBAL_NS, validate_bot_id
from ..kvs import KVS
from ..retention.policy import RetentionConfig
from ..store import Bot, Store

if TYPE_CHECKING:
    from ..runtime import Runtime
from .arguments import check_argv
from .output import show

__all__ = [
    "GLOBAL_BOT",
    "Settings",
    "bot_with_policies",
    "has_bots",
    "kvs_for",
    "namespace_for",
    "open_runtime",
    "open_store",
    "retention_of",
    "run",
    "settings",
    "writing_bot",
    "writing_kvs",
]

T = TypeVar("T")


#: What ``kvs`` commands take instead of a bot id for the server-wide KVS.
#: Bot ids start with a letter or digit, so this can never name a bot.
GLOBAL_BOT: Final = "@global"


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


def has_bots(bots_dir: str) -> bool:
    """Whether ``bots_dir`` is a folder with at least one bot folder (one with a bot.yaml)."""
    folder = Path(bots_dir)
    try:
        return folder.is_dir() and any((child / "bot.yaml").is_file() for child in folder.iterdir())
    except OSError:
        return False
