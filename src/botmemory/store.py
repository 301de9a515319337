"""``open(url)``: a ``Store`` over one backend, and ``Bot`` handles."""

from __future__ import annotations

import importlib
from collections.abc import Generator
from types import TracebackType
from typing import Any

from .backends.base import PRIVATE_NS_PREFIX, Backend
from .clock import Clock, SystemClock
from .errors import InvalidInputError, show_value
from .keys import GLOBAL_NS, validate_bot_id
from .kvs import KVS
from .limits import Limits
from .memory import DialogMemory

__all__ = ["BACKENDS", "DEFAULT_URL", "Bot", "Store", "StoreOpener", "open", "open_store"]

DEFAULT_URL = "sqlite:///./botmemory.db"

#: URL scheme -> module whose ``open_backend(url, **options)`` opens it.
#: Drivers are imported only when their scheme is used.
BACKENDS: dict[str, str] = {
    "memory": "botmemory.backends.memory",
    "sqlite": "botmemory.backends.sqlite",
    "postgresql": "botmemory.backends.postgres",
    "postgres": "botmemory.backends.postgres",
    "redis": "botmemory.backends.redis",
    "rediss": "botmemory.backends.redis",
}


class Bot:
    """A handle bound to one bot: its KVS and its dialog memory."""

    sync_handle = True  # the sync facade wraps it (botmemory.sync)
    __slots__ = ("_extras", "_retention", "id", "kvs", "memory", "store")

    def __init__(self, store: Store, bot_id: str) -> None:
        self.store = store
        self.id = bot_id
        self.kvs = KVS(store.backend, bot_id, store.clock, store.limits)
        self.memory = DialogMemory(self.kvs, store.limits.max_id_bytes)
        self._extras: dict[str, Any] = {}
        self._retention: Any = None
        # Retention sits above the store, hence the deferred import. Its hook
        # applies ``self.retention``'s policies to writes (none while it is
        # None) and keeps a write that races a user's erasure from bringing
        # the user's data back (see botmemory.retention.users).
        from .retention.users import install_hooks

        install_hooks(self)

    def __repr__(self) -> str:
        return f"<Bot {self.id!r}>"

    @property
    def retention(self) -> Any:
        """The bot's ``botmemory.retention.RetentionConfig``, or None (the default: no policy).

        Set it to make this handle's KVS and memory writes follow the
        policies, and to record ``delete_prefix`` calls in the audit log.
        """
        return self._retention

    @retention.setter
    def retention(self, config: Any) -> None:
        self._retention = config

    @property
    def users(self) -> Any:
        """Export, erase and legal hold of users (``botmemory.retention``)."""
        users = self._extras.get("users")
        if users is None:
            from .retention.users import Users

            users = self._extras["users"] = Users(self)
        return users


class Store:
    """Everything stored behind one URL: every bot, plus the server-wide KVS."""

    def __init__(self, backend: Backend, *, clock: Clock | None = None, limits: Limits | None = None) -> None:
        self.backend = backend
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.limits = limits if limits is not None else Limits()
        self.global_kvs = KVS(backend, GLOBAL_NS, self.clock, self.limits, quota=False)
        self._bots: dict[str, Bot] = {}
        self._private: dict[str, KVS] = {}
        self._closed = False

    def __repr__(self) -> str:
        return f"<Store {self.backend.describe()}>"

    def bot(self, bot_id: str) -> Bot:
        """The handle of bot ``bot_id`` (``[A-Za-z0-9][A-Za-z0-9_.-]{0,63}``)."""
        handle = self._bots.get(bot_id) if isinstance(bot_id, str) else None
        if handle is None:
            handle = self._bots[validate_bot_id(bot_id)] = Bot(self, bot_id)
        return handle

    def private_kvs(self, namespace: str) -> KVS:
        """A KVS over a private namespace (``botmemory.retention.layout``); no quota."""
        if not namespace.startswith(PRIVATE_NS_PREFIX):
            raise InvalidInputError(f"private namespaces start with {PRIVATE_NS_PREFIX!r}")
        kvs = self._private.get(namespace)
        if kvs is None:
            kvs = self._private[namespace] = KVS(self.backend, namespace, self.clock, self.limits, quota=False)
        return kvs

    async def bots(self) -> list[str]:
        """Ids of the bots that have stored data, sorted."""
        return [ns for ns in await self.backend.namespaces() if not ns.startswith("__")]

    async def purge_expired(self, *, limit: int = 1000) -> int:
        """Delete up to ``limit`` expired entries of all bots; the number deleted."""
        if type(limit) is not int or limit <= 0:
            raise InvalidInputError(f"limit must be a positive int, got {limit!r}")
        return len(await self.backend.purge_expired(self.clock.now(), limit))

    async def close(self) -> None:
        """Close the backend; idempotent."""
        if not self._closed:
            self._closed = True
            await self.backend.close()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


class StoreOpener:
    """What ``botmemory.open(url)`` returns: await it, or use it as ``async with``.

    ``store = await botmemory.open(url)`` gives the ``Store`` (close it
    yourself or with ``async with store``); ``async with botmemory.open(url)
    as store:`` opens it and closes it at the end of the block. Nothing is
    opened until one of the two happens.
    """

    __slots__ = ("_args", "_store")

    def __init__(self, url: str, options: dict[str, Any]) -> None:
        self._args = (url, options)
        self._store: Store | None = None

    def __repr__(self) -> str:
        return f"<botmemory.open({self._args[0]!r})>"

    def __await__(self) -> Generator[Any, None, Store]:
        url, options = self._args
        return open_store(url, **options).__await__()

    async def __aenter__(self) -> Store:
        url, options = self._args
        self._store = await open_store(url, **options)
        return self._store

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        store, self._store = self._store, None
        if store is not None:
            await store.close()

    def __enter__(self) -> None:
        raise TypeError(
            "botmemory.open() is async: write `async with botmemory.open(url) as store:` "
            "or `store = await botmemory.open(url)`; for blocking code use botmemory.open_sync(url)"
        )

    def __exit__(self, *exc: object) -> None:  # pragma: no cover - __enter__ always raises
        return None


def open(  # noqa: A001 - the spec's name: botmemory.open(url)
    url: str = DEFAULT_URL,
    *,
    clock: Clock | None = None,
    limits: Limits | None = None,
    create: bool = True,
    **backend_options: Any,
) -> StoreOpener:
    """Open the store behind ``url``, creating or migrating its schema.

    Use it either way::

        store = await botmemory.open(url)          # then: await store.close(), or async with store
        async with botmemory.open(url) as store:   # closed at the end of the block
            ...

    Args:
        url: ``memory://``, ``sqlite:///rel.db``, ``sqlite:////abs.db``,
            ``postgresql://…`` or ``redis://…``.
        clock: any object with ``now() -> float``; every expiry decision uses it.
        limits: size limits and quotas.
        create: False to refuse, rather than create, a store that does not
            exist yet (a missing SQLite file, a PostgreSQL schema that was
            never created): read-only tools use it so a mistyped URL is an
            error, not a new empty store.
        **backend_options: passed to the backend (e.g. ``timeout``).

    Returns:
        A ``StoreOpener``: awaiting it gives the ``Store``.

    Raises:
        InvalidInputError: the URL or an option is malformed.
        StoreUnavailableError: the backend cannot be opened (or, with
            ``create=False``, holds no store yet); nothing was changed.
    """
    return StoreOpener(url, {"clock": clock, "limits": limits, "create": create, **backend_options})


async def open_store(
    url: str = DEFAULT_URL,
    *,
    clock: Clock | None = None,
    limits: Limits | None = None,
    create: bool = True,
    **backend_options: Any,
) -> Store:
    """The coroutine behind ``open``: same arguments, returns the ``Store``."""
    check_url(url)
    scheme = url.split("://", 1)[0].lower()
    module_name = BACKENDS.get(scheme)
    if module_name is None:
        raise InvalidInputError(f"unknown store URL scheme {scheme!r}: expected one of {sorted(set(BACKENDS))}")
    if clock is not None and not callable(getattr(clock, "now", None)):
        raise InvalidInputError("clock must have a now() method returning epoch seconds")
    if limits is not None and not isinstance(limits, Limits):
        raise InvalidInputError("limits must be a botmemory.Limits")
    if not isinstance(create, bool):
        raise InvalidInputError(f"create must be True or False, got {create!r}")
    module = importlib.import_module(module_name)
    if not create:
        backend_options["create"] = False
    backend: Backend = await module.open_backend(url, **backend_options)
    return Store(backend, clock=clock, limits=limits)


def check_url(url: object) -> str:
    """Refuse a store URL that no backend could read: not a str, no scheme, control characters.

    A NUL or another control character cannot be part of a file name, host
    or query that means what it looks like (and the drivers fail on it with
    untyped errors), so it is refused before any backend sees the URL.

    Raises:
        InvalidInputError: what is wrong with it.
    """
    if not isinstance(url, str) or "://" not in url:
        raise InvalidInputError(f"bad store URL {show_value(url)}: expected scheme://…")
    bad = next((c for c in url if ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0), None)
    if bad is not None:
        raise InvalidInputError(f"bad store URL {show_value(url)}: it contains the control character {bad!r}")
    return url
