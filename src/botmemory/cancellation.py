"""Cancellation that an await swallowed, noticed between steps.

Python 3.11's ``asyncio.wait_for`` returns the result of an awaitable that
finishes in the same loop turn as a cancellation of the waiting task and
drops the cancellation (fixed in 3.12, CPython gh-86296). redis-py and
psycopg-pool wait for replies and connections that way, so under load a
``task.cancel()`` of a loop that talks to them (the janitor, a load, a turn)
can be lost, and the loop runs on forever. ``Task.cancelling()`` still
counts the request: checking it after such an await restores the
cancellation.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

__all__ = ["keep_cancellation", "stop_if_cancelled"]


def stop_if_cancelled() -> None:
    """Raise ``CancelledError`` when the current task has a cancellation request pending."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


@contextlib.contextmanager
def keep_cancellation() -> Iterator[None]:
    """Around a driver call: a cancellation of the calling task is never lost.

    If a cancellation was requested during the block (``Task.cancelling()``
    grew) and the driver's ``wait_for`` swallowed it, it is delivered on the
    way out. Used by the PostgreSQL and Redis backends around every call.
    """
    task = asyncio.current_task()
    before = task.cancelling() if task is not None else 0
    try:
        yield
    finally:
        if task is not None and task.cancelling() > before:
            raise asyncio.CancelledError
