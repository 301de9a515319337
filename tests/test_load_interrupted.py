"""``botmemory load`` interrupted by real signals leaves the store as it was (issue 11, item 2).

A 50,000-row dump is loaded by a ``python -m botmemory load`` subprocess on
SQLite, PostgreSQL and Redis; once the test sees 5,000 rows staged it sends
SIGTERM, SIGINT or SIGKILL. The target namespace must then hold exactly what
it held before (with ``--replace`` too: the walk that found this lost the 3
original keys and kept 4,300 new rows), and ``load --resume`` must finish the
load, or ``load --abort`` discard what was staged. ``memory://`` lives in one
process, so there is nothing to signal across processes: there, the load
task is cancelled in-process instead.
"""

from __future__ import annotations

import asyncio
import io
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

import botmemory
from botmemory import dumpfile
from botmemory.backends.base import Row
from botmemory.cli import app
from botmemory.testing.backends import POSTGRES_URL, REDIS_URL, unique_suffix
from conftest import require_backend

ROWS = 50_000
SIGNAL_AT = 5_000
NS = "bulk"
ORIGINAL = {"orig/1": "one", "orig/2": "two", "orig/3": "three"}


@pytest.fixture(scope="module")
def dump_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("dump") / "bulk.jsonl"
    header = {"format": "botmemory-dump", "version": 1, "source": "sqlite", "time": "2026-01-01T00:00:00.000Z"}
    lines = [orjson.dumps(header)]
    for i in range(ROWS):
        entry = {"ns": NS, "key": f"k{i:06d}", "version": 1 + i % 3, "expires_at": None,
                 "modified_at": 1_700_000_000.0, "value": {"i": i, "text": "row"}}  # fmt: skip
        lines.append(orjson.dumps(entry))
    lines.append(orjson.dumps({"end": True, "count": ROWS}))
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


@pytest.fixture(params=["sqlite", "postgres", "redis"])
async def target(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[str, botmemory.Store]]:
    """A store URL (with its own schema / prefix) and the test's own store open on it."""
    name: str = request.param
    require_backend(name)
    if name == "sqlite":
        url = f"sqlite:///{tmp_path / 'target.db'}"
    elif name == "postgres":
        url = f"{POSTGRES_URL}?schema={unique_suffix()}"
    else:
        url = f"{REDIS_URL}?prefix=botmemory-test:{unique_suffix()}:"
    store = await botmemory.open(url)
    try:
        yield url, store
    finally:
        drop = getattr(store.backend, "drop_everything", None)
        if drop is not None:
            await drop()
        await store.close()


def _start_load(url: str, dump: Path, *extra: str) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "botmemory", "--store", url, "load", str(dump), "--batch", "100",
               "--no-progress", *extra]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


async def _written(store: botmemory.Store) -> int:
    """Rows the load wrote so far: staged (or, for a load that writes in place, in the target)."""
    pending = await dumpfile.pending_loads(store) if hasattr(dumpfile, "pending_loads") else []
    if pending:
        return int(pending[0]["staged"])
    return await store.backend.count(NS, store.clock.now()) - len(ORIGINAL)


async def _interrupt_midway(process: subprocess.Popen[bytes], store: botmemory.Store, sig: int) -> tuple[int, str]:
    """Wait until SIGNAL_AT rows are written, send ``sig``; the exit status and stderr."""
    deadline = time.monotonic() + 60
    while (written := await _written(store)) < SIGNAL_AT:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the load never got going"
        await asyncio.sleep(0.01)
    process.send_signal(sig)
    _, err = await asyncio.to_thread(process.communicate, timeout=60)
    assert written < ROWS  # it was interrupted midway
    return process.returncode, err.decode()


async def _contents(store: botmemory.Store) -> dict[str, object]:
    kvs = store.bot(NS).kvs
    keys = [k async for k in kvs.keys()]
    return await kvs.get_many(keys) if keys else {}


def _cli(url: str, *args: str) -> None:
    result = CliRunner().invoke(app, ["--store", url, *args])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("sig", "finish"),
    [(signal.SIGTERM, "resume"), (signal.SIGINT, "abort"), (signal.SIGKILL, "abort")],
    ids=["SIGTERM-resume", "SIGINT-abort", "SIGKILL-abort"],
)
async def test_an_interrupted_replace_leaves_the_old_data(
    target: tuple[str, botmemory.Store], dump_file: Path, sig: int, finish: str
) -> None:
    url, store = target
    await store.bot(NS).kvs.set_many(ORIGINAL)
    code, err = await _interrupt_midway(_start_load(url, dump_file, "--replace"), store, sig)
    assert code == {signal.SIGTERM: 143, signal.SIGINT: 130, signal.SIGKILL: -signal.SIGKILL}[sig], err
    if sig != signal.SIGKILL:  # SIGKILL leaves no chance to say anything
        assert "the store is unchanged" in err and "--resume" in err and "Traceback" not in err
    assert await _contents(store) == ORIGINAL  # neither lost nor mixed with new rows
    assert len(await dumpfile.pending_loads(store)) == 1
    if finish == "resume":
        await asyncio.to_thread(_cli, url, "load", str(dump_file), "--replace", "--resume", "--batch", "5000")
        loaded = await _contents(store)
        assert len(loaded) == ROWS and not set(ORIGINAL) & set(loaded)
        entry = await store.bot(NS).kvs.get_entry("k012345")
        assert entry is not None and entry.value == {"i": 12345, "text": "row"} and entry.version == 1 + 12345 % 3
    else:
        await asyncio.to_thread(_cli, url, "load", "--abort", str(dump_file))
        assert await _contents(store) == ORIGINAL
    assert await dumpfile.pending_loads(store) == []
    assert not [ns for ns in await store.backend.namespaces() if ns.startswith(dumpfile.STAGING_PREFIX)]


async def test_an_interrupted_load_into_an_empty_store(target: tuple[str, botmemory.Store], dump_file: Path) -> None:
    url, store = target
    code, _ = await _interrupt_midway(_start_load(url, dump_file), store, signal.SIGTERM)
    assert code == 143
    assert await _contents(store) == {}  # no half load to clean up by hand
    refused = await asyncio.to_thread(CliRunner().invoke, app, ["--store", url, "load", str(dump_file)])
    assert refused.exit_code == 2 and "--resume" in refused.stderr  # loading it again would not double it


async def test_memory_backend_load_cancelled_in_process(dump_file: Path) -> None:
    store = await botmemory.open("memory://")
    try:
        await store.bot(NS).kvs.set_many(ORIGINAL)
        data = dump_file.read_bytes()
        plan = dumpfile.validate(io.BytesIO(data), store.limits, store.clock.now())
        restore = store.backend.restore

        async def restore_and_yield(ns: str, rows: list[Row]) -> None:
            await restore(ns, rows)
            await asyncio.sleep(0)  # the memory backend never waits for I/O: let the test's task run

        store.backend.restore = restore_and_yield  # type: ignore[method-assign]
        task = asyncio.ensure_future(dumpfile.load(store, io.BytesIO(data), plan, replace=True, batch=100))
        while await _written(store) < SIGNAL_AT:
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await _contents(store) == ORIGINAL
        await dumpfile.load(store, io.BytesIO(data), plan, replace=True, resume=True)
        assert len(await _contents(store)) == ROWS
    finally:
        await store.close()

