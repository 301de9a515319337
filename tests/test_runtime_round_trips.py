"""Backend round trips of a steady-state turn (issue 13 item 4), and the guarantees batching must keep."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

import botmemory
from botmemory import Runtime
from botmemory.backends.base import TurnBatching
from botmemory.backends.wrapper import BackendWrapper
from botmemory.testing import FakeClock
from runtime_bots import EXAMPLE_BOTS, texts, write_bot

#: Asyncio events the ``pause`` action of the race test waits on (the bot's code imports this module).
GATE: dict[str, asyncio.Event] = {}
T = TypeVar("T")


class CountingBackend(BackendWrapper):
    """Records ``(method, first arguments, task)`` of every call that reaches the backend."""

    calls: list[tuple[str, tuple[Any, ...], asyncio.Task[Any] | None]]

    async def _call(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        self.calls.append((fn.__name__, args[:2], asyncio.current_task()))
        return await fn(*args, **kwargs)


async def _example_runtime(store: botmemory.Store) -> tuple[Runtime, CountingBackend]:
    counting = store.wrap_backend(CountingBackend)  # under the runtime's own wrappers: real calls only
    counting.calls = []
    return await Runtime.open(store, EXAMPLE_BOTS, only=["example"]), counting


async def test_a_steady_state_echo_turn_makes_at_most_4_backend_calls(store: botmemory.Store) -> None:
    """Besides the after_incoming hook's own counter write, an ``echo`` turn costs ≤ 4 round trips."""
    assert isinstance(store.backend, TurnBatching)
    runtime, counting = await _example_runtime(store)
    first = await runtime.converse("example", user_id="u1", text="hi")
    cid = first[0]["conversation_id"]
    await runtime.converse("example", user_id="u1", text="Ada", conversation_id=cid)
    await runtime.converse("example", user_id="u1", text="echo 1", conversation_id=cid)
    await runtime.converse("example", user_id="u1", text="echo 2", conversation_id=cid)
    counting.calls.clear()
    replies = await runtime.converse("example", user_id="u1", text="echo 3", conversation_id=cid)
    assert texts(replies) == ['Before that you said "echo 2". Now you say "echo 3" (message 3 of this conversation).']
    # Bot code (hooks, custom actions) runs in tasks of its own (runtime.guard): calls made
    # there are the bot's; everything made in this task is the runtime's.
    turn = asyncio.current_task()
    own = [(name, args) for name, args, task in counting.calls if task is turn]
    bots = [(name, args) for name, args, task in counting.calls if task is not turn]
    assert bots == [("mutate", ("example", "storage/users/u1/stats/messages"))]
    assert len(own) <= 4, own
    # the lease taken with the turn's reads, its writes with the release, the erasure guard once
    assert [name for name, _ in own] == ["acquire_and_read", "write_batch", "get_many"]
    # the turn's writes landed, and the lease is free again
    memory = store.bot("example").memory
    assert await memory.get_conversation_variable(cid, "turns") == 3
    assert await memory.get_conversation_variable(cid, "last_message") == "echo 3"
    again = await runtime.converse("example", user_id="u1", text="echo 4", conversation_id=cid)
    assert "message 4" in texts(again)[0]


async def test_the_current_conversation_costs_one_read_more_and_stays_within_4(store: botmemory.Store) -> None:
    runtime, counting = await _example_runtime(store)
    for text in ("hi", "Ada", "echo 1", "echo 2"):
        await runtime.converse("example", user_id="u1", text=text)
    counting.calls.clear()
    assert "echo 3" in texts(await runtime.converse("example", user_id="u1", text="echo 3"))[0]
    turn = asyncio.current_task()
    own = [name for name, _, task in counting.calls if task is turn]
    assert own == ["get", "acquire_and_read", "write_batch", "get_many"]


RACE_FLOW = """\
    start: hello
    nodes:
      hello:
        on_enter:
          - say: "ready"
        next:
          - goto: listen
      listen:
        on_receive:
          - incrConversationVariable: {name: turns}
          - setConversationVariable: {name: note, value: "CANARY {{ event.text }}"}
          - pause: {}
          - say: "turn {{ conversation.turns }}"
        next:
          - goto: listen
"""
RACE_ACTION = """\
    import test_runtime_round_trips as t

    async def pause(ctx):
        if "go" in t.GATE:
            t.GATE["reached"].set()
            await t.GATE["go"].wait()
"""
RACE_HOOK = """\
    async def after_incoming(bp, event):
        await bp.kvs.incr("storage/users/" + event["user_id"] + "/stats/messages")
"""


async def test_forget_during_a_turn_leaves_nothing_of_its_writes(
    store: botmemory.Store, clock: FakeClock, tmp_path: Path
) -> None:
    """The turn's batched writes and the hook's direct write land after forget started: all are undone."""
    write_bot(tmp_path, "racy", flows={"main": RACE_FLOW}, actions={"pause": RACE_ACTION},
              hooks={"counters": RACE_HOOK})  # fmt: skip
    runtime = await Runtime.open(store, tmp_path)
    assert runtime.load_errors == {}
    assert texts(await runtime.converse("racy", user_id="u1", text="hi", conversation_id="c1")) == ["ready"]
    assert texts(await runtime.converse("racy", user_id="u1", text="one", conversation_id="c1")) == ["turn 1"]
    GATE.update(reached=asyncio.Event(), go=asyncio.Event())
    try:
        turn = asyncio.create_task(runtime.converse("racy", user_id="u1", text="two", conversation_id="c1"))
        await GATE["reached"].wait()  # the turn's writes are made (buffered) and not yet written
        receipt = await store.bot("racy").users.forget("u1")
        assert receipt["counts"]["sessions"] == 1
        GATE["go"].set()
        await turn
    finally:
        GATE.clear()
    bot = store.bot("racy")
    data = await bot.users.export("u1")
    assert data["user"] == {} and data["kvs"] == {} and data["conversation"] == {} and data["sessions"] == {}
    assert [k async for k in bot.kvs.keys("storage/")] == []
    # a turn that starts after forget returned is kept: the user may come back
    clock.advance(1)
    assert texts(await runtime.converse("racy", user_id="u1", text="back", conversation_id="c2")) == ["ready"]
    assert texts(await runtime.converse("racy", user_id="u1", text="three", conversation_id="c2")) == ["turn 1"]
    assert await bot.memory.get_conversation_variable("c2", "note") == "CANARY three"


async def test_a_failed_turn_keeps_the_writes_made_before_the_error(store: botmemory.Store, tmp_path: Path) -> None:
    flow = RACE_FLOW.replace("- pause: {}", "- fail: {}")
    action = """\
        async def fail(ctx):
            raise RuntimeError("boom")
    """
    write_bot(tmp_path, "failing", bot_yaml="error_message: oops\n", flows={"main": flow}, actions={"fail": action})
    runtime = await Runtime.open(store, tmp_path)
    await runtime.converse("failing", user_id="u1", text="hi", conversation_id="c1")
    assert texts(await runtime.converse("failing", user_id="u1", text="one", conversation_id="c1")) == ["oops"]
    memory = store.bot("failing").memory
    assert await memory.get_conversation_variable("c1", "turns") == 1
    assert await memory.get_conversation_variable("c1", "note") == "CANARY one"
    assert texts(await runtime.converse("failing", user_id="u1", text="two", conversation_id="c1")) == ["oops"]
    assert await memory.get_conversation_variable("c1", "turns") == 2  # the session stayed at listen


async def test_a_write_from_outside_the_turn_is_not_lost(store: botmemory.Store, tmp_path: Path) -> None:
    """A conversation variable changed by someone else mid-turn: the turn's increment lands on top of it."""
    write_bot(tmp_path, "racy", flows={"main": RACE_FLOW}, actions={"pause": RACE_ACTION})
    runtime = await Runtime.open(store, tmp_path)
    await runtime.converse("racy", user_id="u1", text="hi", conversation_id="c1")
    await runtime.converse("racy", user_id="u1", text="one", conversation_id="c1")
    GATE.update(reached=asyncio.Event(), go=asyncio.Event())
    memory = store.bot("racy").memory
    try:
        turn = asyncio.create_task(runtime.converse("racy", user_id="u1", text="two", conversation_id="c1"))
        await GATE["reached"].wait()
        await memory.conversation("c1").incr("turns", 10)
        GATE["go"].set()
        await turn
    finally:
        GATE.clear()
    assert await memory.get_conversation_variable("c1", "turns") == 12
    assert texts(await runtime.converse("racy", user_id="u1", text="three", conversation_id="c1")) == ["turn 13"]


async def test_write_batch_writes_all_or_nothing_and_releases_with_the_writes(store: botmemory.Store) -> None:
    """The ``TurnBatching`` primitives behave alike on every backend."""
    from botmemory.backends.base import KEEP, BatchWrite

    backend = store.backend
    assert isinstance(backend, TurnBatching)
    now = 1_000.0
    await backend.put("b", "live", b"1", 2_000.0, now, None)
    await backend.put("__rt/p", "row", b"2", None, now, None)
    await backend.put("b", "stale", b"3", 1_001.0, now, None)
    now = 1_500.0
    found = await backend.read_many([("b", "live"), ("__rt/p", "row"), ("b", "stale"), ("b", "missing")], now)
    assert sorted((ns, row.key, row.value, row.version) for ns, row in found) == [
        ("__rt/p", "row", b"2", 1), ("b", "live", b"1", 1)
    ]
    lease, rows = await backend.acquire_and_read("lease", "me", 60, [("b", "live"), ("b", "missing")], now)
    assert lease is not None and [(ns, row.key) for ns, row in rows] == [("b", "live")]
    assert await backend.acquire_and_read("lease", "other", 60, [("b", "live")], now) == (None, [])
    # one key not at its expected version: nothing is written, the lease stays held
    assert not await backend.write_batch(
        [BatchWrite("b", "live", b"x", KEEP, 2, 1), BatchWrite("b", "missing", b"x", None, 2, 1)], now, ("lease", "me")
    )
    assert (await backend.get("b", "live", now)).value == b"1"  # type: ignore[union-attr]
    assert await backend.acquire_lock("lease", "other", 60, now) is None
    # all at their versions (an expired row counts as missing): written, with the lease released
    assert await backend.write_batch(
        [
            BatchWrite("b", "live", b"11", KEEP, 3, 1),
            BatchWrite("b", "stale", b"33", KEEP, 1, 0),
            BatchWrite("__rt/p", "new", b"4", 9_000.0, 1, 0),
        ],
        now,
        ("lease", "me"),
    )
    live = await backend.get("b", "live", now)
    assert live is not None
    assert (live.value, live.version, live.expires_at, live.modified_at) == (b"11", 3, 2_000.0, now)
    stale = await backend.get("b", "stale", now)
    assert stale is not None and (stale.value, stale.version, stale.expires_at) == (b"33", 1, None)
    new = await backend.get("__rt/p", "new", now)
    assert new is not None and (new.version, new.expires_at) == (1, 9_000.0)
    assert await backend.acquire_lock("lease", "other", 60, now) is not None
    # a release by someone who no longer holds the lease leaves the new holder's alone
    assert await backend.write_batch([BatchWrite("b", "live", b"12", None, 4, 3)], now, ("lease", "me"))
    assert await backend.acquire_lock("lease", "third", 60, now) is None


async def test_a_cancelled_turn_keeps_its_writes_and_frees_the_lease(store: botmemory.Store, tmp_path: Path) -> None:
    write_bot(tmp_path, "racy", flows={"main": RACE_FLOW}, actions={"pause": RACE_ACTION})
    runtime = await Runtime.open(store, tmp_path, lock_wait=5)
    await runtime.converse("racy", user_id="u1", text="hi", conversation_id="c1")
    await runtime.converse("racy", user_id="u1", text="one", conversation_id="c1")
    GATE.update(reached=asyncio.Event(), go=asyncio.Event())
    try:
        turn = asyncio.create_task(runtime.converse("racy", user_id="u1", text="two", conversation_id="c1"))
        await GATE["reached"].wait()
        turn.cancel()
        with pytest.raises(asyncio.CancelledError):
            await turn
    finally:
        GATE.clear()
    memory = store.bot("racy").memory
    assert await memory.get_conversation_variable("c1", "turns") == 2  # made before the cancellation: kept
    assert await memory.get_conversation_variable("c1", "note") == "CANARY two"
    assert texts(await runtime.converse("racy", user_id="u1", text="three", conversation_id="c1")) == ["turn 3"]
