"""Features of real Botpress bots found by running bots outside the corpus (each as a small synthetic bot)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

import botmemory
from botmemory.runtime.botpress import BotpressLoadError, load_botpress_bot
from botmemory.testing import FakeClock
from botpress_bots import flow, node, say, texts, write_bp_bot

HELLO = {"main.flow.json": flow("a", node("a", ["say #!builtin_text-hi"], None, []))}
HELLO_TEXT = {"builtin_text": texts(("builtin_text-hi", "Hello"))}


@pytest.fixture
async def mem(clock: FakeClock) -> Any:
    async with await botmemory.open("memory://", clock=clock) as store:
        yield store


def module_copy(body: str, eol: str = "\n") -> str:
    """A file as Botpress copies it out of a module: ``//CHECKSUM:<sha256 of the body>`` first."""
    return f"//CHECKSUM:{hashlib.sha256(body.encode()).hexdigest()}{eol}{body}"


# -- custom code Botpress itself never runs or runs natively ---------------------------------
def write_binary(folder: Path, rel: str, text: str) -> None:
    path = folder / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode())  # byte-exact: the checksum covers the line endings


async def test_botpress_own_module_hooks_disabled_hooks_and_module_action_copies_are_not_custom_code(
    mem: botmemory.Store, tmp_path: Path
) -> None:
    folder = write_bp_bot(tmp_path, "copies", flows=HELLO, content=HELLO_TEXT)
    engine = "const x = ['session_reset']\r\nif (x.includes(event.type)) {\r\n  event.setFlag('skip', true)\r\n}\r\n"
    write_binary(folder, "hooks/after_incoming_middleware/builtin/00_dialog_engine.js", module_copy(engine, "\r\n"))
    contexts = "event.state.session.nluContexts = []\n"
    write_binary(folder, "hooks/before_incoming_middleware/builtin/apply_nlu_contexts.js", module_copy(contexts))
    write_binary(folder, "hooks/after_incoming_middleware/builtin/05_extract_slots.js", module_copy("// slots\n"))
    # a name starting with "." is a disabled hook or action in Botpress: never run
    write_binary(folder, "hooks/before_incoming_middleware/testing/.00_recorder.js", "record(event)\n")
    write_binary(folder, "actions/.draft.js", "return 1\n")
    # copies of basic-skills' own actions: the module actions this runtime runs
    write_binary(folder, "actions/basic-skills/choice_parse_answer.js", "'use strict'\n")
    write_binary(folder, "actions/basic-skills/call_api.js", "'use strict'\n")
    runtime = await botmemory.Runtime.open(mem, tmp_path)
    assert runtime.load_errors == {}
    assert say(await runtime.converse("copies", user_id="u", text="hi")) == ["Hello"]


def test_an_edited_module_hook_or_another_module_hook_is_custom_code(tmp_path: Path) -> None:
    folder = write_bp_bot(tmp_path, "edited", flows=HELLO, content=HELLO_TEXT)
    stale = module_copy("original();\n").replace("original", "edited")  # the checksum no longer matches
    write_binary(folder, "hooks/after_incoming_middleware/builtin/00_dialog_engine.js", stale)
    write_binary(folder, "hooks/after_incoming_middleware/builtin/01_expire_nlu_contexts.js", "no checksum\n")
    # a module hook this runtime has no native version of (checksum or not) still needs a replacement
    write_binary(folder, "hooks/before_incoming_middleware/channel-web/00_user_attributes.js", module_copy("x()\n"))
    with pytest.raises(BotpressLoadError) as info:
        load_botpress_bot(folder)
    message = str(info.value)
    for rel in (
        "hooks/after_incoming_middleware/builtin/00_dialog_engine.js",
        "hooks/after_incoming_middleware/builtin/01_expire_nlu_contexts.js",
        "hooks/before_incoming_middleware/channel-web/00_user_attributes.js",
    ):
        assert rel in message, rel
    assert len(info.value.problems) == 3


# -- content -----------------------------------------------------------------------------------
async def test_action_button_elements_load_and_say_nothing_on_their_own(mem: botmemory.Store, tmp_path: Path) -> None:
    """``builtin_action-button`` is Botpress 12's (hidden) button type; its renderer returns no message."""
    flows = {"main.flow.json": flow("a", node("a", ["say #!builtin_text-hi", "say #!builtin_action-button-b"]))}
    button = {"action$en": "Open URL", "title$en": "Docs", "url$en": "https://example.org/"}
    content = {**HELLO_TEXT, "builtin_action-button": [{"id": "builtin_action-button-b", "formData": button}]}
    write_bp_bot(tmp_path, "buttons", flows=flows, content=content)
    runtime = await botmemory.Runtime.open(mem, tmp_path)
    assert runtime.load_errors == {}
    assert say(await runtime.converse("buttons", user_id="u", text="hi")) == ["Hello"]


# -- what no flow calls, what no action can be ---------------------------------------------------
async def test_a_javascript_action_no_flow_calls_does_not_stop_the_bot(mem: botmemory.Store, tmp_path: Path) -> None:
    """Botpress only runs an action when a flow calls it; a leftover file (even one that is not JavaScript) is inert."""
    files = {"actions/leftover.js": "not even javascript\n", "actions/helper/format.js": "module.exports = 1\n"}
    write_bp_bot(tmp_path, "leftover", flows=HELLO, content=HELLO_TEXT, files=files)
    runtime = await botmemory.Runtime.open(mem, tmp_path)
    assert runtime.load_errors == {}
    assert say(await runtime.converse("leftover", user_id="u", text="hi")) == ["Hello"]


def test_unused_javascript_is_still_listed_when_the_bot_fails_for_another_reason(tmp_path: Path) -> None:
    flows = {"main.flow.json": flow("a", node("a", ["say #!builtin_text-hi", "used-one {}"], None, []))}
    files = {"actions/used-one.js": "return 1\n", "actions/leftover.js": "return 2\n"}
    folder = write_bp_bot(tmp_path, "both", flows=flows, content=HELLO_TEXT, files=files)
    with pytest.raises(BotpressLoadError) as info:
        load_botpress_bot(folder)
    problems = info.value.problems
    assert len(problems) == 2
    assert "actions/used-one.js" in problems[0] and "used by flows/main.flow.json node 'a'" in problems[0]
    assert "actions/leftover.js" in problems[1]


def test_an_empty_instruction_is_a_load_error_that_says_so(tmp_path: Path) -> None:
    """Botpress runs ``""`` as an action named ``""`` (not found: the error flow); the error says what it is."""
    flows = {"main.flow.json": flow("a", node("a", ["", "say #!builtin_text-hi"], None, []))}
    folder = write_bp_bot(tmp_path, "blank", flows=flows, content=HELLO_TEXT)
    with pytest.raises(BotpressLoadError) as info:
        load_botpress_bot(folder)
    assert info.value.problems == [
        "flows/main.flow.json: node 'a': an empty instruction '' (Botpress runs it as an action named '', "
        "which does not exist: remove it from the node)"
    ]
