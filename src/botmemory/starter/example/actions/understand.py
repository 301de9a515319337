"""Custom actions of the example bot (``async def name(ctx, **args)``)."""

from __future__ import annotations

import re
from typing import Any

from botmemory.memory import user_prefix

_COLOUR = re.compile(r"(?:my )?fav(?:ou?rite)? colou?r(?: is)?\s+(?P<colour>[\w -]{1,40}?)[.!]*$", re.IGNORECASE)
_RENAME = re.compile(r"(?:call me|my name is)\s+(?P<name>.{1,60}?)[.!]*$", re.IGNORECASE)

#: the KVS key where the after_incoming hook counts a user's messages
#: (under the user's prefix, so export and erasure include it)
MESSAGES_KEY = "stats/messages"


async def understand(ctx: Any, text: str = "") -> dict[str, Any]:
    """Sort a message into an intent: bye, stats, colour, rename or other."""
    words = text.strip()
    lowered = words.lower().rstrip("!.")
    if lowered in ("bye", "goodbye", "bye bye", "see you", "quit", "exit"):
        return {"intent": "bye"}
    if lowered in ("stats", "statistics", "status"):
        return {"intent": "stats"}
    match = _COLOUR.search(words)
    if match:
        return {"intent": "colour", "colour": match["colour"].strip().lower()}
    match = _RENAME.search(words)
    if match:
        return {"intent": "rename", "name": match["name"].strip()}
    return {"intent": "other"}


async def message_count(ctx: Any) -> dict[str, Any]:
    """How many messages the user has sent, as counted by the hook in the bot's KVS."""
    return {"messages": await ctx.kvs.get(user_prefix(ctx.user_id) + MESSAGES_KEY, default=0)}
