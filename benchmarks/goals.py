"""The ratios the "store library" issue sets as targets, checked on one run's rows.

A goal compares one of our rows with the best of some reference rows, on
the same scenario, metric and N. Goals are reported, never asserted:
benchmarks are not tests.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from .scenarios import Row

__all__ = ["GOALS", "Goal", "Verdict", "evaluate"]


@dataclass(frozen=True)
class Goal:
    """``ours`` must reach ``minimum`` times the best of ``theirs``.

    Attributes:
        name: the goal as the issue words it.
        scenario: where both rows come from.
        metric: the ``Row.metrics`` key compared (higher is better).
        ours: our row's target id.
        theirs: reference target ids; the fastest one present is used.
        minimum: the ratio to reach.
    """

    name: str
    scenario: str
    metric: str
    ours: str
    theirs: tuple[str, ...]
    minimum: float


@dataclass(frozen=True)
class Verdict:
    """A goal checked at one N; ``ratio`` is None when a row is missing (``why``)."""

    goal: Goal
    n: int | None
    ratio: float | None
    ours_value: float | None
    theirs_value: float | None
    theirs_id: str | None
    why: str = ""

    @property
    def met(self) -> bool | None:
        return None if self.ratio is None else self.ratio >= self.goal.minimum


GOALS: list[Goal] = [
    Goal(
        "async SQLite get ≥ 0.5× raw sync sqlite3 get (one task)",
        "kv",
        "get_ops",
        "bm-sqlite-async",
        ("raw-sqlite3",),
        0.5,
    ),
    Goal(
        "async SQLite set ≥ 1× raw aiosqlite autocommit set (one task)",
        "kv",
        "set_ops",
        "bm-sqlite-async",
        ("raw-aiosqlite",),
        1.0,
    ),
    Goal(
        "SQLite set, 64 tasks writing ≥ 2× raw sync sqlite3 autocommit",
        "concurrent-writes",
        "set_ops",
        "bm-sqlite-async",
        ("raw-sqlite3",),
        2.0,
    ),
    Goal(
        "SQLite synchronous=full set, 64 tasks writing ≥ 2× raw sync sqlite3 autocommit, both fsyncing every commit",
        "concurrent-writes",
        "set_ops",
        "bm-sqlite-full-async",
        ("raw-sqlite3-full",),
        2.0,
    ),
    Goal(
        "memory backend set ≥ 1× LangGraph InMemoryStore put",
        "kv",
        "set_ops",
        "bm-memory-async",
        ("lg-memory-sync", "lg-memory-async"),
        1.0,
    ),
    Goal(
        "memory backend get ≥ 1× LangGraph InMemoryStore get",
        "kv",
        "get_ops",
        "bm-memory-async",
        ("lg-memory-sync", "lg-memory-async"),
        1.0,
    ),
    Goal(
        "HTTP KVS GET ≥ 0.6× a minimal Starlette endpoint reading the key with raw sqlite3 (1 worker)",
        "http",
        "get_rps",
        "bm-http",
        ("minimal-starlette",),
        0.6,
    ),
    Goal(
        "converse over HTTP ≥ 0.5× in-process turns/s",
        "http",
        "turns",
        "bm-http",
        ("bm-inprocess",),
        0.5,
    ),
]


def _integration_goals() -> list[Goal]:
    """botmemory's LangGraph saver and store, each backend next to LangGraph's own on that kind of storage.

    Redis has no LangGraph saver or store of LangGraph's own making: it is held to
    the PostgreSQL ones, the other server backend. The Bot Framework rows are held
    to the SDK's MemoryStorage (an in-process dict).
    """
    theirs = {
        "memory": ("lg-memory",),
        "sqlite": ("lg-sqlite-sync", "lg-sqlite-async"),
        "postgres": ("lg-postgres",),
        "redis": ("lg-postgres",),
    }
    names = {"memory": "memory", "sqlite": "SQLite", "postgres": "PostgreSQL", "redis": "Redis"}
    refs = {"memory": "InMemory", "sqlite": "Sqlite", "postgres": "AsyncPostgres", "redis": "AsyncPostgres"}
    goals = []
    for op, what in (
        ("saver-step", "saver step (put_writes + put)"),
        ("saver-get", "saver get_tuple"),
        ("saver-list", "saver list(limit=10)"),
        ("store-put", "store put"),
        ("store-get", "store get"),
        ("store-search", "store search"),
    ):
        kind = "Saver" if op.startswith("saver") else "Store"
        for backend, refs_ids in theirs.items():
            goals.append(
                Goal(
                    f"LangGraph {what}: botmemory {names[backend]} ≥ 1× LangGraph {refs[backend]}{kind}",
                    "integrations",
                    "ops",
                    f"{op}:bm-{backend}",
                    tuple(f"{op}:{r}" for r in refs_ids),
                    1.0,
                )
            )
    goals.append(
        Goal(
            "Bot Framework turn (read + eTag write): BotMemoryStorage memory ≥ 1× MemoryStorage",
            "integrations",
            "ops",
            "bf-turn:bm-memory",
            ("bf-turn:bf-memory",),
            1.0,
        )
    )
    return goals


GOALS += _integration_goals()


def evaluate(rows: list[Row], goals: list[Goal] | None = None) -> list[Verdict]:
    """Check every goal at every N measured for its own row."""
    out: list[Verdict] = []
    index = {(r.scenario, r.target, r.n): r for r in rows}
    for goal in GOALS if goals is None else goals:
        sizes = sorted(
            {r.n for r in rows if r.scenario == goal.scenario and r.target == goal.ours}, key=lambda n: n or 0
        )
        if not sizes:
            out.append(Verdict(goal, None, None, None, None, None, f"{goal.ours} not measured"))
            continue
        for n in sizes:
            mine = index[(goal.scenario, goal.ours, n)]
            if mine.skipped or goal.metric not in mine.metrics:
                out.append(Verdict(goal, n, None, None, None, None, mine.skipped or "not measured"))
                continue
            refs = [index.get((goal.scenario, t, n)) for t in goal.theirs]
            present = [r for r in refs if r is not None and not r.skipped and goal.metric in r.metrics]
            if not present:
                reasons = [f"{r.target}: {r.skipped}" for r in refs if r is not None and r.skipped]
                why = "; ".join(reasons) or f"{', '.join(goal.theirs)} not measured"
                out.append(Verdict(goal, n, None, mine.metrics[goal.metric], None, None, why))
                continue
            best = max(present, key=lambda r: r.metrics[goal.metric])
            ours_value, theirs_value = mine.metrics[goal.metric], best.metrics[goal.metric]
            out.append(Verdict(goal, n, _ratio(mine, best, goal.metric), ours_value, theirs_value, best.target))
    return out


def _ratio(mine: Row, theirs: Row, metric: str) -> float:
    """The median of round-by-round ratios when both rows ran side by side, else the ratio of the values.

    Rounds of rows measured together alternate, so round i of one and round
    i of the other saw the same load on a shared machine; their ratio moves
    far less between runs than the ratio of the two medians.
    """
    ours, refs = mine.rounds.get(metric), theirs.rounds.get(metric)
    if ours and refs and len(ours) == len(refs) and all(r > 0 for r in refs):
        return statistics.median(o / r for o, r in zip(ours, refs, strict=True))
    return mine.metrics[metric] / theirs.metrics[metric]
