"""Bots on disk: ``bot.yaml``, ``flows/*.yaml``, ``actions/*.py``, ``hooks/*.py``.

``load_bot(folder)`` reads one bot folder and checks everything it can
before the bot runs; ``load_bots(bots_dir)`` loads every folder and keeps
the errors apart, so one broken bot never stops the others. Every error
names the file (relative to the bot folder) and the line.

``bot.yaml``::

    id: example                    # default: the folder's name
    name: Example bot
    start_flow: main               # default main
    session_timeout: 30m           # default 30m
    error_message: "Sorry, something went wrong."
    hook_timeout: 5s               # default 5s
    action_timeout: 10s            # default 10s: each custom action
    turn_timeout: 60s              # default 60s: a whole turn, whatever the bot's code does
    retention: {...}               # botmemory.retention.policy.RetentionConfig
"""

from __future__ import annotations

import difflib
import importlib.util
import inspect
import logging
import re
import sys
import traceback
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Final

from ..errors import InvalidInputError
from ..expiry import duration_ms
from ..keys import validate_bot_id
from .actions import BUILTIN_ACTIONS, ActionSpec, custom_action_spec
from .flows import Flow, UnknownActionError, check_references, parse_flow
from .yamlsource import BotLoadError, LineDict, load_yaml, plain

__all__ = ["HOOK_NAMES", "LoadedBot", "load_bot", "load_bots"]

logger = logging.getLogger("botmemory.runtime")

#: Hooks a bot may define in ``hooks/*.py``.
HOOK_NAMES: Final = (
    "after_bot_mount",
    "before_incoming",
    "after_incoming",
    "before_outgoing",
    "after_conversation_end",
)

_BOT_KEYS: Final = frozenset(
    {
        "id", "name", "description", "start_flow", "session_timeout", "error_message", "hook_timeout",
        "action_timeout", "turn_timeout", "retention",
    }
)
_FLOW_NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")

HookFn = Callable[..., Awaitable[Any]]


@dataclass(slots=True)
class LoadedBot:
    """A bot read from its folder and checked, ready to mount.

    Attributes:
        id: the bot id.
        name: display name.
        folder: the bot's folder.
        start_flow: the flow a new session starts in.
        session_timeout: seconds of inactivity after which a session ends.
        error_message: the answer to a turn that failed.
        hook_timeout: seconds a hook may run before it is skipped.
        action_timeout: seconds a custom action may run before the turn fails.
        turn_timeout: seconds a whole turn may take (hooks, actions, memory)
            before it answers the error message and frees the conversation.
        retention: the parsed ``RetentionConfig`` (or the raw mapping when
            ``botmemory.retention`` is not installed), None when absent.
        flows: flows by name.
        actions: every action by name (built-ins and custom).
        hooks: hook functions by hook name, in file name order.
    """

    id: str
    name: str
    folder: Path
    start_flow: str = "main"
    session_timeout: float = 1800.0
    error_message: str = "Sorry, something went wrong."
    hook_timeout: float = 5.0
    action_timeout: float = 10.0
    turn_timeout: float = 60.0
    retention: Any = None
    flows: dict[str, Flow] = field(default_factory=dict)
    actions: dict[str, ActionSpec] = field(default_factory=dict)
    hooks: dict[str, list[tuple[str, HookFn]]] = field(default_factory=dict)
    #: public plain ``def`` functions of ``actions/*.py`` (helpers, or actions
    #: written without ``async``): name -> "file:line", for load errors
    plain_functions: dict[str, str] = field(default_factory=dict)


def _duration(doc: LineDict, key: str, default: float) -> float:
    if key not in doc:
        return default
    raw = doc[key]
    try:
        return duration_ms(raw) / 1000
    except InvalidInputError as exc:
        raise BotLoadError("bot.yaml", doc.line_of(key), f"bad {key} {raw!r}: {exc}") from None


def _parse_retention(raw: Any, line: int) -> Any:
    if raw is None:
        return None
    if importlib.util.find_spec("botmemory.retention.policy") is None:
        if not isinstance(raw, dict):
            raise BotLoadError("bot.yaml", line, "retention must be a mapping")
        return plain(raw)
    from ..retention.policy import RetentionConfig  # type: ignore[import-not-found,unused-ignore]

    try:
        return RetentionConfig.parse(plain(raw), source="bot.yaml")
    except InvalidInputError as exc:
        raise BotLoadError("bot.yaml", line, f"retention: {exc}") from None


def _import(path: Path, folder: Path, module_name: str) -> ModuleType:
    """Execute a bot's Python file as a fresh module; errors name the file and line."""
    rel = path.relative_to(folder).as_posix()
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise BotLoadError(rel, None, "cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look modules up here
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        sys.modules.pop(module_name, None)
        raise BotLoadError(rel, exc.lineno, f"syntax error: {exc.msg}") from None
    except Exception as exc:
        sys.modules.pop(module_name, None)
        line = None
        for frame in traceback.extract_tb(exc.__traceback__):
            if Path(frame.filename) == path:
                line = frame.lineno
        raise BotLoadError(rel, line, f"import failed: {type(exc).__name__}: {exc}") from None
    return module


def _public_async_functions(module: ModuleType) -> list[tuple[str, Callable[..., Any], int]]:
    found: list[tuple[str, Callable[..., Any], int]] = []
    for name, obj in vars(module).items():
        if name.startswith("_") or not inspect.isfunction(obj) or obj.__module__ != module.__name__:
            continue
        found.append((name, obj, obj.__code__.co_firstlineno))
    return found


def _module_name(bot_id: str, kind: str, stem: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_]", "_", f"{bot_id}__{stem}")
    return f"botmemory_bots.{kind}.{safe}"


def _load_actions(bot: LoadedBot) -> None:
    bot.actions = dict(BUILTIN_ACTIONS)
    for path in sorted((bot.folder / "actions").glob("*.py")):
        rel = path.relative_to(bot.folder).as_posix()
        module = _import(path, bot.folder, _module_name(bot.id, "actions", path.stem))
        for name, fn, line in _public_async_functions(module):
            if not inspect.iscoroutinefunction(fn):
                # plain helpers may live next to actions; remembered in case a flow calls one
                bot.plain_functions.setdefault(name, f"{rel}:{line}")
                continue
            if name in BUILTIN_ACTIONS:
                raise BotLoadError(rel, line, f"action {name!r} has the name of a built-in action")
            if name in bot.actions:
                raise BotLoadError(rel, line, f"action {name!r} is defined twice")
            bot.actions[name] = custom_action_spec(name, fn)


def _load_hooks(bot: LoadedBot) -> None:
    bot.hooks = {name: [] for name in HOOK_NAMES}
    for path in sorted((bot.folder / "hooks").glob("*.py")):
        rel = path.relative_to(bot.folder).as_posix()
        module = _import(path, bot.folder, _module_name(bot.id, "hooks", path.stem))
        for name, fn, line in _public_async_functions(module):
            is_async = inspect.iscoroutinefunction(fn)
            if name not in bot.hooks:
                close = difflib.get_close_matches(name, HOOK_NAMES, n=1, cutoff=0.8)
                if close:  # before_incomming: a misspelt hook would never run
                    raise BotLoadError(rel, line, f"{name!r} is not a hook name; did you mean {close[0]!r}?")
                if is_async:
                    # every public async def of a hooks file is taken for a hook: one
                    # that is not would silently never run
                    raise BotLoadError(
                        rel,
                        line,
                        f"{name!r} is not a hook name (hooks: {', '.join(HOOK_NAMES)}); "
                        "name helper functions with a leading underscore",
                    )
                continue  # a plain helper function
            if not is_async:
                raise BotLoadError(rel, line, f"hook {name!r} must be an async def")
            bot.hooks[name].append((rel, fn))


def _load_flows(bot: LoadedBot) -> None:
    flows_dir = bot.folder / "flows"
    for path in sorted(flows_dir.glob("*.yaml")) + sorted(flows_dir.glob("*.yml")):
        rel = path.relative_to(bot.folder).as_posix()
        if not _FLOW_NAME_RE.fullmatch(path.stem):
            raise BotLoadError(rel, None, f"bad flow name {path.stem!r}")
        if path.stem in bot.flows:
            raise BotLoadError(rel, None, f"flow {path.stem!r} is defined twice")
        text = _read(path, rel)
        try:
            bot.flows[path.stem] = parse_flow(path.stem, load_yaml(text, rel), rel, bot.actions)
        except UnknownActionError as exc:
            where = bot.plain_functions.get(exc.action) if isinstance(exc.action, str) else None
            if where is None:
                raise
            raise UnknownActionError(
                exc.file, exc.line, exc.action, f"{where} defines it with `def`; actions must be `async def`"
            ) from None
    check_references(bot.flows)


def _read(path: Path, rel: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BotLoadError(rel, None, f"cannot be read: {exc}") from None


def load_bot(folder: Path | str) -> LoadedBot:
    """Read and check one bot folder.

    Args:
        folder: the folder holding ``bot.yaml``.

    Returns:
        The loaded bot.

    Raises:
        BotLoadError: what is wrong, as ``file:line: message``.
    """
    folder = Path(folder)
    doc = load_yaml(_read(folder / "bot.yaml", "bot.yaml"), "bot.yaml")
    if doc is None:
        doc = LineDict()
        doc.line, doc.lines = 1, {}
    if not isinstance(doc, LineDict):
        raise BotLoadError("bot.yaml", 1, "bot.yaml must be a mapping")
    for key in doc:
        if key not in _BOT_KEYS:
            logger.warning("bot %s: bot.yaml:%s: unknown key %r ignored", folder.name, doc.line_of(key), key)
    raw_id = doc.get("id", folder.name)
    try:
        bot_id = validate_bot_id(raw_id)
    except InvalidInputError as exc:
        raise BotLoadError("bot.yaml", doc.line_of("id"), str(exc)) from None
    bot = LoadedBot(id=bot_id, name=str(doc.get("name", bot_id)), folder=folder)
    for key in ("start_flow", "error_message"):
        if key in doc:
            value = doc[key]
            if not isinstance(value, str) or not value:
                raise BotLoadError("bot.yaml", doc.line_of(key), f"{key} must be a non-empty string")
            setattr(bot, key, value)
    bot.session_timeout = _duration(doc, "session_timeout", bot.session_timeout)
    bot.hook_timeout = _duration(doc, "hook_timeout", bot.hook_timeout)
    bot.action_timeout = _duration(doc, "action_timeout", bot.action_timeout)
    bot.turn_timeout = _duration(doc, "turn_timeout", bot.turn_timeout)
    bot.retention = _parse_retention(doc.get("retention"), doc.line_of("retention"))
    _load_actions(bot)
    _load_hooks(bot)
    _load_flows(bot)
    if bot.start_flow not in bot.flows:
        raise BotLoadError("bot.yaml", doc.line_of("start_flow"), f"unknown flow {bot.start_flow!r}")
    return bot


def load_bots(
    bots_dir: Path | str, *, only: Collection[str] | None = None
) -> tuple[dict[str, LoadedBot], dict[str, str]]:
    """Load every bot folder (a folder with a ``bot.yaml``) under ``bots_dir``.

    Args:
        bots_dir: the folder of bot folders.
        only: bot ids to load (None: all); the others are not loaded at all
            (no Python file of theirs runs), though every ``bot.yaml`` is read
            to find which folders claim those ids.

    Returns:
        ``(bots, errors)``: loaded bots by id, and for each bot that failed,
        ``"file:line: message"`` by bot id (the folder's name when the id
        itself could not be read). Two folders claiming one id are both
        refused, and the error names every such folder.

    Raises:
        InvalidInputError: ``bots_dir`` is not a directory.
    """
    root = Path(bots_dir)
    if not root.is_dir():
        raise InvalidInputError(f"bots directory {str(root)!r} does not exist or is not a directory")
    claims: dict[str, list[Path]] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and (p / "bot.yaml").is_file()):
        claims.setdefault(_claimed_id(folder), []).append(folder)
    bots: dict[str, LoadedBot] = {}
    errors: dict[str, str] = {}
    for bot_id, folders in claims.items():
        if only is not None and bot_id not in only:
            continue
        if len(folders) > 1:
            names = ", ".join(f"{f.name}/bot.yaml" for f in folders)
            errors[bot_id] = (
                f"bot.yaml: bot id {bot_id!r} is claimed by {len(folders)} folders ({names}); none is mounted"
            )
            _log_not_mounted(bot_id, errors[bot_id])
            continue
        try:
            bots[bot_id] = load_bot(folders[0])
        except BotLoadError as exc:
            errors[bot_id] = str(exc)
            _log_not_mounted(bot_id, errors[bot_id])
    return bots, errors


def _log_not_mounted(bot_id: str, error: str) -> None:
    # ``load_error`` lets a caller that reports load errors itself (the CLI) drop this record
    logger.error("bot %s not mounted: %s", bot_id, error, extra={"load_error": True})


def _claimed_id(folder: Path) -> str:
    """The id a broken bot folder asks for, as far as it can be read."""
    try:
        doc = load_yaml((folder / "bot.yaml").read_text(encoding="utf-8"), "bot.yaml")
        if isinstance(doc, dict) and isinstance(doc.get("id"), str):
            return validate_bot_id(doc["id"])
    except (BotLoadError, InvalidInputError, OSError, UnicodeDecodeError):
        pass
    return folder.name
