"""``botmemory user export|forget|hold|release`` and ``botmemory audit`` on a real SQLite file."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

import botmemory
from botmemory.cli import app
from botmemory.cli.audit import parse_when
from botmemory.cli.output import iso_time
from botmemory.errors import InvalidInputError


@pytest.fixture
def url(tmp_path: Path) -> str:
    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    with botmemory.open_sync(store_url) as store:
        bot = store.bot("shop")
        bot.memory.set_user_variable("u1", "email", "ada@example.com")
        bot.memory.set_user_variable("u2", "email", "bob@example.com")
        bot.users.link_conversation("u1", "c1")
        bot.memory.set_conversation_variable("c1", "topic", "refund")
        bot.kvs.set("storage/users/u1/cart", [1, 2])
    return store_url


def cli(url: str, *args: str) -> Result:
    return CliRunner().invoke(app, ["--store", url, *args])


def ok_json(url: str, *args: str) -> Any:
    result = cli(url, "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def user_vars(url: str, user: str) -> dict[str, Any]:
    with botmemory.open_sync(url) as store:
        items: dict[str, Any] = store.bot("shop").memory.user(user).items()
        return items


def test_export_is_json_either_way(url: str) -> None:
    data = ok_json(url, "user", "export", "shop", "u1")
    assert data["user"]["email"]["value"] == "ada@example.com"
    assert data["conversation"]["c1"]["topic"]["value"] == "refund"
    assert data["conversations"] == ["c1"]
    human = cli(url, "user", "export", "shop", "u1")
    assert human.exit_code == 0
    readable = json.loads(human.stdout)
    # for people, times are RFC 3339 (as forget and audit print them); values are left alone
    entry = data["conversation"]["c1"]["topic"]
    assert readable["conversation"]["c1"]["topic"] == {**entry, "modified_at": iso_time(entry["modified_at"])}
    # two exports, two real times (seconds may tick between them): same format, at most a minute apart
    exported_at = datetime.strptime(readable["time"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    assert abs(exported_at - data["time"]) < 60
    assert readable["user"]["email"]["value"] == "ada@example.com"
    assert "\n  " in human.stdout  # indented for people
    assert "bob@example.com" not in human.stdout


def test_forget_dry_run_then_for_real(url: str) -> None:
    dry = ok_json(url, "user", "forget", "shop", "u1", "--dry-run")
    assert dry["dry_run"] is True
    assert dry["counts"]["user"] == 2 and dry["counts"]["conversation"] == 1
    assert user_vars(url, "u1") == {"email": "ada@example.com", "cart": [1, 2]}
    receipt = cli(url, "user", "forget", "shop", "u1")
    assert receipt.exit_code == 0, receipt.output
    assert "forgot user u1 of bot shop" in receipt.stdout and "conversation" in receipt.stdout
    assert user_vars(url, "u1") == {}
    assert user_vars(url, "u2") == {"email": "bob@example.com"}
    with botmemory.open_sync(url) as store:
        assert store.bot("shop").memory.get_conversation_variable("c1", "topic") is None


def test_legal_hold_blocks_forget(url: str) -> None:
    assert ok_json(url, "user", "hold", "shop", "u1", "--reason", "case 42")["held"] is True
    for args in (["user", "forget", "shop", "u1"], ["user", "forget", "shop", "u1", "--dry-run"]):
        refused = cli(url, *args)
        assert refused.exit_code == 2
        assert refused.stderr.startswith("error: ") and "legal hold" in refused.stderr
        assert refused.stderr.count("\n") == 1
    assert user_vars(url, "u1")["email"] == "ada@example.com"
    released = cli(url, "user", "release", "shop", "u1")
    assert released.exit_code == 0 and "no longer held" in released.stdout
    again = cli(url, "user", "release", "shop", "u1")
    assert again.exit_code == 2 and "not under legal hold" in again.stderr
    assert cli(url, "user", "forget", "shop", "u1").exit_code == 0


@pytest.mark.parametrize(
    "args", [["export", "../x", "u1"], ["export", "shop", ""], ["forget", "shop", "a\nb"], ["hold", "shop", " u"]]
)
def test_user_bad_input(url: str, args: list[str]) -> None:
    result = cli(url, "user", *args)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1


def test_audit_after_forget(url: str) -> None:
    cli(url, "user", "hold", "shop", "u2")
    cli(url, "user", "forget", "shop", "u1")
    records = ok_json(url, "audit", "shop", "--user", "u1")
    assert {r["reason"] for r in records} == {"forget"}
    assert all("ada@example.com" not in json.dumps(r) for r in records)  # never the value
    assert {r["key"] for r in records} >= {"email", "*"}
    everything = ok_json(url, "audit", "shop")
    assert "hold" in {r["reason"] for r in everything}
    assert ok_json(url, "audit", "shop", "--limit", "1") == everything[:1]
    assert ok_json(url, "audit", "shop", "--since", "1h") == everything
    assert ok_json(url, "audit", "shop", "--until", "1h") == []
    future = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
    assert ok_json(url, "audit", "shop", "--since", future) == []
    table = cli(url, "audit", "shop")
    assert table.exit_code == 0 and "forget" in table.stdout and "records" in table.stdout


def test_parse_when() -> None:
    now = 1_800_000_000.0
    assert parse_when("1800000000", now) == 1_800_000_000.0
    assert parse_when("24h", now) == now - 86_400
    assert parse_when("PT30M", now) == now - 1800
    assert parse_when("2027-01-15T08:00:00Z", now) == 1_800_000_000.0
    assert parse_when("2027-01-15T10:00:00+02:00", now) == 1_800_000_000.0
    for bad in ["yesterday", "2027-01-15T08:00:00", "", "-5m", "12 parsecs", "nan"]:
        with pytest.raises(InvalidInputError):
            parse_when(bad, now)
