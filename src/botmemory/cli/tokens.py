"""``botmemory token create|list|revoke``: API tokens of ``botmemory serve``.

Tokens live hashed in the store (``botmemory.http.state``), so a token made
here works at once on every server replica using that store, and a revoked
one stops at once. The token itself is printed once, at creation.
"""

from __future__ import annotations

from typing import Any

import typer

from ..http import state as server_state
from ..store import Store
from .context import run, settings
from .output import Output, iso_time, show

__all__ = ["app"]

app = typer.Typer(help="API tokens of 'botmemory serve': scoped to one bot, or admin.", no_args_is_help=True)


@app.command("create")
def create(
    ctx: typer.Context,
    bot: str | None = typer.Option(None, "--bot", metavar="BOT", help="A token that reaches only this bot."),
    admin: bool = typer.Option(False, "--admin", help="A token that reaches everything (and the admin UI)."),
    name: str | None = typer.Option(None, "--name", metavar="TEXT", help="A note to tell tokens apart."),
) -> None:
    """Create a token and print it (only now: the store keeps a hash)."""
    opts = settings(ctx)

    async def go(store: Store) -> tuple[str, Any]:
        return await server_state.create_token(store, bot=bot, admin=admin, name=name)

    token, info = run(ctx, go)
    out = Output(opts.json)
    if out.json:
        out.data({"token": token, **info.as_dict()})
        return
    sys_note = "admin" if info.is_admin else f"bot {show(info.bot or '')}"
    out.text(f"created token {info.id} ({sys_note}); it is shown only once:")
    out.text(token, style="bold")


@app.command("list")
def list_(ctx: typer.Context) -> None:
    """List tokens (ids and scopes; never the tokens themselves)."""
    opts = settings(ctx)
    tokens = run(ctx, server_state.list_tokens)
    out = Output(opts.json)
    if out.json:
        out.data([t.as_dict() for t in tokens])
        return
    rows = [[t.id, t.scope, show(t.bot or "-"), show(t.name or "-"), iso_time(t.created_at)] for t in tokens]
    out.table(["id", "scope", "bot", "name", "created"], rows, title=f"{len(rows)} token(s)")


@app.command("revoke")
def revoke(ctx: typer.Context, token_id: str = typer.Argument(..., metavar="ID")) -> None:
    """Revoke token ID (see 'token list'): it stops working at once, on every replica."""
    opts = settings(ctx)

    async def go(store: Store) -> None:
        await server_state.revoke_token(store, token_id)

    run(ctx, go)
    out = Output(opts.json)
    if out.json:
        out.data({"revoked": token_id})
    else:
        out.text(f"revoked token {token_id}")
