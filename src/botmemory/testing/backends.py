"""Open a store on each backend for tests: the fixtures' one source of truth.

``BACKENDS`` names every backend the contract suite runs on. PostgreSQL and
Redis tests are required when ``CI=true`` (an unreachable server fails the
test) and are skipped with a one-line reason elsewhere.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..backends.base import Backend
from ..clock import Clock
from ..errors import StoreUnavailableError
from ..limits import Limits
from ..store import Store, open

__all__ = [
    "BACKENDS",
    "POSTGRES_URL",
    "REDIS_URL",
    "open_test_store",
    "register_test_backend",
    "server_missing",
    "unique_suffix",
]

BACKENDS = ["memory", "sqlite", "postgres", "redis"]

POSTGRES_URL = os.environ.get("BOTMEMORY_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("BOTMEMORY_TEST_REDIS", "redis://127.0.0.1:6379/0")



_REGISTERED: dict[str, Callable[[], Backend]] = {}


def register_test_backend(name: str, factory: Callable[[], Backend]) -> None:
    """Let ``open_test_store(name, …)`` open ``Store(factory())``: how a backend of your own runs the contract suite.

    With a ``backend_name`` fixture returning ``name`` and a ``store``
    fixture from ``open_test_store``, the contract classes run on it (see
    the README, "Testing your own backend").
    """
    _REGISTERED[name] = factory


def _address(url: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or default_port


# where server_missing looks: the servers the URLs above name (CI may point elsewhere)
_PORTS = {"postgres": _address(POSTGRES_URL, 5432), "redis": _address(REDIS_URL, 6379)}


def unique_suffix() -> str:
    """A short random name for a schema or key prefix owned by one test."""
    return "t" + uuid.uuid4().hex[:12]


def server_missing(name: str) -> str | None:
    """Why the server behind backend ``name`` cannot be used here, or None."""
    if name not in _PORTS:
        return None
    host, port = _PORTS[name]
    try:
        with socket.create_connection((host, port), timeout=1):
            return None
    except OSError as exc:
        return f"{name} is not reachable on {host}:{port} ({exc})"


@asynccontextmanager
async def open_test_store(
    name: str, tmp_path: Path, *, clock: Clock | None = None, limits: Limits | None = None, **options: Any
) -> AsyncIterator[Store]:
    """A fresh, empty store on backend ``name``, removed afterwards."""
    factory = _REGISTERED.get(name)
    if factory is not None:
        store = Store(factory(), clock=clock, limits=limits)
    elif name == "memory":
        store = await open("memory://", clock=clock, limits=limits)
    elif name == "sqlite":
        store = await open(f"sqlite:///{tmp_path / 'test.db'}", clock=clock, limits=limits, **options)
    elif name == "postgres":
        options.setdefault("schema", unique_suffix())
        store = await open(POSTGRES_URL, clock=clock, limits=limits, **options)
    elif name == "redis":
        options.setdefault("prefix", f"botmemory-test:{unique_suffix()}:")
        store = await open(REDIS_URL, clock=clock, limits=limits, **options)
    else:
        raise ValueError(f"unknown backend {name!r}")
    try:
        yield store
    finally:
        try:
            if name in ("postgres", "redis"):  # servers outlive the test: drop its schema or keys (DropAll)
                try:
                    await store.drop_everything()
                except StoreUnavailableError:
                    # the test closed the store itself: drop through a new connection
                    again = await open(POSTGRES_URL if name == "postgres" else REDIS_URL, **options)
                    try:
                        await again.drop_everything()
                    finally:
                        await again.close()
        finally:
            await store.close()
