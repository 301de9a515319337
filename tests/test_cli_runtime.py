"""``botmemory chat`` and ``botmemory janitor`` over a real bots folder and a real SQLite file."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

import botmemory
from botmemory.cli import app
from botmemory.retention.layout import sessions_ns
from botmemory.testing import FakeClock

BOT_YAML = "id: echo\nname: Echo\nsession_timeout: 30m\n"
FLOW = textwrap.dedent(
    """\
    start: hello
    nodes:
      hello:
        on_enter:
          - say: "Hi! What's your name?"
        on_receive:
          - setUserVariable: {name: firstname, value: "{{ event.text }}"}
        next:
          - goto: greet
      greet:
        on_enter:
          - incrGlobalVariable: {name: visits}
          - say: "Nice to meet you, {{ user.firstname }}. Visits: {{ global.visits }}"
        next:
          - goto: END
    """
)


@pytest.fixture
def bots(tmp_path: Path) -> Path:
    folder = tmp_path / "bots"
    (folder / "echo" / "flows").mkdir(parents=True)
    (folder / "echo" / "bot.yaml").write_text(BOT_YAML)
    (folder / "echo" / "flows" / "main.yaml").write_text(FLOW)
    (folder / "broken" / "flows").mkdir(parents=True)
    (folder / "broken" / "bot.yaml").write_text("id: broken\nname: Broken\n")
    (folder / "broken" / "flows" / "main.yaml").write_text("start: a\nnodes:\n  a:\n    next:\n      - goto: nowhere\n")
    return folder


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"


def cli(url: str, bots: Path | str, *args: str, input: str | bytes | None = None) -> Result:
    return CliRunner().invoke(app, ["--store", url, "--bots", str(bots), *args], input=input)


def test_chat_through_a_pipe(url: str, bots: Path) -> None:
    result = cli(url, bots, "chat", "echo", "--user", "u1", input="hi\n\nAda\n")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["Hi! What's your name?", "Nice to meet you, Ada. Visits: 1"]
    with botmemory.open_sync(url) as store:
        assert store.bot("echo").memory.get_user_variable("u1", "firstname") == "Ada"
        assert store.bot("echo").memory.get_global_variable("visits") == 1


def test_chat_json_lines_carry_the_conversation(url: str, bots: Path) -> None:
    result = cli(url, bots, "--json", "chat", "echo", "--conversation", "c-42", input="hi\n")
    assert result.exit_code == 0, result.output
    (reply,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert reply["text"] == "Hi! What's your name?"
    assert reply["conversation_id"] == "c-42"


def test_chat_escapes_what_the_user_typed(url: str, bots: Path) -> None:
    result = cli(url, bots, "chat", "echo", input="hi\nA\u202eB\n")
    assert result.exit_code == 0, result.output
    assert "\u202e" not in result.stdout
    assert "\\u202e" in result.stdout.splitlines()[1]


def test_chat_interactive(url: str, bots: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("botmemory.cli.chat._stdin_is_terminal", lambda: True)
    result = cli(url, bots, "chat", "echo", input="hi\nGrace\n/quit\nnever read\n")
    assert result.exit_code == 0, result.output
    assert "echo> Hi! What's your name?" in result.stdout
    assert "echo> Nice to meet you, Grace. Visits: 1" in result.stdout
    assert "(conversation " in result.stdout
    eof = cli(url, bots, "chat", "echo", input="hi\n")  # Ctrl-D ends it too
    assert eof.exit_code == 0


def test_chat_with_a_bot_that_did_not_load(url: str, bots: Path) -> None:
    result = cli(url, bots, "chat", "broken", input="hi\n")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: bot broken did not load: flows/main.yaml:")
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize("args", [["chat", "nosuch"], ["chat", "../x"], ["chat", "echo", "--user", " u"]])
def test_chat_bad_input(url: str, bots: Path, args: list[str]) -> None:
    result = cli(url, bots, *args, input="hi\n")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1


def test_chat_without_a_bots_folder(url: str, tmp_path: Path) -> None:
    result = cli(url, tmp_path / "none", "chat", "echo", input="hi\n")
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1


def test_chat_refuses_non_utf8_stdin(url: str, bots: Path) -> None:
    result = cli(url, bots, "chat", "echo", input=b"hi\n\xff\n")
    assert result.exit_code == 2
    assert "stdin line 2 is not valid UTF-8" in result.stderr


# -- janitor ------------------------------------------------------------------------------


def write_in_the_past(url: str, bots: Path, seconds_ago: float) -> None:
    """Entries written by a clock set in the past: by the real clock, the 10m ones have expired."""

    async def go() -> None:
        clock = FakeClock(start=time.time() - seconds_ago)
        async with await botmemory.open(url, clock=clock) as store:
            bot = store.bot("echo")
            for i in range(3):
                await bot.kvs.set(f"old/{i}", i, expiry="10m")
            await bot.kvs.set("kept", 1, expiry="1d")
            runtime = await botmemory.Runtime.open(store, bots)
            await runtime.converse("echo", user_id="u1", text="hi", conversation_id="c1")
            await runtime.close()

    asyncio.run(go())


def count_rows(url: str, ns: str) -> int:
    async def go() -> int:
        async with await botmemory.open(url) as store:
            live = await store.backend.count(ns, store.clock.now())
            expired = await store.backend.scan_expired(ns, "", store.clock.now(), 1000)
            return live + len(expired)

    return asyncio.run(go())


def test_janitor_once_without_bots_purges_expired(url: str, bots: Path, tmp_path: Path) -> None:
    write_in_the_past(url, bots, 3600)
    assert count_rows(url, "echo") == 4
    result = cli(url, tmp_path / "no-bots", "--json", "janitor", "--once")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["purged"] == 3
    assert count_rows(url, "echo") == 1
    assert count_rows(url, sessions_ns("echo")) == 1  # sessions are the runtime's to end


def test_janitor_once_with_bots_ends_timed_out_sessions(url: str, bots: Path) -> None:
    write_in_the_past(url, bots, 3600)
    result = cli(url, bots, "janitor", "--once")
    # the run went ahead for the bots that load; the broken one fails it (exit 2), reported once
    assert result.exit_code == 2, result.output
    assert "janitor run 1:" in result.stdout and "sessions_ended 1" in result.stdout and "purged 3" in result.stdout
    assert result.stderr.startswith("error: bot broken not mounted") and result.stderr.count("\n") == 1
    assert count_rows(url, sessions_ns("echo")) == 0


def test_janitor_loop_repeats(url: str, tmp_path: Path) -> None:
    result = cli(url, tmp_path / "no-bots", "--json", "janitor", "--loop", "--interval", "0.01", "--runs", "3")
    assert result.exit_code == 0, result.output
    reports = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(reports) == 3 and all(r["errors"] == 0 for r in reports)


@pytest.mark.parametrize("interval", ["0", "-1", "nan", "inf", "1e9"])
def test_janitor_bad_interval(url: str, tmp_path: Path, interval: str) -> None:
    result = cli(url, tmp_path, "janitor", "--loop", "--interval", interval)
    assert result.exit_code == 2


def test_janitor_loop_stops_on_ctrl_c(url: str, tmp_path: Path) -> None:
    """The real console script: SIGINT between runs stops the loop cleanly (exit 0)."""
    binary = Path(sys.executable).parent / "botmemory"
    args = [binary, "--store", url, "--bots", str(tmp_path / "none"), "janitor", "--loop", "--interval", "30"]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert process.stdout is not None
        first = process.stdout.readline()  # the first run's report: the loop is now sleeping
        assert first.startswith(b"janitor run 1:")
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    assert b"janitor stopped" in out
    assert b"Traceback" not in err


def test_cli_writes_follow_the_bots_retention_policies(url: str, bots: Path, tmp_path: Path) -> None:
    folder = bots / "shop-folder"
    (folder / "flows").mkdir(parents=True)
    (folder / "flows" / "main.yaml").write_text(FLOW)
    (folder / "bot.yaml").write_text(
        "id: shop\nretention:\n  policies:\n    user.*: {expire: 1h}\n    kvs:carts/*: {expire: 2h}\n"
    )
    assert cli(url, bots, "memory", "set", "shop", "user", "u1", "email", '"a@b.c"').exit_code == 0
    assert cli(url, bots, "kvs", "set", "shop", "carts/1", "[1]", "--expiry", "1d").exit_code == 0
    assert cli(url, tmp_path / "none", "memory", "set", "shop", "user", "u2", "email", '"d@e.f"').exit_code == 0
    with botmemory.open_sync(url) as store:
        kvs = store.bot("shop").kvs
        assert 3590 < kvs.ttl("storage/users/u1/email") <= 3600  # the policy's expiry
        assert 7190 < kvs.ttl("carts/1") <= 7200  # a longer explicit expiry is capped
        assert kvs.ttl("storage/users/u2/email") is None  # no --bots folder: no policy
    (folder / "bot.yaml").write_text("id: shop\nretention:\n  policies:\n    user.*: {expire: 0d}\n")
    refused = cli(url, bots, "memory", "set", "shop", "user", "u1", "email", '"x"')
    assert refused.exit_code == 2
    assert refused.stderr.startswith("error: ") and "shop-folder/bot.yaml" in refused.stderr
