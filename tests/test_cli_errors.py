"""Bad input to the command line (rows C1, C2, K7): one line on stderr, exit 2 (or 1), nothing changed."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

import botmemory
from botmemory.cli import app

BIN = Path(sys.executable).parent / "botmemory"


def cli(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(app, list(args), env=env)


def one_error_line(result: Result) -> str:
    assert result.stderr.startswith("error: "), result.output
    assert result.stderr.count("\n") == 1 and result.stderr.endswith("\n"), result.stderr
    assert "Traceback" not in result.output
    return result.stderr


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"


@pytest.mark.parametrize(
    "args",
    [
        ["nosuch"],
        ["kvs", "nosuch"],
        ["--nosuch", "kvs", "ls", "b"],
        ["kvs", "get", "b", "k", "--nosuch"],
        ["kvs", "get", "b"],  # missing KEY
        ["kvs", "set", "b", "k", "1", "--if-version", "x"],
        ["kvs", "ls", "b", "--limit", "-1"],
        ["janitor"],  # neither --once nor --loop
        ["janitor", "--once", "--loop"],
        ["audit", "b", "--since", "yesterday-ish"],
        ["load", "--bot", "../x", "-"],
    ],
)
def test_usage_errors_exit_2_with_one_line(url: str, args: list[str]) -> None:
    result = cli("--store", url, *args)
    assert result.exit_code == 2
    one_error_line(result)
    assert result.stdout == ""


def test_non_utf8_argv_exits_2(url: str) -> None:
    bad = b"a\xffb".decode("utf-8", "surrogateescape")
    for args in (["kvs", "set", "b", bad, "1"], ["kvs", "set", "b", "k", f'"{bad}"'], [bad]):
        result = cli("--store", url, *args)
        assert result.exit_code == 2
        assert "not valid UTF-8" in one_error_line(result)
    with botmemory.open_sync(url) as store:
        assert store.bots() == []


def test_help_exits_0() -> None:
    result = cli("--help")
    assert result.exit_code == 0
    assert "kvs" in result.stdout and "dump" in result.stdout
    assert cli("kvs", "--help").exit_code == 0


def test_store_is_a_directory(tmp_path: Path) -> None:
    result = cli("--store", f"sqlite:///{tmp_path}", "kvs", "ls", "b")
    assert result.exit_code == 1
    assert "directory" in one_error_line(result)
    assert sorted(os.listdir(tmp_path)) == []


def test_store_is_not_sqlite_and_is_left_untouched(tmp_path: Path) -> None:
    foreign = tmp_path / "notes.txt"
    foreign.write_bytes(b"my precious notes\n" * 100)
    result = cli("--store", f"sqlite:///{foreign}", "kvs", "set", "b", "k", "1")
    assert result.exit_code == 1
    assert "not a SQLite database" in one_error_line(result)
    assert foreign.read_bytes() == b"my precious notes\n" * 100
    assert sorted(os.listdir(tmp_path)) == ["notes.txt"]


def test_store_is_someone_elses_sqlite_database(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY)")
    before = path.read_bytes()
    result = cli("--store", f"sqlite:///{path}", "kvs", "set", "b", "k", "1")
    assert result.exit_code == 1
    assert "other tables" in one_error_line(result)
    assert path.read_bytes() == before


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores file permissions")
def test_store_read_only(tmp_path: Path, url: str) -> None:
    assert cli("--store", url, "kvs", "set", "b", "k", "1").exit_code == 0
    path = tmp_path / "store.db"
    path.chmod(0o444)
    try:
        result = cli("--store", url, "kvs", "set", "b", "k", "2")
        assert result.exit_code == 1
        one_error_line(result)
    finally:
        path.chmod(0o644)


@pytest.mark.parametrize("store", ["nosuch://x", "sqlite://relative.db", "no-scheme", "sqlite:///x.db?mode=ro"])
def test_bad_store_urls(store: str) -> None:
    result = cli("--store", store, "kvs", "ls", "b")
    assert result.exit_code in (1, 2)
    one_error_line(result)


def test_store_from_environment(url: str, tmp_path: Path) -> None:
    assert cli("kvs", "set", "b", "k", "1", env={"BOTMEMORY_STORE": url}).exit_code == 0
    with botmemory.open_sync(url) as store:
        assert store.bot("b").kvs.get("k") == 1


def test_unreachable_server_is_a_failure_not_bad_input() -> None:
    result = cli("--store", "redis://127.0.0.1:1/0", "kvs", "ls", "b")
    assert result.exit_code == 1
    one_error_line(result)


# -- the real console script --------------------------------------------------------


def run_script(*args: str | bytes, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([BIN, *args], capture_output=True, cwd=cwd, timeout=60, check=False)


def test_console_script_exit_codes_and_stderr(tmp_path: Path) -> None:
    ok = run_script("--json", "kvs", "set", "b", "k", '{"a": 1}', cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "botmemory.db").exists()  # the default store: ./botmemory.db
    bad = run_script("kvs", "set", "b", b"a\xffb", "1", cwd=tmp_path)
    assert bad.returncode == 2
    assert bad.stderr.startswith(b"error: ") and bad.stderr.count(b"\n") == 1
    assert b"Traceback" not in bad.stderr
    missing = run_script("kvs", "get", "b", "nope", cwd=tmp_path)
    assert (missing.returncode, missing.stderr) == (2, b"error: key 'nope' does not exist\n")
    foreign = run_script("--store", f"sqlite:///{tmp_path}", "kvs", "ls", "b", cwd=tmp_path)
    assert foreign.returncode == 1 and foreign.stderr.count(b"\n") == 1


def test_python_dash_m(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [sys.executable, "-m", "botmemory", *args], capture_output=True, cwd=tmp_path, timeout=60, check=False
        )

    assert run("--version").stdout == f"botmemory {botmemory.__version__}\n".encode()
    result = run("--json", "kvs", "set", "b", "k", "1")
    assert result.returncode == 0, result.stderr
    result = run("--json", "kvs", "ls", "b")
    assert result.returncode == 0, result.stderr
    assert [entry["key"] for entry in json.loads(result.stdout)] == ["k"]


def test_json_flag_after_the_command(url: str) -> None:
    assert cli("--store", url, "kvs", "set", "b", "k", '"v"', "--json").stdout == '{"key":"k","version":1}\n'
    assert cli("--store", url, "kvs", "get", "b", "k", "--json").stdout.startswith('{"key":"k","value":"v"')
    # after "--" it is an argument again: here a (non-JSON) value, refused
    refused = cli("--store", url, "kvs", "set", "b", "k", "--", "--json")
    assert refused.exit_code == 2 and "not valid JSON" in refused.stderr


def test_store_url_from_a_non_utf8_environment(tmp_path: Path) -> None:
    bad = "sqlite:///" + os.fsdecode(bytes(tmp_path) + b"/\xff.db")
    result = cli("kvs", "ls", "b", env={"BOTMEMORY_STORE": bad})
    assert result.exit_code == 2
    assert "--store URL is not valid UTF-8" in one_error_line(result)
    assert os.listdir(tmp_path) == []


def test_locked_database_fails_fast_with_timeout(tmp_path: Path, url: str) -> None:
    assert cli("--store", url, "kvs", "set", "b", "k", "1").exit_code == 0
    holder = sqlite3.connect(tmp_path / "store.db", isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        started = time.monotonic()
        result = cli("--store", url, "--timeout", "0.5", "kvs", "set", "b", "k", "2")
        assert time.monotonic() - started < 5
        assert result.exit_code == 1
        assert "locked" in one_error_line(result) or "busy" in result.stderr
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with botmemory.open_sync(url) as store:
        assert store.bot("b").kvs.get("k") == 1


@pytest.mark.parametrize("timeout", ["0", "-1", "nan", "inf", "x"])
def test_bad_timeout(url: str, timeout: str) -> None:
    result = cli("--store", url, "--timeout", timeout, "kvs", "ls", "b")
    assert result.exit_code == 2
    one_error_line(result)


@pytest.mark.parametrize("args", [[], ["kvs"], ["memory"], ["user"]])
def test_group_without_a_command_shows_help_and_exits_2(args: list[str]) -> None:
    result = cli(*args)
    assert result.exit_code == 2
    assert "Usage" in result.stdout
    assert one_error_line(result) == "error: a command is needed (see the help above)\n"
