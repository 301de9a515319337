"""Two OS processes send a message to one conversation at the same moment: both turns run, one after the other."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

import pytest

import botmemory
from botmemory import Runtime
from botmemory.testing.backends import POSTGRES_URL, REDIS_URL, unique_suffix
from conftest import require_backend
from runtime_bots import APPEND_ACTION, APPEND_FLOW, converse_in_process, texts, write_bot


def shared_store(name: str, tmp_path: Path) -> tuple[str, dict[str, Any]]:
    """A URL and options that several processes can open onto the same, fresh store."""
    if name == "sqlite":
        return f"sqlite:///{tmp_path / 'race.db'}", {}
    if name == "postgres":
        return POSTGRES_URL, {"schema": unique_suffix()}
    return REDIS_URL, {"prefix": f"botmemory-test:{unique_suffix()}:"}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["sqlite", "postgres", "redis"])
async def test_two_processes_one_conversation(name: str, tmp_path: Path) -> None:
    require_backend(name)
    bots = tmp_path / "bots"
    write_bot(bots, "race", flows={"main": APPEND_FLOW}, actions={"append": APPEND_ACTION})
    url, options = shared_store(name, tmp_path)
    store = await botmemory.open(url, **options)
    try:
        runtime = await Runtime.open(store, bots)
        assert texts(await runtime.converse("race", user_id="u1", text="start", conversation_id="r")) == ["ready"]
        spawn = multiprocessing.get_context("spawn")
        start = spawn.Barrier(3)
        results = spawn.Queue()
        workers = [
            spawn.Process(target=converse_in_process, args=(url, options, str(bots), word, "r", start, results))
            for word in ("left", "right")
        ]
        for worker in workers:
            worker.start()
        try:
            start.wait(60)  # both workers have opened the store and mounted the bot: go
            got = dict(results.get(timeout=60) for _ in workers)
        finally:
            for worker in workers:
                worker.join(30)
                if worker.is_alive():
                    worker.kill()
        assert [w.exitcode for w in workers] == [0, 0]
        answers = {word: texts(replies) for word, replies in got.items()}
        # one turn ran first and saw only its own item; the other saw both, in order
        first, second = sorted(answers, key=lambda w: len(answers[w][0]))
        assert answers[first] == [first]
        assert answers[second] == [f"{first},{second}"]
        assert await store.bot("race").memory.get_conversation_variable("r", "items") == [first, second]
        # the conversation goes on from the same node
        assert texts(await runtime.converse("race", user_id="u1", text="more", conversation_id="r")) == [
            f"{first},{second},more"
        ]
    finally:
        drop = getattr(store.backend, "drop_everything", None)
        if name != "sqlite" and drop is not None:
            await drop()
        await store.close()
