"""Hooks of the example bot: counters kept in the bot's KVS through ``bp.kvs``."""

from __future__ import annotations

from typing import Any

from botmemory.memory import user_prefix


async def after_bot_mount(bp: Any) -> None:
    bp.logger.info("example bot mounted")


async def after_incoming(bp: Any, event: dict[str, Any]) -> None:
    """Count every message per user (kept under the user's prefix: exported and erased with the user)."""
    await bp.kvs.incr(user_prefix(event["user_id"]) + "stats/messages")


async def after_conversation_end(bp: Any, event: dict[str, Any]) -> None:
    """Count ended conversations by reason ("end" or "timeout")."""
    await bp.kvs.incr(f"stats/conversations_ended/{event['reason']}")
