"""A cancellation swallowed by an await (Python 3.11's wait_for) is restored between steps.

Each test swallows the cancellation on purpose, as redis-py's ``wait_for``
does when a reply arrives in the same loop turn as ``task.cancel()``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from botmemory.cancellation import stop_if_cancelled
from botmemory.retention import Janitor
from botmemory.testing import FakeClock
from botmemory.testing.backends import open_test_store
from conftest import require_backend


async def _swallowing_wait() -> int:
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        return 1  # what wait_for does when the awaited call finished in the same turn
    return 0


async def test_stop_if_cancelled_restores_a_swallowed_cancellation() -> None:
    async def step() -> None:
        assert await _swallowing_wait() == 1
        stop_if_cancelled()

    task = asyncio.create_task(step())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_stop_if_cancelled_is_quiet_without_a_request() -> None:
    stop_if_cancelled()
    await asyncio.sleep(0)


async def test_the_janitor_loop_stops_when_a_run_swallowed_the_cancel(tmp_path: Path) -> None:
    async with open_test_store("memory", tmp_path, clock=FakeClock()) as store:
        janitor = Janitor(store)
        started = asyncio.Event()

        async def run_once() -> None:
            started.set()
            await _swallowing_wait()

        janitor.run_once = run_once  # type: ignore[method-assign]
        task = asyncio.create_task(janitor.run_forever(0.001))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)


async def test_a_redis_call_that_swallowed_the_cancel_raises_it(tmp_path: Path) -> None:
    require_backend("redis")
    async with open_test_store("redis", tmp_path, clock=FakeClock()) as store:
        backend = store.backend
        entered = asyncio.Event()

        async def fn(_client: object) -> int:
            entered.set()
            return await _swallowing_wait()

        task = asyncio.create_task(backend._call("probe", fn))
        await entered.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
