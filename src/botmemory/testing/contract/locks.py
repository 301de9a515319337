"""The ``Locks`` capability: leases with fencing tokens (the runtime's conversation leases)."""

from __future__ import annotations

from typing import Any

import pytest

from ...backends.base import Locks
from ...store import Store
from ..clock import FakeClock


class LocksContract:
    """``store.acquire_lock`` / ``release_lock``; skipped for a backend without ``Locks``."""

    async def test_locks(self, store: Store, clock: FakeClock) -> None:
        if not store.supports(Locks):
            pytest.skip("the backend has no Locks capability")
        now = clock.now()

        async def acquire(owner: str, at: float, name: str = "janitor") -> Any:
            clock.set(at)
            return await store.acquire_lock(name, owner, 10)

        first = await acquire("a", now)
        assert first is not None and (first.name, first.owner) == ("janitor", "a")
        assert first.expires_at == pytest.approx(now + 10)
        assert await acquire("b", now + 1) is None
        renewed = await acquire("a", now + 5)
        assert renewed is not None and renewed.token == first.token
        assert renewed.expires_at == pytest.approx(now + 15)
        assert await acquire("b", now + 14) is None
        assert await store.release_lock("janitor", "b") is False
        assert await store.release_lock("janitor", "a") is True
        assert await store.release_lock("janitor", "a") is False
        second = await acquire("b", now + 14)
        assert second is not None and second.token > first.token
        # an expired lease is up for grabs, with a larger fencing token
        third = await acquire("a", now + 24)
        assert third is not None and third.owner == "a" and third.token > second.token
        other = await acquire("b", now + 24, "other")
        assert other is not None
