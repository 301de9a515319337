"""Crash loops (issue 16, item 1): nothing acknowledged is lost when a process dies.

- SQLite: two child processes write through the public API into one file
  (unique keys, ``incr``, ``set_many``, path updates) and report every
  acknowledged write on a pipe; the parent SIGKILLs them at random moments
  (one in ten while it is still opening the store), restarts them, and at
  the end checks ``PRAGMA integrity_check``, every acknowledged write,
  every counter against its increments, and that no ``set_many`` is half
  applied. Half the runs use ``synchronous=full``.
- PostgreSQL: the server (a cluster of the test's own) is crashed with
  ``pg_ctl stop -m immediate`` under a client writing the same workload,
  then restarted; the same store must recover without being reopened.
- Redis, with AOF ``appendfsync always`` and ``everysec``: the server (of
  the test's own) is SIGKILLed and restarted. With ``always`` nothing
  acknowledged may be lost; with ``everysec`` what is lost is counted and
  must be at most the last two seconds of acknowledged writes before a kill
  (Redis postpones AOF writes by up to two seconds, counted in whole seconds,
  while an fsync is slow; the suite allows 3.5 s).

The sizes grow under ``BOTMEMORY_SOAK=1`` (``make soak``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import botmemory
from botmemory.testing.backends import unique_suffix
from ownservers import RedisServer, own_postgres
from reliability_suite import record, size
from workload import BOT, COUNTERS, Ledger, Report, run_workload, sqlite_integrity, verify

WORKER = Path(__file__).with_name("crash_worker.py")
SQLITE_KILLS = size(200, 1000)
SERVER_KILLS = size(20, 100)
PARALLEL = 2
TASKS = 4


def _assert_clean(report: Report) -> None:
    assert report.violations == [], report.violations[:20]
    assert report.lost == [], f"{len(report.lost)} acknowledged writes lost, e.g. {report.lost[:10]}"


class _Child:
    """One crash-loop worker process and its unread output."""

    def __init__(self, url: str, run: str, rng: random.Random, errors: Path) -> None:
        self.stderr = open(errors, "ab")  # noqa: SIM115 - closed in finish()
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER), url, run, str(TASKS)],
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            cwd=WORKER.parent,
        )
        self.started = time.monotonic()
        self.early = rng.random() < 0.1  # killed while it may still be opening the store
        self.kill_at = self.started + rng.uniform(0.0, 0.12) if self.early else None
        self.delay = rng.uniform(0.01, 0.25)
        self.buffer = b""
        self.killed = False

    def feed(self, data: bytes, ledger: Ledger) -> None:
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        now = time.monotonic()
        for line in lines:
            if line == b"R":
                if self.kill_at is None:
                    self.kill_at = now + self.delay
            else:
                ledger.feed(line.decode(), now)

    def finish(self, ledger: Ledger) -> None:
        """After the kill: read what is left in the pipe, reap the process."""
        assert self.proc.stdout is not None
        while data := self.proc.stdout.read1(65536):
            self.feed(data, ledger)
        assert self.buffer == b"", f"half a line after a SIGKILL: {self.buffer!r}"
        self.proc.wait()
        self.proc.stdout.close()
        self.stderr.close()


def test_sqlite_crash_loop(tmp_path: Path) -> None:
    db = tmp_path / "crash.db"
    errors = tmp_path / "worker-stderr.txt"
    rng = random.Random()
    ledger = Ledger()
    selector = selectors.DefaultSelector()
    slots: list[_Child | None] = [None] * PARALLEL
    spawned = kills = early = 0
    checks: list[str] = []
    started = time.monotonic()
    try:
        while kills < SQLITE_KILLS:
            for i, child in enumerate(slots):
                if child is None and spawned < SQLITE_KILLS:
                    sync = rng.choice(["normal", "full"])
                    child = slots[i] = _Child(f"sqlite:///{db}?synchronous={sync}", f"r{spawned}", rng, errors)
                    assert child.proc.stdout is not None
                    selector.register(child.proc.stdout, selectors.EVENT_READ, child)
                    spawned += 1
            for key, _ in selector.select(timeout=0.01):
                child = key.data
                data = child.proc.stdout.read1(65536)
                if data:
                    child.feed(data, ledger)
                elif not child.killed:
                    child.proc.wait()
                    pytest.fail(f"a worker exited by itself ({child.proc.returncode}): {errors.read_text()[-3000:]}")
            now = time.monotonic()
            for i, child in enumerate(slots):
                if child is None:
                    continue
                if child.kill_at is None and now - child.started > 60:
                    pytest.fail(f"a worker did not open the store within 60 s: {errors.read_text()[-3000:]}")
                if child.kill_at is not None and now >= child.kill_at:
                    os.kill(child.proc.pid, signal.SIGKILL)
                    child.killed = True
                    assert child.proc.stdout is not None
                    selector.unregister(child.proc.stdout)
                    child.finish(ledger)
                    assert child.proc.returncode == -signal.SIGKILL
                    kills += 1
                    early += child.early
                    slots[i] = None
                    if kills % 50 == 0 and db.exists():
                        checks.append(sqlite_integrity(db))
    finally:  # a failure must not leave workers running (nor their pipes open) for the next tests
        for child in slots:
            if child is not None:
                child.proc.kill()
                child.killed = True
                with contextlib.suppress(Exception):  # the error that got us here matters, not this one
                    child.finish(Ledger())
        selector.close()
    elapsed = time.monotonic() - started
    assert all(c == "ok" for c in checks), checks
    assert sqlite_integrity(db) == "ok"
    errors_text = errors.read_text() if errors.exists() else ""
    assert "Traceback" not in errors_text, errors_text[-3000:]

    async def check() -> Report:
        async with await botmemory.open(f"sqlite:///{db}") as store:
            return await verify(store, ledger)

    report = asyncio.run(check())
    _assert_clean(report)
    assert report.acked > SQLITE_KILLS * 10, "the workers hardly wrote anything before being killed"
    record(
        "crash.sqlite",
        kills=kills,
        kills_while_opening=early,
        parallel_writers=PARALLEL,
        integrity_checks=len(checks) + 1,
        seconds=round(elapsed, 1),
        **report.figures,
    )


def test_processes_creating_one_new_file_at_once(tmp_path: Path) -> None:
    """Workers that start together (as after a crash) all open the same new SQLite file.

    Turning a new file into WAL takes an exclusive lock that SQLite refuses at once, without
    waiting, to processes racing for it; the crash loop met it as "database is locked" in one
    worker and "disk I/O error" in the other, whose new file the first one's clean-up removed.
    """
    workers, rounds = 6, size(60, 300)
    t0 = time.time() + 2.0
    procs = [
        subprocess.Popen([sys.executable, str(Path(__file__).with_name("load_worker.py")), "race", str(tmp_path),
                          str(t0), str(rounds), "0.1"], stderr=subprocess.PIPE, cwd=WORKER.parent)
        for _ in range(workers)
    ]
    errors = [proc.communicate(timeout=120 + rounds)[1].decode() for proc in procs]
    assert [p.returncode for p in procs] == [0] * workers, [e[-600:] for e in errors if e]

    async def counts() -> list[int]:
        out = []
        for k in range(rounds):
            async with await botmemory.open(f"sqlite:///{tmp_path / f'r{k}.db'}") as store:
                out.append(await store.bot("race").kvs.get("n"))
        return out

    assert asyncio.run(counts()) == [workers] * rounds
    assert all(sqlite_integrity(tmp_path / f"r{k}.db") == "ok" for k in range(rounds))
    record("crash.sqlite_open_race", workers=workers, new_files=rounds, failed_opens=0)


# -- servers killed under a live client -----------------------------------------------------


async def _server_crash_loop(
    store: botmemory.Store, kill: object, kills: int, rng: random.Random
) -> tuple[Ledger, list[float], int]:
    """Run the workload in 6 tasks while ``kill()`` (a coroutine function) crashes and restarts the server.

    Returns the ledger, the kill times (``time.monotonic()``), and the calls that failed.
    """
    ledger = Ledger()
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(run_workload(store, ledger.feed, "srv", t, stop=stop, tolerate=True)) for t in range(6)
    ]
    kill_times: list[float] = []
    try:
        for _ in range(kills):
            before = ledger.acked
            deadline = time.monotonic() + 60
            # load first: some writes must get through between two crashes
            await asyncio.sleep(rng.uniform(0.2, 0.6))
            while ledger.acked < before + 20:
                assert time.monotonic() < deadline, "the store did not recover after the server came back"
                await asyncio.sleep(0.05)
            kill_times.append(time.monotonic())
            await kill()  # type: ignore[operator]
    finally:
        stop.set()
        failures = await asyncio.gather(*tasks)
    return ledger, kill_times, sum(failures)


@pytest.mark.postgres
async def test_postgres_server_crash_loop() -> None:
    cluster = own_postgres()
    rng = random.Random()
    schema = unique_suffix()

    async def crash() -> None:
        await asyncio.to_thread(cluster.stop, "immediate")
        await asyncio.sleep(rng.uniform(0.0, 0.5))
        await asyncio.to_thread(cluster.start)

    started = time.monotonic()
    async with await botmemory.open(cluster.url, schema=schema, timeout=2) as store:
        ledger, kill_times, failed = await _server_crash_loop(store, crash, SERVER_KILLS, rng)
        report = await verify(store, ledger)
    _assert_clean(report)
    record(
        "crash.postgres",
        kills=len(kill_times),
        how="pg_ctl stop -m immediate, own cluster, fsync=on, synchronous_commit=on",
        failed_calls=failed,
        seconds=round(time.monotonic() - started, 1),
        **report.figures,
    )


@pytest.mark.redis
@pytest.mark.parametrize("appendfsync", ["always", "everysec"])
async def test_redis_server_crash_loop(appendfsync: str) -> None:
    server = RedisServer(appendfsync=appendfsync)
    server.start()
    rng = random.Random()

    async def crash() -> None:
        await asyncio.to_thread(server.kill, signal.SIGKILL)
        await asyncio.sleep(rng.uniform(0.0, 0.3))
        await asyncio.to_thread(server.start)

    started = time.monotonic()
    try:
        async with await botmemory.open(server.url, timeout=2) as store:
            ledger, kill_times, failed = await _server_crash_loop(store, crash, SERVER_KILLS, rng)
            report = await verify(store, ledger, lossy=appendfsync == "everysec")
    finally:
        server.destroy()
    assert report.violations == [], report.violations[:20]
    # how long before the next kill each lost write had been acknowledged
    ages = []
    for _, acked_at in report.lost:
        later = [k for k in kill_times if k >= acked_at]
        ages.append(min(later) - acked_at if later else float("inf"))
    if appendfsync == "always":
        assert report.lost == [], f"{len(report.lost)} acknowledged writes lost, e.g. {report.lost[:10]}"
    else:
        # everysec may lose what Redis had not yet written when it died: Redis postpones the
        # AOF write for up to 2 s (counted in whole seconds of its clock) while an fsync lags
        assert all(age <= 3.5 for age in ages), sorted(ages)[-10:]
    record(
        f"crash.redis.{appendfsync}",
        kills=len(kill_times),
        how=f"SIGKILL, own redis-server, appendonly yes, appendfsync {appendfsync}",
        failed_calls=failed,
        max_lost_age_s=round(max(ages), 3) if ages else 0,
        seconds=round(time.monotonic() - started, 1),
        **report.figures,
    )


async def test_a_counter_that_went_back_is_loss_on_a_lossy_backend_and_a_violation_elsewhere() -> None:
    """Redis everysec can lose the last increments, then count them again: values returned twice."""
    async with await botmemory.open("memory://") as store:
        await store.bot(BOT).kvs.set(COUNTERS[0], 4)  # acks 1, 2, 3, then 2 and 3 lost, then 2, 3, 4 again
        ledger = Ledger()
        for value, at in [(1, 1.0), (2, 2.0), (3, 3.0), (2, 5.0), (3, 6.0), (4, 7.0)]:
            ledger.feed(f"b I {COUNTERS[0]}", at)
            ledger.feed(f"I {COUNTERS[0]} {value}", at)
        lossy = await verify(store, ledger, lossy=True)
        assert lossy.violations == []
        assert sorted(lossy.lost) == [(f"incr {COUNTERS[0]} -> 2 (returned again later)", 2.0),
                                      (f"incr {COUNTERS[0]} -> 3 (returned again later)", 3.0)]
        strict = await verify(store, ledger)
        assert strict.violations == [f"{COUNTERS[0]}: two acknowledged increments returned the same value"]
