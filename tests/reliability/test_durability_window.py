"""What a power loss could take: the time between acknowledging a write and fsyncing it (item 1).

A SIGKILL only loses what the server had not yet handed to the kernel (the
crash loops measure that). A power loss (or a kernel crash) also loses what
the kernel had not yet written to the disk, i.e. everything acknowledged
since the last ``fsync``/``fdatasync`` that covered it. That cannot be
simulated without a virtual machine, but it can be measured: the server
runs under ``strace`` (only fsync calls traced), a client writes and records
when each call started and returned, and the two timelines give

- ``synced_in_call``: the share of acknowledged writes with a complete fsync
  inside their own call (durable when acknowledged);
- ``window_max_s``: for the others, the longest time from acknowledgement to
  the end of the next fsync (an upper bound: the first fsync that *starts*
  after the acknowledgement);
- ``at_risk_max``: the most acknowledged writes that were not yet fsynced at
  one instant, i.e. what a power loss at the worst moment would take (at
  the measured write rate).

Redis with ``appendfsync always``, SQLite with ``synchronous=full`` and
PostgreSQL (``synchronous_commit=on``, the default) must fsync inside every
call; ``everysec`` and ``synchronous=normal`` are
measured and recorded, not asserted.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import botmemory
from botmemory.testing.backends import unique_suffix
from ownservers import RedisServer, own_postgres, require_binary
from reliability_suite import record, size

SECONDS = size(3.0, 20.0)
_LINE = re.compile(r"^(\d+)\s+([\d.]+)\s+(?:(f(?:data)?sync)\((\d+)(.*)|<\.\.\. f(?:data)?sync resumed>(.*))$")


def _strace() -> str:
    return require_binary("strace", shutil.which("strace"))


def parse_fsyncs(trace: Path) -> list[tuple[float, float]]:
    """(start, end) wall-clock times of every successful fsync/fdatasync in an ``strace -f -ttt -T`` log."""
    done: list[tuple[float, float]] = []
    started: dict[str, float] = {}
    for line in trace.read_text().splitlines():
        m = _LINE.match(line)
        if m is None:
            continue
        pid, at = m.group(1), float(m.group(2))
        resumed = m.group(3) is None
        rest = m.group(6) if resumed else m.group(5)
        if "<unfinished" in rest:
            started[pid] = at
            continue
        start = started.pop(pid, at) if resumed else at
        took = re.search(r"= 0 <([\d.]+)>\s*$", rest)
        if took:
            done.append((start, start + float(took.group(1))))
    return sorted(done)


def windows(calls: list[tuple[float, float]], fsyncs: list[tuple[float, float]]) -> dict[str, float]:
    """The figures of the module docstring, from (start, end) of each acknowledged write and each fsync."""
    starts = [s for s, _ in fsyncs]
    ends_by_start = [e for _, e in fsyncs]
    in_call = 0
    exposure: list[tuple[float, float]] = []  # (acknowledged, durable) of writes not synced in their call
    for t0, t1 in calls:
        i = bisect.bisect_left(starts, t0)
        if i < len(starts) and ends_by_start[i] <= t1:
            in_call += 1
            continue
        j = bisect.bisect_left(starts, t1)
        exposure.append((t1, ends_by_start[j] if j < len(starts) else float("inf")))
    finite = [d - a for a, d in exposure if d != float("inf")]
    # the most writes acknowledged-but-not-durable at once: sweep over +1 at ack, -1 when durable
    events = sorted([(a, 1) for a, _ in exposure] + [(d, -1) for _, d in exposure if d != float("inf")])
    at_risk = peak = 0
    for _, delta in events:
        at_risk += delta
        peak = max(peak, at_risk)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    span = (calls[-1][1] - calls[0][0]) if calls else 0.0
    return {
        "writes": len(calls),
        "writes_per_s": round(len(calls) / span) if span else 0,
        "fsyncs": len(fsyncs),
        "synced_in_call": round(in_call / len(calls), 4) if calls else 0.0,
        "window_max_s": round(max(finite), 3) if finite else 0.0,
        "fsync_gap_max_s": round(max(gaps), 3) if gaps else 0.0,
        "at_risk_max": peak,
    }


async def _write_for(url: str, seconds: float, tasks: int = 4, **options: object) -> list[tuple[float, float]]:
    calls: list[tuple[float, float]] = []
    async with await botmemory.open(url, timeout=5, **options) as store:
        kvs = store.bot("durable").kvs
        stop = time.monotonic() + seconds

        async def writer(t: int) -> None:
            i = 0
            while time.monotonic() < stop:
                i += 1
                t0 = time.time()
                await kvs.set(f"k{t}/{i}", {"i": i})
                calls.append((t0, time.time()))

        await asyncio.gather(*(writer(t) for t in range(tasks)))
    return sorted(calls)


@pytest.mark.redis
@pytest.mark.parametrize("appendfsync", ["always", "everysec"])
async def test_redis_fsync_window(appendfsync: str, tmp_path: Path) -> None:
    trace = tmp_path / "strace.txt"
    wrap = [_strace(), "-f", "-qq", "--seccomp-bpf", "-ttt", "-T", "-e", "trace=fsync,fdatasync", "-o", str(trace)]
    server = RedisServer(appendfsync=appendfsync, wrap=wrap)
    server.start()
    try:
        calls = await _write_for(server.url, SECONDS)
    finally:
        server.destroy()
    figures = windows(calls, parse_fsyncs(trace))
    record(f"power_loss_window.redis.{appendfsync}", seconds=SECONDS, **figures)
    assert figures["writes"] > 100
    if appendfsync == "always":
        assert figures["synced_in_call"] == 1.0, figures
    else:
        # everysec: a background fsync about once a second, so acknowledged
        # writes wait up to ~1 s (2 s when the disk is slow) to be on disk
        assert figures["fsyncs"] >= 1, figures
        assert figures["synced_in_call"] < 0.5, figures


_SQLITE_WRITER = """
import asyncio, sys, time, botmemory
async def main(url, seconds):
    calls = []
    async with await botmemory.open(url) as store:
        kvs = store.bot("durable").kvs
        stop = time.monotonic() + seconds
        async def writer(t):
            i = 0
            while time.monotonic() < stop:
                i += 1
                t0 = time.time()
                await kvs.set(f"k{t}/{i}", {"i": i})
                calls.append((t0, time.time()))
        await asyncio.gather(*(writer(t) for t in range(4)))
    sys.stdout.write("\\n".join(f"{a!r} {b!r}" for a, b in calls))
asyncio.run(main(sys.argv[1], float(sys.argv[2])))
"""


@pytest.mark.parametrize("synchronous", ["full", "normal"])
def test_sqlite_fsync_window(synchronous: str, tmp_path: Path) -> None:
    trace = tmp_path / "strace.txt"
    url = f"sqlite:///{tmp_path / 'durable.db'}?synchronous={synchronous}"
    cmd = [_strace(), "-f", "-qq", "--seccomp-bpf", "-ttt", "-T", "-e", "trace=fsync,fdatasync", "-o", str(trace),
           sys.executable, "-c", _SQLITE_WRITER, url, str(SECONDS)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120 + SECONDS, check=True).stdout
    calls = sorted((float(a), float(b)) for a, b in (line.split() for line in out.splitlines() if line))
    figures = windows(calls, parse_fsyncs(trace))
    record(f"power_loss_window.sqlite.{synchronous}", seconds=SECONDS, **figures)
    assert figures["writes"] > 100
    if synchronous == "full":
        assert figures["synced_in_call"] == 1.0, figures
    else:
        assert figures["synced_in_call"] < 0.5, figures


@pytest.mark.postgres
async def test_postgres_fsync_window(tmp_path: Path) -> None:
    """Every process of the cluster is traced (the WAL writer too), and each backend from its fork.

    Only ``fdatasync``: PostgreSQL flushes its WAL with it on Linux (``wal_sync_method``), while
    the checkpointer's ``fsync`` of data files makes no commit durable.
    """
    cluster = own_postgres()
    trace = tmp_path / "strace.txt"
    postmaster = cluster.postmaster()
    assert postmaster is not None
    pids = [str(p) for pid in cluster.processes() for p in ("-p", pid)]
    tracer = subprocess.Popen([_strace(), "-f", "-qq", "-ttt", "-T", "-e", "trace=fdatasync", "-o", str(trace),
                               *pids], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while f"TracerPid:\t{tracer.pid}" not in Path(f"/proc/{postmaster}/status").read_text():
            assert time.monotonic() < deadline and tracer.poll() is None, "strace did not attach"
            await asyncio.sleep(0.02)
        # attached: the store's connections are forked from now on, and traced
        calls = await _write_for(cluster.url, SECONDS, schema=unique_suffix())
    finally:
        tracer.terminate()
        tracer.wait(timeout=30)
    figures = windows(calls, parse_fsyncs(trace))
    record("power_loss_window.postgres.synchronous_commit_on", seconds=SECONDS, **figures)
    assert figures["writes"] > 100
    assert figures["synced_in_call"] == 1.0, figures
