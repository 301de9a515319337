"""One run's results as rich tables, JSON and a markdown page."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from .breakdown import Breakdown
from .config import Config
from .goals import Verdict
from .scenarios import SCENARIOS, Column, Row

__all__ = ["RunResult", "print_report", "to_json", "to_markdown", "write_results"]


@dataclass
class RunResult:
    """Everything one run measured."""

    config: Config
    meta: dict[str, Any]
    rows: list[Row]
    verdicts: list[Verdict]
    breakdown: Breakdown | None = None
    notes: list[str] = field(default_factory=list)


def _fmt(value: float | None, kind: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if kind == "rate":
        return f"{value:,.0f}"
    if kind == "us":
        return f"{value:,.1f}" if value < 1000 else f"{value:,.0f}"
    return f"{value:g}"


def _scenario_tables(result: RunResult) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, headers, cells) of every scenario that produced rows."""
    out = []
    for name, spec in SCENARIOS.items():
        rows = [r for r in result.rows if r.scenario == name]
        if not rows:
            continue
        headers = ["target", "N", *(c.header for c in spec.columns)]
        cells = []
        for row in rows:
            n = "" if row.n is None else f"{row.n:,}"
            if row.skipped:
                cells.append([row.label, n, f"skipped: {row.skipped}", *([""] * (len(spec.columns) - 1))])
            else:
                cells.append([row.label, n, *(_metric(row, c) for c in spec.columns)])
        out.append((spec.title, headers, cells))
    return out


def _metric(row: Row, column: Column) -> str:
    return _fmt(row.metrics.get(column.key), column.kind)


def _goal_cells(result: RunResult) -> list[list[str]]:
    cells = []
    for v in result.verdicts:
        n = "" if v.n is None else f"{v.n:,}"
        if v.ratio is None:
            cells.append([v.goal.name, n, "–", "–", "–", f"≥ {v.goal.minimum:g}×", f"n/a ({v.why})"])
            continue
        cells.append(
            [
                v.goal.name,
                n,
                _fmt(v.ours_value, "rate"),
                f"{_fmt(v.theirs_value, 'rate')} ({v.theirs_id})",
                f"{v.ratio:.2f}×",
                f"≥ {v.goal.minimum:g}×",
                "met" if v.met else "NOT met",
            ]
        )
    return cells


_GOAL_HEADERS = ["goal", "N", "ours ops/s", "reference ops/s", "ratio", "target", "verdict"]


def _breakdown_cells(b: Breakdown) -> list[list[str]]:
    cells = []
    for layer in b.layers:
        share = 100 * layer.us / b.total_us if b.total_us else float("nan")
        name = f"  ↳ {layer.name}" if layer.part_of else layer.name
        cells.append([name, f"{layer.us:,.2f}", f"{share:.0f}%"])
    cells.append(["total per operation", f"{b.total_us:,.2f}", "100%"])
    return cells


def print_report(result: RunResult, console: Console) -> None:
    """The tables, the goals and the breakdown, for people."""
    for title, headers, cells in _scenario_tables(result):
        table = Table(title=title, title_justify="left")
        for i, h in enumerate(headers):
            table.add_column(h, justify="left" if i == 0 else "right")
        for row in cells:
            table.add_row(*row)
        console.print(table)
    goals = Table(title="Targets from the issue (ratios in this run)", title_justify="left")
    for i, h in enumerate(_GOAL_HEADERS):
        goals.add_column(h, justify="left" if i == 0 else "right")
    for cells in _goal_cells(result):
        style = "green" if cells[-1] == "met" else "red" if cells[-1] == "NOT met" else "yellow"
        goals.add_row(*cells[:-1], f"[{style}]{cells[-1]}[/{style}]")
    console.print(goals)
    for line in ratio_lines(result):
        console.print(line, highlight=False, markup=False)
    b = result.breakdown
    if b is not None:
        table = Table(
            title=f"Where the time goes: {b.label} {b.op} at N={b.n:,}",
            title_justify="left",
        )
        table.add_column("layer")
        table.add_column("µs/op", justify="right")
        table.add_column("share", justify="right")
        for cells in _breakdown_cells(b):
            table.add_row(*cells)
        console.print(table)
        top = Table(title="cProfile, calling thread: heaviest functions", title_justify="left")
        top.add_column("function")
        top.add_column("calls", justify="right")
        top.add_column("own µs/op", justify="right")
        top.add_column("cum µs/op", justify="right")
        for name, calls, own, cum in b.top_functions:
            top.add_row(name, f"{calls:,}", f"{own:.2f}", f"{cum:.2f}")
        console.print(top)
        for note in b.notes:
            console.print(f"note: {note}", highlight=False, markup=False)


def ratio_lines(result: RunResult) -> list[str]:
    """One plain line per goal and N, e.g. ``RATIO ... = 1.23x (target >= 1x): met``."""
    lines = []
    for v in result.verdicts:
        at = "" if v.n is None else f" [N={v.n}]"
        if v.ratio is None:
            lines.append(f"RATIO {v.goal.name}{at}: n/a ({v.why})")
        else:
            verdict = "met" if v.met else "NOT met"
            lines.append(f"RATIO {v.goal.name}{at} = {v.ratio:.2f}x (target >= {v.goal.minimum:g}x): {verdict}")
    return lines


def to_json(result: RunResult) -> dict[str, Any]:
    """Everything, machine-readable."""
    return {
        "meta": result.meta,
        "config": dataclasses.asdict(result.config),
        "rows": [dataclasses.asdict(r) for r in result.rows],
        "goals": [
            {
                "goal": v.goal.name,
                "n": v.n,
                "ours": v.goal.ours,
                "reference": v.theirs_id,
                "ours_value": v.ours_value,
                "reference_value": v.theirs_value,
                "ratio": v.ratio,
                "minimum": v.goal.minimum,
                "met": v.met,
                "why": v.why or None,
            }
            for v in result.verdicts
        ],
        "breakdown": None if result.breakdown is None else dataclasses.asdict(result.breakdown),
        "notes": result.notes,
    }


def _md_table(headers: list[str], cells: list[list[str]], right_from: int = 1) -> str:
    align = ["---" if i < right_from else "---:" for i in range(len(headers))]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells]
    return "\n".join(lines)


def to_markdown(result: RunResult) -> str:
    """The same tables as markdown, for the README."""
    meta = result.meta
    parts = [
        "# botmemory benchmarks",
        "",
        f"Run {meta.get('date', '')} on {meta.get('machine', '')}: Python {meta.get('python', '')}, "
        f"SQLite {meta.get('sqlite', '')}, {meta.get('cpus', '?')} CPUs, {meta.get('duration_s', 0):.0f} s. "
        "Values are 200-byte JSON dicts written with a 1 h expiry; rates are medians of "
        f"{result.config.rounds} rounds, latencies are single operations. "
        "Regenerate with `make bench`.",
        "",
    ]
    for title, headers, cells in _scenario_tables(result):
        parts += [f"## {title}", "", _md_table(headers, cells, 2), ""]
    parts += ["## Targets", "", _md_table(_GOAL_HEADERS, _goal_cells(result), 1), ""]
    b = result.breakdown
    if b is not None:
        parts += [
            f"## Where the time goes: {b.label} {b.op} at N={b.n:,}",
            "",
            _md_table(["layer", "µs/op", "share"], _breakdown_cells(b)),
            "",
        ]
        parts += [f"- {note}" for note in b.notes]
        parts.append("")
    if result.notes:
        parts += ["## Notes", ""] + [f"- {note}" for note in result.notes] + [""]
    return "\n".join(parts)


def write_results(result: RunResult, out_dir: Path) -> tuple[Path, Path]:
    """Write ``latest.json`` and ``latest.md`` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / "latest.json", out_dir / "latest.md"
    json_path.write_text(json.dumps(_finite(to_json(result)), indent=2, allow_nan=False) + "\n")
    md_path.write_text(to_markdown(result))
    return json_path, md_path


def _finite(value: Any) -> Any:
    """NaN and infinities become null: JSON has no spelling for them."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
