"""``botmemory janitor --once|--loop``: delete expired data, end timed-out sessions, apply policies.

With a ``--bots`` folder holding bots, each run is ``runtime.janitor_once()``
(which ends timed-out sessions and applies every mounted bot's retention
policies); without one, the retention janitor runs alone over the store.
"""

from __future__ import annotations

import asyncio
import math
import sys
import time
from collections.abc import Callable
from typing import Any

import typer

from ..errors import InvalidInputError
from ..store import Store
from .context import has_bots, open_runtime, open_store, settings
from .output import Output, show

__all__ = ["janitor"]

DEFAULT_INTERVAL = 300.0


def _report_dict(report: Any) -> dict[str, Any]:
    if isinstance(report, dict):
        return report
    as_dict = getattr(report, "as_dict", None)
    if callable(as_dict):
        result: dict[str, Any] = as_dict()
        return result
    raise TypeError(f"janitor returned {type(report).__name__}, not a report")


def _number(name: str, value: int | float) -> str:
    """A counter as people read it: durations in ms or s, other floats with 4 significant digits."""
    if isinstance(value, int):
        return str(value)
    if name == "duration" or name.endswith("_seconds"):
        return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"
    return f"{value:.4g}"


def _print_report(out: Output, report: dict[str, Any], run: int) -> None:
    if out.json:
        out.json_line(report)  # scripts get the exact numbers
        return
    parts = [
        f"{show(str(k))} {_number(str(k), v)}"
        for k, v in report.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    ]
    out.text(f"janitor run {run}: " + (", ".join(parts) or "nothing to report"))


def _interval_of(runtime: Any) -> float:
    """The shortest ``janitor_interval`` among the mounted bots' retention configs."""
    intervals = []
    for loaded in getattr(runtime, "bots", {}).values():
        value = getattr(getattr(loaded, "retention", None), "janitor_interval", None)
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            intervals.append(float(value))
    return min(intervals, default=DEFAULT_INTERVAL)


def janitor(
    ctx: typer.Context,
    once: bool = typer.Option(False, "--once", help="Run once and exit."),
    loop: bool = typer.Option(False, "--loop", help="Run every janitor_interval until Ctrl-C."),
    interval: float | None = typer.Option(
        None,
        "--interval",
        metavar="SECONDS",
        help="Seconds between runs with --loop (default: the bots' janitor_interval, else 300).",
    ),
    runs: int | None = typer.Option(None, "--runs", hidden=True, min=1, help="Stop --loop after N runs (tests)."),
) -> None:
    """Delete expired entries in bounded batches, end timed-out sessions, apply retention policies."""
    if once == loop:
        raise InvalidInputError("give exactly one of --once and --loop")
    if interval is not None and not (math.isfinite(interval) and 0 < interval <= 86_400):
        raise InvalidInputError("--interval must be between 0 and 86400 seconds")
    opts = settings(ctx)
    out = Output(opts.json)
    use_runtime = has_bots(opts.bots_dir)

    with asyncio.Runner() as runner:
        store: Store = runner.run(open_store(opts.store_url, opts.timeout))
        runtime: Any = None
        try:
            if use_runtime:
                runtime = runner.run(open_runtime(store, opts.bots_dir))
                if loop:  # a long-running janitor carries on; --once reports them as its failure below
                    for bot_id, error in sorted(runtime.load_errors.items()):
                        sys.stderr.write(f"warning: bot {show(bot_id)} not mounted: {show(error)}\n")
                run_once: Callable[[], Any] = runtime.janitor_once
            else:
                from ..retention.janitor import Janitor

                run_once = Janitor(store).run_once
            every = interval if interval is not None else (_interval_of(runtime) if runtime else DEFAULT_INTERVAL)
            count = 0
            try:
                while True:
                    count += 1
                    _print_report(out, _report_dict(runner.run(run_once())), count)
                    if once or (runs is not None and count >= runs):
                        break
                    time.sleep(every)
            except KeyboardInterrupt:
                if once:
                    raise
                out.text("janitor stopped", style="dim")
            if once and runtime is not None and runtime.load_errors:
                # the run went ahead for the others, but a broken bot's policies were not applied
                errors = sorted(runtime.load_errors.items())
                bot_id, error = errors[0]
                others = ", ".join(show(b) for b, _ in errors[1:])
                more = f" (and {len(errors) - 1} more bot(s): {others})" if len(errors) > 1 else ""
                raise InvalidInputError(
                    f"bot {show(bot_id)} not mounted, its retention policies were not applied: {show(error)}{more}"
                )
        finally:
            try:
                if runtime is not None:
                    runner.run(runtime.close())
            finally:
                runner.run(store.close())
