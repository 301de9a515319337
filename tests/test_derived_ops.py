"""The operations ``backends.ops`` derives from the eight primitives agree with each built-in backend's own.

Every built-in backend declares ``FastPaths``, so the store never runs the
derivations on them; here ``Derived(backend)`` runs them side by side with
the backend's shortcuts, which also exercises the primitives' less used
forms on every backend: ``mutate`` with ``Mutation(bump=False)``,
``scan(expired=True)`` and ``delete(prefix=…)``.
"""

from __future__ import annotations

from botmemory import Store
from botmemory.backends.base import FastPaths, Mutation
from botmemory.backends.ops import Derived
from botmemory.testing import FakeClock


async def test_derived_operations_match_the_fast_paths(store: Store, clock: FakeClock) -> None:
    backend = store.backend
    assert isinstance(backend, FastPaths)
    derived = Derived(backend)
    kvs = store.bot("b1").kvs
    await kvs.set_many({"a/1": 1, "a/2": 2, "b": 3})
    await kvs.set("a/3", 4, expiry=5)
    await kvs.set("a/4", 5, expiry=10)
    now = clock.now()
    for key in ("a/1", "a/3", "missing"):
        assert await derived.get("b1", key, now) == await backend.get("b1", key, now)
    assert await derived.count("b1", now) == await backend.count("b1", now) == 5

    # set_expiry through mutate(bump=False): version and modified_at kept
    clock.advance(1)
    now = clock.now()
    before = await backend.get("b1", "a/1", now)
    assert await derived.set_expiry("b1", "a/1", now + 100, now) is True
    after = await backend.get("b1", "a/1", now)
    assert before is not None and after is not None
    assert (after.version, after.modified_at, after.value) == (before.version, before.modified_at, before.value)
    assert after.expires_at == now + 100
    assert await derived.set_expiry("b1", "a/1", None, now) is True
    assert await derived.set_expiry("b1", "a/1", None, now) is False  # no expiry left to remove
    assert await derived.set_expiry("b1", "missing", now + 1, now) is False
    assert await backend.mutate("b1", "a/2", lambda row: Mutation(row.value if row else b"0", now + 7, bump=False),
                                now, None) == 1  # fmt: skip

    # expired rows: oldest deadline first, values included, nothing deleted
    clock.advance(10)
    now = clock.now()
    assert await backend.scan("b1", "a/", None, 10, now, expired=True) == ["a/3", "a/2", "a/4"]
    assert await derived.scan_expired("b1", "a/", now, 10) == await backend.scan_expired("b1", "a/", now, 10)
    assert [r.key for r in await derived.scan_expired("b1", "a/", now, 2)] == ["a/3", "a/2"]

    # delete by prefix removes live and expired rows, counts the live ones
    assert await derived.delete_prefix("b1", "a/", now) == 1
    assert await backend.scan("b1", "", None, 10, now) == ["b"]
    assert await backend.scan("b1", "", None, 10, now, expired=True) == []
    assert await backend.delete("b1", (), now, prefix="") == 1
    assert await backend.count("b1", now) == 0
