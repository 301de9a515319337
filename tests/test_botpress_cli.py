"""``botmemory import-botpress`` (safe unpacking), ``botmemory check``, and chat with a Botpress bot."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from botmemory.cli import app
from botmemory.errors import InvalidInputError
from botmemory.runtime.botpress.archive import import_export
from botpress_bots import flow, node, texts, write_bp_bot


def _bot(root: Path) -> Path:
    flows = {
        "main.flow.json": flow(
            "a",
            node(
                "a",
                ["say #!builtin_text-a"],
                ['builtin/setVariable {"type":"user","name":"name","value":"{{event.payload.text}}"}'],
                [("true", "b")],
            ),
            node("b", ["say #!builtin_text-b"], None, [("true", "END")]),
        )
    }
    content = {"builtin_text": texts(("builtin_text-a", "Your name?"), ("builtin_text-b", "Hi {{user.name}}"))}
    return write_bp_bot(root, "hello-bot", flows=flows, content=content)


def _export(folder: Path, archive: Path, extra: list[tuple[tarfile.TarInfo, bytes | None]] = ()) -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                tar.add(path, arcname=path.relative_to(folder).as_posix())
        for info, data in extra:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return archive


def test_import_check_and_chat(tmp_path: Path) -> None:
    archive = _export(_bot(tmp_path / "src"), tmp_path / "bot_hello-bot_1700000000000.tgz")
    bots = tmp_path / "bots"
    runner = CliRunner()
    done = runner.invoke(app, ["--bots", str(bots), "import-botpress", str(archive)])
    assert done.exit_code == 0, done.output
    assert "the bot loads" in done.output
    assert (bots / "hello-bot" / "flows" / "main.flow.json").is_file()
    check = runner.invoke(app, ["--json", "check", str(bots)])
    assert check.exit_code == 0, check.output
    assert json.loads(check.output)[0]["loads"] is True
    chat = runner.invoke(
        app, ["--store", f"sqlite:///{tmp_path / 'x.db'}", "--bots", str(bots), "chat", "hello-bot"], input="hi\nAda\n"
    )
    assert chat.exit_code == 0, chat.output
    assert "Your name?" in chat.output and "Hi Ada" in chat.output
    again = runner.invoke(app, ["--bots", str(bots), "import-botpress", str(archive)])
    assert again.exit_code == 2 and "already exists" in again.output


def test_check_says_why_a_bot_does_not_load(tmp_path: Path) -> None:
    folder = _bot(tmp_path)
    (folder / "actions").mkdir()
    (folder / "actions" / "weather.js").write_text("return 1")
    main = folder / "flows" / "main.flow.json"  # a flow calls it (a JavaScript action no flow calls is inert)
    main.write_text(main.read_text().replace('"say #!builtin_text-b"', '"say #!builtin_text-b", "weather {}"'))
    result = CliRunner().invoke(app, ["check", str(tmp_path)])
    assert result.exit_code == 1
    assert "actions/weather.js" in result.output and "does not load" in result.output


def _member(
    name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"x", link: str = ""
) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, data if kind == tarfile.REGTYPE else None


def test_unsafe_members_are_skipped_and_reported(tmp_path: Path) -> None:
    extra = [
        _member("../evil.txt"),
        _member("/abs/evil.txt"),
        _member("flows/link.flow.json", tarfile.SYMTYPE, link="/etc/passwd"),
        _member("hard", tarfile.LNKTYPE, link="bot.config.json"),
        _member("dev", tarfile.CHRTYPE),
        _member("fifo", tarfile.FIFOTYPE),
    ]
    archive = _export(_bot(tmp_path / "src"), tmp_path / "x.tgz", extra)
    report = import_export(archive, tmp_path / "bots")
    assert len(report.skipped) == 6
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "bots" / "evil.txt").exists()
    names = {p.relative_to(report.folder).as_posix() for p in report.folder.rglob("*")}
    assert "flows/link.flow.json" not in names and "hard" not in names and "dev" not in names


def test_refused_archives_leave_nothing(tmp_path: Path) -> None:
    bots = tmp_path / "bots"
    not_a_bot = tmp_path / "nb.tgz"
    with tarfile.open(not_a_bot, "w:gz") as tar:
        info, data = _member("readme.txt")
        tar.addfile(info, io.BytesIO(data or b""))
    with pytest.raises(InvalidInputError, match=r"bot\.config\.json"):
        import_export(not_a_bot, bots)
    (tmp_path / "junk.tgz").write_bytes(b"not gzip")
    with pytest.raises(InvalidInputError, match="readable"):
        import_export(tmp_path / "junk.tgz", bots)
    huge = tmp_path / "huge.tgz"
    with tarfile.open(huge, "w:gz") as tar:  # a zip bomb: 101 MB of zeros compresses to ~100 KB
        config = json.dumps({"id": "big"}).encode()
        info = tarfile.TarInfo("bot.config.json")
        info.size = len(config)
        tar.addfile(info, io.BytesIO(config))
        info = tarfile.TarInfo("media/zeros.bin")
        info.size = 101 * 1024 * 1024
        tar.addfile(info, io.BytesIO(bytes(info.size)))
    with pytest.raises(InvalidInputError, match="100 MB"):
        import_export(huge, bots)
    assert not bots.exists() or list(bots.iterdir()) == []


async def test_a_botpress_bot_over_the_http_api(tmp_path: Path) -> None:
    import botmemory
    from http_app import running_app

    _bot(tmp_path)
    async with await botmemory.open("memory://") as store, running_app(store, bots_dir=str(tmp_path)) as api:
        first = await api.call("POST", "/api/v1/bots/hello-bot/converse/u1", json={"text": "hi"})
        assert first.status_code == 200, first.text
        body = first.json()
        assert [r["text"] for r in body["responses"]] == ["Your name?"]
        second = await api.call(
            "POST",
            "/api/v1/bots/hello-bot/converse/u1",
            json={"text": "Ada", "conversation_id": body["conversation_id"]},
        )
        assert [r["text"] for r in second.json()["responses"]] == ["Hi Ada"]
        choice = write_bp_bot(
            tmp_path,
            "choice-bot",
            flows={"main.flow.json": flow("a", node("a", ["say #!builtin_single-choice-c", "say #!builtin_card-k"]))},
            content={
                "builtin_single-choice": [
                    {
                        "id": "builtin_single-choice-c",
                        "formData": {"text$en": "Pick", "choices$en": [{"title": "Red", "value": "red"}]},
                    }
                ],
                "builtin_card": [{"id": "builtin_card-k", "formData": {"title$en": "A card", "image$en": "/x.png"}}],
            },
        )
        assert choice.is_dir()
        exported = await api.call("GET", "/api/v1/bots/hello-bot/users/u1/export")
        assert exported.status_code == 200 and "Ada" in exported.text  # Botpress memory is exported like any other
    async with await botmemory.open("memory://") as store, running_app(store, bots_dir=str(tmp_path)) as api:
        replies = (await api.call("POST", "/api/v1/bots/choice-bot/converse/u1", json={"text": "hi"})).json()
        assert replies["responses"] == [  # the fields of each reply type reach HTTP clients
            {"type": "single-choice", "text": "Pick", "choices": [{"title": "Red", "value": "red"}]},
            {"type": "card", "text": "", "title": "A card", "image": "/x.png"},
        ]
