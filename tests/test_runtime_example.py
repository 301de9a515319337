"""The shipped example bot, and the runtime's use of retention (links, audit, policies)."""

from __future__ import annotations

from pathlib import Path

import pytest

import botmemory
from botmemory import Runtime
from botmemory.retention import AuditLog
from botmemory.testing import FakeClock
from runtime_bots import EXAMPLE_BOTS, texts, write_bot


@pytest.fixture
async def example(store: botmemory.Store) -> Runtime:
    runtime = await Runtime.open(store, EXAMPLE_BOTS)
    assert runtime.load_errors == {}
    return runtime


async def chat(rt: Runtime, text: str, user: str = "ada") -> list[str]:
    return texts(await rt.converse("example", user_id=user, text=text))


async def test_example_bot_remembers_across_conversations(
    example: Runtime, store: botmemory.Store, clock: FakeClock
) -> None:
    assert await chat(example, "hi") == ["Hi! I'm the example bot. What's your name?"]
    first = await chat(example, "  Ada ")
    assert first[0] == "Nice to meet you, Ada! Conversations I have had with everyone so far: 1."
    assert await chat(example, "my favourite colour is Teal") == ["Teal, noted. I'll remember it next time."]
    assert await chat(example, "hello") == ['Now you say "hello" (message 2 of this conversation).']
    assert await chat(example, "again") == [
        'Before that you said "hello". Now you say "again" (message 3 of this conversation).'
    ]
    clock.advance(10 * 60)  # last_message expires after 10 minutes; the session (30 min) lives on
    assert await chat(example, "later") == ['Now you say "later" (message 4 of this conversation).']
    assert await chat(example, "stats") == [
        "Conversations with everyone: 1. Your visits: 1. Messages from you, ever: 7. "
        "Messages in this conversation: 5."
    ]
    assert await chat(example, "bye") == ["Bye Ada! I'll remember that you like teal."]
    assert await store.bot("example").kvs.get("stats/conversations_ended/end") == 1
    # a new conversation: the name and colour are remembered, the conversation's variables are not
    again = await chat(example, "hello again")
    assert again[0] == "Welcome back, Ada! This is visit number 2. Still fond of teal?"
    assert await chat(example, "stats") == [
        "Conversations with everyone: 2. Your visits: 2. Messages from you, ever: 10. "
        "Messages in this conversation: 1."
    ]
    # another user shares the global counter only
    assert await chat(example, "hi", user="bob") == ["Hi! I'm the example bot. What's your name?"]
    assert (await chat(example, "Bob", user="bob"))[0].endswith("so far: 3.")
    # an idle conversation ends after 30 minutes, through the janitor
    clock.advance(31 * 60)
    report = await example.janitor_once()
    assert report["sessions_ended"] == 2
    assert await store.bot("example").kvs.get("stats/conversations_ended/timeout") == 2


async def test_example_bot_retention_policy_applies_to_runtime_writes(
    example: Runtime, store: botmemory.Store
) -> None:
    await chat(example, "hi")
    await chat(example, "Ada")
    ttl = await store.bot("example").kvs.ttl("storage/users/ada/firstname")
    assert ttl == pytest.approx(365 * 86400)  # user.*: 365d, set without an expiry


LINKED_FLOW = """\
start: a
nodes:
  a:
    on_enter:
      - setConversationVariable: {name: topic, value: x}
    on_receive: []
    next:
      - when: "event.text == 'end'"
        goto: END
"""


async def test_links_and_audit_of_ended_conversations(store: botmemory.Store, tmp_path: Path,
                                                      clock: FakeClock) -> None:
    write_bot(tmp_path, "linked", bot_yaml="session_timeout: 1m\n", flows={"main": LINKED_FLOW})
    runtime = await Runtime.open(store, tmp_path)
    await runtime.converse("linked", user_id="u1", text="hi", conversation_id="c1")
    await runtime.converse("linked", user_id="u1", text="hi", conversation_id="c2")
    assert await store.bot("linked").users.conversations("u1") == ["c1", "c2"]
    await runtime.converse("linked", user_id="u1", text="end", conversation_id="c1")
    clock.advance(61)
    assert (await runtime.janitor_once())["sessions_ended"] == 1
    records = await AuditLog(store).query("linked", user_id="u1")
    reasons = {(r["owner_id"], r["reason"]) for r in records if r["scope"] == "conversation"}
    assert reasons == {("c1", "end_of_conversation"), ("c2", "timeout")}
    assert all("value" not in r for r in records)


async def test_legal_hold_keeps_conversation_variables_at_the_end(store: botmemory.Store, tmp_path: Path) -> None:
    write_bot(tmp_path, "linked", flows={"main": LINKED_FLOW})
    runtime = await Runtime.open(store, tmp_path)
    await store.bot("linked").users.hold("u1")
    await runtime.converse("linked", user_id="u1", text="hi", conversation_id="c1")
    await runtime.converse("linked", user_id="u1", text="end", conversation_id="c1")
    assert await store.bot("linked").memory.get_conversation_variable("c1", "topic") == "x"


SPEC_FLOW = """\
# flows/main.yaml, verbatim from the runtime specification
start: ask_name
nodes:
  ask_name:
    on_enter:
      - say: "Hi! What's your name?"
    on_receive:
      - setUserVariable: {name: firstname, value: "{{ event.text }}"}
      - setConversationVariable: {name: topic, value: greeting, expiry: 10m}
    next:
      - when: "user.firstname"
        goto: greet
  greet:
    on_enter:
      - getUserVariable: {name: firstname, output: name}
      - incrGlobalVariable: {name: visits}
      - say: "Nice to meet you, {{ temp.name }}. Visits: {{ global.visits }}"
    next:
      - goto: END          # END finishes the flow: conversation memory is discarded
"""


async def test_the_flow_of_the_specification(store: botmemory.Store, tmp_path: Path) -> None:
    write_bot(tmp_path, "spec", flows={"main": SPEC_FLOW})
    runtime = await Runtime.open(store, tmp_path)
    first = await runtime.converse("spec", user_id="u1", text="hi", conversation_id=None)
    assert first == [{"type": "text", "text": "Hi! What's your name?", "conversation_id": first[0]["conversation_id"]}]
    assert texts(await runtime.converse("spec", user_id="u1", text="Ada")) == ["Nice to meet you, Ada. Visits: 1"]
    memory = store.bot("spec").memory
    assert await memory.get_conversation_variable(first[0]["conversation_id"], "topic") is None
    assert await memory.get_user_variable("u1", "firstname") == "Ada"
    second = await runtime.converse("spec", user_id="u2", text="hello")
    assert second[0]["conversation_id"] != first[0]["conversation_id"]
    assert texts(await runtime.converse("spec", user_id="u2", text="Bo")) == ["Nice to meet you, Bo. Visits: 2"]
