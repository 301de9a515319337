"""The command line against the hostile walk of issue 11 (items 1, 3, 9, 10, 12, 13)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

import botmemory
from botmemory.cli import app

ECHO_FLOW = textwrap.dedent(
    """\
    start: hello
    nodes:
      hello:
        on_enter:
          - say: "hello"
        next: [{goto: listen}]
      listen:
        on_receive:
          - say: "echo {{ event.text }}"
        next: [{goto: listen}]
    """
)

SHOP_YAML = textwrap.dedent(
    """\
    id: shop
    retention:
      policies:
        kvs:carts/*: {expire: 7d, mode: absolute}
        user.*: 30d
    """
)


def cli(url: str, *args: str, bots: Path | str | None = None, input: str | bytes | None = None) -> Result:
    extra = ["--bots", str(bots)] if bots is not None else []
    return CliRunner().invoke(app, ["--store", url, *extra, *args], input=input)


def one_error_line(result: Result) -> str:
    assert result.stderr.startswith("error: "), result.output
    assert result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.output
    return result.stderr


def write_bot(root: Path, bot_id: str, flow: str = ECHO_FLOW, bot_yaml: str | None = None) -> Path:
    folder = root / bot_id
    (folder / "flows").mkdir(parents=True)
    (folder / "bot.yaml").write_text(bot_yaml or f"id: {bot_id}\n")
    (folder / "flows" / "main.yaml").write_text(flow)
    return folder


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"


# -- item 1: chat refuses another user's conversation ----------------------------------------
def test_chat_as_another_user_on_a_conversation_exits_2(url: str, tmp_path: Path) -> None:
    write_bot(tmp_path / "bots", "echo")
    assert cli(url, "chat", "echo", "--user", "alice", "--conversation", "c1", bots=tmp_path / "bots",
               input="secret\n").exit_code == 0
    result = cli(url, "chat", "echo", "--user", "bob", "--conversation", "c1", bots=tmp_path / "bots",
                 input="what did she say\n")
    assert result.exit_code == 2
    assert "not found" in one_error_line(result) and "alice" not in result.stderr
    assert result.stdout == ""


# -- item 3: writes follow the bot's policies, or say why they cannot ----------------------------
def _expiry(url: str, key: str) -> float | None:
    with botmemory.open_sync(url) as store:
        entry = store.bot("shop").kvs.get_entry(key)
        assert entry is not None
        return None if entry.expires_at is None else entry.expires_at - entry.modified_at


def test_a_write_without_the_bots_folder_uses_the_policies_a_runtime_recorded(url: str, tmp_path: Path) -> None:
    bots = tmp_path / "bots"
    write_bot(bots, "shop", bot_yaml=SHOP_YAML)
    # with the folder: its policies
    assert cli(url, "kvs", "set", "shop", "carts/1", "{}", bots=bots).exit_code == 0
    assert _expiry(url, "carts/1") == pytest.approx(7 * 86_400, abs=5)
    # a runtime mounted the bot (the janitor here; serve and chat too): the store remembers its policies
    assert cli(url, "janitor", "--once", bots=bots).exit_code == 0
    for elsewhere in (tmp_path / "nowhere", tmp_path):  # --bots missing, or a folder without the bot
        result = cli(url, "kvs", "set", "shop", "carts/2", '{"n": 1}', bots=elsewhere)
        assert result.exit_code == 0 and result.stderr == "", result.output
        assert _expiry(url, "carts/2") == pytest.approx(7 * 86_400, abs=5)
        result = cli(url, "memory", "set", "shop", "user", "u1", "email", '"a@b.c"', bots=elsewhere)
        assert result.exit_code == 0, result.output
        with botmemory.open_sync(url) as store:
            assert store.bot("shop").kvs.ttl("storage/users/u1/email") == pytest.approx(30 * 86_400, abs=5)


def test_a_write_whose_policies_nobody_knows_says_so(url: str, tmp_path: Path) -> None:
    result = cli(url, "kvs", "set", "shop", "carts/1", "{}", bots=tmp_path / "nowhere")
    assert result.exit_code == 0
    assert result.stderr.startswith("note: bot shop is not in") and "without retention policies" in result.stderr
    assert _expiry(url, "carts/1") is None
    result = cli(url, "kvs", "set", "@global", "k", "1", bots=tmp_path / "nowhere")
    assert result.exit_code == 0 and result.stderr == ""  # the server-wide KVS has no policies to miss


# -- item 9: read-only commands never create a store ---------------------------------------------
@pytest.mark.parametrize(
    "args",
    [
        ["dump"],
        ["kvs", "get", "b", "k"],
        ["kvs", "ls", "b"],
        ["kvs", "ttl", "b", "k"],
        ["kvs", "del", "b", "k"],
        ["memory", "get", "b", "global", "x"],
        ["memory", "ls", "b", "global"],
        ["audit", "b"],
        ["user", "export", "b", "u"],
        ["user", "forget", "b", "u", "--dry-run"],
    ],
)
def test_read_only_commands_on_a_mistyped_path_create_nothing(tmp_path: Path, args: list[str]) -> None:
    path = tmp_path / "tpyo.db"
    result = cli(f"sqlite:///{path}", *args)
    assert result.exit_code == 1
    assert "no botmemory store" in one_error_line(result)
    assert list(tmp_path.iterdir()) == []


# -- item 10: janitor --once with a broken bot; dump into a missing folder ---------------------------
def test_janitor_once_with_a_broken_bot_reports_it_once_and_fails(url: str, tmp_path: Path) -> None:
    bots = tmp_path / "bots"
    write_bot(bots, "good")
    write_bot(bots, "broken", flow="start: a\nnodes:\n  a:\n    next:\n      - goto: nowhere\n")
    result = cli(url, "janitor", "--once", bots=bots)
    assert result.exit_code == 2
    assert "janitor run 1:" in result.stdout  # the others were served
    line = one_error_line(result)
    assert "broken" in line and "unknown node 'nowhere'" in line


def test_janitor_prints_durations_for_people(url: str, tmp_path: Path) -> None:
    result = cli(url, "janitor", "--once", bots=tmp_path / "none")
    assert result.exit_code == 0, result.output
    duration = result.stdout.split("duration ", 1)[1].split(",")[0].strip()
    assert duration.endswith(" ms") or duration.endswith(" s"), result.stdout
    assert len(duration) <= 10


def test_dump_into_a_missing_folder_exits_2_and_names_it(url: str, tmp_path: Path) -> None:
    assert cli(url, "kvs", "set", "b", "k", "1").exit_code == 0
    target = tmp_path / "missing" / "dir" / "x.jsonl"
    result = cli(url, "dump", "-o", str(target))
    assert result.exit_code == 2
    line = one_error_line(result)
    assert str(target) in line and ".tmp" not in line


# -- item 12: large values from stdin or a file ------------------------------------------------------
def test_kvs_set_reads_a_value_from_stdin_or_a_file(url: str, tmp_path: Path) -> None:
    big = {"text": "x" * 600_000}  # more than an argument can carry (~128 KB), less than the 1 MiB limit
    assert cli(url, "kvs", "set", "b", "from-stdin", "-", input=json.dumps(big)).exit_code == 0
    file = tmp_path / "value.json"
    file.write_text(json.dumps(big))
    assert cli(url, "kvs", "set", "b", "from-file", f"@{file}").exit_code == 0
    assert cli(url, "memory", "set", "b", "user", "u", "bio", f"@{file}").exit_code == 0
    with botmemory.open_sync(url) as store:
        kvs = store.bot("b").kvs
        assert kvs.get("from-stdin") == big and kvs.get("from-file") == big
        assert store.bot("b").memory.get_user_variable("u", "bio") == big
    missing = cli(url, "kvs", "set", "b", "k", f"@{tmp_path / 'nope.json'}")
    assert missing.exit_code == 2 and "cannot read" in one_error_line(missing)
    too_big = cli(url, "kvs", "set", "b", "k", "-", input=json.dumps("y" * 1_100_000))
    assert too_big.exit_code == 2 and "more than the 1048576 allowed" in one_error_line(too_big)


# -- item 13: newcomer friction --------------------------------------------------------------------------
def test_piped_chat_starts_a_new_conversation_unless_told(url: str, tmp_path: Path) -> None:
    bots = tmp_path / "bots"
    write_bot(bots, "echo")
    first = cli(url, "chat", "echo", bots=bots, input="one\n")
    assert first.stdout.splitlines() == ["hello"]
    again = cli(url, "chat", "echo", bots=bots, input="two\n")
    assert again.stdout.splitlines() == ["hello"]  # the same script gets the same answers
    going_on = cli(url, "chat", "echo", "--continue", bots=bots, input="three\n")
    assert going_on.stdout.splitlines() == ["echo three"]
    assert going_on.stderr.startswith("note: continuing conversation ")


def test_chat_loads_only_its_bot(url: str, tmp_path: Path) -> None:
    bots = tmp_path / "bots"
    write_bot(bots, "echo")
    marker = tmp_path / "other-bot-code-ran"
    other = write_bot(bots, "other")
    (other / "actions").mkdir()
    (other / "actions" / "a.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    write_bot(bots, "broken", flow="start: a\nnodes:\n  a:\n    next:\n      - goto: nowhere\n")
    result = cli(url, "chat", "echo", bots=bots, input="hi\n")
    assert result.exit_code == 0 and result.stdout.splitlines() == ["hello"]
    assert result.stderr == ""  # no word about the broken bot it did not need
    assert not marker.exists()
    broken = cli(url, "chat", "broken", bots=bots, input="hi\n")
    assert broken.exit_code == 2 and "unknown node 'nowhere'" in one_error_line(broken)  # said once


def test_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout == f"botmemory {botmemory.__version__}\n"


@pytest.mark.parametrize("command", [[], ["kvs", "set"], ["chat"], ["load"], ["user", "forget"], ["janitor"]])
def test_help_has_no_placeholders(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0
    assert "<bool>" not in result.stdout and "<str>" not in result.stdout
    assert "{" not in result.stdout.split("Usage:", 1)[1].splitlines()[0]


def test_export_prints_iso_times_like_forget(url: str) -> None:
    assert cli(url, "memory", "set", "b", "user", "u", "email", '"a@b.c"', "--expiry", "1h").exit_code == 0
    export = json.loads(cli(url, "user", "export", "b", "u").stdout)
    for value in (export["time"], export["user"]["email"]["modified_at"], export["user"]["email"]["expires_at"]):
        assert isinstance(value, str) and value.endswith("Z") and value[:2] == "20", export
    assert "time: 20" in cli(url, "user", "forget", "b", "u", "--dry-run").stdout
    machine = json.loads(cli(url, "--json", "user", "export", "b", "u").stdout)
    assert isinstance(machine["time"], float)  # scripts keep epoch seconds


def test_the_demo_keeps_out_of_the_example_bots_store(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "botmemory.demo"], capture_output=True, cwd=tmp_path, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "botmemory.db").exists()
    with botmemory.open_sync(f"sqlite:///{tmp_path / 'botmemory-demo.db'}") as store:
        assert "example" not in store.bots()
