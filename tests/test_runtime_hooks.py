"""Hooks and the SDK handle: what they may change, and failures that are skipped."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import botmemory
from botmemory import Runtime
from runtime_bots import texts, write_bot

FLOW = """\
start: hello
nodes:
  hello:
    on_enter:
      - say: "hello"
    next: [{goto: listen}]
  listen:
    on_receive:
      - say: "you said {{ event.text }}; counted {{ temp.count }}"
      - counted: {}
    next:
      - when: "event.text == 'BYE'"
        goto: END
      - goto: listen
"""

ACTIONS = """\
async def counted(ctx):
    ctx.say("kvs says " + str(await ctx.kvs.get("count/" + ctx.user_id)))
"""

HOOKS_A = """\
import asyncio


async def after_bot_mount(bp):
    await bp.kvs.set("mounted", {"bot": bp.bot_id})
    await bp.global_kvs.set("mounted-" + bp.bot_id, True)
    await bp.memory.set_global_variable("greeting", "hi")
    bp.logger.info("mounted")


async def before_incoming(bp, event):
    event["text"] = event["text"].upper()


async def after_incoming(bp, event):
    await bp.kvs.incr("count/" + event["user_id"])


async def before_outgoing(bp, event):
    event["text"] = event["text"] + " [a]"


async def after_conversation_end(bp, event):
    raise RuntimeError("the end hook fails")
"""

HOOKS_B = """\
import asyncio


async def after_incoming(bp, event):
    raise ValueError("this hook always fails")


async def before_outgoing(bp, event):
    if "slow" in event["incoming"]["text"].lower():
        await asyncio.sleep(30)  # longer than hook_timeout: cancelled and skipped
    event["text"] = event["text"] + " [b]"


async def after_conversation_end(bp, event):
    await bp.kvs.set("ended/" + event["conversation_id"], event["reason"])
"""


@pytest.fixture
async def store() -> AsyncIterator[botmemory.Store]:
    async with await botmemory.open("memory://") as s:
        yield s


async def open_runtime(store: botmemory.Store, root: Path, **options: float) -> Runtime:
    write_bot(root, "hooked", bot_yaml="hook_timeout: 100ms\n", flows={"main": FLOW},
              actions={"counted": ACTIONS}, hooks={"a": HOOKS_A, "b": HOOKS_B})
    runtime = await Runtime.open(store, root, **options)
    assert runtime.load_errors == {}
    return runtime


async def test_hooks_see_and_change_messages(store: botmemory.Store, tmp_path: Path) -> None:
    runtime = await open_runtime(store, tmp_path)
    kvs = store.bot("hooked").kvs
    assert await kvs.get("mounted") == {"bot": "hooked"}
    assert await store.global_kvs.get("mounted-hooked") is True
    assert await store.bot("hooked").memory.get_global_variable("greeting") == "hi"
    assert texts(await runtime.converse("hooked", user_id="u", text="hi", conversation_id="c")) == [
        "hello [a] [b]"
    ]
    replies = await runtime.converse("hooked", user_id="u", text="again", conversation_id="c")
    # before_incoming upper-cased the text; after_incoming counted (the failing one was skipped);
    # before_outgoing hooks ran in file order on every reply
    assert texts(replies) == ["you said AGAIN; counted  [a] [b]", "kvs says 2 [a] [b]"]
    assert all(r["conversation_id"] == "c" for r in replies)


async def test_failing_and_slow_hooks_are_skipped(
    store: botmemory.Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    runtime = await open_runtime(store, tmp_path)
    await runtime.converse("hooked", user_id="u", text="hi", conversation_id="c")
    caplog.clear()
    started = time.perf_counter()
    with caplog.at_level(logging.WARNING, logger="botmemory.runtime.hooks"):
        replies = await runtime.converse("hooked", user_id="u", text="slow", conversation_id="c")
    assert time.perf_counter() - started < 5
    # b's before_outgoing timed out on both replies: its suffix is missing, a's is there
    assert texts(replies) == ["you said SLOW; counted  [a]", "kvs says 2 [a]"]
    messages = [r.getMessage() for r in caplog.records]
    assert any("after_incoming in hooks/b.py failed" in m for m in messages)
    assert sum("before_outgoing in hooks/b.py took more than 0.1s" in m for m in messages) == 2


async def test_a_failing_end_hook_does_not_stop_the_end(store: botmemory.Store, tmp_path: Path) -> None:
    runtime = await open_runtime(store, tmp_path)
    await runtime.converse("hooked", user_id="u", text="hi", conversation_id="c")
    await runtime.converse("hooked", user_id="u", text="bye", conversation_id="c")
    assert await store.bot("hooked").kvs.get("ended/c") == "end"
    assert texts(await runtime.converse("hooked", user_id="u", text="hi", conversation_id="c")) == [
        "hello [a] [b]"
    ]


async def test_hook_timeout_can_be_overridden(store: botmemory.Store, tmp_path: Path) -> None:
    runtime = await open_runtime(store, tmp_path, hook_timeout=0.01)
    assert runtime.bots["hooked"].hook_timeout == 0.01
