"""The server backends answer every primitive exactly as the in-process reference does.

The same script of ``Backend`` calls runs on ``MemoryBackend`` and on
PostgreSQL or Redis, and every answer must be equal: the corners the KVS
layer rarely reaches (restore, purge with legal-hold ``keep`` pairs and
private namespaces, ties in expiry order, scans that start after a key,
U+10FFFF prefixes, persist on keys without expiry).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from botmemory.backends.base import KEEP, Backend, Row
from botmemory.backends.memory import MemoryBackend
from botmemory.testing import FakeClock
from botmemory.testing.backends import open_test_store
from conftest import require_backend

T0 = 1_800_000_000.0

SERVERS = [
    pytest.param("postgres", marks=pytest.mark.postgres, id="postgres"),
    pytest.param("redis", marks=pytest.mark.redis, id="redis"),
]


@pytest.fixture(params=SERVERS)
async def server(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    require_backend(request.param)
    async with open_test_store(request.param, tmp_path, clock=FakeClock(T0)) as store:
        yield store.backend


async def _script(b: Backend) -> list[Any]:
    """Calls and their answers; only deterministic facts (no lock tokens)."""
    out: list[Any] = []
    put = b.put
    out.append(await put("b1", "a", b"1", T0 + 10, T0, None))
    out.append(await put("b1", "a", b"2", KEEP, T0 + 1, None))
    out.append(await b.get("b1", "a", T0 + 2))
    out.append(await put("b1", "a", b"3", KEEP, T0 + 10, None))  # expired: version 1, no expiry kept
    out.append(await b.get("b1", "a", T0 + 11))
    out.append(await b.put_many("b1", [("t1", b"1"), ("t2", b"2"), ("t0", b"0"), ("t1", b"9")], T0 + 5, T0, None))
    out.append(await b.put_many("b2", [("x", b"[]")], T0 + 5, T0, None))
    out.append(await b.put_many("__rt/sessions/b1", [("s", b"{}")], T0 + 1, T0, None))
    out.append(await put("b1", "\U0010ffffz", b"4", None, T0, None))
    out.append(await put("b1", "\U0010ffff", b"5", None, T0, None))
    out.append(await b.scan("b1", "\U0010ffff", None, 10, T0))
    out.append(await b.scan("b1", "t", "a", 10, T0))  # after sorts before the prefix
    out.append(await b.scan("b1", "t", "t0", 10, T0))
    out.append(await b.scan("b1", "", "t2", 10, T0))
    out.append(await b.scan("b1", "", None, 2, T0))
    out.append(await b.count("b1", T0 + 5))
    out.append(await b.set_expiry("b1", "a", None, T0))  # persist without an expiry
    out.append(await b.set_expiry("b1", "t0", None, T0))
    out.append(await b.set_expiry("b1", "t2", T0 + 2, T0))
    out.append(await b.set_expiry("b1", "nope", T0 + 2, T0))
    out.append(await b.get("b1", "t0", T0 + 100))
    out.append(await b.scan_expired("b1", "t", T0 + 5, 10))  # t1 at T0+5; t2 at T0+2
    # ties in expiry are ordered by key, whatever the insertion order
    out.append(await b.put_many("b1", [(f"u{i}", b"0") for i in (5, 3, 9, 1)], T0 + 3, T0, None))
    out.append([r.key for r in await b.scan_expired("b1", "u", T0 + 3, 3)])
    out.append(await b.delete_prefix("b1", "u", T0))
    out.append(await b.namespaces())
    purged = await b.purge_expired(T0 + 6, 10, keep=[("b1", "t2")])
    out.append(sorted(purged))
    out.append(sorted(await b.purge_expired(T0 + 6, 10, "__rt/sessions/b1")))
    out.append(await b.namespaces())
    out.append(sorted(await b.purge_expired(T0 + 6, 10, "b1")))
    out.append(await b.delete_prefix("b1", "\U0010ffff", T0))
    out.append(await b.delete("b1", ["a", "a", "missing"], T0))
    out.append(await b.namespaces())
    rows = [Row("r1", b'{"b":1,"a":2}', 7, None, T0 - 5), Row("r2", b"null", 3, T0 + 50, T0 - 1)]
    await b.restore("b3", rows)
    out.append(sorted(await b.get_many("b3", ["r2", "r1", "zz"], T0)))  # any order
    out.append(await b.put("b3", "r1", b"1", KEEP, T0, None))
    out.append(await b.put("b3", "r2", b"1", KEEP, T0, None))
    out.append(await b.get("b3", "r2", T0))
    first = await b.acquire_lock("conv", "a", 10, T0)
    out.append((first is None, await b.acquire_lock("conv", "b", 10, T0 + 9.999) is None))
    out.append(await b.release_lock("conv", "b"))
    out.append(await b.release_lock("conv", "a"))
    out.append(await b.release_lock("conv", "a"))
    return out


async def test_every_primitive_answers_like_the_reference(server: Backend) -> None:
    expected = await _script(MemoryBackend())
    actual = await _script(server)
    for i, (want, got) in enumerate(zip(expected, actual, strict=True)):
        assert got == want, f"step {i}"


async def test_purge_is_bounded_and_oldest_first(server: Backend) -> None:
    reference = MemoryBackend()
    for b in (reference, server):
        for ns in ("b1", "b2"):
            await b.put_many(ns, [(f"k{i:02}", b"1") for i in range(20)], None, T0, None)
            for i in range(20):
                await b.set_expiry(ns, f"k{i:02}", T0 + (i * 7 % 20) + (0.5 if ns == "b2" else 0), T0)
    now = T0 + 15
    while True:
        want = await reference.purge_expired(now, 7)
        got = await server.purge_expired(now, 7)
        assert [p.expires_at for p in got] == [p.expires_at for p in want]
        assert sorted(got) == sorted(want)
        if not want:
            break
    assert await server.count("b1", T0) == await reference.count("b1", T0)
