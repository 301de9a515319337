"""Outages (issue 4, item 5): a frozen or unreachable server never hangs a call.

A small TCP proxy (``faultproxy.FaultProxy``, which the reliability suite's
outage tests also use for drops, delays, resets and half-open connections)
between the store and the real shared server plays the
outage: ``pause()`` stops forwarding (a frozen server: connections stay
open, nothing answers), ``close()`` closes every connection and the listening
socket (a server that is down: connections are refused). The real servers are
never touched. Each call must fail with ``StoreUnavailableError`` or
``StoreTimeoutError`` well within the configured ``timeout`` margin, and the
same store object must work again once the proxy forwards again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

import botmemory
from botmemory.errors import StoreTimeoutError, StoreUnavailableError
from botmemory.testing import FakeClock
from botmemory.testing.backends import POSTGRES_URL, REDIS_URL, unique_suffix
from conftest import require_backend
from faultproxy import FaultProxy as Proxy

TIMEOUT = 1.0
#: a failing call must answer within this many seconds
ANSWER_WITHIN = 3.0
#: after the outage, the same store must work again within this many seconds
RECOVER_WITHIN = 20.0


def _via(url: str, port: int) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host))


BACKENDS = [
    pytest.param("postgres", POSTGRES_URL, marks=pytest.mark.postgres, id="postgres"),
    pytest.param("redis", REDIS_URL, marks=pytest.mark.redis, id="redis"),
]


@contextlib.asynccontextmanager
async def _proxied_store(name: str, url: str) -> AsyncIterator[tuple[botmemory.Store, Proxy]]:
    require_backend(name)
    parts = urlsplit(url)
    proxy = Proxy((parts.hostname or "127.0.0.1", parts.port or (5432 if name == "postgres" else 6379)))
    await proxy.start()
    option: dict[str, Any] = (
        {"schema": unique_suffix()} if name == "postgres" else {"prefix": f"botmemory-test:{unique_suffix()}:"}
    )
    store = await botmemory.open(_via(url, proxy.port), clock=FakeClock(), timeout=TIMEOUT, **option)
    try:
        yield store, proxy
    finally:
        proxy.resume()
        await store.close()
        await proxy.close()
        # clean up through the real server, whatever state the proxy is in
        cleaner = await botmemory.open(url, **option)
        try:
            await cleaner.backend.drop_everything()  # type: ignore[attr-defined]
        finally:
            await cleaner.close()


def _calls(store: botmemory.Store) -> dict[str, Callable[[], Awaitable[Any]]]:
    kvs = store.bot("b1").kvs
    return {
        "get": lambda: kvs.get("a"),
        "set": lambda: kvs.set("a", {"n": 2}),
        "incr": lambda: kvs.incr("counter"),
        "set_if_absent": lambda: kvs.set_if_absent("fresh", 1),
        "keys": lambda: _list(kvs.keys()),
        "delete": lambda: kvs.delete("gone"),
        "ping": store.backend.ping,
    }


async def _list(iterator: Any) -> list[Any]:
    return [item async for item in iterator]


async def _all_fail_fast(store: botmemory.Store) -> None:
    for what, call in _calls(store).items():
        started = time.monotonic()
        with pytest.raises((StoreUnavailableError, StoreTimeoutError)):
            await call()
        elapsed = time.monotonic() - started
        assert elapsed < ANSWER_WITHIN, f"{what} took {elapsed:.2f} s"


async def _recovers(store: botmemory.Store) -> None:
    """The same store answers again (polling: this waits for a server, not for expiry)."""
    kvs = store.bot("b1").kvs
    deadline = time.monotonic() + RECOVER_WITHIN
    while True:
        try:
            assert await kvs.get("a") == {"n": 1}
            break
        except (StoreUnavailableError, StoreTimeoutError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)
    # every kind of call works again, not only the first that got through
    assert await kvs.set("a", {"n": 1}) >= 2
    assert await kvs.incr("counter") >= 1
    assert await _list(kvs.keys()) == ["a", "counter"]
    await store.backend.ping()


@pytest.mark.parametrize(("name", "url"), BACKENDS)
async def test_frozen_server_times_out_then_recovers(name: str, url: str) -> None:
    async with _proxied_store(name, url) as (store, proxy):
        assert await store.bot("b1").kvs.set("a", {"n": 1}) == 1
        proxy.pause()
        await _all_fail_fast(store)
        proxy.resume()
        await _recovers(store)


@pytest.mark.parametrize(("name", "url"), BACKENDS)
async def test_server_down_fails_fast_then_recovers(name: str, url: str) -> None:
    async with _proxied_store(name, url) as (store, proxy):
        assert await store.bot("b1").kvs.set("a", {"n": 1}) == 1
        await proxy.close()
        await _all_fail_fast(store)
        with pytest.raises(StoreUnavailableError):  # down, not slow
            await store.backend.ping()
        await proxy.start()  # the same port again
        await _recovers(store)


@pytest.mark.parametrize(("name", "url"), BACKENDS)
async def test_opening_an_unreachable_server_fails_fast(name: str, url: str) -> None:
    require_backend(name)
    proxy = Proxy(("127.0.0.1", 9))
    await proxy.start()
    port = proxy.port
    await proxy.close()  # nothing listens there any more
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError):
        await botmemory.open(_via(url, port), timeout=TIMEOUT)
    assert time.monotonic() - started < ANSWER_WITHIN


@pytest.mark.parametrize(("name", "url"), BACKENDS)
async def test_opening_a_frozen_server_fails_fast(name: str, url: str) -> None:
    require_backend(name)
    parts = urlsplit(url)
    proxy = Proxy((parts.hostname or "127.0.0.1", parts.port or 0))
    await proxy.start()
    proxy.pause()
    try:
        started = time.monotonic()
        with pytest.raises((StoreUnavailableError, StoreTimeoutError)):
            await botmemory.open(_via(url, proxy.port), timeout=TIMEOUT, **(
                {"schema": unique_suffix()} if name == "postgres" else {}
            ))
        assert time.monotonic() - started < ANSWER_WITHIN
    finally:
        proxy.resume()
        await proxy.close()
