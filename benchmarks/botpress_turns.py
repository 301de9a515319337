"""Scenario ``botpress``: turns/s of a real Botpress bot (the v12 welcome-bot) next to the example YAML bot.

Both run through ``botmemory.Runtime`` on SQLite, with the same number of
users, one message at a time. The v12 welcome-bot comes from the shared
corpus (``../shared/botpress-bots``, or $BOTMEMORY_BOTPRESS_CORPUS) with the
one-line Python replacement of its JavaScript hook; its script walks the
memory flow (choice skill, a user variable, the conversation counter,
conversation_end) and the contexts flow. Reported per bot: turns/s, latency,
store calls per turn; the Botpress row also gives its ratio to the YAML bot.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
from pathlib import Path
from time import perf_counter_ns

import botmemory
from botmemory import Runtime

from .config import Config
from .measure import percentile
from .runtime_turns import SCRIPT as YAML_SCRIPT
from .runtime_turns import _copy_example
from .scenarios import Column, Log, Row, scenario

__all__ = ["botpress_turns"]

REPO = Path(__file__).resolve().parent.parent
CORPUS = Path(os.environ.get("BOTMEMORY_BOTPRESS_CORPUS", REPO.parent / "shared" / "botpress-bots"))
WELCOME_SCRIPT = ("hi", "memory", "Ada", "hello", "What is Bot Memory?", "hi", "context", "Giraffe")
SHIM = (
    "async def before_conversation_end(bp, event):\n    event['state']['temp']['endMessage'] = 'I will be listening'\n"
)


async def _measure(bots: Path, bot_id: str, script: tuple[str, ...], users: int, url: str) -> dict[str, float]:
    store = await botmemory.open(url)
    try:
        runtime = await Runtime.open(store, bots)
        for text in script:  # warm-up, not timed
            await runtime.converse(bot_id, user_id="warmup", text=text)
        before = runtime.metrics.as_dict()
        times: list[int] = []
        for user in range(users):
            for text in script:
                start = perf_counter_ns()
                await runtime.converse(bot_id, user_id=f"user-{user}", text=text)
                times.append(perf_counter_ns() - start)
        after = runtime.metrics.as_dict()
    finally:
        await store.close()
    turns = after["turns"] - before["turns"]
    return {
        "turns": len(times) / (sum(times) / 1e9),
        "p50": statistics.median(times) / 1000,
        "p99": percentile(times, 99),
        "store_calls": round((after["store_calls"] - before["store_calls"]) / turns, 1),
    }


@scenario(
    "botpress",
    "Runtime on SQLite: the Botpress v12 welcome-bot next to the example YAML bot",
    [
        Column("turns", "turns/s"),
        Column("p50", "p50 µs", "us"),
        Column("p99", "p99 µs", "us"),
        Column("store_calls", "store calls/turn", "count"),
        Column("ratio", "× YAML bot", "count"),
    ],
)
async def botpress_turns(config: Config, log: Log) -> list[Row]:
    """Turns/s of the v12 welcome-bot and of the example bot, on SQLite."""
    users = max(4, min(config.ops, 2_000) // len(WELCOME_SCRIPT))
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bm-botpress-") as tmp:
        root = Path(tmp)
        yaml_bots = _copy_example(root / "yaml", "example")
        yaml = await _measure(yaml_bots, "example", YAML_SCRIPT, users, f"sqlite:///{root / 'yaml.db'}")
        rows.append(Row("botpress", "example-yaml", "example bot (YAML)", "sqlite", None, {**yaml, "ratio": 1.0}))
        log(f"  example bot (YAML): {yaml['turns']:,.0f} turns/s, {yaml['store_calls']} store calls/turn")
        source = CORPUS / "v12-welcome-bot"
        if not source.is_dir():
            rows.append(
                Row(
                    "botpress",
                    "v12-welcome-bot",
                    "v12 welcome-bot (Botpress)",
                    "sqlite",
                    None,
                    skipped=f"no Botpress corpus at {CORPUS}",
                )
            )
            return rows
        bots = root / "bp"
        shutil.copytree(source, bots / "v12-welcome-bot")
        hook = bots / "v12-welcome-bot" / "hooks" / "before_conversation_end" / "create_end_message.py"
        hook.write_text(SHIM, encoding="utf-8")
        welcome = await _measure(bots, "v12-welcome-bot", WELCOME_SCRIPT, users, f"sqlite:///{root / 'bp.db'}")
        welcome["ratio"] = round(welcome["turns"] / yaml["turns"], 2)
        rows.append(Row("botpress", "v12-welcome-bot", "v12 welcome-bot (Botpress)", "sqlite", None, welcome))
        log(
            f"  v12 welcome-bot: {welcome['turns']:,.0f} turns/s ({welcome['ratio']}× the YAML bot), "
            f"{welcome['store_calls']} store calls/turn"
        )
    return rows
