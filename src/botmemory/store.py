"""``open(url)``: a ``Store`` over one backend, and ``Bot`` handles.

The store reaches its backend through ``backends.ops.Ops`` (the eight
primitives plus what is derived from them) and knows nothing of the
features built on it. Those attach themselves from outside:

- ``register_bot_hook(fn)``: ``fn(bot)`` runs for every new ``Bot`` handle
  (retention installs its write hook on the handle's KVS this way);
- ``register_bot_extension(name, factory)``: ``bot.extension(name)`` is
  ``factory(bot)``, made once per handle (``bot.users`` is retention's);
- ``store.wrap_backend(wrapper)``: every call goes through a
  ``backends.wrapper.BackendWrapper`` from then on (the runtime meters its
  turns' store calls this way).

``botmemory/__init__.py`` registers retention's hook and extension, so they
are in place before any store is opened.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Generator, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

from .backends.base import PRIVATE_NS_PREFIX, Backend, BulkLoad, Checkpoint, DropAll, LockLease, Locks, Purged, Row
from .backends.ops import operations
from .backends.ops import restore as _derived_restore
from .backends.wrapper import BackendWrapper, wrap
from .clock import Clock, NonDecreasingClock, SystemClock
from .errors import InvalidInputError, StoreError, show_value
from .keys import GLOBAL_NS, validate_bot_id
from .kvs import KVS
from .limits import Limits
from .memory import DialogMemory

__all__ = [
    "BACKENDS",
    "DEFAULT_URL",
    "Bot",
    "Store",
    "StoreOpener",
    "open",
    "open_store",
    "register_bot_extension",
    "register_bot_hook",
]

DEFAULT_URL = "sqlite:///./botmemory.db"

W = TypeVar("W", bound=BackendWrapper)

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


_BOT_HOOKS: list[Callable[[Bot], None]] = []
_BOT_EXTENSIONS: dict[str, Callable[[Bot], Any]] = {}


def register_bot_hook(hook: Callable[[Bot], None]) -> None:
    """Run ``hook(bot)`` for every ``Bot`` handle made from now on (once per hook)."""
    if hook not in _BOT_HOOKS:
        _BOT_HOOKS.append(hook)


def register_bot_extension(name: str, factory: Callable[[Bot], Any]) -> None:
    """Make ``bot.extension(name)`` return ``factory(bot)`` (made once per handle)."""
    _BOT_EXTENSIONS[name] = factory


class Bot:
    """A handle bound to one bot: its KVS and its dialog memory."""

    sync_handle = True  # the sync facade wraps it (botmemory.sync)
    __slots__ = ("_extras", "_retention", "id", "kvs", "memory", "store")

    def __init__(self, store: Store, bot_id: str) -> None:
        self.store = store
        self.id = bot_id
        self.kvs = KVS(store._ops, bot_id, store.clock, store.limits)
        self.memory = DialogMemory(self.kvs, store.limits.max_id_bytes)
        self._extras: dict[str, Any] = {}
        self._retention: Any = None
        # Features above the store attach here: retention's hook applies
        # ``self.retention``'s policies to writes (none while it is None) and
        # keeps a write that races a user's erasure from bringing the user's
        # data back (see botmemory.retention.guard).
        for hook in _BOT_HOOKS:
            hook(self)

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

    def extension(self, name: str) -> Any:
        """The extension ``name`` of this handle (see ``register_bot_extension``), made at first use.

        Raises:
            LookupError: nothing registered that name.
        """
        found = self._extras.get(name)
        if found is None:
            factory = _BOT_EXTENSIONS.get(name)
            if factory is None:
                raise LookupError(f"no bot extension {name!r} is registered")
            found = self._extras[name] = factory(self)
        return found

    @property
    def users(self) -> Any:
        """Export, erase and legal hold of users (``botmemory.retention.Users``)."""
        return self.extension("users")


class Store:
    """Everything stored behind one URL: every bot, plus the server-wide KVS."""

    def __init__(self, backend: Backend, *, clock: Clock | None = None, limits: Limits | None = None) -> None:
        self._bind(backend)
        # Time never goes back for a store: a key once expired stays expired (clock.NonDecreasingClock).
        base = clock if clock is not None else SystemClock()
        self.clock = base if isinstance(base, NonDecreasingClock) else NonDecreasingClock(base)
        self.limits = limits if limits is not None else Limits()
        self.global_kvs = KVS(self._ops, GLOBAL_NS, self.clock, self.limits, quota=False)
        self._bots: dict[str, Bot] = {}
        self._private: dict[str, KVS] = {}
        self._closed = False

    def _bind(self, backend: Backend) -> None:
        # what each call goes to: the operations (derived where the backend
        # has no FastPaths), and each capability, checked once
        self._backend = backend
        self._ops = operations(backend)
        self._locks = backend if isinstance(backend, Locks) else None
        self._bulk = backend if isinstance(backend, BulkLoad) else None
        self._checkpointer = backend if isinstance(backend, Checkpoint) else None
        self._dropper = backend if isinstance(backend, DropAll) else None

    def __repr__(self) -> str:
        return f"<Store {self.backend.describe()}>"

    @property
    def backend(self) -> Backend:
        """The backend every call goes through (the outermost wrapper, if any)."""
        return self._backend

    @property
    def backend_name(self) -> str:
        """The URL scheme of the backend behind any wrappers (``"sqlite"``…), for messages."""
        return self._backend.name

    @property
    def loop_bound(self) -> bool:
        """Whether the backend may only be used from the event loop that opened it."""
        return self._backend.loop_bound

    def describe(self) -> dict[str, Any]:
        """A few facts about the backend for status output (no secrets)."""
        return self._backend.describe()

    def wrap_backend(self, wrapper: type[W]) -> W:
        """Route every call of this store's handles through a ``wrapper`` around the backend; returns it.

        The wrapper declares the capabilities of the backend it wraps
        (``backends.wrapper.wrap``). Every KVS handle of the store uses it
        from then on. A wrapper class already installed is not installed
        twice: the installed one is returned.
        """
        inner: Backend | None = self._backend
        while inner is not None:
            if isinstance(inner, wrapper):
                return inner
            inner = inner.inner if isinstance(inner, BackendWrapper) else None
        wrapped = wrap(wrapper, self._backend)
        self._bind(wrapped)
        for kvs in (self.global_kvs, *(bot.kvs for bot in self._bots.values()), *self._private.values()):
            kvs.rebind(self._ops)
        return wrapped

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
            kvs = self._private[namespace] = KVS(self._ops, namespace, self.clock, self.limits, quota=False)
        return kvs

    def kvs(self, namespace: str) -> KVS:
        """A plain KVS over any namespace (no quota, no write hooks), for tools that handle rows.

        Dump/load and retention read and write rows of every namespace
        through it (``KVS.rows``, ``scan_keys``, ``delete_under``…); a bot's
        own writes go through ``store.bot(id).kvs``, which applies its quota
        and retention.
        """
        if namespace == GLOBAL_NS:
            return self.global_kvs
        kvs = self._private.get(namespace)
        if kvs is None:
            kvs = self._private[namespace] = KVS(self._ops, namespace, self.clock, self.limits, quota=False)
        return kvs

    async def bots(self) -> list[str]:
        """Ids of the bots that have stored data, sorted."""
        return [ns for ns in await self._backend.namespaces() if not ns.startswith("__")]

    async def namespaces(self) -> list[str]:
        """Every namespace that holds rows (live or expired, bots' and private ones), sorted."""
        return await self._backend.namespaces()

    async def purge_expired(self, *, limit: int = 1000) -> int:
        """Delete up to ``limit`` expired entries of all bots; the number deleted."""
        if type(limit) is not int or limit <= 0:
            raise InvalidInputError(f"limit must be a positive int, got {limit!r}")
        return len(await self._backend.purge_expired(self.clock.now(), limit))

    async def purge_expired_rows(
        self, limit: int, namespace: str | None = None, keep: Sequence[tuple[str, str]] = ()
    ) -> list[Purged]:
        """Delete up to ``limit`` expired rows, oldest first, and say which (``Backend.purge_expired``).

        ``namespace=None``: of every namespace but the private ones. Rows
        under a ``(namespace, literal key prefix)`` of ``keep`` stay.
        """
        return await self._backend.purge_expired(self.clock.now(), limit, namespace, keep)

    # -- capabilities: what only some backends can do ------------------------
    def supports(self, capability: type) -> bool:
        """Whether the backend declares ``capability`` (``Locks``, ``BulkLoad``… of ``botmemory.backends.base``)."""
        return isinstance(self._backend, capability)

    @property
    def has_locks(self) -> bool:
        """Whether the backend declares the ``Locks`` capability (every built-in one does)."""
        return self._locks is not None

    async def acquire_lock(self, name: str, owner: str, ttl: float) -> LockLease | None:
        """Take (or renew) the named lease until now + ``ttl``; None while another owner holds it.

        Raises:
            StoreError: the backend has no ``Locks`` capability.
        """
        locks = self._locks
        if locks is None:
            raise StoreError(f"the {self.backend_name} backend has no locks (the Locks capability)")
        return await locks.acquire_lock(name, owner, ttl, self.clock.now())

    async def release_lock(self, name: str, owner: str) -> bool:
        """Release the named lease if ``owner`` still holds it."""
        locks = self._locks
        return False if locks is None else await locks.release_lock(name, owner)

    async def restore(self, namespace: str, rows: Sequence[Row]) -> None:
        """Write ``rows`` exactly as given (``BulkLoad.restore``, else derived: slower and not atomic)."""
        if self._bulk is not None:
            await self._bulk.restore(namespace, rows)
        else:
            await _derived_restore(self._backend, namespace, rows)

    async def replace_namespaces(self, moves: Mapping[str, str | None]) -> None:
        """``BulkLoad.replace_namespaces``: all moves in one atomic step.

        Raises:
            StoreError: the backend has no ``BulkLoad`` capability (nothing changed), or failed.
        """
        if self._bulk is None:
            raise StoreError(f"the {self.backend_name} backend cannot replace namespaces atomically")
        await self._bulk.replace_namespaces(moves)

    async def checkpoint(self) -> bool:
        """Flush the backend's write-ahead log (``Checkpoint``); False when it has none."""
        checkpointer = self._checkpointer
        if checkpointer is None:
            return False
        await checkpointer.checkpoint()
        return True

    async def drop_everything(self) -> bool:
        """Delete everything the store holds (``DropAll``, for tests); False when the backend cannot."""
        dropper = self._dropper
        if dropper is None:
            return False
        await dropper.drop_everything()
        return True

    async def close(self) -> None:
        """Close the backend; idempotent."""
        if not self._closed:
            self._closed = True
            await self._backend.close()

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
