"""Running a bot's hooks: each one bounded by ``hook_timeout``, failures skipped.

Hooks are ``async def`` functions in the bot's ``hooks/*.py`` (see
``loader.HOOK_NAMES``), called with ``bp`` (``actions.BotSDK``) and, except
``after_bot_mount``, an event dict:

- ``before_incoming(bp, event)``: before the session is read; may change
  ``event["text"]`` (what the flow sees);
- ``after_incoming(bp, event)``: after the session is read, before the flow runs;
- ``before_outgoing(bp, event)``: once per reply; ``event["text"]`` may be
  changed (the reply sent is what is left there); ``event["incoming"]`` is the
  incoming event;
- ``after_conversation_end(bp, event)``: ``event`` has ``bot_id``,
  ``user_id``, ``conversation_id``, ``reason`` (``"end"``, ``"timeout"`` or
  the reason given to ``Runtime.end_conversation``), ``flow`` and ``node``.

A hook that raises an exception, or runs longer than ``hook_timeout`` (it is
cancelled, and abandoned if it ignores that: ``guard.run_bot_code``), is
logged and skipped; the message still flows. A hook that calls
``sys.exit()`` or raises another ``BaseException`` makes ``run_hook`` raise
``guard.BotCodeError``: inside a turn, the turn answers the bot's error
message. Several files may define the same hook: they run in file name
order.
"""

from __future__ import annotations

import logging
from typing import Any

from .guard import BotCodeError, BotCodeTimeout, run_bot_code
from .loader import LoadedBot

__all__ = ["run_hook"]

logger = logging.getLogger("botmemory.runtime.hooks")


async def run_hook(bot: LoadedBot, name: str, *args: Any, timeout: float | None = None) -> int:
    """Run every ``name`` hook of ``bot`` in turn; returns how many failed or timed out.

    Args:
        bot: the loaded bot.
        name: the hook's name.
        *args: ``bp`` and, for all but ``after_bot_mount``, the event.
        timeout: seconds per hook (default: the bot's ``hook_timeout``).

    Raises:
        BotCodeError: a hook raised ``SystemExit`` or another ``BaseException``
            that is not an ``Exception`` (the hooks after it do not run).
    """
    failed = 0
    limit = bot.hook_timeout if timeout is None else timeout
    for file, fn in bot.hooks.get(name, ()):
        try:
            await run_bot_code(fn(*args), limit, f"bot {bot.id}: hook {name} in {file}")
        except BotCodeTimeout:
            failed += 1
            logger.warning("bot %s: hook %s in %s took more than %gs; skipped", bot.id, name, file, limit)
        except BotCodeError:
            raise
        except Exception:
            failed += 1
            logger.exception("bot %s: hook %s in %s failed; skipped", bot.id, name, file)
    return failed
