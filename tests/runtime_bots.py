"""Helpers for the runtime tests: bot folders written into tmp_path, and the worker of the two-process test."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_BOTS = REPO / "bots"


def write_bot(
    root: Path,
    bot_id: str,
    *,
    bot_yaml: str = "",
    flows: dict[str, str] | None = None,
    actions: dict[str, str] | None = None,
    hooks: dict[str, str] | None = None,
) -> Path:
    """Write a bot folder ``root/bot_id`` (texts are dedented); returns the folder."""
    folder = root / bot_id
    (folder / "flows").mkdir(parents=True, exist_ok=True)
    (folder / "bot.yaml").write_text(f"id: {bot_id}\n" + textwrap.dedent(bot_yaml), encoding="utf-8")
    for name, text in (flows or {}).items():
        (folder / "flows" / f"{name}.yaml").write_text(textwrap.dedent(text), encoding="utf-8")
    for sub, files in (("actions", actions), ("hooks", hooks)):
        if files:
            (folder / sub).mkdir(exist_ok=True)
            for name, text in files.items():
                (folder / sub / f"{name}.py").write_text(textwrap.dedent(text), encoding="utf-8")
    return folder


def texts(replies: list[dict[str, Any]]) -> list[str]:
    return [r["text"] for r in replies]


# -- the two-process serialisation test ------------------------------------------

#: A flow where every message appends to a conversation variable inside a
#: custom action that sleeps (real time) between its read and its write, so
#: two unserialised turns would lose an update.
APPEND_FLOW = """\
start: hello
nodes:
  hello:
    on_enter:
      - say: "ready"
    next:
      - goto: collect
  collect:
    on_receive:
      - slow_append: {item: "{{ event.text }}"}
      - say: "{{ conversation.items | join(',') }}"
    next:
      - goto: collect
"""

APPEND_ACTION = """\
import asyncio

PAUSE = 0.3


async def slow_append(ctx, item):
    items = await ctx.memory.get_conversation_variable(ctx.conversation_id, "items", [])
    await asyncio.sleep(PAUSE)  # widen the race window: another turn would read the same list meanwhile
    await ctx.memory.set_conversation_variable(ctx.conversation_id, "items", items + [item])
"""


def converse_in_process(url: str, options: dict[str, Any], bots_dir: str, text: str, conversation_id: str,
                        start: Any, results: Any) -> None:
    """Run in a spawned process: wait for ``start``, send one message, put (text, replies) on ``results``."""
    import botmemory

    async def main() -> list[dict[str, Any]]:
        store = await botmemory.open(url, **options)
        try:
            runtime = await botmemory.Runtime.open(store, bots_dir)
            start.wait(30)
            return await runtime.converse("race", user_id="u1", text=text, conversation_id=conversation_id)
        finally:
            await store.close()

    results.put((text, asyncio.run(main())))
