"""The benchmark harness runs end to end, and its goal arithmetic is right.

Benchmarks are not tests: nothing here looks at how fast anything is. The
smoke run uses the harness's quick mode at a tiny N; rows whose optional
module (LangGraph, aiosqlite) is missing are reported as skipped.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `benchmarks` is a top-level package of the repository, not of botmemory
    sys.path.insert(0, str(ROOT))

from benchmarks.goals import GOALS, Goal, evaluate  # noqa: E402
from benchmarks.scenarios import Row  # noqa: E402


def test_quick_run_prints_every_ratio_and_writes_results(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--quick",
            "--n",
            "200",
            "--rounds",
            "2",
            "--only",
            "memory,sqlite",
            "--out",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ratio_lines = [line for line in proc.stdout.splitlines() if line.startswith("RATIO ")]
    assert len(ratio_lines) == len(GOALS)
    for goal in GOALS:
        assert any(goal.name in line for line in ratio_lines), goal.name

    data = json.loads((tmp_path / "latest.json").read_text())
    rows = {(r["scenario"], r["target"]): r for r in data["rows"]}
    for target in ("bm-memory-async", "bm-memory-sync", "bm-sqlite-async", "bm-sqlite-sync", "raw-sqlite3"):
        row = rows[("kv", target)]
        assert row["n"] == 200 and row["skipped"] is None
        assert row["metrics"]["set_ops"] > 0 and row["metrics"]["get_ops"] > 0
        assert 0 < row["metrics"]["get_p50_us"] <= row["metrics"]["get_p99_us"]
    for target in ("lg-memory-sync", "raw-aiosqlite"):  # optional: measured, or skipped with the reason
        row = rows[("kv", target)]
        assert row["skipped"] is None or row["skipped"].endswith("not installed")
    assert rows[("concurrent-writes", "bm-sqlite-async")]["metrics"]["tasks"] == 64
    assert {g["goal"] for g in data["goals"]} == {g.name for g in GOALS}
    sqlite_get = next(g for g in data["goals"] if g["ours"] == "bm-sqlite-async" and g["reference"] == "raw-sqlite3")
    assert sqlite_get["ratio"] > 0  # the median of round-by-round ratios (tested below), not a timing check

    layers = data["breakdown"]["layers"]
    assert data["breakdown"]["target"].startswith("bm-") and len(layers) >= 4
    assert (tmp_path / "latest.md").read_text().startswith("# botmemory benchmarks")


def _row(
    target: str, rate: float | None, n: int = 10, skipped: str | None = None, rounds: list[float] | None = None
) -> Row:
    metrics = {} if rate is None else {"set_ops": rate}
    return Row("kv", target, target, "memory", n, metrics, skipped, {"set_ops": rounds} if rounds else {})


def test_goal_uses_the_fastest_reference_and_reports_missing_rows() -> None:
    goal = Goal("ours ≥ 1× theirs", "kv", "set_ops", "ours", ("slow", "fast"), 1.0)
    rows = [_row("ours", 150.0), _row("slow", 100.0), _row("fast", 200.0)]
    (verdict,) = evaluate(rows, [goal])
    assert verdict.theirs_id == "fast" and verdict.ratio == 0.75 and verdict.met is False

    (verdict,) = evaluate([_row("ours", 300.0), _row("slow", 100.0)], [goal])
    assert verdict.theirs_id == "slow" and verdict.ratio == 3.0 and verdict.met is True

    (verdict,) = evaluate([_row("ours", 300.0), _row("fast", None, skipped="langgraph not installed")], [goal])
    assert verdict.ratio is None and verdict.met is None and "langgraph not installed" in verdict.why


def test_goal_compares_rounds_that_ran_side_by_side() -> None:
    goal = Goal("ours ≥ 1× theirs", "kv", "set_ops", "ours", ("theirs",), 1.0)
    # the reference's second round was hit by load: round-by-round ratios are 1.2, 1.2, 1.2
    ours = _row("ours", 120.0, rounds=[120.0, 60.0, 120.0])
    theirs = _row("theirs", 100.0, rounds=[100.0, 50.0, 100.0])
    (verdict,) = evaluate([ours, theirs], [goal])
    assert verdict.ratio == 1.2 and verdict.met is True
    # without rounds (or with a different count of them) the values are compared
    (verdict,) = evaluate([_row("ours", 120.0), _row("theirs", 100.0, rounds=[100.0])], [goal])
    assert verdict.ratio == 1.2
