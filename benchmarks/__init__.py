"""botmemory's benchmark harness (``make bench`` / ``python -m benchmarks``).

One run measures every registered scenario (``scenarios.py``) on every
registered client (``clients.py``), checks the issue's target ratios against
raw drivers measured in the same run (``goals.py``), profiles the slowest
botmemory row layer by layer (``breakdown.py``), prints rich tables and
writes ``results/latest.json`` and ``results/latest.md``.

Benchmarks are not tests: nothing here fails on timing. ``--quick`` is a
small smoke run (N = 1,000); the default run takes a few minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as _dt
import os
import platform
import sqlite3
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from . import (
    botpress_turns,  # noqa: F401 - registers the "botpress" scenario (v12 welcome-bot vs the YAML bot)
    http_bench,  # noqa: F401 - registers the "http" scenario (botmemory serve)
    integrations,  # noqa: F401 - registers the "integrations" scenario (LangGraph, Bot Framework)
    runtime_turns,  # noqa: F401 - registers the "runtime" scenario
    servers,  # noqa: F401 - registers the "servers" scenario (PostgreSQL, Redis)
)
from .breakdown import Breakdown, profile_row
from .clients import TARGETS
from .config import VALUE_BYTES, Config
from .goals import evaluate
from .report import RunResult, print_report, write_results
from .scenarios import SCENARIOS, Row

__all__ = ["build_config", "main", "run"]

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def _ints(text: str) -> tuple[int, ...]:
    values = tuple(int(part.replace("_", "")) for part in text.split(",") if part.strip())
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers separated by commas, got {text!r}")
    return values


def _positive(text: str) -> int:
    return _ints(text)[0]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small smoke run (N=1,000 unless --n is given)")
    p.add_argument("--n", type=_ints, help="keys in the store, comma-separated (default 10000,100000)")
    p.add_argument("--ops", type=_positive, help="operations per timed round (default 10,000, capped at N)")
    p.add_argument("--rounds", type=_positive, help="timed rounds; the median is reported (default 5)")
    p.add_argument("--latency-ops", type=_positive, help="individually timed operations for p50/p99")
    p.add_argument("--tasks", type=_positive, help="concurrent tasks in the concurrent-writers scenario (64)")
    p.add_argument("--writes", type=_positive, help="writes per round in the concurrent-writers scenario")
    p.add_argument(
        "--only", default="", help="keep rows whose target id or family contains one of these (comma-separated)"
    )
    p.add_argument("--scenario", default="", help=f"scenarios to run, comma-separated (of: {', '.join(SCENARIOS)})")
    p.add_argument("--no-profile", action="store_true", help="skip the breakdown of the slowest botmemory row")
    p.add_argument(
        "--profile-row",
        metavar="TARGET:OP",
        help="break down this row instead (e.g. bm-sqlite-async:set) at the largest N",
    )
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help="directory for latest.json and latest.md")
    return p


def build_config(args: argparse.Namespace) -> Config:
    """The run's Config from parsed command-line arguments."""
    if args.quick:
        config = Config.quick(args.n[0] if args.n else 1_000)
        if args.n:
            config = config.with_(sizes=args.n)
    else:
        config = Config() if not args.n else Config().with_(sizes=args.n)
    changes: dict[str, object] = {}
    for name, attr in (("ops", "ops"), ("rounds", "rounds"), ("latency_ops", "latency_ops"), ("tasks", "tasks")):
        if getattr(args, name) is not None:
            changes[attr] = getattr(args, name)
    if args.writes is not None:
        changes["concurrent_writes"] = args.writes
    only = tuple(part.strip() for part in args.only.split(",") if part.strip())
    if only:
        changes["only"] = only
    if args.no_profile:
        changes["profile"] = False
    if args.profile_row:
        target_id, _, op = args.profile_row.partition(":")
        if target_id not in TARGETS or not TARGETS[target_id].ours or op not in ("set", "get"):
            ours = ", ".join(t.id for t in TARGETS.values() if t.ours)
            raise SystemExit(f"--profile-row takes TARGET:set or TARGET:get with TARGET one of: {ours}")
        changes["profile_row"] = (target_id, op)
    return config.with_(**changes) if changes else config


def _slowest_ours(rows: list[Row]) -> tuple[str, str, int] | None:
    """(target id, op, N) of the slowest single-task botmemory row at the largest N."""
    candidates = [r for r in rows if r.scenario == "kv" and not r.skipped and TARGETS[r.target].ours]
    if not candidates:
        return None
    biggest = max(r.n or 0 for r in candidates)
    best: tuple[float, str, str, int] | None = None
    for row in candidates:
        if (row.n or 0) != biggest:
            continue
        for op in ("set", "get"):
            rate = row.metrics.get(f"{op}_ops")
            if rate is not None and (best is None or rate < best[0]):
                best = (rate, row.target, op, biggest)
    return None if best is None else best[1:]


def run(config: Config, scenario_names: Sequence[str] = (), log: Console | None = None) -> RunResult:
    """Run the scenarios (all when ``scenario_names`` is empty), the goals and the profile."""
    console = log or Console(stderr=True, width=None if sys.stderr.isatty() else 150)
    started = time.perf_counter()
    rows: list[Row] = []
    unknown = [s for s in scenario_names if s not in SCENARIOS]
    if unknown:
        raise SystemExit(f"unknown scenario(s) {unknown}; known: {list(SCENARIOS)}")
    for name, spec in SCENARIOS.items():
        if scenario_names and name not in scenario_names:
            continue
        console.print(f"[bold]{spec.title}[/bold]")
        rows += asyncio.run(spec.run(config, lambda line: console.print(line, highlight=False, markup=False)))
    verdicts = evaluate(rows)
    breakdown: Breakdown | None = None
    slowest = _slowest_ours(rows) if config.profile else None
    if slowest is not None and config.profile_row is not None:
        slowest = (*config.profile_row, max(config.sizes))
    if slowest is not None:
        target_id, op, n = slowest
        spec = TARGETS[target_id]
        which = "the chosen" if config.profile_row else "the slowest"
        console.print(f"[bold]Profiling {which} botmemory row: {spec.label} {op} at N={n:,}[/bold]")
        breakdown = asyncio.run(profile_row(spec, spec.open, op, n, config))
    meta = {
        "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "machine": f"{platform.system()} {platform.machine()}",
        "cpus": os.cpu_count(),
        "value_bytes": VALUE_BYTES,
        "duration_s": round(time.perf_counter() - started, 1),
        "argv": sys.argv[1:],
    }
    notes = [
        "set = overwrite a random existing key (1 h expiry); get = read and decode a random existing key",
        "raw drivers use the backend's own schema (kv WITHOUT ROWID, PRIMARY KEY (ns, key), expires_at index), "
        "WAL, synchronous=NORMAL, secure_delete=ON, and encode/decode JSON with orjson",
        "raw sqlite3 and aiosqlite run in autocommit: each write is its own committed transaction",
        "LangGraph InMemoryStore has no TTL support, so its rows store no expiry; it keeps the caller's dict "
        "by reference where botmemory encodes to JSON bytes",
        "clients of one table take turns round by round; a target's ratio is the median of the round-by-round "
        "ratios, so load from other processes falls on both sides alike",
        "the machine is shared: numbers move by 10-20% between runs (more under load), ratios less so",
    ]
    return RunResult(config, meta, rows, verdicts, breakdown, notes)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (0 unless the arguments are wrong)."""
    args = _parser().parse_args(argv)
    config = build_config(args)
    scenario_names = tuple(part.strip() for part in args.scenario.split(",") if part.strip())
    result = run(config, scenario_names)
    # wide enough for the goal names when the output goes to a file or a pipe
    console = Console(width=None if sys.stdout.isatty() else 150)
    print_report(result, console)
    json_path, md_path = write_results(result, args.out)
    console.print(f"wrote {json_path} and {md_path} ({result.meta['duration_s']:.0f} s)", highlight=False)
    return 0
