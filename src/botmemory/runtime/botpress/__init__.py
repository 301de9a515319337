"""Botpress bot folders on botmemory's runtime: flows, content, conditions, NLU, memory actions.

A folder with ``bot.config.json`` and ``flows/`` is a Botpress v11/v12 bot;
``Runtime.open`` mounts it next to botmemory's YAML bots and ``converse``
runs its turns here (``engine``), on the same sessions, conversation leases,
memory scopes and retention. Modules: ``loader`` (the folder, checked),
``model`` (flows, nodes, the loaded bot), ``engine`` (the dialog engine),
``actions`` (built-in and basic-skills actions), ``content`` (content
elements and renderers), ``mustache`` (templates, rendered once),
``jsexpr``/``jsvalues`` (the JavaScript-subset conditions), ``nlu`` (the
intent matcher), ``archive`` (safe unpacking of exports).
"""

from __future__ import annotations

from .engine import BotpressEngine
from .loader import BotpressLoadError, is_botpress_folder, load_botpress_bot, load_botpress_bots
from .model import BotpressBot

__all__ = [
    "BotpressBot",
    "BotpressEngine",
    "BotpressLoadError",
    "is_botpress_folder",
    "load_botpress_bot",
    "load_botpress_bots",
]
