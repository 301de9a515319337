"""``botmemory kvs get|set|del|ls|ttl``: a bot's KVS, or ``@global`` for the server-wide one."""

from __future__ import annotations

from typing import Any, Final

import typer

from ..codec import decode
from ..errors import InvalidInputError, KeyNotFoundError
from ..kvs import KVS, Entry
from ..store import Store
from .arguments import parse_json_arg, value_text
from .context import GLOBAL_BOT, kvs_for, run, settings, writing_kvs
from .output import Output, human_ttl, print_note, show, to_json

__all__ = ["app"]

app = typer.Typer(
    help=f"The KVS of a bot; {GLOBAL_BOT} instead of BOT for the server-wide KVS.",
    no_args_is_help=True,
)

_MISSING: Final = object()

BOT = typer.Argument(..., metavar="BOT", help=f"Bot id, or {GLOBAL_BOT} for the server-wide KVS.")
KEY = typer.Argument(..., metavar="KEY")
PATH = typer.Option(None, "--path", metavar="P", help="JSON path inside the value, e.g. profile.city or items[0].")


def _entry_json(entry: Entry, now: float) -> dict[str, Any]:
    return {
        "key": entry.key,
        "value": entry.value,
        "version": entry.version,
        "expires_at": entry.expires_at,
        "ttl": None if entry.expires_at is None else entry.expires_at - now,
        "modified_at": entry.modified_at,
    }


async def _entry(kvs: KVS, key: str) -> Entry:
    entry = await kvs.get_entry(key)
    if entry is None:
        raise KeyNotFoundError(f"key {key!r} does not exist")
    return entry


@app.command("get")
def get(ctx: typer.Context, bot: str = BOT, key: str = KEY, path: str | None = PATH) -> None:
    """Print the value at KEY (or the part at --path)."""
    out = Output(settings(ctx).json)

    async def go(store: Store) -> None:
        kvs = kvs_for(store, bot)
        entry = await _entry(kvs, key)
        if path is not None:
            part = await kvs.get(key, path, default=_MISSING)
            if part is _MISSING:
                raise KeyNotFoundError(f"path {path!r} leads nowhere in key {key!r}")
            if out.json:
                out.data({"key": key, "path": path, "value": part, "version": entry.version})
            else:
                out.pretty(part)
            return
        if out.json:
            out.data(_entry_json(entry, store.clock.now()))
        else:
            out.pretty(entry.value)

    run(ctx, go, create=False)


@app.command("set")
def set_(
    ctx: typer.Context,
    bot: str = BOT,
    key: str = KEY,
    value: str = typer.Argument(
        ...,
        metavar="VALUE_JSON",
        help='JSON text: 42, "text", {"a": 1}, null; - reads it from stdin, @FILE from a file (for large values).',
    ),
    path: str | None = PATH,
    expiry: str | None = typer.Option(None, "--expiry", metavar="E", help="30s, 10m, 1.5h, 30 days, PT10M, never…"),
    keep_ttl: bool = typer.Option(False, "--keep-ttl", help="Keep the key's current expiry."),
    if_version: int | None = typer.Option(
        None, "--if-version", metavar="N", help="Write only if the key is at version N (0: only if absent)."
    ),
) -> None:
    """Store VALUE_JSON at KEY; prints the new version."""
    opts = settings(ctx)
    out = Output(opts.json)
    parsed = parse_json_arg(value_text(value), "VALUE_JSON")

    async def go(store: Store) -> tuple[int, str | None]:
        kvs, note = await writing_kvs(store, bot, opts)
        return await kvs.set(key, parsed, path, expiry, keep_ttl=keep_ttl, if_version=if_version), note

    version, note = run(ctx, go)
    print_note(note)
    if out.json:
        out.data({"key": key, "version": version})
    else:
        out.text(f"{show(key)}: version {version}")


@app.command("del")
def delete(ctx: typer.Context, bot: str = BOT, key: str = KEY) -> None:
    """Delete KEY (exit 2 when it does not exist)."""
    out = Output(settings(ctx).json)

    async def go(store: Store) -> None:
        if not await kvs_for(store, bot).delete(key):
            raise KeyNotFoundError(f"key {key!r} does not exist")

    run(ctx, go, create=False)
    if out.json:
        out.data({"key": key, "deleted": True})
    else:
        out.text(f"deleted {show(key)}")


@app.command("ls")
def ls(
    ctx: typer.Context,
    bot: str = BOT,
    prefix: str = typer.Argument("", metavar="[PREFIX]", help="Literal key prefix (no wildcards)."),
    limit: int | None = typer.Option(None, "--limit", metavar="N", help="At most N keys."),
) -> None:
    """List live keys under PREFIX, in code point order, with version and TTL."""
    out = Output(settings(ctx).json)
    if limit is not None and limit < 1:  # bad input is reported before the store is opened
        raise InvalidInputError(f"--limit must be a positive number, got {limit}")

    async def go(store: Store) -> tuple[list[Entry], float]:
        kvs = kvs_for(store, bot)
        entries: list[Entry] = []
        page: list[str] = []
        async for key in kvs.keys(prefix, limit=limit):
            page.append(key)
            if len(page) == 500:
                entries += await _entries(store, kvs, page)
                page = []
        entries += await _entries(store, kvs, page)
        return entries, store.clock.now()

    entries, now = run(ctx, go, create=False)
    if out.json:
        out.data([_entry_json(e, now) for e in entries])
        return
    rows = [
        [show(e.key), str(e.version), human_ttl(_left(e, now)), _preview(e.value)]
        for e in entries
    ]
    out.table(["key", "version", "ttl", "value"], rows)
    out.text(f"{len(entries)} key{'' if len(entries) == 1 else 's'}", style="dim")


async def _entries(store: Store, kvs: KVS, keys: list[str]) -> list[Entry]:
    """The entries of a page of keys, in the page's order, read in one backend call.

    A key that expired or was deleted since the scan is left out.
    """
    if not keys:
        return []
    rows = {r.key: r for r in await kvs.rows(keys)}
    return [
        Entry(k, decode(rows[k].value), rows[k].version, rows[k].expires_at, rows[k].modified_at)
        for k in keys
        if k in rows
    ]


def _left(entry: Entry, now: float) -> float | None:
    return None if entry.expires_at is None else entry.expires_at - now


def _preview(value: Any, width: int = 60) -> str:
    text = to_json(value)
    return text if len(text) <= width else text[: width - 1] + "…"


@app.command("ttl")
def ttl(ctx: typer.Context, bot: str = BOT, key: str = KEY) -> None:
    """Seconds until KEY expires ("never" when it has no expiry)."""
    out = Output(settings(ctx).json)

    async def go(store: Store) -> float | None:
        return await kvs_for(store, bot).ttl(key)

    left = run(ctx, go, create=False)
    if out.json:
        out.data({"key": key, "ttl": left})
    else:
        out.text("never" if left is None else f"{left:.3f}s ({human_ttl(left)})")
