"""The sync facade from many threads, and from inside a running event loop."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

import botmemory


@pytest.fixture(params=["memory", "sqlite"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'threads.db'}"


def test_threads_share_one_sync_store_and_lose_no_increment(url: str) -> None:
    with botmemory.open_sync(url) as store:
        kvs = store.bot("b").kvs
        errors: list[BaseException] = []

        def work() -> None:
            try:
                for _ in range(200):
                    kvs.incr("n")
                    kvs.get("n")
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert kvs.get("n") == 1600
        assert kvs.get_entry("n").version == 1600


def test_sync_store_used_inside_a_running_loop(url: str) -> None:
    async def main() -> list[str]:
        with botmemory.open_sync(url) as store:  # blocking calls from a coroutine, as in a notebook
            kvs = store.bot("b").kvs
            kvs.set("a", 1)
            kvs.set("b", 2)
            return list(kvs.keys())

    assert asyncio.run(main()) == ["a", "b"]


def test_closed_sync_store_refuses(url: str) -> None:
    store = botmemory.open_sync(url)
    kvs = store.bot("b").kvs
    kvs.set("a", 1)
    store.close()
    with pytest.raises(botmemory.StoreUnavailableError):
        kvs.get("a")
