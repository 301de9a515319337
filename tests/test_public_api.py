"""Pins the public names of ``botmemory`` and the shapes api.md promises.

Adding or removing a public name is a decision: change ``EXPECTED_ALL`` here
in the same commit.
"""

from __future__ import annotations

import dataclasses
import inspect

import pytest

import botmemory
import botmemory.errors
from botmemory.testing import FakeClock

EXPECTED_ALL = sorted(
    [
        "Bot",
        "BotMemoryError",
        "Clock",
        "ConversationNotFoundError",
        "DEFAULT_URL",
        "DialogMemory",
        "Entry",
        "InvalidExpiryError",
        "InvalidInputError",
        "InvalidKeyError",
        "InvalidPathError",
        "KVS",
        "KeyNotFoundError",
        "LegalHoldError",
        "Limits",
        "QuotaExceededError",
        "RetentionConfig",
        "Runtime",
        "Scope",
        "Store",
        "StoreError",
        "StoreFullError",
        "StoreOpener",
        "StoreTimeoutError",
        "StoreUnavailableError",
        "SyncStore",
        "SystemClock",
        "ValueTooLargeError",
        "ValueTypeError",
        "VersionConflictError",
        "__version__",
        "open",
        "open_sync",
    ]
)


def test_all_is_pinned() -> None:
    assert sorted(botmemory.__all__) == EXPECTED_ALL
    assert len(set(botmemory.__all__)) == len(botmemory.__all__)


@pytest.mark.parametrize("name", EXPECTED_ALL)
def test_every_name_resolves(name: str) -> None:
    assert getattr(botmemory, name) is not None


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from botmemory import *", namespace)
    assert sorted(k for k in namespace if k != "__builtins__") == EXPECTED_ALL


def test_error_tree() -> None:
    e = botmemory
    parents = {
        e.InvalidInputError: (e.BotMemoryError, ValueError),
        e.InvalidKeyError: (e.InvalidInputError,),
        e.InvalidPathError: (e.InvalidInputError,),
        e.InvalidExpiryError: (e.InvalidInputError,),
        e.ValueTypeError: (e.InvalidInputError, TypeError),
        e.ValueTooLargeError: (e.InvalidInputError,),
        e.KeyNotFoundError: (e.BotMemoryError, KeyError),
        e.ConversationNotFoundError: (e.KeyNotFoundError,),
        e.VersionConflictError: (e.BotMemoryError,),
        e.QuotaExceededError: (e.BotMemoryError,),
        e.LegalHoldError: (e.BotMemoryError,),
        e.StoreError: (e.BotMemoryError,),
        e.StoreUnavailableError: (e.StoreError,),
        e.StoreTimeoutError: (e.StoreError,),
        e.StoreFullError: (e.StoreError,),
    }
    for cls, bases in parents.items():
        for base in bases:
            assert issubclass(cls, base), f"{cls.__name__} should subclass {base.__name__}"
        assert cls.__name__ in (botmemory.errors.__doc__ or ""), f"{cls.__name__} missing from the drawn tree"
    assert issubclass(e.BotMemoryError, Exception)
    # no name shadows a builtin (ConnectionError, TimeoutError, ...)
    import builtins

    assert not {name for name in botmemory.errors.__all__ if hasattr(builtins, name)}


def test_key_not_found_message_is_readable() -> None:
    assert str(botmemory.KeyNotFoundError("key 'x' does not exist")) == "key 'x' does not exist"


def test_entry_shape() -> None:
    assert [f.name for f in dataclasses.fields(botmemory.Entry)] == [
        "key",
        "value",
        "version",
        "expires_at",
        "modified_at",
    ]
    entry = botmemory.Entry("k", 1, 1, None, 0.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.version = 2  # type: ignore[misc]


def test_limits_defaults() -> None:
    limits = botmemory.Limits()
    assert (limits.max_value_bytes, limits.max_depth, limits.max_key_bytes, limits.max_id_bytes) == (
        1_048_576,
        64,
        512,
        256,
    )
    assert limits.max_keys_per_bot is None


def test_open_signatures() -> None:
    for fn in (botmemory.open, botmemory.open_sync):
        params = inspect.signature(fn).parameters
        assert list(params)[:1] == ["url"]
        assert params["clock"].kind is inspect.Parameter.KEYWORD_ONLY
        assert params["limits"].kind is inspect.Parameter.KEYWORD_ONLY
    # open() returns a StoreOpener: awaited it gives the Store, and it is an async context manager
    assert inspect.signature(botmemory.open).return_annotation in ("StoreOpener", botmemory.StoreOpener)
    assert botmemory.DEFAULT_URL.startswith("sqlite:///") and botmemory.DEFAULT_URL.endswith("botmemory.db")


def test_kvs_method_signatures() -> None:
    kvs = botmemory.KVS
    expected = {
        "get": ["key", "path", "default"],
        "get_entry": ["key"],
        "exists": ["key"],
        "set": ["key", "value", "path", "expiry", "keep_ttl", "if_version"],
        "set_if_absent": ["key", "value", "expiry"],
        "incr": ["key", "amount", "path"],
        "delete": ["key"],
        "get_many": ["keys"],
        "set_many": ["mapping", "expiry"],
        "delete_many": ["keys"],
        "keys": ["prefix", "limit", "after"],
        "delete_prefix": ["prefix", "all"],
        "ttl": ["key"],
        "expire": ["key", "expiry"],
        "persist": ["key"],
        "get_storage_with_expiry": ["key"],
        "set_storage_with_expiry": ["key", "value", "expiry"],
        "remove_storage_keys_starting_with": ["prefix"],
    }
    for name, args in expected.items():
        params = inspect.signature(getattr(kvs, name)).parameters
        assert [p for p in params if p != "self"] == args, name
    set_params = inspect.signature(kvs.set).parameters
    assert set_params["keep_ttl"].kind is inspect.Parameter.KEYWORD_ONLY
    assert set_params["if_version"].kind is inspect.Parameter.KEYWORD_ONLY
    assert inspect.signature(kvs.get).parameters["default"].kind is inspect.Parameter.KEYWORD_ONLY


def test_memory_methods() -> None:
    names = [
        "set_user_variable",
        "get_user_variable",
        "delete_user_variable",
        "set_conversation_variable",
        "get_conversation_variable",
        "delete_conversation_variable",
        "set_global_variable",
        "get_global_variable",
        "delete_global_variable",
        "end_conversation",
        "user",
        "conversation",
        "global_scope",
    ]
    for name in names:
        assert callable(getattr(botmemory.DialogMemory, name)), name
    for name in ("get", "set", "delete", "items", "clear"):
        assert callable(getattr(botmemory.Scope, name)), name


def test_fake_clock() -> None:
    clock = FakeClock()
    assert clock.now() == 1_800_000_000.0
    assert clock.advance(1.5) == 1_800_000_001.5
    clock.set(5.0)
    assert clock.now() == 5.0
    assert FakeClock(start=10).now() == 10.0
    with pytest.raises(ValueError):
        clock.advance(-1)


def test_the_store_clock_never_goes_back() -> None:
    from botmemory.clock import NonDecreasingClock

    clock = FakeClock(100.0)
    store_clock = NonDecreasingClock(clock)
    assert store_clock.now() == 100.0
    clock.set(50.0)
    assert store_clock.now() == 100.0  # stands still until the clock catches up
    clock.set(100.5)
    assert store_clock.now() == 100.5
    store_clock.advance(1)  # FakeClock's own methods are reached through it
    assert clock.now() == store_clock.now() == 101.5
    assert store_clock.clock is clock
