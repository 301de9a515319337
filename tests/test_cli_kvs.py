"""``botmemory kvs`` and ``botmemory memory`` through typer's CliRunner, on a real SQLite file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

import botmemory
from botmemory.cli import app
from botmemory.keys import encode_component


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


def cli(url: str, *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(app, ["--store", url, *args], input=input)


def ok_json(url: str, *args: str) -> Any:
    result = cli(url, "--json", *args)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def stored(url: str, bot: str, key: str) -> Any:
    with botmemory.open_sync(url) as store:
        kvs = store.global_kvs if bot == "@global" else store.bot(bot).kvs
        return kvs.get_entry(key)


def test_set_get_roundtrip_keeps_value_and_version(url: str) -> None:
    assert ok_json(url, "kvs", "set", "shop", "orders/42", '{"total": 12.5, "items": [1, 2]}') == {
        "key": "orders/42",
        "version": 1,
    }
    assert ok_json(url, "kvs", "set", "shop", "orders/42", '{"total": 13}')["version"] == 2
    got = ok_json(url, "kvs", "get", "shop", "orders/42")
    assert got["value"] == {"total": 13}
    assert got["version"] == 2
    assert got["expires_at"] is None and got["ttl"] is None
    entry = stored(url, "shop", "orders/42")
    assert entry.value == {"total": 13} and entry.version == 2


def test_human_get_prints_the_json_value(url: str) -> None:
    cli(url, "kvs", "set", "shop", "k", '{"a": [1, "x"]}')
    result = cli(url, "kvs", "get", "shop", "k")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {"a": [1, "x"]}


def test_path_set_and_get(url: str) -> None:
    cli(url, "kvs", "set", "shop", "profile", '{"address": {"city": "Paris"}}')
    assert ok_json(url, "kvs", "set", "shop", "profile", '"Lyon"', "--path", "address.city")["version"] == 2
    assert ok_json(url, "kvs", "get", "shop", "profile", "--path", "address.city")["value"] == "Lyon"
    missing = cli(url, "kvs", "get", "shop", "profile", "--path", "address.zip")
    assert missing.exit_code == 2
    assert "leads nowhere" in missing.stderr


def test_expiry_keep_ttl_and_ttl(url: str) -> None:
    cli(url, "kvs", "set", "shop", "cart", "[1]", "--expiry", "10m")
    left = ok_json(url, "kvs", "ttl", "shop", "cart")["ttl"]
    assert 590 < left <= 600
    cli(url, "kvs", "set", "shop", "cart", "[1, 2]", "--keep-ttl")
    assert 590 < ok_json(url, "kvs", "ttl", "shop", "cart")["ttl"] <= 600
    cli(url, "kvs", "set", "shop", "cart", "[1, 2, 3]")  # a plain set drops the expiry
    assert ok_json(url, "kvs", "ttl", "shop", "cart")["ttl"] is None
    human = cli(url, "kvs", "ttl", "shop", "cart")
    assert human.exit_code == 0 and human.stdout.strip() == "never"


@pytest.mark.parametrize("expiry", ["0", "-5m", "30", "5 fortnights", "nan", "1e309", "5m; DROP TABLE kv"])
def test_bad_expiry_exits_2_and_writes_nothing(url: str, expiry: str) -> None:
    result = cli(url, "kvs", "set", "shop", "k", "1", "--expiry", expiry)
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert stored(url, "shop", "k") is None


def test_if_version_compare_and_set(url: str) -> None:
    assert ok_json(url, "kvs", "set", "shop", "k", "1", "--if-version", "0")["version"] == 1
    conflict = cli(url, "kvs", "set", "shop", "k", "2", "--if-version", "0")
    assert conflict.exit_code == 2
    assert "version 1" in conflict.stderr
    assert stored(url, "shop", "k").value == 1
    assert ok_json(url, "kvs", "set", "shop", "k", "2", "--if-version", "1")["version"] == 2


@pytest.mark.parametrize(
    "value",
    ["{bad", "NaN", "Infinity", '{"a": 1, "a": 2}', "[" * 5000 + "]" * 5000, "9223372036854775808", "", "1 2"],
)
def test_bad_value_json_exits_2(url: str, value: str) -> None:
    result = cli(url, "kvs", "set", "shop", "k", value)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert stored(url, "shop", "k") is None


def test_negative_number_after_double_dash(url: str) -> None:
    assert ok_json(url, "kvs", "set", "shop", "n", "--", "-5")["version"] == 1
    assert stored(url, "shop", "n").value == -5


def test_null_is_a_stored_value(url: str) -> None:
    cli(url, "kvs", "set", "shop", "nothing", "null")
    got = ok_json(url, "kvs", "get", "shop", "nothing")
    assert got["value"] is None and got["version"] == 1


def test_del_and_missing_keys(url: str) -> None:
    cli(url, "kvs", "set", "shop", "k", "1")
    assert ok_json(url, "kvs", "del", "shop", "k") == {"key": "k", "deleted": True}
    for command in (["get"], ["ttl"], ["del"]):
        result = cli(url, "kvs", *command, "shop", "k")
        assert result.exit_code == 2
        assert result.stderr == "error: key 'k' does not exist\n"


def test_ls_lists_literal_prefix_in_order_with_limit(url: str) -> None:
    for key in ["a%b", "a_c", "ab", "b", "a%"]:
        cli(url, "kvs", "set", "shop", key, "1")
    listed = [e["key"] for e in ok_json(url, "kvs", "ls", "shop", "a%")]
    assert listed == ["a%", "a%b"]  # % is literal, not a wildcard
    assert [e["key"] for e in ok_json(url, "kvs", "ls", "shop")] == ["a%", "a%b", "a_c", "ab", "b"]
    assert [e["key"] for e in ok_json(url, "kvs", "ls", "shop", "--limit", "2")] == ["a%", "a%b"]
    human = cli(url, "kvs", "ls", "shop")
    assert human.exit_code == 0 and "a_c" in human.stdout and "5 keys" in human.stdout
    assert cli(url, "kvs", "ls", "shop", "--limit", "0").exit_code == 2


def test_bots_are_isolated_and_global_kvs_is_separate(url: str) -> None:
    cli(url, "kvs", "set", "a", "k", '"of a"')
    cli(url, "kvs", "set", "@global", "k", '"server-wide"')
    assert ok_json(url, "kvs", "get", "a", "k")["value"] == "of a"
    assert ok_json(url, "kvs", "get", "@global", "k")["value"] == "server-wide"
    assert cli(url, "kvs", "get", "b", "k").exit_code == 2
    assert stored(url, "@global", "k").value == "server-wide"


@pytest.mark.parametrize("bot", ["__global__", "../x", "a/b", "", "global"])
def test_bad_bot_ids(url: str, bot: str) -> None:
    result = cli(url, "kvs", "set", bot, "k", "1")
    if bot == "global":  # a plain bot id, distinct from @global
        assert result.exit_code == 0
        assert stored(url, "@global", "k") is None
    else:
        assert result.exit_code == 2
        assert "invalid bot id" in result.stderr


@pytest.mark.parametrize("key", ["", " a", "a\nb", "a\x00b", "a\u2028b", "\t"])
def test_bad_keys_exit_2(url: str, key: str) -> None:
    result = cli(url, "kvs", "set", "shop", key, "1")
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1  # the key's newline never reaches stderr raw


def test_invisible_characters_are_escaped_in_human_output(url: str) -> None:
    key = "evil\u202etxt.exe\u200b"
    cli(url, "kvs", "set", "shop", key, '"x\u202ey"')
    listing = cli(url, "kvs", "ls", "shop")
    assert "\u202e" not in listing.stdout and "\u200b" not in listing.stdout
    assert "\\u202e" in listing.stdout
    value = cli(url, "kvs", "get", "shop", key)
    assert "\u202e" not in value.stdout
    assert json.loads(value.stdout) == "x\u202ey"  # still the same JSON
    as_json = cli(url, "--json", "kvs", "ls", "shop")
    assert "\u202e" not in as_json.stdout
    assert json.loads(as_json.stdout)[0]["key"] == key


# -- memory ---------------------------------------------------------------------


def test_memory_three_scopes(url: str) -> None:
    assert ok_json(url, "memory", "set", "b1", "user", "u/1", "firstname", '"Ada"')["version"] == 1
    assert ok_json(url, "memory", "set", "b1", "conversation", "c1", "topic", '"x"', "--expiry", "10m")["version"] == 1
    assert ok_json(url, "memory", "set", "b1", "global", "visits", "3")["version"] == 1
    assert ok_json(url, "memory", "get", "b1", "user", "u/1", "firstname")["value"] == "Ada"
    assert ok_json(url, "memory", "get", "b1", "conversation", "c1", "topic")["value"] == "x"
    assert ok_json(url, "memory", "get", "b1", "global", "visits")["value"] == 3
    assert ok_json(url, "memory", "ls", "b1", "user", "u/1") == {"firstname": "Ada"}
    assert ok_json(url, "memory", "ls", "b1", "global") == {"visits": 3}
    with botmemory.open_sync(url) as store:
        memory = store.bot("b1").memory
        assert memory.get_user_variable("u/1", "firstname") == "Ada"
        assert 590 < store.bot("b1").kvs.ttl("storage/conversation/c1/topic") <= 600
    # the id is percent-encoded: it reaches no other user's data
    assert cli(url, "memory", "get", "b1", "user", "u", "firstname").exit_code == 2
    assert ok_json(url, "memory", "del", "b1", "user", "u/1", "firstname")["deleted"] is True
    gone = cli(url, "memory", "get", "b1", "user", "u/1", "firstname")
    assert gone.exit_code == 2 and gone.stderr == "error: user 'u/1' variable 'firstname' is not set\n"
    human = cli(url, "memory", "ls", "b1", "global")
    assert human.exit_code == 0 and "visits" in human.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["get", "b1", "user", "firstname"],  # owner missing
        ["get", "b1", "global", "u", "name"],  # global takes no owner
        ["get", "b1", "team", "x", "y"],  # unknown scope
        ["set", "b1", "user", "u", "name"],  # value missing
        ["set", "b1", "user", "u", "name", "{"],  # bad JSON
        ["ls", "b1", "user"],
        ["set", "b1", "user", "u", "bad\nname", "1"],
    ],
)
def test_memory_bad_arguments_exit_2(url: str, args: list[str]) -> None:
    result = cli(url, "memory", *args)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    with botmemory.open_sync(url) as store:
        assert list(store.bot("b1").kvs.keys()) == []


ODD_BUT_VALID = [
    "café",  # K8: NFC ...
    "cafe\u0301",  # ... and NFD are two keys
    "User",  # K9: no case folding
    "user",
    "\u212a",
    "alice/../bob",  # K11
    "a:b",
    "'; DROP TABLE kv;--",  # K13
    "x') OR '1'='1",
    '" OR 1=1',
    "%",  # K12
    "_",
    "[a]",
    "\\",
]


def test_odd_keys_are_stored_exactly_and_kept_apart(url: str) -> None:
    for i, key in enumerate(ODD_BUT_VALID):
        assert ok_json(url, "kvs", "set", "shop", key, str(i))["version"] == 1
    for i, key in enumerate(ODD_BUT_VALID):
        assert ok_json(url, "kvs", "get", "shop", key)["value"] == i
    assert sorted(e["key"] for e in ok_json(url, "kvs", "ls", "shop")) == sorted(ODD_BUT_VALID)
    assert [e["key"] for e in ok_json(url, "kvs", "ls", "shop", "%")] == ["%"]


@pytest.mark.parametrize("user", [".", "..", "__proto__", "u/x", "u%2Fx", "%", "a b"])
def test_odd_user_ids_reach_only_their_own_variables(url: str, user: str) -> None:
    assert ok_json(url, "memory", "set", "shop", "user", user, "name", json.dumps(user))["version"] == 1
    assert ok_json(url, "memory", "ls", "shop", "user", user) == {"name": user}
    with botmemory.open_sync(url) as store:
        assert list(store.bot("shop").kvs.keys()) == [f"storage/users/{encode_component(user)}/name"]
