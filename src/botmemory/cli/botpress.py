"""``botmemory import-botpress EXPORT.tgz`` and ``botmemory check DIR``.

``import-botpress`` unpacks a Botpress export into the bots folder (``--bots``)
safely (see ``botmemory.runtime.botpress.archive``) and says what it skipped
and whether the bot loads. ``check`` reads every bot folder of DIR (YAML
and Botpress) as ``serve`` would, without mounting anything or opening a
store, and lists per bot what loads and, for the others, every problem;
it exits 1 when a bot does not load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ..errors import InvalidInputError
from ..runtime.botpress import BotpressLoadError, is_botpress_folder, load_botpress_bot
from ..runtime.botpress.archive import import_export
from ..runtime.botpress.loader import claimed_id
from ..runtime.loader import load_bot
from ..runtime.yamlsource import BotLoadError
from .context import settings
from .output import Output, show

__all__ = ["check", "check_folder", "import_botpress"]


def check_folder(folder: Path) -> dict[str, Any] | None:
    """What ``check`` reports for one folder (None: not a bot folder)."""
    if (folder / "bot.yaml").is_file():
        kind = "botmemory"
        try:
            bot: Any = load_bot(folder)
        except BotLoadError as exc:
            return {"folder": folder.name, "id": folder.name, "kind": kind, "loads": False, "problems": [str(exc)]}
        return {
            "folder": folder.name,
            "id": bot.id,
            "kind": kind,
            "loads": True,
            "flows": len(bot.flows),
            "problems": [],
        }
    if is_botpress_folder(folder):
        try:
            bot = load_botpress_bot(folder)
        except BotpressLoadError as exc:
            return {
                "folder": folder.name,
                "id": claimed_id(folder),
                "kind": "botpress",
                "loads": False,
                "problems": list(exc.problems),
            }
        nodes = sum(len(flow.nodes) for flow in bot.bp_flows.values())
        return {
            "folder": folder.name,
            "id": bot.id,
            "kind": f"botpress v{bot.version}",
            "loads": True,
            "flows": len(bot.bp_flows),
            "nodes": nodes,
            "intents": len(bot.matcher.intents),
            "python": sorted([*bot.custom_actions, *(f"hook {h}" for h, fs in bot.bp_hooks.items() if fs)]),
            "problems": [],
        }
    return None


def _duplicates(results: list[dict[str, Any]]) -> None:
    """Two folders with one bot id: the second (in sorted order) is refused, naming the first."""
    seen: dict[str, str] = {}
    for result in results:
        bot_id = result.get("id")
        if bot_id is None:
            continue
        if bot_id in seen:
            result["loads"] = False
            result["problems"] = [f"bot id {bot_id!r} is already used by folder {seen[bot_id]}", *result["problems"]]
        else:
            seen[bot_id] = result["folder"]


def check(
    ctx: typer.Context,
    folder: str | None = typer.Argument(
        None, metavar="[DIR]", help="A bots folder, or one bot's folder (default: --bots)."
    ),
) -> None:
    """Say, per bot of DIR, whether it loads and, if not, every reason why (nothing is mounted)."""
    opts = settings(ctx)
    out = Output(opts.json)
    root = Path(folder if folder is not None else opts.bots_dir)
    if not root.is_dir():
        raise InvalidInputError(f"{root} is not a folder")
    single = check_folder(root)
    if single is not None:
        results = [single]
    else:
        results = [r for r in (check_folder(p) for p in sorted(root.iterdir()) if p.is_dir()) if r is not None]
        _duplicates(results)
    if out.json:
        out.data(results, pretty=True)
    else:
        if not results:
            out.text(f"no bot folders in {show(str(root))}")
        rows = [[r["folder"], r.get("id", "?"), r["kind"], "loads" if r["loads"] else "does not load"] for r in results]
        out.table(["folder", "id", "kind", "status"], rows, title=str(root))
        for r in results:
            if r["problems"]:
                out.text(f"{show(r['folder'])}:", style="bold red")
                for problem in r["problems"]:
                    out.text(f"  - {show(problem)}")
    if any(not r["loads"] for r in results):
        raise typer.Exit(1)


def import_botpress(
    ctx: typer.Context,
    archive: str = typer.Argument(..., metavar="EXPORT.tgz", help="A Botpress bot export."),
    name: str | None = typer.Option(None, "--name", metavar="FOLDER", help="Folder name (default: the bot id)."),
) -> None:
    """Unpack a Botpress export into the bots folder (--bots) safely, then check that it loads."""
    opts = settings(ctx)
    out = Output(opts.json)
    path = Path(archive)
    if not path.is_file():
        raise InvalidInputError(f"{archive}: no such file")
    report = import_export(path, opts.bots_dir, folder_name=name)
    result = check_folder(report.folder) or {"loads": False, "problems": ["not a bot folder"]}
    summary = {
        "bot_id": report.bot_id,
        "folder": str(report.folder),
        "files": report.files,
        "bytes": report.bytes,
        "skipped": report.skipped,
        "loads": result["loads"],
        "problems": result["problems"],
    }
    if out.json:
        out.data(summary, pretty=True)
        return
    out.text(
        f"imported {show(report.bot_id)} into {show(str(report.folder))}: {report.files} files, {report.bytes} bytes"
    )
    for item in report.skipped:
        out.text(f"skipped {show(item)}", style="yellow")
    if result["loads"]:
        out.text("the bot loads", style="green")
    else:
        out.text("the bot does not load yet:", style="red")
        for problem in result["problems"]:
            out.text(f"  {show(problem)}")
