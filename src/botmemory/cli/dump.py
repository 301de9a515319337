"""``botmemory dump`` / ``botmemory load``: copy a store between any two backends as JSON lines.

::

    botmemory --store sqlite:///bots.db dump > bots.jsonl
    botmemory --store redis://localhost:6379/0 load bots.jsonl [--bot BOT ...] [--replace]
    botmemory load bots.jsonl --resume      # finish a load that was interrupted
    botmemory load --abort [bots.jsonl]     # or discard what it staged

The format is described in :mod:`botmemory.dumpfile`. ``load`` checks
the whole file first and writes nothing unless every line is valid; with
``--bot`` it writes only the named bots' namespaces (``@global`` names the
server-wide KVS) and skips the rest of the file; it refuses to write into
namespaces that already hold data unless ``--replace``. It is all or
nothing: the entries are staged, then swapped in at once, so Ctrl-C,
SIGTERM, a crash or a backend failure leave the store as it was (and the
staged copy, for ``--resume`` or ``--abort``).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from .. import dumpfile
from ..errors import BotMemoryError, InvalidInputError
from ..store import Store
from .context import run, settings
from .output import Output, show

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
    file: str | None = typer.Argument(
        None, metavar="FILE", help="A file written by botmemory dump, or - for stdin (not needed with --abort)."
    ),
    bots: list[str] | None = BOTS,
    replace: bool = typer.Option(False, "--replace", help="Replace what the namespaces being loaded hold."),
    resume: bool = typer.Option(
        False, "--resume", help="Finish an interrupted load of FILE (same --bot and --replace as then)."
    ),
    abort: bool = typer.Option(
        False, "--abort", help="Discard what an interrupted load staged (of FILE, or of every file)."
    ),
    batch: int = typer.Option(dumpfile.PAGE, "--batch", min=1, max=10_000, metavar="N", help="Rows per write."),
    progress: bool | None = PROGRESS,
) -> None:
    """Load a dump: validate the whole file, then write it with versions and expiry preserved, all or nothing."""
    opts = settings(ctx)
    out = Output(opts.json)
    owners = dumpfile.select_owners(bots)
    if abort:
        if resume or replace or bots:
            raise InvalidInputError("--abort takes no --resume, --replace or --bot")
        _abort(ctx, out, file)
        return
    if file is None:
        raise InvalidInputError("missing FILE: the dump to load (or - for stdin)")
    state = dumpfile.LoadProgress()
    signals: list[str] = []

    with _open_input(file) as stream:

        async def go(store: Store) -> dumpfile.LoadPlan:
            # SIGTERM stops the load as Ctrl-C does (the task is cancelled), so the
            # store is left as it was and the staged copy is kept for --resume
            loop, task = asyncio.get_running_loop(), asyncio.current_task()

            def on_sigterm() -> None:
                signals.append("SIGTERM")
                if task is not None:
                    task.cancel()

            try:
                loop.add_signal_handler(signal.SIGTERM, on_sigterm)
            except (ValueError, RuntimeError, NotImplementedError):  # not the main thread: SIGTERM stays fatal
                pass
            try:
                plan = dumpfile.validate(stream, store.limits, store.clock.now(), owners)
                stream.seek(0)
                with _progress("loading", plan.to_write, progress) as advance:
                    await dumpfile.load(
                        store, stream, plan, owners=owners, replace=replace, batch=batch, advance=advance,
                        resume=resume, progress=state,
                    )
                return plan
            finally:
                try:
                    loop.remove_signal_handler(signal.SIGTERM)
                except (ValueError, RuntimeError, NotImplementedError):
                    pass

        try:
            plan = run(ctx, go)
        except (KeyboardInterrupt, asyncio.CancelledError):
            what = signals[0] if signals else "Ctrl-C"
            if state.staging and not state.done:
                message = f"load interrupted ({what}): {dumpfile.resume_hint(state)}"
            else:
                message = f"load interrupted ({what}) before anything was written: the store is unchanged"
            sys.stderr.write(f"error: {message}\n")
            raise typer.Exit(143 if signals else 130) from None
        except BotMemoryError as exc:
            if not state.staging or state.done or isinstance(exc, dumpfile.DumpError):
                raise
            try:
                annotated = type(exc)(f"{exc}; {dumpfile.resume_hint(state)}")
            except TypeError:
                raise exc from None
            raise annotated from exc

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


def _abort(ctx: typer.Context, out: Output, file: str | None) -> None:
    """``load --abort [FILE]``: discard staged copies; the loads' targets are not touched."""
    digest = None
    if file is not None:
        with _open_input(file) as stream:
            digest = dumpfile.file_digest(stream)

    async def go(store: Store) -> int:
        return await dumpfile.abort_loads(store, digest)

    discarded = run(ctx, go, create=False)
    if out.json:
        out.data({"discarded": discarded})
    elif discarded:
        out.text(f"discarded the staged copy of {discarded} interrupted load(s); the store is as before them")
    else:
        out.text("no interrupted load to discard")
