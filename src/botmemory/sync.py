"""The blocking facade: the async API run to completion for the caller.

``open_sync(url)`` returns a ``SyncStore`` whose handles mirror the async
ones method for method; coroutines are run to completion and async
iterators become iterators. There is one copy of the logic (the async one).

Where the backend is not bound to one event loop (memory, SQLite), a call
runs on a private loop driven by the calling thread itself: a hop to
another thread and back costs about 100 µs on a small VM, ten times the
call. Otherwise (PostgreSQL and Redis pools belong to the loop that opened
them), and whenever the caller's thread already runs a loop or another
thread is inside the store, the call goes to the store's loop thread.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from types import TracebackType
from typing import Any, TypeVar

from .clock import Clock
from .errors import StoreUnavailableError
from .limits import Limits

__all__ = ["SyncStore", "open_sync"]

T = TypeVar("T")


class _LoopThread:
    """An event loop running forever on a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="botmemory-sync", daemon=True)
        self._thread.start()
        #: the caller-driven loop, once the store allows it (see the module docstring)
        self._direct: asyncio.AbstractEventLoop | None = None
        self._direct_lock = threading.Lock()

    def allow_direct(self) -> None:
        """Let calls run on a loop driven by the calling thread."""
        self._direct = asyncio.new_event_loop()

    def _run_direct(self, coro: Coroutine[Any, Any, T]) -> tuple[bool, T | None]:
        direct = self._direct
        if direct is None or not self._direct_lock.acquire(blocking=False):
            return False, None
        try:
            try:
                asyncio.get_running_loop()
            except RuntimeError:  # no loop running in this thread: drive ours
                return True, direct.run_until_complete(coro)
            return False, None
        finally:
            self._direct_lock.release()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("a botmemory sync facade cannot be called from its own event loop")
        if self.loop.is_closed():
            # after close(): the library's error, not asyncio's RuntimeError
            # (and no "coroutine was never awaited" warning)
            coro.close()
            raise StoreUnavailableError("this store is closed")
        done, result = self._run_direct(coro)
        if done:
            return result  # type: ignore[return-value]
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def iterate(self, it: AsyncIterator[T]) -> Iterator[T]:
        while True:
            try:
                yield self.run(_anext(it))
            except StopAsyncIteration:
                return

    def stop(self) -> None:
        direct, self._direct = self._direct, None
        if direct is not None:

            def finish() -> None:
                direct.run_until_complete(direct.shutdown_default_executor())
                direct.close()

            # on a thread of its own: the caller's thread may be running a loop
            with self._direct_lock:
                closer = threading.Thread(target=finish, name="botmemory-sync-close")
                closer.start()
                closer.join()
        if self.loop.is_running():
            # join the executor threads of asyncio.to_thread too, or they outlive close()
            asyncio.run_coroutine_threadsafe(self.loop.shutdown_default_executor(), self.loop).result()
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join()
        self.loop.close()


async def _anext(it: AsyncIterator[T]) -> T:
    return await it.__anext__()


def _wrap(value: Any, runner: _LoopThread) -> Any:
    if inspect.isawaitable(value):
        value = runner.run(value if inspect.iscoroutine(value) else _await(value))
    if isinstance(value, AsyncIterator):
        return runner.iterate(value)
    if getattr(type(value), "sync_handle", False):
        return _SyncProxy(value, runner)
    return value  # data (values, Entry, dicts) is returned as it is


async def _await(aw: Any) -> Any:
    return await aw


class _SyncProxy:
    """Mirrors an async handle: same attributes, blocking methods."""

    __slots__ = ("_runner", "_target")

    def __init__(self, target: Any, runner: _LoopThread) -> None:
        object.__setattr__(self, "_target", target)
        object.__setattr__(self, "_runner", runner)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if callable(attr) and not isinstance(attr, type):
            runner = self._runner

            def call(*args: Any, **kwargs: Any) -> Any:
                return _wrap(attr(*args, **kwargs), runner)

            call.__name__ = name
            call.__doc__ = attr.__doc__
            return call
        return _wrap(attr, self._runner)

    def __setattr__(self, name: str, value: Any) -> None:
        # settable handle attributes (``bot.retention = config``) work on the sync twin too
        setattr(self._target, name, value)

    def __repr__(self) -> str:
        return f"<sync {self._target!r}>"

    def __dir__(self) -> list[str]:
        return dir(self._target)


class SyncStore(_SyncProxy):
    """A ``Store`` with blocking methods; use as a context manager or call ``close()``."""

    @property
    def async_store(self) -> Any:
        """The ``botmemory.Store`` behind this facade, for code written against the async API."""
        return self._target

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` (which uses ``async_store``) to completion and return its result.

        Callable from any thread except the facade's own loop thread, like
        every other blocking method: integrations use it to offer blocking
        twins of their async methods with one copy of the logic.

        Raises:
            StoreUnavailableError: the store is closed.
        """
        runner: _LoopThread = self._runner
        return runner.run(coro)

    def close(self) -> None:
        """Close the store and stop its loop thread; idempotent."""
        runner: _LoopThread = self._runner
        if runner.loop.is_closed():
            return
        try:
            runner.run(self._target.close())
        finally:
            runner.stop()

    def __enter__(self) -> SyncStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: S110 - best effort at interpreter shutdown
            pass


def open_sync(
    url: str | None = None, *, clock: Clock | None = None, limits: Limits | None = None, **options: Any
) -> SyncStore:
    """Blocking twin of ``botmemory.open``: same arguments, same API."""
    from .store import DEFAULT_URL, open_store

    runner = _LoopThread()
    try:
        store = runner.run(open_store(url if url is not None else DEFAULT_URL, clock=clock, limits=limits, **options))
    except BaseException:
        runner.stop()
        raise
    if not store.loop_bound:
        runner.allow_direct()
    return SyncStore(store, runner)
