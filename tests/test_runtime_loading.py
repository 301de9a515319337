"""Loading bot folders: errors name file and line, and never stop the other bots."""

from __future__ import annotations

from pathlib import Path

import pytest

import botmemory
from botmemory import Runtime
from botmemory.runtime import load_bot, load_bots
from runtime_bots import EXAMPLE_BOTS, texts, write_bot

GOOD_FLOW = """\
start: a
nodes:
  a:
    on_enter:
      - say: "hi"
"""


def flow_with(node_body: str) -> str:
    """A one-node flow whose node ``a`` has the given (already indented) body."""
    return "start: a\nnodes:\n  a:\n" + node_body


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"flows/main.yaml": "start: a\nnodes:\n  a: {on_enter: [say: 'x'\n"}, "flows/main.yaml:3: bad YAML"),
        (
            {"flows/main.yaml": flow_with("    on_enter:\n      - sendEmail: {to: x}\n")},
            "flows/main.yaml:5: unknown action 'sendEmail'",
        ),
        (
            {"flows/main.yaml": flow_with("    next:\n      - goto: x\n")},
            "flows/main.yaml:5: unknown node 'x'",
        ),
        (
            {"flows/main.yaml": flow_with("    next:\n      - flow: elsewhere\n")},
            "flows/main.yaml:5: unknown flow 'elsewhere'",
        ),
        (
            {"flows/main.yaml": flow_with("    on_enter:\n      - say: 'Hi {{ user.name '\n")},
            "flows/main.yaml:5: say.text: template syntax error",
        ),
        (
            {"flows/main.yaml": flow_with("    next:\n      - when: 'user.name =='\n        goto: a\n")},
            "flows/main.yaml:5: expression syntax error",
        ),
        (
            {"flows/main.yaml": flow_with(
                "    on_enter:\n      - setUserVariable: {name: x, value: 1, expiry: 10 fortnights}\n"
            )},
            "flows/main.yaml:5: setUserVariable.expiry",
        ),
        (
            {"flows/main.yaml": flow_with(
                "    on_enter:\n      - setUserVariable:\n          name: x\n          value: 1\n          expiry: 0s\n"
            )},
            "flows/main.yaml:8: setUserVariable.expiry",
        ),
        (
            {"flows/main.yaml": flow_with("    on_enter:\n      - getUserVariable: {name: x}\n")},
            "flows/main.yaml:5: getUserVariable: missing argument(s) output",
        ),
        (
            {"flows/main.yaml": flow_with("    on_enter:\n      - say: '{{ \"\".__class__ }}'\n")},
            "flows/main.yaml:5: say.text: line 1: access to '__class__' is not allowed",
        ),
        ({"flows/main.yaml": "start: b\nnodes:\n  a: {}\n"}, "flows/main.yaml:1: unknown node 'b'"),
        ({"bot.yaml": "session_timeout: soon\n"}, "bot.yaml:2: bad session_timeout 'soon'"),
        ({"bot.yaml": "hook_timeout: -5s\n"}, "bot.yaml:2: bad hook_timeout"),
        ({"bot.yaml": "start_flow: missing\n"}, "bot.yaml:2: unknown flow 'missing'"),
        ({"bot.yaml": "retention:\n  policies:\n    user.*: {expire: 0d}\n"}, "bot.yaml:3: retention:"),
        ({"actions/broken.py": "async def x(ctx):\n    return (\n"}, "actions/broken.py:2: syntax error"),
        ({"actions/raises.py": "import os\nraise RuntimeError('no')\n"}, "actions/raises.py:2: import failed"),
        ({"actions/say.py": "async def say(ctx):\n    pass\n"}, "actions/say.py:1: action 'say' has the name"),
        ({"hooks/sync.py": "def before_incoming(bp, event):\n    pass\n"}, "hooks/sync.py:1: hook 'before_incoming'"),
        (
            {
                "actions/pick.py": "async def pick(ctx, colour):\n    pass\n",
                "flows/main.yaml": flow_with("    on_enter:\n      - pick: {color: red}\n"),
            },
            "flows/main.yaml:5: pick: cannot be called with these arguments",
        ),
    ],
)
def test_load_errors_name_file_and_line(tmp_path: Path, files: dict[str, str], expected: str) -> None:
    folder = write_bot(tmp_path, "broken", flows={"main": GOOD_FLOW})
    for rel, text in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if rel == "bot.yaml":
            text = "id: broken\n" + text
        path.write_text(text, encoding="utf-8")
    write_bot(tmp_path, "fine", flows={"main": GOOD_FLOW})
    bots, errors = load_bots(tmp_path)
    assert list(bots) == ["fine"]
    assert list(errors) == ["broken"]
    assert errors["broken"].startswith(expected), errors["broken"]


async def test_a_broken_bot_does_not_stop_the_others(tmp_path: Path) -> None:
    write_bot(tmp_path, "good", flows={"main": GOOD_FLOW})
    write_bot(tmp_path, "bad", flows={"main": flow_with("    next:\n      - goto: x\n")})
    (tmp_path / "not-a-bot").mkdir()  # no bot.yaml: ignored
    async with await botmemory.open("memory://") as store:
        runtime = await Runtime.open(store, tmp_path)
        assert runtime.load_errors == {"bad": "flows/main.yaml:5: unknown node 'x'"}
        assert texts(await runtime.converse("good", user_id="u", text="hi")) == ["hi"]
        with pytest.raises(botmemory.KeyNotFoundError, match="unknown node"):
            await runtime.converse("bad", user_id="u", text="hi")


def test_defaults_and_settings(tmp_path: Path) -> None:
    plain = load_bot(write_bot(tmp_path, "plain", flows={"main": GOOD_FLOW}))
    assert (plain.start_flow, plain.session_timeout, plain.hook_timeout) == ("main", 1800.0, 5.0)
    assert plain.error_message == "Sorry, something went wrong."
    assert plain.retention is None
    custom = load_bot(
        write_bot(
            tmp_path,
            "custom",
            bot_yaml="name: Custom\nstart_flow: intro\nsession_timeout: PT2M\nhook_timeout: 250ms\n"
            "error_message: Nope\n",
            flows={"intro": GOOD_FLOW},
        )
    )
    assert (custom.name, custom.start_flow, custom.session_timeout, custom.hook_timeout) == ("Custom", "intro", 120.0,
                                                                                              0.25)
    assert custom.error_message == "Nope"


def test_duplicate_bot_ids_are_refused(tmp_path: Path) -> None:
    write_bot(tmp_path, "one", flows={"main": GOOD_FLOW})
    folder = write_bot(tmp_path, "two", flows={"main": GOOD_FLOW})
    (folder / "bot.yaml").write_text("id: one\n", encoding="utf-8")
    bots, errors = load_bots(tmp_path)
    assert bots == {}
    assert errors["one"] == (
        "bot.yaml: bot id 'one' is claimed by 2 folders (one/bot.yaml, two/bot.yaml); none is mounted"
    )


def test_duplicate_yaml_keys_are_refused(tmp_path: Path) -> None:
    write_bot(tmp_path, "dup", flows={"main": "start: a\nnodes:\n  a: {}\n  a: {}\n"})
    _, errors = load_bots(tmp_path)
    assert errors["dup"] == "flows/main.yaml:4: duplicate key 'a'"


def test_bots_dir_must_exist(tmp_path: Path) -> None:
    with pytest.raises(botmemory.InvalidInputError):
        load_bots(tmp_path / "missing")


def test_the_example_bot_loads_with_its_retention_policy() -> None:
    bots, errors = load_bots(EXAMPLE_BOTS)
    assert errors == {}
    example = bots["example"]
    assert example.retention is not None and not isinstance(example.retention, dict)
    assert "understand" in example.actions and "message_count" in example.actions
    assert [file for file, _ in example.hooks["after_incoming"]] == ["hooks/counters.py"]
