"""``botmemory audit BOT``: the audit log (what was deleted, when and why; never values)."""

from __future__ import annotations

import re
import time
from datetime import datetime
from typing import Any

import typer

from ..errors import InvalidExpiryError, InvalidInputError
from ..expiry import duration_ms
from ..keys import GLOBAL_NS, validate_bot_id, validate_key
from ..retention.audit import AuditLog
from ..store import Store
from .context import GLOBAL_BOT, run, settings
from .output import Output, iso_time, show

__all__ = ["audit", "parse_when"]

_EPOCH_RE = re.compile(r"[0-9]{1,12}(?:\.[0-9]{1,6})?", re.ASCII)


def parse_when(text: str, now: float) -> float:
    """A point in time as epoch seconds.

    Accepts an RFC 3339 time with an offset (``2026-11-29T10:00:00Z``), epoch
    seconds (``1800000000``), or a duration meaning "that long ago"
    (``24h``, ``7 days``, ``PT30M``).

    Raises:
        InvalidInputError: none of these forms.
    """
    if _EPOCH_RE.fullmatch(text):
        return float(text)
    try:
        return now - duration_ms(text) / 1000
    except InvalidExpiryError:
        pass
    try:
        when = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        when = None
    if when is None or when.tzinfo is None or not text[:4].isdigit():
        raise InvalidInputError(
            f"bad time {show(text)}: expected an RFC 3339 time with offset (2026-11-29T10:00:00Z), "
            "epoch seconds, or a duration ago (24h, 7 days)"
        )
    return when.timestamp()


def audit(
    ctx: typer.Context,
    bot: str = typer.Argument(..., metavar="BOT", help=f"Bot id, or {GLOBAL_BOT} for the server-wide KVS."),
    user: str | None = typer.Option(None, "--user", metavar="U", help="Only records about this user."),
    since: str | None = typer.Option(
        None, "--since", metavar="WHEN", help="RFC 3339 time, epoch seconds, or 24h (ago)."
    ),
    until: str | None = typer.Option(None, "--until", metavar="WHEN", help="Same forms as --since."),
    limit: int = typer.Option(1000, "--limit", metavar="N", min=1, help="At most N records."),
) -> None:
    """Show why data of BOT disappeared: time, scope, owner, key, reason, policy."""
    out = Output(settings(ctx).json)
    bot_id = GLOBAL_NS if bot == GLOBAL_BOT else validate_bot_id(bot)
    if user is not None:
        validate_key(user, None, "user id")
    for when in (since, until):  # bad input is reported before the store is opened
        if when is not None:
            parse_when(when, time.time())

    async def go(store: Store) -> list[dict[str, Any]]:
        now = store.clock.now()
        start = None if since is None else parse_when(since, now)
        end = None if until is None else parse_when(until, now)
        records: list[dict[str, Any]] = await AuditLog(store).query(
            bot_id, user_id=user, since=start, until=end, limit=limit
        )
        return records

    records = run(ctx, go, create=False)
    if out.json:
        out.data(records)
        return
    columns = ["time", "scope", "owner", "key", "reason", "policy", "count"]
    rows = [
        [
            iso_time(r.get("time")),
            show(str(r.get("scope", ""))),
            show(str(r.get("owner_id") or r.get("user_id") or r.get("conversation_id") or "")),
            show(str(r.get("key", ""))),
            show(str(r.get("reason", ""))),
            show(str(r.get("policy") or "")),
            str(r.get("count", 1)),
        ]
        for r in records
    ]
    out.table(columns, rows, title=f"audit log of {bot}")
    out.text(f"{len(records)} record{'' if len(records) == 1 else 's'}", style="dim")
