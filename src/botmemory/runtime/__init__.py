"""The bot runtime: bots on disk, flows, actions, hooks and sessions over a store.

    runtime = await botmemory.Runtime.open(store, "bots/")
    replies = await runtime.converse("example", user_id="u1", text="hi")
    await runtime.janitor_once()
    await runtime.close()

Modules: ``loader`` (bot folders), ``flows`` (nodes and transitions),
``templates`` (the Jinja2 sandbox), ``actions`` (built-ins, SDK handles),
``hooks``, ``guard`` (running the bot's own code bounded and contained),
``sessions`` (sessions, conversation owners and per-conversation leases),
``metrics`` (the store's share of a turn), ``engine`` (``Runtime``).
"""

from __future__ import annotations

from .actions import BUILTIN_ACTIONS, ActionContext, BotSDK
from .engine import MAX_STEPS, Runtime
from .loader import HOOK_NAMES, LoadedBot, load_bot, load_bots
from .yamlsource import BotLoadError

__all__ = [
    "BUILTIN_ACTIONS",
    "HOOK_NAMES",
    "MAX_STEPS",
    "ActionContext",
    "BotLoadError",
    "BotSDK",
    "LoadedBot",
    "Runtime",
    "load_bot",
    "load_bots",
]
