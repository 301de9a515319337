"""Linearizability (issue 16, item 6): concurrent histories on every backend, with kills, checked.

Eight client processes (``history_worker.py``) run random get / set /
compare-and-set / incr / delete on three keys of one bot, recording every
invocation and return with the system-wide monotonic clock. The parent
SIGKILLs a random client every few hundred milliseconds and starts a new
one, so some operations stay pending (they may or may not have taken
effect). The whole history is then checked by
``botmemory.testing.linearizability`` (Wing & Gong with Lowe's
memoisation, key by key), which ``tests/test_linearizability.py`` shows
rejecting known non-linearizable histories.

``memory://`` lives in one process: there the clients are eight asyncio
tasks, and "killing" one cancels it mid-operation.
"""

from __future__ import annotations

import asyncio
import os
import random
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

import botmemory
from botmemory.testing.backends import POSTGRES_URL, REDIS_URL, open_test_store, unique_suffix
from botmemory.testing.linearizability import HistoryRecorder, check, read_history, record_op
from conftest import require_backend
from reliability_suite import record, size

WORKER = Path(__file__).with_name("history_worker.py")
CLIENTS = 8
OPS = size(200, 800)
KILLS = size(8, 40)


def _target(name: str, tmp_path: Path) -> tuple[str, dict[str, Any]]:
    if name == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}", {}
    if name == "postgres":
        return POSTGRES_URL, {"schema": unique_suffix()}
    return REDIS_URL, {"prefix": f"botmemory-test:{unique_suffix()}:"}


def _run_processes(url: str, options: dict[str, Any], rng: random.Random) -> tuple[list[bytes], int, int]:
    """Run the clients with kills; returns every line they wrote, the kills and the clients started."""
    lines: list[bytes] = []
    selector = selectors.DefaultSelector()
    running: dict[int, subprocess.Popen[bytes]] = {}
    buffers: dict[int, bytes] = {}
    ready: set[int] = set()
    started = kills = 0

    def spawn() -> None:
        nonlocal started
        proc = subprocess.Popen(
            [sys.executable, str(WORKER), url, orjson.dumps(options).decode(), f"p{started}",
             str(rng.randrange(2**32)), str(OPS)],
            stdout=subprocess.PIPE, cwd=WORKER.parent,
        )
        started += 1
        assert proc.stdout is not None
        running[proc.pid] = proc
        buffers[proc.pid] = b""
        selector.register(proc.stdout, selectors.EVENT_READ, proc)

    def reap(proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        selector.unregister(proc.stdout)
        rest = buffers.pop(proc.pid) + proc.stdout.read()
        lines.extend(rest.split(b"\n"))  # a torn last line is ignored by read_history
        proc.stdout.close()
        proc.wait()
        del running[proc.pid]

    for _ in range(CLIENTS):
        spawn()
    next_kill = time.monotonic() + rng.uniform(0.2, 0.4)
    deadline = time.monotonic() + 300
    while running:
        assert time.monotonic() < deadline, "the clients did not finish within 300 s"
        for key, _ in selector.select(timeout=0.05):
            proc = key.data
            data = os.read(proc.stdout.fileno(), 65536)
            if not data:
                reap(proc)
                assert proc.returncode == 0 or proc.returncode == -signal.SIGKILL, f"a client failed: {proc.returncode}"
                if kills < KILLS:
                    spawn()  # until enough kills happened
                continue
            buffers[proc.pid] += data
            *complete, buffers[proc.pid] = buffers[proc.pid].split(b"\n")
            for line in complete:
                if line == b'{"e":"ready"}':
                    ready.add(proc.pid)
                else:
                    lines.append(line)
        if kills < KILLS and time.monotonic() >= next_kill:
            victims = [p for p in running.values() if p.pid in ready]
            if victims:
                victim = rng.choice(victims)
                victim.send_signal(signal.SIGKILL)
                victim.wait()
                reap(victim)
                kills += 1
                spawn()
            next_kill = time.monotonic() + rng.uniform(0.1, 0.35)
    return lines, kills, started


@pytest.mark.parametrize("name", [
    "sqlite",
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("redis", marks=pytest.mark.redis),
])
def test_histories_of_processes_are_linearizable(name: str, tmp_path: Path) -> None:
    require_backend(name)
    url, options = _target(name, tmp_path)
    rng = random.Random()

    async def scope() -> tuple[list[bytes], int, int]:
        # the parent's store only creates the schema/prefix and drops it afterwards
        async with open_test_store(name, tmp_path, **options):
            return await asyncio.to_thread(_run_processes, url, options, rng)

    started = time.monotonic()
    lines, kills, clients = asyncio.run(scope())
    ran = time.monotonic() - started
    history = read_history(lines)
    checking = time.monotonic()
    verdict = check(history)
    took = time.monotonic() - checking
    assert verdict.ok, verdict.explain()
    assert verdict.ops >= CLIENTS * OPS // 2
    record(f"linearizability.{name}", clients=clients, concurrent=CLIENTS, kills=kills, ops=verdict.ops,
           pending=verdict.pending, keys=verdict.keys, states_explored=verdict.explored,
           run_s=round(ran, 1), check_s=round(took, 1))


async def test_histories_of_tasks_on_memory_are_linearizable() -> None:
    rng = random.Random()
    lines: list[bytes] = []
    cancelled = 0
    async with await botmemory.open("memory://") as store:
        kvs = store.bot("lin").kvs

        async def client(n: int) -> None:
            recorder = HistoryRecorder(f"t{n}", lines.append)
            for _ in range(OPS):
                key = rng.choice(["k0", "k1", "k2"])
                kind = rng.choices(["get", "set", "cas", "incr", "delete"], [4, 2, 3, 3, 1])[0]
                arg: Any = {"get": None, "delete": None, "set": rng.randrange(100), "incr": rng.choice([1, 2]),
                            "cas": [rng.randrange(4), rng.randrange(100)]}[kind]
                await record_op(recorder, kvs, kind, key, arg)
                await asyncio.sleep(0)

        tasks = [asyncio.create_task(client(n)) for n in range(CLIENTS)]
        for n in range(KILLS):  # cancel clients mid-run and start new ones
            await asyncio.sleep(rng.uniform(0.001, 0.01))
            victim = rng.choice(tasks)
            if not victim.done():
                victim.cancel()
                cancelled += 1
            tasks.append(asyncio.create_task(client(CLIENTS + n)))
        await asyncio.gather(*tasks, return_exceptions=True)
    verdict = check(read_history(lines))
    assert verdict.ok, verdict.explain()
    record("linearizability.memory", clients=len(tasks), concurrent=CLIENTS, kills=cancelled, ops=verdict.ops,
           pending=verdict.pending, keys=verdict.keys, states_explored=verdict.explored)
