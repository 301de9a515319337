"""``botmemory memory get|set|del|ls``: dialog memory in its three scopes.

::

    memory get BOT user USER NAME            memory get BOT global NAME
    memory set BOT conversation CONV NAME VALUE_JSON [--expiry E]
    memory del BOT user USER NAME
    memory ls  BOT user USER                 memory ls BOT global
"""

from __future__ import annotations

from typing import Any, Final

import typer

from ..errors import InvalidInputError, KeyNotFoundError
from ..memory import Scope
from ..store import Store
from .arguments import parse_json_arg, value_text
from .context import Settings, run, settings, writing_bot
from .output import Output, print_note, show, to_json

__all__ = ["app"]

app = typer.Typer(help="Dialog memory: user, conversation and global variables.", no_args_is_help=True)

_MISSING: Final = object()
_SCOPES: Final = ("user", "conversation", "global")

BOT = typer.Argument(..., metavar="BOT")
SCOPE = typer.Argument(..., metavar="SCOPE", help="user, conversation or global.")
OWNER_NAME = typer.Argument(..., metavar="[OWNER] NAME", help="USER or CONV id (not for global), then NAME.")
OWNER_NAME_VALUE = typer.Argument(
    ..., metavar="[OWNER] NAME VALUE_JSON", help="VALUE_JSON: JSON text; - reads it from stdin, @FILE from a file."
)
OWNER = typer.Argument(None, metavar="[OWNER]", help="USER or CONV id (not for global).")


def _split(scope: str, args: list[str], tail: tuple[str, ...]) -> tuple[str | None, list[str]]:
    """Split ``[OWNER] *tail`` by scope: user and conversation take an owner id, global none."""
    if scope not in _SCOPES:
        raise InvalidInputError(f"unknown scope {scope!r}: expected user, conversation or global")
    wanted = (("USER" if scope == "user" else "CONVERSATION"),) if scope != "global" else ()
    names = wanted + tail
    if len(args) != len(names):
        raise InvalidInputError(f"{scope} scope takes {' '.join(names) or 'nothing more'}, got {len(args)} argument(s)")
    return (args[0], args[1:]) if wanted else (None, args)


def _scope(store: Store, bot: str, scope: str, owner: str | None) -> Scope:
    return store.bot(bot).memory.scope(scope, owner)


async def _writing_scope(
    store: Store, bot: str, scope: str, owner: str | None, opts: Settings
) -> tuple[Scope, str | None]:
    """The scope of a bot that follows its retention policies, and the note of ``context.writing_bot``."""
    handle, note = await writing_bot(store, bot, opts)
    return handle.memory.scope(scope, owner), note


def _where(scope: str, owner: str | None, name: str | None = None, *, quote: bool = False) -> str:
    fmt = repr if quote else show
    place = scope if owner is None else f"{scope} {fmt(owner)}"
    return place if name is None else f"{place} variable {fmt(name)}"


@app.command("get")
def get(
    ctx: typer.Context,
    bot: str = BOT,
    scope: str = SCOPE,
    args: list[str] = OWNER_NAME,
) -> None:
    """Print a variable: BOT user USER NAME | BOT conversation CONV NAME | BOT global NAME."""
    out = Output(settings(ctx).json)
    owner, (name,) = _split(scope, args, ("NAME",))

    async def go(store: Store) -> Any:
        value = await _scope(store, bot, scope, owner).get(name, _MISSING)
        if value is _MISSING:
            raise KeyNotFoundError(f"{_where(scope, owner, name, quote=True)} is not set")
        return value

    value = run(ctx, go, create=False)
    if out.json:
        out.data({"scope": scope, "owner": owner, "name": name, "value": value})
    else:
        out.pretty(value)


@app.command("set")
def set_(
    ctx: typer.Context,
    bot: str = BOT,
    scope: str = SCOPE,
    args: list[str] = OWNER_NAME_VALUE,
    expiry: str | None = typer.Option(None, "--expiry", metavar="E", help="30s, 10m, 1.5h, 30 days, never…"),
) -> None:
    """Set a variable to VALUE_JSON; prints its new version."""
    opts = settings(ctx)
    out = Output(opts.json)
    owner, (name, raw) = _split(scope, args, ("NAME", "VALUE_JSON"))
    value = parse_json_arg(value_text(raw), "VALUE_JSON")

    async def go(store: Store) -> tuple[int, str | None]:
        handle, note = await _writing_scope(store, bot, scope, owner, opts)
        return await handle.set(name, value, expiry), note

    version, note = run(ctx, go)
    print_note(note)
    if out.json:
        out.data({"scope": scope, "owner": owner, "name": name, "version": version})
    else:
        out.text(f"{_where(scope, owner, name)}: version {version}")


@app.command("del")
def delete(
    ctx: typer.Context,
    bot: str = BOT,
    scope: str = SCOPE,
    args: list[str] = OWNER_NAME,
) -> None:
    """Delete a variable (exit 2 when it is not set)."""
    out = Output(settings(ctx).json)
    owner, (name,) = _split(scope, args, ("NAME",))

    async def go(store: Store) -> None:
        if not await _scope(store, bot, scope, owner).delete(name):
            raise KeyNotFoundError(f"{_where(scope, owner, name, quote=True)} is not set")

    run(ctx, go, create=False)
    if out.json:
        out.data({"scope": scope, "owner": owner, "name": name, "deleted": True})
    else:
        out.text(f"deleted {_where(scope, owner, name)}")


@app.command("ls")
def ls(
    ctx: typer.Context,
    bot: str = BOT,
    scope: str = SCOPE,
    args: list[str] | None = OWNER,
) -> None:
    """List the live variables of a scope: BOT user USER | BOT conversation CONV | BOT global."""
    out = Output(settings(ctx).json)
    owner, _ = _split(scope, list(args or []), ())

    async def go(store: Store) -> dict[str, Any]:
        return await _scope(store, bot, scope, owner).items()

    items = run(ctx, go, create=False)
    if out.json:
        out.data(items)
        return
    rows = [[show(name), to_json(value)] for name, value in items.items()]
    out.table(["name", "value"], rows, title=_where(scope, owner))
