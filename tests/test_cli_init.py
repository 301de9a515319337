"""``botmemory init``: the starter bot shipped in the package, written into a bots folder."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from botmemory.cli import app

REPO_EXAMPLE = Path(__file__).resolve().parent.parent / "bots" / "example"


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def test_init_writes_the_starter_bot_and_it_chats(tmp_path: Path) -> None:
    runner = CliRunner()
    bots = tmp_path / "bots"
    done = runner.invoke(app, ["--bots", str(bots), "init"])
    assert done.exit_code == 0, done.output
    assert _files(bots / "example") == _files(REPO_EXAMPLE)  # the same bot as the repository's bots/example
    chat = runner.invoke(
        app, ["--store", f"sqlite:///{tmp_path / 'x.db'}", "--bots", str(bots), "chat", "example"], input="hi\nAda\n"
    )
    assert chat.exit_code == 0, chat.output
    assert "Nice to meet you, Ada!" in chat.output


def test_init_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["init", str(tmp_path)]).exit_code == 0
    (tmp_path / "example" / "bot.yaml").write_text("id: changed\n", encoding="utf-8")
    again = runner.invoke(app, ["init", str(tmp_path)])
    assert again.exit_code == 2
    assert "already exists" in again.output
    assert (tmp_path / "example" / "bot.yaml").read_text(encoding="utf-8") == "id: changed\n"
    forced = runner.invoke(app, ["init", str(tmp_path), "--force"])
    assert forced.exit_code == 0
    assert (tmp_path / "example" / "bot.yaml").read_bytes() == (REPO_EXAMPLE / "bot.yaml").read_bytes()


def test_init_into_a_file_is_bad_input(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x", encoding="utf-8")
    done = CliRunner().invoke(app, ["init", str(target)])
    assert done.exit_code == 2
    assert "not a folder" in done.output
