"""``botmemory dump`` / ``botmemory load``: copy a store between any two backends as JSON lines.

::

    botmemory --store sqlite:///bots.db dump > bots.jsonl
    botmemory --store redis://localhost:6379/0 load bots.jsonl [--bot BOT ...] [--replace]

The format is described in :mod:`botmemory.cli.dumpfile`. ``load`` checks
the whole file first and writes nothing unless every line is valid; with
``--bot`` it writes only the named bots' namespaces (``@global`` names the
server-wide KVS) and skips the rest of the file; it refuses to write into
namespaces that already hold data unless ``--replace``.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ..errors import InvalidInputError
from ..store import Store
from . import dumpfile
from .common import Output, run, settings, show

__all__ = ["dump_command", "load_command"]


def _shows_progress(enabled: bool | None) -> bool:
    return enabled is True or (enabled is None and Console(stderr=True).is_terminal)


@contextmanager
def _progress(label: str, total: int | None, enabled: bool | None) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on stderr (only on a terminal unless forced); yields ``advance(n)``."""
    console = Console(stderr=True)
    if not _shows_progress(enabled):
        yield lambda _n: None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


PROGRESS = typer.Option(
    None, "--progress/--no-progress", help="Progress bar on stderr (default: when it is a terminal)."
)
OUTPUT = typer.Option(
    None, "--output", "-o", metavar="FILE", help="Write here (atomically) instead of stdout.", dir_okay=False
)
BOTS = typer.Option(None, "--bot", metavar="BOT", help="Only this bot (repeatable); @global for the server-wide KVS.")


def dump_command(
    ctx: typer.Context,
    output: Path | None = OUTPUT,
    bots: list[str] | None = BOTS,
    progress: bool | None = PROGRESS,
) -> None:
    """Write every live entry of the store as JSON lines (header, entries, trailer)."""
    opts = settings(ctx)
    out = Output(opts.json)
    owners = dumpfile.select_owners(bots)
    if output is not None:
        _check_output(output)

    async def go(store: Store) -> dumpfile.DumpSummary:
        # counting costs a pass over every namespace: only for a bar someone sees
        total = await dumpfile.count_live(store, owners) if _shows_progress(progress) else None
        with _progress("dumping", total, progress) as advance:
            if output is None:
                stream = typer.get_binary_stream("stdout")
                summary = await dumpfile.write_dump(store, stream, owners=owners, advance=advance)
                stream.flush()
                return summary
            return await _dump_to_file(store, output, owners, advance)

    summary = run(ctx, go, create=False)  # dumping a store that does not exist creates none
    result = {"count": summary.count, "namespaces": len(summary.namespaces)}
    if output is None:
        # stdout holds the dump: the summary goes to stderr, for people only
        if not opts.json:
            sys.stderr.write(f"dumped {summary.count} entries from {len(summary.namespaces)} namespaces\n")
    elif out.json:
        out.data({**result, "file": str(output)})
    else:
        out.text(f"dumped {summary.count} entries from {len(summary.namespaces)} namespaces to {show(str(output))}")


def _check_output(path: Path) -> None:
    """Refuse, before the store is read, an output file that cannot be written (exit 2, the path named)."""
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise InvalidInputError(f"cannot write {show(str(path))}: directory {show(str(directory))} does not exist")
    if path.is_dir():
        raise InvalidInputError(f"cannot write {show(str(path))}: it is a directory")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise InvalidInputError(f"cannot write {show(str(path))}: directory {show(str(directory))} is not writable")


async def _dump_to_file(
    store: Store, path: Path, owners: frozenset[str] | None, advance: Callable[[int], None]
) -> dumpfile.DumpSummary:
    # a temporary file renamed at the end: a failed dump never leaves a truncated file behind
    directory = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:  # the message names the file asked for, not the temporary one
        raise InvalidInputError(f"cannot write {show(str(path))}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as stream:
            summary = await dumpfile.write_dump(store, stream, owners=owners, advance=advance)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return summary


@contextmanager
def _open_input(file: str) -> Iterator[IO[bytes]]:
    """The dump file, or stdin (``-``) spooled to a temporary file: loading reads it twice."""
    if file != "-":
        try:
            stream = open(file, "rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise InvalidInputError(f"cannot read {show(file)}: {exc.strerror}") from None
        with stream:
            yield stream
        return
    with tempfile.TemporaryFile() as spool:
        shutil.copyfileobj(typer.get_binary_stream("stdin"), spool)
        spool.seek(0)
        yield spool


def load_command(
    ctx: typer.Context,
    file: str = typer.Argument(..., metavar="FILE", help="A file written by botmemory dump, or - for stdin."),
    bots: list[str] | None = BOTS,
    replace: bool = typer.Option(False, "--replace", help="Empty the namespaces being loaded first."),
    batch: int = typer.Option(dumpfile.PAGE, "--batch", min=1, max=10_000, metavar="N", help="Rows per write."),
    progress: bool | None = PROGRESS,
) -> None:
    """Load a dump: validate the whole file, then write it with versions and expiry preserved."""
    opts = settings(ctx)
    out = Output(opts.json)
    owners = dumpfile.select_owners(bots)

    with _open_input(file) as stream:

        async def go(store: Store) -> dumpfile.LoadPlan:
            plan = dumpfile.validate(stream, store.limits, store.clock.now(), owners)
            stream.seek(0)
            with _progress("loading", plan.to_write, progress) as advance:
                await dumpfile.load(store, stream, plan, owners=owners, replace=replace, batch=batch, advance=advance)
            return plan

        plan = run(ctx, go)

    result: dict[str, Any] = {
        "loaded": plan.to_write,
        "namespaces": plan.namespaces,
        "skipped_expired": plan.skipped_expired,
        "skipped_other_bots": plan.skipped_unselected,
        "source": plan.source,
        "time": plan.time,
    }
    if out.json:
        out.data(result)
        return
    out.table(
        ["namespace", "entries"],
        [[show(ns), str(n)] for ns, n in plan.namespaces.items()],
        title=f"loaded {plan.to_write} entries (dump of a {show(plan.source)} store at {show(plan.time)})",
    )
    if plan.skipped_expired or plan.skipped_unselected:
        out.text(
            f"skipped {plan.skipped_expired} expired and {plan.skipped_unselected} of other bots", style="dim"
        )
