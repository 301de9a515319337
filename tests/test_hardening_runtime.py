"""The runtime against hostile or broken bots and users (issue 11, items 1, 5, 6, 7, 10, 11, 13).

- A conversation belongs to the user who started it (every backend).
- Custom actions and hooks are bounded (``action_timeout``, ``hook_timeout``),
  a whole turn by ``turn_timeout``, even when the bot's code ignores
  cancellation; ``sys.exit()`` in bot code fails the turn, not the process.
- Load errors say what is wrong: plain ``def`` actions, misspelt hooks,
  several folders claiming one id.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import botmemory
from botmemory import ConversationNotFoundError, Runtime
from botmemory.runtime.guard import abandoned_tasks
from botmemory.runtime.loader import load_bots
from runtime_bots import texts, write_bot

ERROR = "Sorry, that failed."

# -- item 1: conversation ownership -------------------------------------------------------

CHAT_FLOW = """\
start: hello
nodes:
  hello:
    on_enter:
      - say: "hello"
    next: [{goto: listen}]
  listen:
    on_receive:
      - setConversationVariable: {name: said, value: "{{ event.text }}"}
    next:
      - when: "event.text == 'bye'"
        goto: END
      - goto: recall
  recall:
    on_enter:
      - say: "you said {{ conversation.said }}"
    next: [{goto: listen}]
"""


@pytest.fixture
async def chat(store: botmemory.Store, tmp_path: Path) -> AsyncIterator[Runtime]:
    write_bot(tmp_path / "bots", "chat", flows={"main": CHAT_FLOW})
    runtime = await Runtime.open(store, tmp_path / "bots")
    assert runtime.load_errors == {}
    yield runtime
    await runtime.close()


async def test_another_user_cannot_join_a_conversation(chat: Runtime, store: botmemory.Store) -> None:
    await chat.converse("chat", user_id="alice", text="hi", conversation_id="c-1")
    assert texts(await chat.converse("chat", user_id="alice", text="my secret", conversation_id="c-1")) == [
        "you said my secret"
    ]
    with pytest.raises(ConversationNotFoundError) as refused:
        await chat.converse("chat", user_id="bob", text="what did she say?", conversation_id="c-1")
    assert "alice" not in str(refused.value)
    assert isinstance(refused.value, botmemory.KeyNotFoundError)  # the HTTP API's 404, the CLI's exit 2
    # nothing of Bob's reached the conversation, and the conversation is not Bob's
    users = store.bot("chat").users
    assert (await users.export("bob"))["conversations"] == []
    assert (await users.export("alice"))["conversations"] == ["c-1"]
    assert texts(await chat.converse("chat", user_id="alice", text="still mine", conversation_id="c-1")) == [
        "you said still mine"
    ]
    # the user's current conversation (conversation_id=None) is found and owned the same way
    implicit = await chat.converse("chat", user_id="carol", text="hi")
    cid = implicit[0]["conversation_id"]
    with pytest.raises(ConversationNotFoundError):
        await chat.converse("chat", user_id="bob", text="hi", conversation_id=cid)


async def test_the_id_stays_its_users_after_the_conversation_ends(chat: Runtime, store: botmemory.Store) -> None:
    await chat.converse("chat", user_id="alice", text="hi", conversation_id="c-2")
    await chat.converse("chat", user_id="alice", text="bye", conversation_id="c-2")  # END: the session is over
    with pytest.raises(ConversationNotFoundError):
        await chat.converse("chat", user_id="bob", text="hi", conversation_id="c-2")
    assert texts(await chat.converse("chat", user_id="alice", text="again", conversation_id="c-2")) == ["hello"]
    # once Alice is erased, nothing ties the id to anyone: it may be used again
    await store.bot("chat").users.forget("alice")
    assert texts(await chat.converse("chat", user_id="bob", text="hi", conversation_id="c-2")) == ["hello"]


async def test_two_users_racing_for_a_new_id_one_wins(chat: Runtime) -> None:
    results = await asyncio.gather(
        *(chat.converse("chat", user_id=u, text="hi", conversation_id="fresh") for u in ("u1", "u2", "u3")),
        return_exceptions=True,
    )
    won = [r for r in results if isinstance(r, list)]
    lost = [r for r in results if isinstance(r, ConversationNotFoundError)]
    assert len(won) == 1 and len(lost) == 2, results


# -- items 5, 6, 7: turns that always end ---------------------------------------------------

BOUNDED_FLOW = """\
start: listen
nodes:
  listen:
    on_receive:
      - misbehave: {how: "{{ event.text }}"}
      - say: "done {{ event.text }}"
    next: [{goto: listen}]
"""

# The misbehaving code ignores cancellation until the test creates STOP, so
# the abandoned tasks end before the test's event loop closes.
BOUNDED_ACTIONS = """\
import asyncio
import os
import sys

STOP = {stop!r}


class Custom(BaseException):
    pass


async def _stubborn():
    while not os.path.exists(STOP):
        try:
            await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            pass


async def misbehave(ctx, how):
    if how == "forever":
        await asyncio.Event().wait()
    elif how == "stubborn":
        await _stubborn()
    elif how == "exit":
        sys.exit(3)
    elif how == "interrupt":
        raise KeyboardInterrupt
    elif how == "custom":
        raise Custom("a BaseException of the bot's own")
    elif how == "self-cancel":
        raise asyncio.CancelledError
"""

BOUNDED_HOOKS = """\
import asyncio
import os
import sys

STOP = {stop!r}


async def before_incoming(bp, event):
    if event["text"] == "hook-stubborn":
        while not os.path.exists(STOP):
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                pass
        event["text"] = "late"
    elif event["text"] == "hook-exit":
        sys.exit(1)
"""


@pytest.fixture
async def bounded(tmp_path: Path) -> AsyncIterator[Runtime]:
    stop = tmp_path / "STOP"
    write_bot(
        tmp_path / "bots", "bounded",
        bot_yaml=f"error_message: {ERROR!r}\naction_timeout: 200ms\nhook_timeout: 200ms\n",
        flows={"main": BOUNDED_FLOW},
        actions={"acts": BOUNDED_ACTIONS.format(stop=str(stop))},
        hooks={"hooks": BOUNDED_HOOKS.format(stop=str(stop))},
    )
    async with botmemory.open("memory://") as store:
        runtime = await Runtime.open(store, tmp_path / "bots", lock_wait=0.05)
        assert runtime.load_errors == {}
        await runtime.converse("bounded", user_id="u", text="start", conversation_id="c")
        try:
            yield runtime
        finally:
            stop.touch()  # lets the abandoned tasks end
            for _ in range(200):
                if not abandoned_tasks():
                    break
                await asyncio.sleep(0.01)
            assert not abandoned_tasks()


async def _turn(runtime: Runtime, text: str) -> tuple[list[str], float]:
    started = time.monotonic()
    try:
        replies = await asyncio.wait_for(runtime.converse("bounded", user_id="u", text=text, conversation_id="c"), 5)
    except BaseException as exc:  # SystemExit escaping converse is the defect tested
        pytest.fail(f"{text!r}: {type(exc).__name__} escaped converse(): {exc!r}")
    return texts(replies), time.monotonic() - started


@pytest.mark.parametrize("how", ["forever", "stubborn"])
async def test_an_action_that_never_returns_ends_the_turn_and_frees_the_conversation(
    bounded: Runtime, how: str
) -> None:
    replies, took = await _turn(bounded, how)
    assert replies == [ERROR]
    assert took < 2.0
    # the lease is free at once (lock_wait is 50 ms): the next message is answered
    assert (await _turn(bounded, "fine"))[0] == ["done fine"]
    if how == "stubborn":
        assert abandoned_tasks()  # still running, abandoned: it no longer holds the turn


async def test_a_hook_that_ignores_cancellation_is_abandoned(bounded: Runtime) -> None:
    replies, took = await _turn(bounded, "hook-stubborn")
    assert replies == ["done hook-stubborn"]  # skipped after hook_timeout: the message still flows
    assert took < 2.0
    assert abandoned_tasks()


async def test_turn_timeout_bounds_the_whole_turn(tmp_path: Path) -> None:
    stop = tmp_path / "STOP"
    write_bot(
        tmp_path / "bots", "bounded",
        bot_yaml=f"error_message: {ERROR!r}\naction_timeout: 30s\nturn_timeout: 300ms\n",
        flows={"main": BOUNDED_FLOW},
        actions={"acts": BOUNDED_ACTIONS.format(stop=str(stop))},
    )
    async with botmemory.open("memory://") as store:
        runtime = await Runtime.open(store, tmp_path / "bots", lock_wait=0.05)
        await runtime.converse("bounded", user_id="u", text="start", conversation_id="c")
        try:
            replies, took = await _turn(runtime, "stubborn")
            assert replies == [ERROR] and took < 2.0
            assert (await _turn(runtime, "fine"))[0] == ["done fine"]
        finally:
            stop.touch()
            while abandoned_tasks():
                await asyncio.sleep(0.01)


@pytest.mark.parametrize("how", ["exit", "interrupt", "custom", "self-cancel", "hook-exit"])
async def test_base_exceptions_in_bot_code_end_the_turn_not_the_process(bounded: Runtime, how: str) -> None:
    assert (await _turn(bounded, how))[0] == [ERROR]
    assert (await _turn(bounded, "fine"))[0] == ["done fine"]  # the conversation stays usable


async def test_cancelling_the_caller_still_cancels(bounded: Runtime) -> None:
    task = asyncio.ensure_future(bounded.converse("bounded", user_id="u", text="forever", conversation_id="c"))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (await _turn(bounded, "fine"))[0] == ["done fine"]  # the lease was released


# -- item 10: load errors that say what is wrong ---------------------------------------------

SIMPLE_FLOW = """\
start: a
nodes:
  a:
    on_enter:
      - greet: {}
"""


def test_a_plain_def_action_is_named_as_such(tmp_path: Path) -> None:
    write_bot(tmp_path, "sync", flows={"main": SIMPLE_FLOW}, actions={"greet": "def greet(ctx):\n    pass\n"})
    _, errors = load_bots(tmp_path)
    assert errors["sync"] == (
        "flows/main.yaml:5: unknown action 'greet': actions/greet.py:1 defines it with `def`; "
        "actions must be `async def`"
    )


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("async def before_incomming(bp, event):\n    pass\n",
         "hooks/h.py:1: 'before_incomming' is not a hook name; did you mean 'before_incoming'?"),
        ("def after_incomming(bp, event):\n    pass\n",
         "hooks/h.py:1: 'after_incomming' is not a hook name; did you mean 'after_incoming'?"),
        ("async def on_message(bp, event):\n    pass\n",
         "hooks/h.py:1: 'on_message' is not a hook name (hooks: after_bot_mount, before_incoming, after_incoming, "
         "before_outgoing, after_conversation_end); name helper functions with a leading underscore"),
    ],
    ids=["async-misspelt", "plain-misspelt", "not-a-hook"],
)
def test_a_misspelt_hook_is_reported(tmp_path: Path, source: str, expected: str) -> None:
    write_bot(tmp_path, "hooky", flows={"main": "start: a\nnodes:\n  a: {}\n"}, hooks={"h": source})
    _, errors = load_bots(tmp_path)
    assert errors["hooky"] == expected


def test_helpers_in_hook_files_are_fine(tmp_path: Path) -> None:
    source = (
        "def helper():\n    pass\n\n\nasync def _private():\n    pass\n\n\n"
        "async def before_incoming(bp, e):\n    pass\n"
    )
    write_bot(tmp_path, "hooky", flows={"main": "start: a\nnodes:\n  a: {}\n"}, hooks={"h": source})
    bots, errors = load_bots(tmp_path)
    assert errors == {} and len(bots["hooky"].hooks["before_incoming"]) == 1


def test_every_folder_claiming_an_id_is_named(tmp_path: Path) -> None:
    flow = {"main": "start: a\nnodes:\n  a: {}\n"}
    for folder in ("x1", "x2", "x3"):
        (write_bot(tmp_path, folder, flows=flow) / "bot.yaml").write_text("id: same\n", encoding="utf-8")
    write_bot(tmp_path, "alone", flows=flow)
    bots, errors = load_bots(tmp_path)
    assert set(bots) == {"alone"}
    assert errors == {
        "same": "bot.yaml: bot id 'same' is claimed by 3 folders (x1/bot.yaml, x2/bot.yaml, x3/bot.yaml); "
        "none is mounted"
    }


async def test_only_the_named_bots_are_loaded(tmp_path: Path) -> None:
    flow = {"main": "start: a\nnodes:\n  a:\n    on_enter:\n      - say: hi\n"}
    write_bot(tmp_path, "wanted", flows=flow)
    marker = tmp_path / "imported"
    write_bot(tmp_path, "other", flows=flow, actions={"a": f"open({str(marker)!r}, 'w').close()\n"})
    write_bot(tmp_path, "broken", bot_yaml="session_timeout: -1\n", flows=flow)
    async with botmemory.open("memory://") as store:
        runtime = await Runtime.open(store, tmp_path, only={"wanted"})
        assert set(runtime.bots) == {"wanted"} and runtime.load_errors == {}
    assert not marker.exists()  # the other bot's code never ran


# -- item 11 -----------------------------------------------------------------------------------


async def test_forget_refuses_a_dry_run_that_is_not_a_bool() -> None:
    async with botmemory.open("memory://") as store:
        bot = store.bot("b")
        await bot.memory.set_user_variable("u", "email", "u@example.com")
        for bad in ("no", "false", 0, None):
            with pytest.raises(botmemory.ValueTypeError, match="dry_run"):
                await bot.users.forget("u", dry_run=bad)  # type: ignore[arg-type]
        assert await bot.memory.get_user_variable("u", "email") == "u@example.com"


async def test_a_missing_lookup_says_nothing(tmp_path: Path) -> None:
    flow = """\
start: a
nodes:
  a:
    on_enter:
      - say: "{{ event[temp.missing] }}"
      - say: "{{ temp.missing }}"
      - say: "[{{ event[temp.missing] }}]"
      - say: "{{ event.text }}"
"""
    write_bot(tmp_path, "quiet", flows={"main": flow})
    async with botmemory.open("memory://") as store:
        runtime = await Runtime.open(store, tmp_path)
        assert texts(await runtime.converse("quiet", user_id="u", text="hi")) == ["", "", "[]", "hi"]
