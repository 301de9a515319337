"""``botmemory.open_sync``: the blocking facade mirrors the async API, method for method."""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import botmemory
from botmemory import (
    KVS,
    DialogMemory,
    Entry,
    InvalidExpiryError,
    InvalidInputError,
    InvalidKeyError,
    KeyNotFoundError,
    Limits,
    QuotaExceededError,
    Scope,
    Store,
    StoreUnavailableError,
    ValueTypeError,
    VersionConflictError,
)
from botmemory.testing import FakeClock


@pytest.fixture(params=["memory", "sqlite"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'sync.db'}"


def test_kvs_round_trip(url: str) -> None:
    clock = FakeClock()
    with botmemory.open_sync(url, clock=clock) as store:
        kvs = store.bot("b").kvs
        assert kvs.set("orders/42", {"total": 12.5}, expiry="30 days") == 1
        assert kvs.get("orders/42") == {"total": 12.5}
        assert kvs.get("orders/42", "total") == 12.5
        assert kvs.get("missing", default="d") == "d"
        entry = kvs.get_entry("orders/42")
        assert isinstance(entry, Entry) and entry.version == 1
        assert entry.expires_at == pytest.approx(clock.now() + 30 * 86400)
        assert kvs.exists("orders/42") is True
        assert kvs.set("orders/42", 13, "total", keep_ttl=False) == 2
        assert kvs.incr("n", 2) == 2
        assert kvs.set_if_absent("n", 0) is False
        assert kvs.set_many({"a": 1, "b": 2}) == [1, 1]
        assert kvs.get_many(["a", "b", "zz"]) == {"a": 1, "b": 2}
        assert kvs.ttl("a") is None
        assert kvs.expire("a", "10s") is True
        assert kvs.ttl("a") == pytest.approx(10)
        assert kvs.persist("a") is True
        assert kvs.set("a", 5, if_version=1) == 2
        assert kvs.delete_many(["a", "zz"]) == 1
        assert kvs.delete("b") is True
        assert kvs.delete("b") is False
        assert kvs.set_storage_with_expiry("s", 1, "1h") == 1
        assert kvs.get_storage_with_expiry("s") == 1
        assert kvs.remove_storage_keys_starting_with("s") == 1
        assert kvs.delete_prefix("", all=True) == 2
        clock.advance(1)


def test_keys_is_a_plain_iterator(url: str) -> None:
    with botmemory.open_sync(url) as store:
        kvs = store.bot("b").kvs
        names = [f"k{i:04d}" for i in range(1100)]
        kvs.set_many({k: 1 for k in names})
        it = kvs.keys()
        assert isinstance(it, Iterator)
        assert not inspect.isawaitable(it) and not hasattr(it, "__anext__")
        assert next(it) == "k0000"
        assert list(it) == names[1:]
        assert list(kvs.keys("k10", limit=5)) == names[1000:1005]
        assert list(kvs.keys(limit=3)) == names[:3]


def test_expiry_with_the_clock(url: str) -> None:
    clock = FakeClock()
    with botmemory.open_sync(url, clock=clock) as store:
        kvs = store.bot("b").kvs
        kvs.set("k", 1, expiry=10)
        clock.advance(10)
        assert kvs.get("k") is None
        assert list(kvs.keys()) == []
        assert store.purge_expired(limit=10) == 1


def test_memory_and_scopes(url: str) -> None:
    with botmemory.open_sync(url) as store:
        memory = store.bot("welcome-bot").memory
        assert memory.set_user_variable("u-17", "firstname", "Ada") == 1
        assert memory.get_user_variable("u-17", "firstname") == "Ada"
        assert memory.set_conversation_variable("c1", "step", 2) == 1
        assert memory.get_conversation_variable("c1", "step") == 2
        assert memory.set_global_variable("motd", "hi") == 1
        assert memory.get_global_variable("motd") == "hi"
        user = memory.user("u-17")
        assert user.set("lastname", "Lovelace") == 1
        assert user.items() == {"firstname": "Ada", "lastname": "Lovelace"}
        assert user.get("lastname") == "Lovelace"
        assert user.delete("lastname") is True
        assert memory.conversation("c1").items() == {"step": 2}
        assert memory.global_scope().items() == {"motd": "hi"}
        assert memory.end_conversation("c1") == 1
        assert memory.delete_global_variable("motd") is True
        assert memory.delete_user_variable("u-17", "firstname") is True
        assert user.clear() == 0
        assert store.bots() == []


def test_global_kvs_and_store_methods(url: str) -> None:
    with botmemory.open_sync(url) as store:
        store.global_kvs.set("g", 1)
        store.bot("b1").kvs.set("k", 1)
        assert store.global_kvs.get("g") == 1
        assert store.bot("b1").kvs.get("g") is None
        assert store.bots() == ["b1"]
        assert store.purge_expired() == 0


def test_errors_propagate_with_the_same_types(url: str) -> None:
    with botmemory.open_sync(url, limits=Limits(max_keys_per_bot=1)) as store:
        kvs = store.bot("b").kvs
        kvs.set("k", "v")
        for call, error in (
            (lambda: kvs.set("", 1), InvalidKeyError),
            (lambda: kvs.set("k", 1, if_version=7), VersionConflictError),
            (lambda: kvs.ttl("missing"), KeyNotFoundError),
            (lambda: kvs.set("k", 1, expiry="5 fortnights"), InvalidExpiryError),
            (lambda: kvs.incr("k"), ValueTypeError),
            (lambda: kvs.set("other", 1), QuotaExceededError),
            (lambda: list(kvs.keys(limit=0)), InvalidInputError),
            (lambda: kvs.delete_prefix(""), InvalidInputError),
            (lambda: store.bot("__global__"), InvalidKeyError),
            (lambda: store.bot("b").memory.set_user_variable("", "n", 1), InvalidKeyError),
        ):
            with pytest.raises(error):
                call()
        assert kvs.get("k") == "v"


def test_open_errors_propagate(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailableError):
        botmemory.open_sync(f"sqlite:///{tmp_path}")
    with pytest.raises(InvalidInputError):
        botmemory.open_sync("nope://")


def test_context_manager_closes(tmp_path: Path) -> None:
    before = {t.ident for t in threading.enumerate()}
    with botmemory.open_sync(f"sqlite:///{tmp_path / 'c.db'}") as store:
        kvs = store.bot("b").kvs
        kvs.set("k", 1)
    # its loop thread and the SQLite writer are gone
    assert {t.ident for t in threading.enumerate()} <= before
    with pytest.raises(StoreUnavailableError):
        kvs.get("k")
    with pytest.raises(StoreUnavailableError):
        store.bot("b").memory.get_user_variable("u", "n")
    store.close()  # idempotent
    with botmemory.open_sync(f"sqlite:///{tmp_path / 'c.db'}") as again:
        assert again.bot("b").kvs.get("k") == 1


def test_close_without_context_manager(url: str) -> None:
    store = botmemory.open_sync(url)
    store.bot("b").kvs.set("k", 1)
    store.close()
    with pytest.raises(StoreUnavailableError):
        store.bot("b").kvs.get("k")


def test_usable_from_several_threads(url: str) -> None:
    with botmemory.open_sync(url) as store:
        kvs = store.bot("b").kvs
        errors: list[BaseException] = []

        def work() -> None:
            # several threads at once: one drives the store's loop itself,
            # the others go through its loop thread (botmemory.sync)
            try:
                for _ in range(200):
                    kvs.incr("n")
                    kvs.get("n")
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert kvs.get("n") == 1600
        assert kvs.get_entry("n").version == 1600


def test_usable_inside_a_running_event_loop(url: str) -> None:
    async def main() -> list[str]:
        with botmemory.open_sync(url) as store:  # blocking calls from a coroutine, as in a notebook
            kvs = store.bot("b").kvs
            kvs.set("a", 1)
            kvs.set("b", 2)
            return list(kvs.keys())

    assert asyncio.run(main()) == ["a", "b"]


def test_mirrors_every_public_method() -> None:
    with botmemory.open_sync("memory://") as store:
        bot = store.bot("b")
        handles = [(store, Store), (store.global_kvs, KVS), (bot.kvs, KVS), (bot.memory, DialogMemory),
                   (bot.memory.user("u"), Scope)]
        for handle, cls in handles:
            for name, member in inspect.getmembers(cls):
                if name.startswith("_") or not callable(member) or name in ("close",):
                    continue
                assert callable(getattr(handle, name)), f"{cls.__name__}.{name} has no sync twin"
        for name in ("get", "set", "keys", "incr", "delete_prefix", "ttl", "expire", "persist"):
            assert not inspect.iscoroutinefunction(getattr(bot.kvs, name))
        assert store.bot("b").id == "b"


@pytest.mark.parametrize("backend_name", ["postgres", "redis"], indirect=True)
async def test_server_backends(backend_name: str, tmp_path: Path) -> None:
    """The facade's own loop thread owns the pools: PostgreSQL and Redis work through it too."""
    from botmemory.testing.backends import POSTGRES_URL, REDIS_URL, open_test_store, unique_suffix

    if backend_name == "postgres":
        url, options = POSTGRES_URL, {"schema": unique_suffix()}
    else:
        url, options = REDIS_URL, {"prefix": f"botmemory-test:{unique_suffix()}:"}

    def blocking() -> None:
        clock = FakeClock()
        with botmemory.open_sync(url, clock=clock, **options) as store:
            kvs = store.bot("b").kvs
            assert kvs.set_many({f"k{i:04d}": i for i in range(600)}) == [1] * 600
            assert list(kvs.keys(limit=550)) == [f"k{i:04d}" for i in range(550)]
            assert kvs.incr("k0000", 5) == 5
            kvs.expire("k0001", 1)
            clock.advance(1)
            assert kvs.get("k0001") is None
            with pytest.raises(VersionConflictError):
                kvs.set("k0000", 0, if_version=1)
            assert store.bot("b").memory.set_user_variable("u/x", "n", 1) == 1
        with pytest.raises(StoreUnavailableError):
            kvs.get("k0000")

    # open_test_store drops the schema / prefix afterwards
    async with open_test_store(backend_name, tmp_path, **options):
        await asyncio.to_thread(blocking)
