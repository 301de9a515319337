"""Scenario ``runtime``: conversation turns per second through ``botmemory.Runtime``.

Every botmemory async row (memory, SQLite, and any server backend
registered) runs the repository's example bot (copied under a unique bot id
so a shared server is left clean): many users, each holding one scripted
conversation of eight messages (name, colour, echo, stats, rename, bye), one
message at a time as a chat front-end would. Reported: turns/s, per-turn
latency, the number of store calls per turn, and the share of the turn
spent awaiting the store (``Runtime.metrics``, measured by the runtime's
metered backend); the rest is the runtime itself (templates, flow logic,
hooks, JSON).
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import uuid
from pathlib import Path
from time import perf_counter_ns

import botmemory
from botmemory import Runtime
from botmemory.retention.layout import current_ns, links_ns, sessions_ns

from .clients import TARGETS, missing_requirement
from .config import Config
from .measure import percentile
from .scenarios import Column, Log, Row, scenario

__all__ = ["runtime_turns"]

EXAMPLE = Path(__file__).resolve().parent.parent / "bots" / "example"
SCRIPT = ("hi", "Ada", "my favourite colour is blue", "hello there", "stats", "call me Bo", "anything", "bye")


def _copy_example(root: Path, bot_id: str) -> Path:
    bots = root / "bots"
    shutil.copytree(EXAMPLE, bots / bot_id)
    yaml = bots / bot_id / "bot.yaml"
    yaml.write_text(yaml.read_text(encoding="utf-8").replace("id: example", f"id: {bot_id}"), encoding="utf-8")
    return bots


async def _cleanup(store: botmemory.Store, bot_id: str) -> None:
    await store.bot(bot_id).kvs.delete_prefix("", all=True)
    for ns in (sessions_ns(bot_id), current_ns(bot_id), links_ns(bot_id)):
        await store.private_kvs(ns).delete_prefix("", all=True)


@scenario(
    "runtime",
    "Runtime: conversation turns of the example bot",
    [
        Column("turns", "turns/s"),
        Column("p50", "p50 µs", "us"),
        Column("p99", "p99 µs", "us"),
        Column("store_calls", "store calls/turn", "count"),
        Column("store_share", "store % of turn", "count"),
    ],
)
async def runtime_turns(config: Config, log: Log) -> list[Row]:
    """Turns/s of the example bot on every botmemory async row."""
    users = max(4, min(config.ops, 2_000) // len(SCRIPT))
    rows: list[Row] = []
    for spec in TARGETS.values():
        if not spec.ours or spec.sync or spec.url is None or not config.wants(spec.id, spec.family):
            continue
        missing = missing_requirement(spec)
        if missing is not None:
            rows.append(Row("runtime", spec.id, spec.label, spec.family, None, skipped=f"{missing} not installed"))
            continue
        with tempfile.TemporaryDirectory(prefix="bm-runtime-") as tmp:
            bot_id = f"bench-{uuid.uuid4().hex[:10]}"
            bots = _copy_example(Path(tmp), bot_id)
            try:
                store = await botmemory.open(spec.url(Path(tmp)))
            except botmemory.StoreError as exc:
                rows.append(Row("runtime", spec.id, spec.label, spec.family, None, skipped=str(exc)))
                continue
            try:
                runtime = await Runtime.open(store, bots)
                # warm-up: one whole conversation, not timed
                for text in SCRIPT:
                    await runtime.converse(bot_id, user_id="warmup", text=text)
                before = runtime.metrics.as_dict()
                times: list[int] = []
                for user in range(users):
                    for text in SCRIPT:
                        start = perf_counter_ns()
                        await runtime.converse(bot_id, user_id=f"user-{user}", text=text)
                        times.append(perf_counter_ns() - start)
                after = runtime.metrics.as_dict()
                await _cleanup(store, bot_id)
            finally:
                await store.close()
        turns = after["turns"] - before["turns"]
        turn_seconds = after["turn_seconds"] - before["turn_seconds"]
        store_seconds = after["store_seconds"] - before["store_seconds"]
        metrics = {
            "turns": len(times) / (sum(times) / 1e9),
            "p50": statistics.median(times) / 1000,
            "p99": percentile(times, 99),
            "store_calls": round((after["store_calls"] - before["store_calls"]) / turns, 1),
            "store_share": round(100 * store_seconds / turn_seconds, 1),
        }
        log(
            f"  {spec.label}: {metrics['turns']:,.0f} turns/s, {metrics['store_calls']} store calls/turn, "
            f"{metrics['store_share']}% of the turn in the store ({turns} turns, {users} users)"
        )
        rows.append(Row("runtime", spec.id, spec.label, spec.family, None, metrics))
    return rows
