"""Whole conversations through the runtime, on every backend, with a FakeClock."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import botmemory
from botmemory import Runtime
from botmemory.retention.layout import sessions_ns
from botmemory.testing import FakeClock
from runtime_bots import APPEND_ACTION, APPEND_FLOW, texts, write_bot

ERROR = "Oops, that failed."

# A command bot: "setu NAME VALUE [EXPIRY]", "setc …", "setg …", "get NAME",
# "incg NAME", "remember", "boom", "loop", "end"; anything else is echoed.
COMMAND_FLOW = """\
start: hello
nodes:
  hello:
    on_enter:
      - say: "hello"
    next:
      - goto: listen
  listen:
    on_receive:
      - parse: {text: "{{ event.text }}"}
    next:
      - when: "temp.cmd == 'setu'"
        goto: setu
      - when: "temp.cmd == 'setc'"
        goto: setc
      - when: "temp.cmd == 'setg'"
        goto: setg
      - when: "temp.cmd == 'get'"
        goto: get
      - when: "temp.cmd == 'incg'"
        goto: incg
      - when: "temp.cmd == 'remember'"
        goto: remember
      - when: "temp.cmd == 'boom'"
        goto: boom
      - when: "temp.cmd == 'loop'"
        goto: loop_a
      - when: "temp.cmd == 'other'"
        flow: other
      - when: "temp.cmd == 'end'"
        goto: END
      - goto: echo
  setu:
    on_enter:
      - setUserVariable: {name: "{{ temp.a }}", value: "{{ temp.b }}", expiry: "{{ temp.c }}"}
      - say: ok
    next: [{goto: listen}]
  setc:
    on_enter:
      - setConversationVariable: {name: "{{ temp.a }}", value: "{{ temp.b }}", expiry: "{{ temp.c }}"}
      - say: ok
    next: [{goto: listen}]
  setg:
    on_enter:
      - setGlobalVariable: {name: "{{ temp.a }}", value: "{{ temp.b }}"}
      - say: ok
    next: [{goto: listen}]
  get:
    on_enter:
      - say: "u={{ user[temp.a] }} c={{ conversation[temp.a] }} g={{ global[temp.a] }}"
    next: [{goto: listen}]
  incg:
    on_enter:
      - incrGlobalVariable: {name: counter}
      - say: "counter={{ global.counter }}"
    next: [{goto: listen}]
  remember:
    on_enter:
      - setUserVariable: {name: short, value: "kept", expiry: 10m}
      - setConversationVariable: {name: brief, value: "kept", expiry: 10m}
      - say: "u={{ user.short }} c={{ conversation.brief }}"
    next: [{goto: listen}]
  boom:
    on_enter:
      - setUserVariable: {name: before_boom, value: "written"}
      - fail: {}
      - say: "never said"
    next: [{goto: listen}]
  loop_a:
    next: [{goto: loop_b}]
  loop_b:
    next: [{goto: loop_a}]
  echo:
    on_enter:
      - say: "you said {{ event.text }}"
    next: [{goto: listen}]
"""

OTHER_FLOW = """\
start: show
nodes:
  show:
    on_enter:
      - say: "in other, temp.a={{ temp.a }}"
    next:
      - goto: END
"""

COMMAND_ACTIONS = """\
async def parse(ctx, text):
    parts = text.split()
    names = ["cmd", "a", "b", "c"]
    return {name: (parts[i] if i < len(parts) else None) for i, name in enumerate(names)}


async def fail(ctx):
    raise RuntimeError("the action failed on purpose")
"""

END_HOOK = """\
async def after_conversation_end(bp, event):
    await bp.kvs.set("ended/" + event["conversation_id"], event["reason"])
"""


def command_bot(root: Path, bot_id: str = "cmd", timeout: str = "5m") -> None:
    write_bot(
        root,
        bot_id,
        bot_yaml=f"session_timeout: {timeout}\nerror_message: {ERROR!r}\n",
        flows={"main": COMMAND_FLOW, "other": OTHER_FLOW},
        actions={"commands": COMMAND_ACTIONS},
        hooks={"ended": END_HOOK},
    )


@pytest.fixture
async def runtime(store: botmemory.Store, tmp_path: Path) -> Runtime:
    bots = tmp_path / "bots"
    command_bot(bots)
    command_bot(bots, "cmd2")
    write_bot(bots, "race", flows={"main": APPEND_FLOW}, actions={"append": APPEND_ACTION.replace("0.3", "0.05")})
    rt = await Runtime.open(store, bots)
    assert rt.load_errors == {}
    return rt


async def say(rt: Runtime, text: str, user: str = "u1", conv: str | None = "c1", bot: str = "cmd") -> list[str]:
    return texts(await rt.converse(bot, user_id=user, text=text, conversation_id=conv))


async def test_first_message_starts_the_session_without_on_receive(runtime: Runtime) -> None:
    # "setu x 1" would set a variable if on_receive saw it: it must only start the session.
    assert await say(runtime, "setu x 1") == ["hello"]
    assert await say(runtime, "get x") == ["u= c= g="]
    assert await say(runtime, "setu x 1") == ["ok"]
    assert await say(runtime, "get x") == ["u=1 c= g="]


async def test_user_variables_survive_a_new_conversation(runtime: Runtime, store: botmemory.Store) -> None:
    await say(runtime, "hi")
    await say(runtime, "setu name Ada")
    assert await say(runtime, "end") == []
    assert await say(runtime, "hi", conv="c2") == ["hello"]
    assert await say(runtime, "get name", conv="c2") == ["u=Ada c= g="]
    assert await store.bot("cmd").memory.get_user_variable("u1", "name") == "Ada"


async def test_conversation_variables_are_gone_after_end(runtime: Runtime, store: botmemory.Store) -> None:
    await say(runtime, "hi")
    await say(runtime, "setc topic weather")
    assert await say(runtime, "get topic") == ["u= c=weather g="]
    await say(runtime, "end")
    memory = store.bot("cmd").memory
    assert await memory.get_conversation_variable("c1", "topic") is None
    assert await store.bot("cmd").kvs.get("ended/c1") == "end"
    assert await store.private_kvs(sessions_ns("cmd")).get("c1") is None
    # the same conversation id starts over at the start node
    assert await say(runtime, "get topic") == ["hello"]
    assert await say(runtime, "get topic") == ["u= c= g="]


async def test_timeout_then_next_message_ends_the_old_session(
    runtime: Runtime, store: botmemory.Store, clock: FakeClock
) -> None:
    await say(runtime, "hi")
    await say(runtime, "setc topic weather")
    clock.advance(5 * 60 - 1)
    assert await say(runtime, "get topic") == ["u= c=weather g="]  # activity renews the session
    clock.advance(5 * 60)
    assert await store.bot("cmd").kvs.get("ended/c1") is None  # nothing has ended it yet
    assert await say(runtime, "get topic") == ["hello"]  # a new session, at the start
    assert await store.bot("cmd").kvs.get("ended/c1") == "timeout"
    assert await say(runtime, "get topic") == ["u= c= g="]


async def test_janitor_ends_timed_out_sessions(runtime: Runtime, store: botmemory.Store, clock: FakeClock) -> None:
    await say(runtime, "hi")
    await say(runtime, "setc topic weather")
    await say(runtime, "hi", user="u2", conv="c2")
    clock.advance(60)
    await say(runtime, "hi", user="u3", conv="c3")
    clock.advance(5 * 60 - 30)
    report = await runtime.janitor_once()
    assert report["sessions_ended"] == 2  # c1 and c2; c3 is still active
    kvs = store.bot("cmd").kvs
    assert await kvs.get("ended/c1") == "timeout"
    assert await kvs.get("ended/c2") == "timeout"
    assert await kvs.get("ended/c3") is None
    assert await store.bot("cmd").memory.get_conversation_variable("c1", "topic") is None
    assert (await runtime.janitor_once())["sessions_ended"] == 0
    assert await say(runtime, "get topic") == ["hello"]
    assert await say(runtime, "get x", user="u3", conv="c3") == ["u= c= g="]  # c3 kept its session


async def test_global_variables_are_shared_by_users_not_bots(runtime: Runtime) -> None:
    for user, conv in (("u1", "c1"), ("u2", "c2")):
        await say(runtime, "hi", user=user, conv=conv)
    await say(runtime, "hi", bot="cmd2")
    await say(runtime, "setg motd sunny")
    assert await say(runtime, "get motd", user="u2", conv="c2") == ["u= c= g=sunny"]
    assert await say(runtime, "get motd", bot="cmd2") == ["u= c= g="]


async def test_say_after_incr_shows_the_new_value(runtime: Runtime) -> None:
    await say(runtime, "hi")
    await say(runtime, "hi", user="u2", conv="c2")
    assert await say(runtime, "incg") == ["counter=1"]
    assert await say(runtime, "incg", user="u2", conv="c2") == ["counter=2"]
    assert await say(runtime, "incg") == ["counter=3"]


async def test_variables_with_expiry_from_a_flow(runtime: Runtime, store: botmemory.Store, clock: FakeClock) -> None:
    await say(runtime, "hi")
    assert await say(runtime, "remember") == ["u=kept c=kept"]
    assert await say(runtime, "setc other v 10m") == ["ok"]
    clock.advance(4 * 60)
    assert await say(runtime, "get short") == ["u=kept c= g="]
    clock.advance(4 * 60)
    assert await say(runtime, "get other") == ["u= c=v g="]
    clock.advance(2 * 60)  # 10 minutes after both were set
    memory = store.bot("cmd").memory
    assert await memory.get_user_variable("u1", "short") is None
    assert await memory.get_conversation_variable("c1", "brief") is None
    assert await memory.get_conversation_variable("c1", "other") is None
    assert await say(runtime, "get short") == ["u= c= g="]


async def test_action_exception_answers_error_and_keeps_the_conversation(
    runtime: Runtime, store: botmemory.Store
) -> None:
    await say(runtime, "hi")
    await say(runtime, "setc topic weather")
    before = await store.private_kvs(sessions_ns("cmd")).get("c1")
    assert await say(runtime, "boom") == [ERROR]
    assert runtime.last_turn.errors == 1
    after = await store.private_kvs(sessions_ns("cmd")).get("c1")
    assert after["node"] == before["node"] == "listen"
    assert after["temp"] == before["temp"]  # temp of the failed turn is not kept
    # memory written before the failure stays; the conversation goes on
    assert await store.bot("cmd").memory.get_user_variable("u1", "before_boom") == "written"
    assert await say(runtime, "get topic") == ["u= c=weather g="]


async def test_transition_loop_is_stopped(runtime: Runtime) -> None:
    await say(runtime, "hi")
    assert await say(runtime, "loop") == [ERROR]
    assert await say(runtime, "get x") == ["u= c= g="]


async def test_flow_transition_keeps_temp_and_end_in_another_flow(runtime: Runtime, store: botmemory.Store) -> None:
    await say(runtime, "hi")
    await say(runtime, "setc topic weather")
    assert await say(runtime, "other 42") == ["in other, temp.a=42"]
    assert await store.bot("cmd").kvs.get("ended/c1") == "end"
    assert await store.bot("cmd").memory.get_conversation_variable("c1", "topic") is None


async def test_user_text_is_never_rendered(runtime: Runtime, store: botmemory.Store) -> None:
    await say(runtime, "hi")
    assert await say(runtime, "{{ 7 * 7 }} {% for x in y %}") == ["you said {{ 7 * 7 }} {% for x in y %}"]
    assert await say(runtime, "setu nick {{7*7}}") == ["ok"]
    assert await store.bot("cmd").memory.get_user_variable("u1", "nick") == "{{7*7}}"
    assert await say(runtime, "get nick") == ["u={{7*7}} c= g="]


async def test_percent_encoded_user_ids_never_share_data(runtime: Runtime, store: botmemory.Store) -> None:
    users = ["a/b", "a%2Fb", "..", "%", "a", "b"]
    for i, user in enumerate(users):
        await say(runtime, "hi", user=user, conv=f"conv{i}")
        assert await say(runtime, f"setu secret s{i}", user=user, conv=f"conv{i}") == ["ok"]
    for i, user in enumerate(users):
        assert await say(runtime, "get secret", user=user, conv=f"conv{i}") == [f"u=s{i} c= g="]
        assert await store.bot("cmd").memory.user(user).items() == {"secret": f"s{i}"}


async def test_conversation_id_none_uses_the_current_conversation(runtime: Runtime) -> None:
    first = await runtime.converse("cmd", user_id="u9", text="hi")
    cid = first[0]["conversation_id"]
    assert len(cid) == 32
    second = await runtime.converse("cmd", user_id="u9", text="setc k v")
    assert [r["conversation_id"] for r in second] == [cid]
    assert texts(await runtime.converse("cmd", user_id="u9", text="get k")) == ["u= c=v g="]
    # another user gets another conversation
    other = await runtime.converse("cmd", user_id="u10", text="hi")
    assert other[0]["conversation_id"] != cid
    # after END a new conversation starts
    await runtime.converse("cmd", user_id="u9", text="end")
    again = await runtime.converse("cmd", user_id="u9", text="hi")
    assert again[0]["conversation_id"] not in (cid, other[0]["conversation_id"])
    assert texts(again) == ["hello"]


async def test_unmounted_bot_raises_key_not_found(runtime: Runtime) -> None:
    with pytest.raises(botmemory.KeyNotFoundError):
        await runtime.converse("nope", user_id="u1", text="hi")
    with pytest.raises(botmemory.InvalidKeyError):
        await runtime.converse("cmd", user_id=" bad", text="hi")


async def test_end_conversation_from_outside(runtime: Runtime, store: botmemory.Store) -> None:
    await say(runtime, "hi")
    await say(runtime, "setc topic weather")
    assert await runtime.end_conversation("cmd", "c1", reason="forget") is True
    assert await store.bot("cmd").kvs.get("ended/c1") == "forget"
    assert await store.bot("cmd").memory.get_conversation_variable("c1", "topic") is None
    assert await runtime.end_conversation("cmd", "c1") is False


async def test_concurrent_turns_of_one_conversation_are_serialised(runtime: Runtime) -> None:
    await runtime.converse("race", user_id="u1", text="start", conversation_id="r1")
    words = ["one", "two", "three"]
    results = await asyncio.gather(
        *(runtime.converse("race", user_id="u1", text=w, conversation_id="r1") for w in words)
    )
    lengths = sorted(len(texts(r)[0].split(",")) for r in results)
    assert lengths == [1, 2, 3]  # each turn saw every earlier one: none interleaved
    final = max((texts(r)[0] for r in results), key=len)
    assert sorted(final.split(",")) == sorted(words)


async def test_store_share_of_a_turn_is_measured(runtime: Runtime) -> None:
    await say(runtime, "hi")
    await say(runtime, "get x")
    turn = runtime.last_turn
    assert turn.turns == 1
    assert turn.store_calls >= 4  # lease, session read, memory read, session write, release
    assert 0 < turn.store_seconds <= turn.turn_seconds
    assert runtime.metrics.turns == 2


async def test_unreadable_session_rows_do_not_block_a_conversation(
    runtime: Runtime, store: botmemory.Store, clock: FakeClock
) -> None:
    sessions = store.private_kvs(sessions_ns("cmd"))
    await sessions.set("c1", ["not", "a", "session"], expiry=300)
    assert await say(runtime, "get x") == ["hello"]  # dropped, started over
    assert await say(runtime, "get x") == ["u= c= g="]
    await sessions.set("c2", {"flow": "main"}, expiry=60)  # no user_id
    clock.advance(61)
    assert (await runtime.janitor_once())["sessions_ended"] == 1
    assert await store.bot("cmd").kvs.get("ended/c2") == "timeout"


async def test_a_busy_conversation_times_out_and_the_janitor_skips_it(
    runtime: Runtime, store: botmemory.Store, clock: FakeClock
) -> None:
    await say(runtime, "hi")
    lock = f"{sessions_ns('cmd')}/c1"  # the lease name: the session namespace plus the encoded conversation id
    assert await store.backend.acquire_lock(lock, "someone-else", 3600, clock.now()) is not None
    runtime.lock_wait = 0.05
    with pytest.raises(botmemory.StoreTimeoutError):
        await say(runtime, "get x")
    clock.advance(5 * 60 + 1)  # the session has timed out, but a turn "holds" it
    assert (await runtime.janitor_once())["sessions_ended"] == 0
    assert await store.backend.release_lock(lock, "someone-else")
    assert (await runtime.janitor_once())["sessions_ended"] == 1
    assert await say(runtime, "get x") == ["hello"]
