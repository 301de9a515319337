"""Botpress bot folders on the Runtime: flow semantics, memory actions, skills, content, NLU, errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import botmemory
from botmemory.runtime.botpress import BotpressLoadError, load_botpress_bot
from botmemory.testing import FakeClock
from botpress_bots import flow, node, say, texts, write_bp_bot


async def runtime_for(store: botmemory.Store, root: Path) -> botmemory.Runtime:
    runtime = await botmemory.Runtime.open(store, root)
    assert runtime.load_errors == {}
    return runtime


@pytest.fixture
async def mem(clock: FakeClock) -> Any:
    async with await botmemory.open("memory://", clock=clock) as store:
        yield store


# -- waiting, onReceive, memory scopes ------------------------------------------------------
NAME_BOT = {
    "main.flow.json": flow(
        "ask",
        node(
            "ask",
            ["say #!builtin_text-ask"],
            [
                'builtin/setVariable {"type":"user","name":"nickname","value":"{{event.payload.text}}"}',
                'builtin/setVariable {"type":"session","name":"topic","value":"names"}',
                'builtin/setVariable {"type":"temp","name":"said","value":"{{event.payload.text}}"}',
                'builtin/setVariable {"type":"bot","name":"last","value":"{{event.payload.text}}"}',
            ],
            [("true", "greet")],
        ),
        node("greet", ["say #!builtin_text-hi", "say #!builtin_text-temp"], [], [("true", "ask")]),
    )
}
NAME_CONTENT = {
    "builtin_text": texts(
        ("builtin_text-ask", "Name?"),
        ("builtin_text-hi", "Hi {{user.nickname}}!"),
        ("builtin_text-temp", "temp={{temp.said}} session={{session.topic}}"),
    )
}


async def test_wait_on_receive_and_the_four_scopes(mem: botmemory.Store, tmp_path: Path) -> None:
    write_bp_bot(tmp_path, "names", flows=NAME_BOT, content=NAME_CONTENT)
    runtime = await runtime_for(mem, tmp_path)
    first = await runtime.converse("names", user_id="u1", text="hello")
    assert say(first) == ["Name?"]  # the first message enters the start node: onEnter runs, then it waits
    conversation = first[0]["conversation_id"]
    assert say(await runtime.converse("names", user_id="u1", text="Tom & <b>")) == [
        "Hi Tom &amp; &lt;b&gt;!",  # {{x}} escapes as mustache.js does
        "temp=Tom &amp; &lt;b&gt; session=names",
    ]
    memory = mem.bot("names").memory
    assert await memory.get_user_variable("u1", "nickname") == "Tom & <b>"  # stored as typed, not escaped
    assert await memory.get_conversation_variable(conversation, "topic") == "names"
    assert await memory.get_global_variable("last") == "Tom & <b>"
    # an empty onReceive ([]) waits too: the next message goes back to "ask"
    assert say(await runtime.converse("names", user_id="u1", text="again")) == ["Name?"]


async def test_user_text_is_never_rendered(mem: botmemory.Store, tmp_path: Path) -> None:
    write_bp_bot(tmp_path, "names", flows=NAME_BOT, content=NAME_CONTENT)
    runtime = await runtime_for(mem, tmp_path)
    await runtime.converse("names", user_id="u1", text="hi")
    replies = await runtime.converse("names", user_id="u1", text="{{event.botId}}{{{user}}}")
    assert replies[0]["text"] == "Hi {{event.botId}}{{{user}}}!"


# -- catchAll, sub-flows and returns, END and conversation_end --------------------------------
FLOW_BOT = {
    "main.flow.json": flow(
        "entry",
        node(
            "entry",
            ["say #!builtin_text-main"],
            [],
            [
                ("event.payload.text === 'sub'", "sub.flow.json"),
                ("event.payload.text === 'deep'", "sub.flow.json#deep"),
                ("event.payload.text === 'end'", "END"),
                ("true", "entry"),
            ],
        ),
        node("back", ["say #!builtin_text-back"], None, [("true", "END")]),
        catch_all_next=[("event.payload.text === 'help'", "help"), ("event.payload.text === 'loop'", "entry")],
    ),
    "sub.flow.json": flow(
        "start",
        node(
            "start",
            ["say #!builtin_text-sub"],
            [],
            [("event.payload.text === 'up'", "#"), ("event.payload.text === 'node'", "#back"), ("true", "start")],
        ),
        node("deep", ["say #!builtin_text-deep"], None, [("true", "##")]),
    ),
    "help.flow.json": flow("h", node("h", ["say #!builtin_text-help"])),
    "conversation_end.flow.json": flow("e", node("e", ["say #!builtin_text-bye"], None, [("true", "")])),
}
FLOW_CONTENT = {
    "builtin_text": texts(
        ("builtin_text-main", "main"),
        ("builtin_text-sub", "sub"),
        ("builtin_text-deep", "deep"),
        ("builtin_text-back", "back"),
        ("builtin_text-help", "help"),
        ("builtin_text-bye", "bye{{temp.x}}"),
    )
}


async def test_sub_flows_returns_and_end(mem: botmemory.Store, tmp_path: Path) -> None:
    FLOW_BOT["help.flow.json"] = flow("h", node("h", ["say #!builtin_text-help"]))
    FLOW_BOT["main.flow.json"]["nodes"].append(node("help", [], None, [("true", "help.flow.json")]))
    write_bp_bot(tmp_path, "flows", flows=FLOW_BOT, content=FLOW_CONTENT)
    runtime = await runtime_for(mem, tmp_path)
    talk = lambda text: runtime.converse("flows", user_id="u1", text=text)  # noqa: E731
    assert say(await talk("hi")) == ["main"]
    assert say(await talk("sub")) == ["sub"]
    assert say(await talk("up")) == ["main"]  # "#": back to the calling node, which runs its transitions only
    assert say(await talk("deep")) == ["deep", "main"]  # "##": the calling node runs again from onEnter
    assert say(await talk("sub")) == ["sub"]
    # "#back": a named node of the caller, whose transitions run (as "#"); END: conversation_end.flow.json
    assert say(await talk("node")) == ["bye"]
    assert say(await talk("x")) == ["main"]  # the next message starts at main's start node again
    # catchAll.next goes before the node's own; a catchAll target equal to the current node is skipped
    assert say(await talk("loop")) == ["main"]
    assert say(await talk("help")) == ["help", "bye"]


async def test_v12_flow_end_keeps_session_variables_v11_discards_them(mem: botmemory.Store, tmp_path: Path) -> None:
    flows = {
        "main.flow.json": flow(
            "a",
            node(
                "a",
                [
                    'builtin/setVariable {"type":"session","name":"s","value":"1"}',
                    'setConversationVariable {"name":"c","value":"2"}',
                ],
                None,
                [("true", "END")],
            ),
        )
    }
    write_bp_bot(tmp_path, "v12", flows=flows)
    write_bp_bot(tmp_path, "v11", flows=flows, config={"defaultLanguage": None, "languages": None})
    import json as _json

    config = _json.loads((tmp_path / "v11" / "bot.config.json").read_text())
    del config["defaultLanguage"], config["languages"]
    (tmp_path / "v11" / "bot.config.json").write_text(_json.dumps(config))
    runtime = await runtime_for(mem, tmp_path)
    assert runtime.bots["v11"].version == 11 and runtime.bots["v12"].version == 12
    c12 = (await runtime.converse("v12", user_id="u", text="x"), None)
    await runtime.converse("v11", user_id="u", text="x")
    sessions12 = [k async for k in mem.bot("v12").kvs.keys("storage/conversation/")]
    sessions11 = [k async for k in mem.bot("v11").kvs.keys("storage/conversation/")]
    assert len(sessions12) == 2 and sessions11 == []  # v11.0.1: the end of the flow ends the session
    assert c12


# -- session timeout -------------------------------------------------------------------------
async def test_session_timeout_runs_timeout_flow_and_discards_the_session(
    clock: FakeClock, mem: botmemory.Store, tmp_path: Path
) -> None:
    flows = {
        "main.flow.json": flow(
            "a",
            node(
                "a",
                ['builtin/setVariable {"type":"session","name":"s","value":"kept"}', "say #!builtin_text-a"],
                [],
                [("true", "a")],
            ),
        ),
        "timeout.flow.json": flow("t", node("t", ["say #!builtin_text-t"])),
    }
    content = {
        "builtin_text": texts(("builtin_text-a", "a {{session.s}}"), ("builtin_text-t", "timed out {{session.s}}"))
    }
    write_bp_bot(tmp_path, "tb", flows=flows, content=content, config={"dialog": {"timeoutInterval": "2m"}})
    runtime = await runtime_for(mem, tmp_path)
    assert runtime.bots["tb"].session_timeout == 120
    first = await runtime.converse("tb", user_id="u", text="hi")
    conversation = first[0]["conversation_id"]
    clock.advance(119)
    assert say(await runtime.converse("tb", user_id="u", text="hi")) == ["a kept"]
    clock.advance(121)
    # the message after the timeout: the timeout flow first (the session's variables still there), then a new session
    assert say(await runtime.converse("tb", user_id="u", text="hi")) == ["timed out kept", "a kept"]
    audit = await mem.bot("tb").users.audit.query("tb")
    assert any(r.get("reason") == "timeout" for r in audit)
    clock.advance(121)
    assert (await runtime.janitor_once())["sessions_ended"] == 1  # the janitor ends it too
    assert await mem.bot("tb").memory.get_conversation_variable(conversation, "s") is None


# -- errors ------------------------------------------------------------------------------------
async def test_failing_action_goes_to_error_flow_else_error_message_and_stays(
    mem: botmemory.Store, tmp_path: Path
) -> None:
    action = "async def boom(ctx, **args):\n    ctx.temp['x'] = 1\n    raise RuntimeError('nope')\n"
    flows = {
        "main.flow.json": flow(
            "a", node("a", ["say #!builtin_text-a"], [], [("true", "b")]), node("b", ["boom {}"], None, [("true", "a")])
        )
    }
    content = {"builtin_text": texts(("builtin_text-a", "a"), ("builtin_text-err", "error flow"))}
    write_bp_bot(tmp_path, "plain", flows=flows, content=content, files={"actions/boom.py": action})
    with_error = dict(flows, **{"error.flow.json": flow("e", node("e", ["say #!builtin_text-err"]))})
    write_bp_bot(tmp_path, "witherror", flows=with_error, content=content, files={"actions/boom.py": action})
    runtime = await runtime_for(mem, tmp_path)
    await runtime.converse("plain", user_id="u", text="hi")
    assert say(await runtime.converse("plain", user_id="u", text="go")) == ["Sorry, something went wrong."]
    # the session stayed at "a" waiting: the next message goes to b again
    assert say(await runtime.converse("plain", user_id="u", text="go")) == ["Sorry, something went wrong."]
    await runtime.converse("witherror", user_id="u", text="hi")
    assert say(await runtime.converse("witherror", user_id="u", text="go")) == ["error flow"]


# -- v11 memory actions, expiry, retention, export and forget ----------------------------------------
V11_FLOWS = {
    "main.flow.json": flow(
        "a",
        node(
            "a",
            [
                'setUserVariable {"name":"nickname","value":"{{event.payload.text}}","expiry":"6 hours"}',
                'setUserVariable {"name":"nickname2","value":"kept"}',
                'getUserVariable {"name":"nickname","output":"$r"}',
                'setGlobalVariable {"name":"g","value":"1","expiry":"never"}',
                'incrementNumberOfConversations {"output":"n"}',
                "say #!builtin_text-a",
                'resetUserVariable {"name":"nickname"}',
            ],
            None,
            [("true", "END")],
        ),
    )
}


async def test_v11_actions_expiry_reset_and_retention(clock: FakeClock, mem: botmemory.Store, tmp_path: Path) -> None:
    folder = write_bp_bot(
        tmp_path,
        "v11",
        flows=V11_FLOWS,
        content={"builtin_text": [{"id": "builtin_text-a", "formData": {"text": "{{state.$r}} {{state.n}}"}}]},
        files={"botmemory.yaml": "retention:\n  policies:\n    user.*: 1d\n"},
    )
    config = json.loads((folder / "bot.config.json").read_text())
    del config["defaultLanguage"], config["languages"]
    (folder / "bot.config.json").write_text(json.dumps(config))
    runtime = await runtime_for(mem, tmp_path)
    assert say(await runtime.converse("v11", user_id="u", text="Ada")) == ["Ada 0"]
    bot = mem.bot("v11")
    # resetUserVariable deleted that one variable (Botpress deleted every key starting with its name)
    assert await bot.memory.get_user_variable("u", "nickname") is None
    assert await bot.memory.get_user_variable("u", "nickname2") == "kept"
    assert await bot.memory.get_user_variable("u", "numberOfConversations") == 0
    assert await bot.kvs.ttl("storage/users/u/nickname2") == pytest.approx(86400)  # the retention policy applies
    assert await bot.kvs.ttl("storage/global/g") is None
    export = await bot.users.export("u")
    assert "kept" in json.dumps(export)
    receipt = await bot.users.forget("u")
    assert receipt["counts"]["user"] >= 2
    assert await bot.memory.get_user_variable("u", "nickname2") is None


async def test_v11_expiry_of_a_set_variable(clock: FakeClock, mem: botmemory.Store, tmp_path: Path) -> None:
    flows = {
        "main.flow.json": flow(
            "a", node("a", ['setUserVariable {"name":"code","value":"42","expiry":"6 hours"}'], None, [("true", "END")])
        )
    }
    write_bp_bot(tmp_path, "exp", flows=flows)
    runtime = await runtime_for(mem, tmp_path)
    await runtime.converse("exp", user_id="u", text="x")
    assert await mem.bot("exp").kvs.ttl("storage/users/u/code") == pytest.approx(6 * 3600)
    clock.advance(6 * 3600)
    assert await mem.bot("exp").memory.get_user_variable("u", "code") is None


# -- choice skill, intents, QnA, contexts -------------------------------------------------------------
def choice_flows() -> dict[str, dict[str, Any]]:
    parse = (
        'basic-skills/choice_parse_answer {"contentId":"builtin_single-choice-c",'
        '"keywords":{"red":["red","Rouge"],"blue":["blue"]},"config":{}}'
    )
    return {
        "main.flow.json": flow(
            "pick",
            node(
                "pick",
                None,
                None,
                [
                    ("temp['skill-choice-ret'] == \"red\"", "red"),
                    ("temp['skill-choice-ret'] == \"blue\"", "blue"),
                    ("true", "failed"),
                ],
                type="skill-call",
                skill="choice",
                flow="skills/choice-c.flow.json",
                onEnter=None,
            ),
            node("red", ["say #!builtin_text-red"]),
            node("blue", ["say #!builtin_text-blue"]),
            node("failed", ["say #!builtin_text-failed"]),
        ),
        "skills/choice-c.flow.json": flow(
            "entry",
            node("entry", ['say #!builtin_single-choice-c {"skill":"choice"}'], None, [("true", "parse")]),
            node("parse", [], [parse], [("temp['skill-choice-valid'] === true", "#"), ("true", "invalid")]),
            node(
                "invalid",
                ["basic-skills/choice_invalid_answer"],
                None,
                [("Number(temp['skill-choice-invalid-count']) > Number(1)", "#"), ("true", "sorry")],
            ),
            node("sorry", ['say #!builtin_single-choice-c {"skill":"choice"}'], None, [("true", "parse")]),
        ),
    }


CHOICE_CONTENT = {
    "builtin_text": texts(("builtin_text-red", "red!"), ("builtin_text-blue", "blue!"), ("builtin_text-failed", "no")),
    "builtin_single-choice": [
        {
            "id": "builtin_single-choice-c",
            "formData": {
                "text$en": "Pick",
                "choices$en": [{"title": "Red", "value": "red"}, {"title": "Blue", "value": "blue"}],
            },
        }
    ],
}


async def test_choice_skill_keywords_retries_and_failure(mem: botmemory.Store, tmp_path: Path) -> None:
    write_bp_bot(tmp_path, "choice", flows=choice_flows(), content=CHOICE_CONTENT)
    runtime = await runtime_for(mem, tmp_path)
    first = await runtime.converse("choice", user_id="u", text="hi")
    assert first[0]["type"] == "single-choice" and first[0]["choices"][1] == {"title": "Blue", "value": "blue"}
    assert say(await runtime.converse("choice", user_id="u", text="I like ROUGE")) == ["red!"]
    await runtime.converse("choice", user_id="u", text="hi")
    assert say(await runtime.converse("choice", user_id="u", text="green")) == ["Pick"]  # retry
    assert say(await runtime.converse("choice", user_id="u", text="green")) == ["no"]  # retries exhausted: failure


async def test_intents_contexts_and_qna(mem: botmemory.Store, tmp_path: Path) -> None:
    flows = {
        "main.flow.json": flow(
            "a",
            node(
                "a",
                ['builtin/appendContext {"contexts":"animals,global","ttl":"2"}'],
                [],
                [("event.nlu.intent.name === 'order'", "order"), ("event.nlu.intent.name === 'none'", "none")],
            ),
            node("order", ["say #!builtin_text-order"]),
            node("none", ["say #!builtin_text-none"]),
        )
    }
    intents = {
        "order": {
            "name": "order",
            "contexts": ["global"],
            "utterances": {"en": ["I want a [pizza](food)", "order food"]},
            "slots": [],
        },
        "lion": {"name": "lion", "contexts": ["animals"], "utterances": {"en": ["tell me about lions"]}},
    }
    qna = {
        "q1": {
            "id": "q1",
            "data": {
                "questions": {"en": ["What are your hours?"]},
                "answers": {"en": ["9 to 5"]},
                "contexts": ["global"],
                "action": "text",
                "enabled": True,
            },
        }
    }
    content = {
        "builtin_text": texts(
            ("builtin_text-order", "ordering {{event.nlu.intent.confidence}}"), ("builtin_text-none", "?")
        )
    }
    write_bp_bot(tmp_path, "nlu", flows=flows, intents=intents, qna=qna, content=content)
    runtime = await runtime_for(mem, tmp_path)
    assert say(await runtime.converse("nlu", user_id="u", text="what are your HOURS")) == [
        "9 to 5"
    ]  # QnA, outside a flow
    assert say(await runtime.converse("nlu", user_id="u", text="hello")) == []  # the flow starts and waits
    assert say(await runtime.converse("nlu", user_id="u", text="I want a pizza!")) == ["ordering 1"]
    await runtime.converse("nlu", user_id="u", text="hello")
    # inside a flow, QnA stays silent (its intent matches no transition: the flow ends quietly)
    assert say(await runtime.converse("nlu", user_id="u", text="What are your hours?")) == []
    await runtime.converse("nlu", user_id="u", text="hello")
    assert say(await runtime.converse("nlu", user_id="u", text="qwerty")) == ["?"]


async def test_qna_items_of_v11_and_early_v12_hold_lists_in_the_default_language(
    mem: botmemory.Store, tmp_path: Path
) -> None:
    # Botpress 12.0's examples/interbot sub1 bot: questions and answers are plain lists, which the
    # QnA module read as the bot's default language (storage.ts migrate11To12).
    empty = {"main.flow.json": flow("entry", node("entry"))}
    qna = {
        "pay": {
            "id": "pay",
            "data": {
                "questions": ["I have a question about my pay check", "Payroll question"],
                "answers": ["I can help you answer payroll questions"],
                "category": "global",
                "action": "text",
                "enabled": True,
            },
        }
    }
    write_bp_bot(tmp_path, "old-qna", flows=empty, qna=qna, config={"defaultLanguage": "en", "languages": ["en"]})
    runtime = await runtime_for(mem, tmp_path)
    assert say(await runtime.converse("old-qna", user_id="u", text="payroll question")) == [
        "I can help you answer payroll questions"
    ]


# -- content --------------------------------------------------------------------------------------
async def test_variations_are_deterministic_and_languages_switch(mem: botmemory.Store, tmp_path: Path) -> None:
    flows = {
        "main.flow.json": flow(
            "a",
            node(
                "a",
                ["say #!builtin_text-v"],
                ['builtin/switchLanguage {"lang":"{{event.payload.text}}"}'],
                [("true", "a")],
            ),
        )
    }
    content = {
        "builtin_text": [
            {
                "id": "builtin_text-v",
                "formData": {
                    "text$en": "hello",
                    "variations$en": ["hi", "hey", ""],
                    "text$fr": "bonjour",
                    "variations$fr": [],
                },
            }
        ]
    }
    write_bp_bot(tmp_path, "lang", flows=flows, content=content, config={"languages": ["en", "fr"]})
    results = []
    for attempt in range(2):
        async with await botmemory.open("memory://") as store:
            runtime = await runtime_for(store, tmp_path)
            seen = [
                say(await runtime.converse("lang", user_id="u", text="en", conversation_id="c1"))[0] for _ in range(8)
            ]
            results.append(seen)
            assert set(seen) <= {"hello", "hi", "hey"}  # the empty variation keeps the main text
            assert say(await runtime.converse("lang", user_id="u", text="FR", conversation_id="c1")) == ["bonjour"]
    assert results[0] == results[1]  # same conversation id and turns: the same variations


# -- loading ------------------------------------------------------------------------------------------
def test_load_error_lists_every_problem(tmp_path: Path) -> None:
    flows = {
        "main.flow.json": flow(
            "a",
            node(
                "a",
                ["say #!missing", "nosuch {}", "builtin/setVariable {bad json"],
                None,
                [("temp.a + 1", "b"), ("true", "nowhere")],
            ),
        )
    }
    folder = write_bp_bot(
        tmp_path,
        "broken",
        flows=flows,
        content={"weird_type": []},
        files={"actions/custom.js": "return 1", "hooks/before_incoming_middleware/h.js": "x"},
    )
    with pytest.raises(BotpressLoadError) as info:
        load_botpress_bot(folder)
    message = str(info.value)
    for needle in (
        "missing",
        "nosuch",
        "not valid JSON",
        "temp.a + 1",
        "nowhere",
        "weird_type",
        "actions/custom.js",
        "hooks/before_incoming_middleware/h.js",
    ):
        assert needle in message, needle
    assert len(info.value.problems) >= 8


async def test_python_replacements_of_actions_and_hooks(mem: botmemory.Store, tmp_path: Path) -> None:
    flows = {
        "main.flow.json": flow(
            "a",
            node("a", ['get-data {"city":"{{event.payload.text}}"}', "say #!builtin_text-w"], None, [("true", "END")]),
        )
    }
    files = {
        "actions/get-data.js": "// the original JavaScript",
        "actions/get-data.py": """
            async def get_data(ctx, city):
                ctx.event["state"]["user"]["city"] = city
                return {"weather": f"sunny in {city}"}
        """,
        "hooks/before_incoming_middleware/mark.js": "event.state.session.seen = true",
        "hooks/before_incoming_middleware/mark.py": """
            async def before_incoming_middleware(bp, event):
                event["state"]["session"]["seen"] = True
        """,
    }
    content = {"builtin_text": texts(("builtin_text-w", "{{temp.weather}} {{session.seen}}"))}
    write_bp_bot(tmp_path, "shim", flows=flows, files=files, content=content)
    runtime = await runtime_for(mem, tmp_path)
    replies = await runtime.converse("shim", user_id="u", text="Oslo")
    assert say(replies) == ["sunny in Oslo true"]
    assert await mem.bot("shim").memory.get_user_variable("u", "city") == "Oslo"  # event.state writes reach the store
    conversation = replies[0]["conversation_id"]
    assert await mem.bot("shim").memory.get_conversation_variable(conversation, "seen") is True


async def test_botpress_and_yaml_bots_side_by_side_and_duplicate_ids(mem: botmemory.Store, tmp_path: Path) -> None:
    write_bp_bot(tmp_path, "a-bot", flows=NAME_BOT, content=NAME_CONTENT, config={"id": "same"})
    write_bp_bot(tmp_path, "b-bot", flows=NAME_BOT, content=NAME_CONTENT, config={"id": "same"})
    (tmp_path / "yaml").mkdir()
    (tmp_path / "yaml" / "bot.yaml").write_text("id: yaml\n")
    (tmp_path / "yaml" / "flows").mkdir()
    (tmp_path / "yaml" / "flows" / "main.yaml").write_text("start: a\nnodes:\n  a:\n    on_enter:\n      - say: yaml\n")
    runtime = await botmemory.Runtime.open(mem, tmp_path)
    assert set(runtime.bots) == {"same", "yaml"}
    assert runtime.bots["same"].folder.name == "a-bot"
    assert "a-bot" in runtime.load_errors["b-bot"]
    assert say(await runtime.converse("yaml", user_id="u", text="x")) == ["yaml"]
    assert say(await runtime.converse("same", user_id="u", text="x")) == ["Name?"]


async def test_memory_goes_through_every_backend(store: botmemory.Store, tmp_path: Path) -> None:
    write_bp_bot(tmp_path, "names", flows=NAME_BOT, content=NAME_CONTENT)
    runtime = await runtime_for(store, tmp_path)
    await runtime.converse("names", user_id="u1", text="x")
    replies = await runtime.converse("names", user_id="u1", text="Ada")
    assert say(replies)[0] == "Hi Ada!"
    assert await store.bot("names").memory.get_user_variable("u1", "nickname") == "Ada"
    assert await store.bot("names").memory.get_global_variable("last") == "Ada"


async def test_reset_session_discards_session_variables_with_an_audit_record(
    mem: botmemory.Store, tmp_path: Path
) -> None:
    flows = {
        "main.flow.json": flow(
            "a",
            node(
                "a",
                [
                    'builtin/setVariable {"type":"session","name":"s","value":"1"}',
                    'builtin/setVariable {"type":"temp","name":"t","value":"1"}',
                    'builtin/setVariable {"type":"user","name":"u","value":"1"}',
                ],
                [],
                [("event.payload.text === 'reset'", "r"), ("true", "a")],
            ),
            node("r", ["builtin/resetSession", "say #!builtin_text-r"], None, [("true", "a")]),
        )
    }
    content = {"builtin_text": texts(("builtin_text-r", "[{{session.s}}][{{temp.t}}][{{user.u}}]"))}
    write_bp_bot(tmp_path, "reset", flows=flows, content=content)
    runtime = await runtime_for(mem, tmp_path)
    conversation = (await runtime.converse("reset", user_id="u", text="hi"), None)
    assert conversation
    assert say(await runtime.converse("reset", user_id="u", text="reset")) == ["[][][1]"]
    records = await mem.bot("reset").users.audit.query("reset")
    assert any(r.get("reason") == "reset_session" for r in records)


async def test_another_users_conversation_is_not_found(mem: botmemory.Store, tmp_path: Path) -> None:
    write_bp_bot(tmp_path, "names", flows=NAME_BOT, content=NAME_CONTENT)
    runtime = await runtime_for(mem, tmp_path)
    conversation = (await runtime.converse("names", user_id="alice", text="hi"))[0]["conversation_id"]
    with pytest.raises(botmemory.KeyNotFoundError):
        await runtime.converse("names", user_id="bob", text="Bob", conversation_id=conversation)
    assert await mem.bot("names").memory.get_user_variable("bob", "nickname") is None


async def test_slot_skill_fills_from_entities(mem: botmemory.Store, tmp_path: Path) -> None:
    slot_flow = flow(
        "check-if-extracted",
        node(
            "check-if-extracted",
            ['basic-skills/slot_update_contexts {"intentName":"order"}'],
            None,
            [("session.slots['size'] !== undefined", "already-extracted"), ("true", "slot-extract")],
        ),
        node(
            "slot-extract",
            ["say #!builtin_text-ask"],
            ['basic-skills/slot_fill {"slotName":"size","entities":"size"}'],
            [
                ("session.slots['size'] && (temp.valid === undefined || temp.valid == \"true\")", "extracted"),
                ("true", "not-extracted"),
            ],
        ),
        node(
            "extracted",
            ['builtin/setVariable {"type":"temp","name":"extracted","value":"true"}'],
            None,
            [("true", "#")],
        ),
        node(
            "not-extracted",
            ['basic-skills/slot_not_found {"retryAttempts":"2"}', "say #!builtin_text-again"],
            ['basic-skills/slot_fill {"slotName":"size","entities":"size"}'],
            [
                ("session.slots['size'] && (temp.valid === undefined || temp.valid == \"true\")", "extracted"),
                ('temp.notExtracted == "true"', "#"),
                ("true", "not-extracted"),
            ],
        ),
        node(
            "already-extracted",
            ['builtin/setVariable {"type":"temp","name":"alreadyExtracted","value":"true"}'],
            None,
            [("true", "#")],
        ),
    )
    flows = {
        "main.flow.json": flow(
            "slot",
            node(
                "slot",
                None,
                None,
                [('temp.extracted == "true"', "done"), ('temp.notExtracted == "true"', "failed")],
                type="skill-call",
                skill="Slot",
                flow="skills/Slot-1.flow.json",
                onEnter=None,
            ),
            node("done", ["say #!builtin_text-done"]),
            node("failed", ["say #!builtin_text-failed"]),
        ),
        "skills/Slot-1.flow.json": slot_flow,
    }
    content = {
        "builtin_text": texts(
            ("builtin_text-ask", "Size?"),
            ("builtin_text-again", "Which size?"),
            ("builtin_text-done", "{{session.slots.size.value}} it is"),
            ("builtin_text-failed", "never mind"),
        )
    }
    intents = {
        "order": {
            "name": "order",
            "contexts": ["global"],
            "utterances": {"en": ["a [large](size) pizza"]},
            "slots": [{"name": "size", "entities": ["size"]}],
        }
    }
    write_bp_bot(
        tmp_path,
        "slots",
        flows=flows,
        content=content,
        intents=intents,
        files={
            "entities/size.json": json.dumps(
                {
                    "name": "size",
                    "type": "list",
                    "occurrences": [{"name": "large", "synonyms": ["big", "XL"]}, {"name": "small", "synonyms": []}],
                }
            )
        },
    )
    runtime = await runtime_for(mem, tmp_path)
    assert say(await runtime.converse("slots", user_id="u", text="hi")) == ["Size?"]
    assert say(await runtime.converse("slots", user_id="u", text="hmm")) == ["Which size?"]
    assert say(await runtime.converse("slots", user_id="u", text="a BIG one")) == ["large it is"]


async def test_a_transition_loop_or_a_missing_return_node_goes_to_the_error_flow(
    mem: botmemory.Store, tmp_path: Path
) -> None:
    loop = {"main.flow.json": flow("a", node("a", [], None, [("true", "b")]), node("b", [], None, [("true", "a")]))}
    content = {"builtin_text": texts(("builtin_text-err", "error flow"))}
    write_bp_bot(tmp_path, "loop", flows=loop)
    write_bp_bot(
        tmp_path,
        "loop-err",
        flows={**loop, "error.flow.json": flow("e", node("e", ["say #!builtin_text-err"]))},
        content=content,
    )
    runtime = await runtime_for(mem, tmp_path)
    assert say(await runtime.converse("loop", user_id="u", text="x")) == ["Sorry, something went wrong."]
    assert say(await runtime.converse("loop-err", user_id="u", text="x")) == ["error flow"]
    assert say(await runtime.converse("loop-err", user_id="u", text="x")) == ["error flow"]  # usable afterwards


async def test_outside_world_skills_take_their_failure_transition(mem: botmemory.Store, tmp_path: Path) -> None:
    flows = {
        "main.flow.json": flow(
            "api",
            node(
                "api",
                None,
                None,
                [("temp.valid", "ok"), ("!temp.valid", "hitl")],
                type="skill-call",
                skill="CallAPI",
                flow="skills/CallAPI-1.flow.json",
                onEnter=None,
            ),
            node(
                "hitl",
                None,
                None,
                [("temp['hitlnext-noAgent'] === true", "mail")],
                type="skill-call",
                skill="HitlNext",
                flow="skills/HitlNext-1.flow.json",
                onEnter=None,
            ),
            node(
                "mail",
                None,
                None,
                [("temp.success", "ok"), ("!temp.success", "failed")],
                type="skill-call",
                skill="SendEmail",
                flow="skills/SendEmail-1.flow.json",
                onEnter=None,
            ),
            node("ok", ["say #!builtin_text-ok"]),
            node("failed", ["say #!builtin_text-failed"]),
        ),
        "skills/CallAPI-1.flow.json": flow(
            "entry",
            node(
                "entry",
                [
                    'basic-skills/call_api {"url":"https://example.invalid","method":"get","memory":"temp","variable":"r"}'
                ],
                None,
                [("true", "#")],
            ),
        ),
        "skills/HitlNext-1.flow.json": flow(
            "entry",
            node(
                "entry",
                ["hitlnext/check_agents {}"],
                None,
                [("temp['hitlnext-noAgent'] === true", "#"), ("true", "entry")],
            ),
        ),
        "skills/SendEmail-1.flow.json": flow(
            "entry", node("entry", ['basic-skills/send_email {"toAddress":"{{user.email}}"}'], None, [("true", "#")])
        ),
    }
    content = {"builtin_text": texts(("builtin_text-ok", "ok"), ("builtin_text-failed", "all three failed"))}
    write_bp_bot(tmp_path, "world", flows=flows, content=content)
    runtime = await runtime_for(mem, tmp_path)
    assert say(await runtime.converse("world", user_id="u", text="x")) == ["all three failed"]
    # hitlnext actions outside their skill's flow are load errors
    bad = {"main.flow.json": flow("a", node("a", ["hitlnext/handoff {}"]))}
    with pytest.raises(BotpressLoadError, match="hitlnext/handoff"):
        load_botpress_bot(write_bp_bot(tmp_path / "other", "bad", flows=bad))
