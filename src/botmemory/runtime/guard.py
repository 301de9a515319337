"""Running the bot's own code (custom actions, hooks) so that it cannot take the runtime down.

``await run_bot_code(coro, timeout, what)`` runs ``coro`` in a task of its
own and returns its result or raises its exception, except that:

- it is bounded by ``timeout`` (real seconds): past it the task is
  cancelled and ``BotCodeTimeout`` is raised. A task that ignores the
  cancellation (catches ``CancelledError`` and goes on) is given ``grace``
  seconds more, then abandoned: it is logged, kept referenced so that it is
  not garbage-collected mid-run, and left to finish on its own, while the
  turn goes on. ``asyncio.wait_for`` would wait for it forever;
- a ``BaseException`` that is not an ``Exception`` (``sys.exit()``,
  ``KeyboardInterrupt`` raised by the code, ``GeneratorExit``…) becomes a
  ``BotCodeError`` (chained): asyncio re-raises ``SystemExit`` and
  ``KeyboardInterrupt`` out of the event loop, which would end the
  process that serves every other conversation;
- a ``CancelledError`` the code raises on its own (nobody cancelled it)
  is a ``BotCodeError`` too;
- when the caller itself is cancelled (its turn timed out, the server shuts
  down), the task is cancelled and the caller's ``CancelledError``
  propagates at once, without waiting for the task.

What cannot be bounded in-process: code that blocks the event loop without
awaiting (``time.sleep``, a busy loop, a blocking driver call) stops every
conversation of the process until it returns; see the README's
troubleshooting notes.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable
from typing import Any, Final, TypeVar

from ..cancellation import stop_if_cancelled

__all__ = ["GRACE", "BotCodeError", "BotCodeTimeout", "abandoned_tasks", "run_bot_code"]

T = TypeVar("T")

logger = logging.getLogger("botmemory.runtime")

#: Longest wait (seconds) for cancelled bot code to stop before it is abandoned.
GRACE: Final = 1.0

_abandoned: set[asyncio.Task[Any]] = set()


class BotCodeError(Exception):
    """The bot's code ended in a way that is not an ordinary exception (sys.exit(), a self-cancellation…)."""


class BotCodeTimeout(BotCodeError):
    """The bot's code ran past its timeout (it was cancelled, or abandoned when it ignored that)."""


def abandoned_tasks() -> frozenset[asyncio.Task[Any]]:
    """Tasks of bot code that ignored cancellation and still run (for tests and diagnostics)."""
    return frozenset(t for t in _abandoned if not t.done())


def _keep(task: asyncio.Task[Any]) -> None:
    if not task.done():
        _abandoned.add(task)
        task.add_done_callback(_forget)


def _forget(task: asyncio.Task[Any]) -> None:
    _abandoned.discard(task)
    if not task.cancelled() and task.exception() is not None:
        logger.info("abandoned bot code %s finished with %r", task.get_name(), task.exception())


async def _contain(coro: Awaitable[T]) -> T:
    try:
        return await coro
    except (Exception, asyncio.CancelledError):
        raise
    except BaseException as exc:  # SystemExit, KeyboardInterrupt, GeneratorExit, custom BaseExceptions
        raise BotCodeError(f"raised {type(exc).__name__}{f': {exc}' if str(exc) else ''}") from exc


async def run_bot_code(coro: Awaitable[T], timeout: float, what: str) -> T:
    """Run the bot's coroutine bounded by ``timeout`` seconds; see the module docstring.

    Args:
        coro: the coroutine (an action or hook call), not yet started.
        timeout: seconds (real time) it may run.
        what: names it in messages (``"action 'x' (flows/main.yaml:3)"``).

    Returns:
        What the coroutine returned.

    Raises:
        BotCodeTimeout: it ran past ``timeout``.
        BotCodeError: it raised a ``BaseException`` that is not an
            ``Exception``, or cancelled itself.
        Exception: whatever ordinary exception it raised.
        asyncio.CancelledError: the caller was cancelled.
    """
    try:
        stop_if_cancelled()
    except asyncio.CancelledError:
        if inspect.iscoroutine(coro):
            coro.close()  # never started: no "never awaited" warning
        raise
    task: asyncio.Task[T] = asyncio.get_running_loop().create_task(_contain(coro), name=what)
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout)
        if not done:
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=min(GRACE, timeout))
            if not done:
                _keep(task)
                logger.error(
                    "%s ignored its cancellation after %gs; abandoned while still running "
                    "(it no longer holds the turn or the conversation)",
                    what, timeout,
                )
            raise BotCodeTimeout(f"{what} took more than {timeout:g}s")
    except asyncio.CancelledError:
        task.cancel()
        _keep(task)
        raise
    if task.cancelled():
        raise BotCodeError(f"{what} cancelled itself")
    return task.result()
