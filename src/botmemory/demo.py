"""A two-minute tour on the SQLite default: the three memory scopes and an expiring key.

Run with ``python -m botmemory.demo [URL]`` (default ``sqlite:///./botmemory-demo.db``,
a file of its own: the tour never writes into ``./botmemory.db``, where
``botmemory chat example`` keeps the starter bot's memory, and its bots are
called ``demo`` and ``demo-other``). It uses the wall clock, so the expiring
key is shown with a short expiry and a TTL countdown rather than by
sleeping it out.
"""

from __future__ import annotations

import asyncio
import sys

from rich.console import Console
from rich.table import Table

import botmemory

__all__ = ["DEMO_URL", "main", "tour"]

#: Where the tour writes unless given a URL.
DEMO_URL = "sqlite:///./botmemory-demo.db"


async def tour(url: str, console: Console) -> None:
    """Write and read memory in every scope, then show an expiring key."""
    async with botmemory.open(url) as store:
        bot = store.bot("demo")
        other = store.bot("demo-other")
        mem = bot.memory
        await mem.set_user_variable("ada", "firstname", "Ada")
        await mem.set_conversation_variable("conv-1", "topic", "greeting", expiry="10m")
        visits = await mem.global_scope().incr("visits")
        await bot.kvs.set("carts/ada", {"items": ["tea"], "total": 4.5}, expiry="30 days")
        await bot.kvs.set("otp/ada", "493817", expiry="30s")

        table = Table(title=f"botmemory demo on {url}")
        for col in ("scope", "key / variable", "value", "expires in"):
            table.add_column(col)
        table.add_row("user (ada)", "firstname", repr(await mem.get_user_variable("ada", "firstname")), "never")
        ttl = await bot.kvs.ttl("storage/conversation/conv-1/topic")
        table.add_row("conversation (conv-1)", "topic", repr(await mem.get_conversation_variable("conv-1", "topic")),
                      f"{ttl:.0f} s")
        table.add_row("global", "visits", repr(visits), "never")
        table.add_row("global, other bot", "visits", repr(await other.memory.get_global_variable("visits")), "-")
        for key in ("carts/ada", "otp/ada"):
            ttl = await bot.kvs.ttl(key)
            table.add_row("kvs", key, repr(await bot.kvs.get(key)), f"{ttl:.0f} s" if ttl is not None else "never")
        console.print(table)
        ended = await mem.end_conversation("conv-1")
        console.print(f"end_conversation('conv-1') discarded {ended} variable(s); topic is now "
                      f"{await mem.get_conversation_variable('conv-1', 'topic')!r}")
        keys = [k async for k in bot.kvs.keys()]
        console.print(f"keys of bot 'demo': {keys}")


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m botmemory.demo``."""
    args = sys.argv[1:] if argv is None else argv
    url = args[0] if args else DEMO_URL
    console = Console()
    try:
        asyncio.run(tour(url, console))
    except botmemory.BotMemoryError as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
