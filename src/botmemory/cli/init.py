"""``botmemory init [DIR]``: write the starter bot into a bots folder.

The starter bot ships inside the package (``botmemory/starter/example``), so
a ``pip install botmemory`` has a bot to chat with and to copy from, without
the repository.
"""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

import typer

from ..errors import InvalidInputError
from .context import settings

__all__ = ["STARTER_BOT", "init"]

#: The id (and folder name) of the starter bot.
STARTER_BOT = "example"


def _copy_tree(source: resources.abc.Traversable, target: Path) -> int:
    """Copy a package resource tree; returns the number of files written."""
    target.mkdir()
    written = 0
    for item in sorted(source.iterdir(), key=lambda i: i.name):
        if item.name == "__pycache__" or item.name.endswith(".pyc"):
            continue
        if item.is_dir():
            written += _copy_tree(item, target / item.name)
        else:
            (target / item.name).write_bytes(item.read_bytes())
            written += 1
    return written


def init(
    ctx: typer.Context,
    folder: str | None = typer.Argument(
        None, metavar="[DIR]", help="The bots folder to write into (default: --bots, ./bots)."
    ),
    force: bool = typer.Option(False, "--force", help="Replace an existing example folder."),
) -> None:
    """Write the starter bot (DIR/example) to chat with and copy from."""
    root = Path(folder if folder is not None else settings(ctx).bots_dir)
    if root.exists() and not root.is_dir():
        raise InvalidInputError(f"{root} exists and is not a folder")
    target = root / STARTER_BOT
    if target.exists() or target.is_symlink():
        if not force:
            raise InvalidInputError(f"{target} already exists (--force replaces it)")
        if target.is_symlink() or not target.is_dir():
            target.unlink()
        else:
            shutil.rmtree(target)
    root.mkdir(parents=True, exist_ok=True)
    source = resources.files("botmemory").joinpath("starter", STARTER_BOT)
    count = _copy_tree(source, target)
    typer.echo(f"wrote {count} files to {target}")
    typer.echo(f"chat with it: botmemory --bots {root} chat {STARTER_BOT}")
