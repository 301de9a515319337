"""``botmemory user export|forget|hold|release``: GDPR export and erasure, legal hold."""

from __future__ import annotations

from typing import Any

import typer

from ..errors import KeyNotFoundError
from ..store import Store
from .context import bot_with_policies, run, settings
from .output import Output, iso_time, show

__all__ = ["app"]

app = typer.Typer(help="Export or erase everything about a user; legal hold.", no_args_is_help=True)

BOT = typer.Argument(..., metavar="BOT")
USER = typer.Argument(..., metavar="USER")


@app.command("export")
def export(ctx: typer.Context, bot: str = BOT, user: str = USER) -> None:
    """Print every live piece of data about USER as JSON (stdout)."""
    opts = settings(ctx)

    async def go(store: Store) -> Any:
        return await bot_with_policies(store, bot, opts).users.export(user)

    data = run(ctx, go, create=False)
    # JSON either way: an export is meant to be saved. For people (the default)
    # times are RFC 3339, as in every other command's output; --json keeps the
    # library's epoch seconds, compact, for scripts.
    Output(opts.json).data(data if opts.json else _readable_times(data), pretty=not opts.json)


def _entry_times(entry: Any) -> Any:
    if not isinstance(entry, dict):
        return entry
    return {k: iso_time(v) if k in ("expires_at", "modified_at") and v is not None else v for k, v in entry.items()}


def _readable_times(export: dict[str, Any]) -> dict[str, Any]:
    """The export with its times (never the values' contents) as RFC 3339 UTC strings."""
    out = dict(export)
    out["time"] = iso_time(export.get("time"))
    for part in ("user", "kvs"):
        if isinstance(export.get(part), dict):
            out[part] = {name: _entry_times(e) for name, e in export[part].items()}
    if isinstance(export.get("conversation"), dict):
        out["conversation"] = {
            cid: {name: _entry_times(e) for name, e in variables.items()} if isinstance(variables, dict) else variables
            for cid, variables in export["conversation"].items()
        }
    if isinstance(export.get("sessions"), dict):
        out["sessions"] = {
            cid: {k: iso_time(v) if k in ("started_at", "last_activity") else v for k, v in session.items()}
            if isinstance(session, dict) else session
            for cid, session in export["sessions"].items()
        }
    return out


@app.command("forget")
def forget(
    ctx: typer.Context,
    bot: str = BOT,
    user: str = USER,
    dry_run: bool = typer.Option(False, "--dry-run", help="Count what would be deleted; delete nothing."),
) -> None:
    """Delete everything about USER and end their sessions; prints the receipt."""
    opts = settings(ctx)
    out = Output(opts.json)

    async def go(store: Store) -> Any:
        return await bot_with_policies(store, bot, opts).users.forget(user, dry_run=dry_run)

    receipt: dict[str, Any] = run(ctx, go, create=False)
    if out.json:
        out.data(receipt)
        return
    counts = receipt.get("counts", {})
    title = f"{'would forget' if dry_run else 'forgot'} user {show(user)} of bot {show(bot)}"
    out.table(["scope", "count"], [[show(str(k)), str(v)] for k, v in counts.items()], title=title)
    out.text(f"time: {iso_time(receipt.get('time'))}", style="dim")


@app.command("hold")
def hold(
    ctx: typer.Context,
    bot: str = BOT,
    user: str = USER,
    reason: str | None = typer.Option(None, "--reason", metavar="TEXT", help="Why (kept with the hold)."),
) -> None:
    """Put USER under legal hold: nothing of theirs is deleted until released."""
    opts = settings(ctx)
    out = Output(opts.json)

    async def go(store: Store) -> None:
        await bot_with_policies(store, bot, opts).users.hold(user, reason=reason)

    run(ctx, go)
    if out.json:
        out.data({"bot": bot, "user": user, "held": True})
    else:
        out.text(f"user {show(user)} of bot {show(bot)} is under legal hold")


@app.command("release")
def release(ctx: typer.Context, bot: str = BOT, user: str = USER) -> None:
    """Release USER's legal hold (exit 2 when they were not held)."""
    opts = settings(ctx)
    out = Output(opts.json)

    async def go(store: Store) -> None:
        if not await bot_with_policies(store, bot, opts).users.release(user):
            raise KeyNotFoundError(f"user {user!r} of bot {bot!r} is not under legal hold")

    run(ctx, go, create=False)
    if out.json:
        out.data({"bot": bot, "user": user, "held": False})
    else:
        out.text(f"user {show(user)} of bot {show(bot)} is no longer held")
