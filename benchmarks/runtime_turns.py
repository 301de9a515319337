"""Scenario ``runtime``: conversation turns per second through ``botmemory.Runtime``.

Every botmemory async row (memory, SQLite, and PostgreSQL and Redis when
their servers answer) runs the repository's example bot (copied under a
unique bot id so a shared server is left clean): many users, each holding
one scripted conversation of eight messages (name, colour, echo, stats,
rename, bye), one message at a time as a chat front-end would; then
steady-state ``echo`` turns (the issue 13 figure: a message answered by
``echo`` in a conversation already under way). Reported: turns/s, per-turn
latency, the number of store calls per turn, and the share of the turn
spent awaiting the store (``Runtime.metrics``, measured by the runtime's
metered backend; the rest is the runtime itself: templates, flow logic,
hooks, JSON), and the echo turns' rate and store calls (one of which is the
example bot's own ``after_incoming`` hook).

Each backend is measured twice in the same run: as shipped, and "before
batching", with ``Runtime.batching`` turned off, which is
exactly the runtime before turns were batched (one call per read and write,
the erasure guard read after every guarded write).
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from time import perf_counter_ns
from typing import Any

import botmemory
from botmemory import Runtime
from botmemory.retention.layout import current_ns, links_ns, sessions_ns

from .clients import TARGETS, missing_requirement
from .config import Config
from .measure import percentile
from .scenarios import Column, Log, Row, scenario
from .servers import POSTGRES_URL, REDIS_URL

__all__ = ["runtime_turns"]

EXAMPLE = Path(__file__).resolve().parent.parent / "bots" / "example"
SCRIPT = ("hi", "Ada", "my favourite colour is blue", "hello there", "stats", "call me Bo", "anything", "bye")
#: timed echo turns per conversation, after "hi" and a name
ECHOES = 8


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


Opener = Callable[[Path], Awaitable[tuple[botmemory.Store, Callable[[], Awaitable[None]]]]]


def _url_opener(url: str) -> Opener:
    async def open_(tmp: Path) -> tuple[botmemory.Store, Callable[[], Awaitable[None]]]:
        store = await botmemory.open(url)

        async def nothing() -> None:
            return None

        return store, nothing

    return open_


def _server_opener(name: str) -> Opener:
    async def open_(tmp: Path) -> tuple[botmemory.Store, Callable[[], Awaitable[None]]]:
        suffix = uuid.uuid4().hex[:10]
        if name == "postgres":
            store = await botmemory.open(POSTGRES_URL, schema=f"bench_rt_{suffix}")
        else:
            store = await botmemory.open(REDIS_URL, prefix=f"bench-rt-{suffix}:")

        async def drop() -> None:
            reopened = await botmemory.open(
                POSTGRES_URL if name == "postgres" else REDIS_URL,
                **({"schema": f"bench_rt_{suffix}"} if name == "postgres" else {"prefix": f"bench-rt-{suffix}:"}),
            )
            try:
                await reopened.backend.drop_everything()  # type: ignore[attr-defined]
            finally:
                await reopened.close()

        return store, drop

    return open_


def _targets(config: Config) -> list[tuple[str, str, str, Opener]]:
    out = []
    for spec in TARGETS.values():
        if not spec.ours or spec.sync or spec.url is None or not config.wants(spec.id, spec.family):
            continue
        if missing_requirement(spec) is not None:
            continue
        url = spec.url

        def opener(tmp: Path, url: Any = url) -> Awaitable[tuple[botmemory.Store, Callable[[], Awaitable[None]]]]:
            return _url_opener(url(tmp))(tmp)

        out.append((spec.id, spec.label, spec.family, opener))
    for name, label in (("postgres", "botmemory PostgreSQL (async)"), ("redis", "botmemory Redis (async)")):
        if config.wants(f"bm-{name}-async", name):
            out.append((f"bm-{name}-async", label, name, _server_opener(name)))
    return out


@scenario(
    "runtime",
    "Runtime: conversation turns of the example bot",
    [
        Column("turns", "turns/s"),
        Column("p50", "p50 µs", "us"),
        Column("p99", "p99 µs", "us"),
        Column("store_calls", "store calls/turn", "count"),
        Column("store_share", "store % of turn", "count"),
        Column("echo_turns", "echo turns/s"),
        Column("echo_calls", "echo store calls/turn (1: the hook's)", "count"),
    ],
)
async def runtime_turns(config: Config, log: Log) -> list[Row]:
    """Turns/s of the example bot on every botmemory async row, before batching and after, side by side."""
    users = max(4, min(config.ops, 2_000) // len(SCRIPT))
    rows: list[Row] = []
    for target_id, label, family, opener in _targets(config):
        ids = (f"{target_id}-unbatched", target_id)
        labels = (f"{label}, before batching", label)
        try:
            measured = await _measure(opener, users)
        except botmemory.StoreError as exc:
            rows += [Row("runtime", i, lab, family, None, skipped=str(exc)) for i, lab in zip(ids, labels, strict=True)]
            continue
        for row_id, row_label, metrics in zip(ids, labels, measured, strict=True):
            log(
                f"  {row_label}: {metrics['turns']:,.0f} turns/s, {metrics['store_calls']} store calls/turn, "
                f"{metrics['store_share']}% of the turn in the store; steady-state echo: "
                f"{metrics['echo_turns']:,.0f} turns/s, {metrics['echo_calls']} store calls/turn (1: the hook's)"
            )
            rows.append(Row("runtime", row_id, row_label, family, None, metrics))
    return rows


class _Side:
    """One of the two runtimes measured side by side."""

    def __init__(self, runtime: Runtime, bot_id: str) -> None:
        self.runtime = runtime
        self.bot_id = bot_id
        self.times: list[int] = []
        self.echo_times: list[int] = []
        self.echo_calls = 0
        self.before: dict[str, float] = {}
        self.after: dict[str, float] = {}

    async def turn(self, user: str, text: str, conversation_id: str | None = None) -> list[dict[str, Any]]:
        return await self.runtime.converse(self.bot_id, user_id=user, text=text, conversation_id=conversation_id)

    def metrics(self) -> dict[str, float]:
        turns = self.after["turns"] - self.before["turns"]
        turn_seconds = self.after["turn_seconds"] - self.before["turn_seconds"]
        store_seconds = self.after["store_seconds"] - self.before["store_seconds"]
        return {
            "turns": len(self.times) / (sum(self.times) / 1e9),
            "p50": statistics.median(self.times) / 1000,
            "p99": percentile(self.times, 99),
            "store_calls": round((self.after["store_calls"] - self.before["store_calls"]) / turns, 1),
            "store_share": round(100 * store_seconds / turn_seconds, 1),
            "echo_turns": len(self.echo_times) / (sum(self.echo_times) / 1e9),
            "echo_calls": round(self.echo_calls / len(self.echo_times), 2),
        }


async def _measure(opener: Opener, users: int) -> tuple[dict[str, float], dict[str, float]]:
    """(before batching, as shipped): two stores of the backend, their turns interleaved so load falls on both."""
    with tempfile.TemporaryDirectory(prefix="bm-runtime-") as tmp:
        bot_id = f"bench-{uuid.uuid4().hex[:10]}"
        bots = _copy_example(Path(tmp), bot_id)
        opened: list[tuple[botmemory.Store, Callable[[], Awaitable[None]]]] = []
        try:
            for name in ("before", "after"):
                (Path(tmp) / name).mkdir()
                opened.append(await opener(Path(tmp) / name))
            store_before, store_after = opened[0][0], opened[1][0]
            sides = [_Side(await Runtime.open(store, bots), bot_id) for store in (store_before, store_after)]
            sides[0].runtime.batching = False
            for side in sides:  # warm-up: one whole conversation, not timed
                for text in SCRIPT:
                    await side.turn("warmup", text)
                side.before = side.runtime.metrics.as_dict()
            for user in range(users):
                for side in sides if user % 2 else sides[::-1]:
                    for text in SCRIPT:
                        start = perf_counter_ns()
                        await side.turn(f"user-{user}", text)
                        side.times.append(perf_counter_ns() - start)
            for side in sides:
                side.after = side.runtime.metrics.as_dict()
            # steady state: echo turns of conversations under way
            for user in range(max(2, users // 4)):
                cids = []
                for side in sides:
                    first = await side.turn(f"echo-{user}", "hi")
                    cid = first[0]["conversation_id"]
                    await side.turn(f"echo-{user}", "Ada", cid)
                    await side.turn(f"echo-{user}", "echo 0", cid)
                    cids.append(cid)
                pairs = list(zip(sides, cids, strict=True))
                for i in range(1, ECHOES + 1):
                    for side, cid in pairs if i % 2 else pairs[::-1]:
                        start = perf_counter_ns()
                        await side.turn(f"echo-{user}", f"echo {i}", cid)
                        side.echo_times.append(perf_counter_ns() - start)
                        side.echo_calls += side.runtime.last_turn.store_calls
            for store, _ in opened:
                await _cleanup(store, bot_id)
        finally:
            for store, drop in opened:
                await store.close()
                await drop()
    return sides[0].metrics(), sides[1].metrics()
