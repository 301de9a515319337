"""The crash loop through the HTTP server (issue 16, item 1): ``botmemory serve`` SIGKILLed under its clients.

HTTP clients (tasks of the test process) write to a ``botmemory serve`` on
a SQLite file: unique keys (``PUT``), three-key batches (``POST kvs:batch``),
path updates (``PUT ?path=``) and counters incremented by compare-and-set
(``PUT ?if_version=``, the API has no ``incr``). Each write is reported to a
``workload.Ledger`` in its line format: the intent before the request, the
acknowledgement after a 2xx. At a random moment the server is SIGKILLed
(``SERVER_KILLS`` times, more in the soak) and started again on the same
file; the clients go on with the new process. Afterwards ``workload.verify``
reads the file through the library: every acknowledged write is there, no
counter above its tried increments, no batch half applied, and the file
passes ``PRAGMA integrity_check``.
"""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx

import botmemory
from http_server import serve
from reliability_suite import record, size
from workload import BOT, COUNTERS, Ledger, sqlite_integrity, verify

KILLS = size(20, 200)
TASKS = 4
KVS = f"/api/v1/bots/{BOT}/kvs"


async def _client(url: str, token: str, emit: Callable[[str], None], run: str, task: int,
                  stop: asyncio.Event, rng: random.Random) -> dict[str, int]:
    """Write until ``stop``; the count of each outcome (status, or 0: no answer)."""
    outcomes: dict[str, int] = {}
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=10) as client:
        i = 0
        while not stop.is_set():
            i += 1
            pick = rng.random()
            try:
                if pick < 0.4:
                    key = f"u/{run}/{task}/{i}"
                    response = await client.put(f"{KVS}/{key}", json={"k": key, "pad": "x" * (i % 64)})
                    if response.status_code == 200:
                        emit(f"U {key}")
                elif pick < 0.6:
                    counter = rng.choice(COUNTERS)
                    got = await client.get(f"{KVS}/{counter}")
                    response = got
                    if got.status_code in (200, 404):
                        body = got.json() if got.status_code == 200 else {"value": 0, "version": 0}
                        value, version = body["value"], body["version"]
                        emit(f"b I {counter}")
                        response = await client.put(f"{KVS}/{counter}", content=str(value + 1),
                                                    params={"if_version": version})
                        if response.status_code == 200:
                            emit(f"I {counter} {value + 1}")
                elif pick < 0.75:
                    group = f"m/{run}/{task}/{i}"
                    emit(f"b M {group}")
                    response = await client.post(f"{KVS}:batch", json={"set": {f"{group}/{k}": group for k in "abc"}})
                    if response.status_code == 200:
                        emit(f"M {group}")
                else:
                    doc = f"d/{run}/{task}/{i // 100}"
                    response = await client.put(f"{KVS}/{doc}", content=str(i), params={"path": f"n{i}"})
                    if response.status_code == 200:
                        emit(f"P {doc} n{i} {i}")
                status = str(response.status_code)
            except httpx.TransportError:
                status = "no answer"
            outcomes[status] = outcomes.get(status, 0) + 1
            if status not in ("200", "409"):
                await asyncio.sleep(0.02)
    return outcomes


def test_serve_killed_under_http_clients(tmp_path: Path) -> None:
    db = tmp_path / "crash.db"
    url = f"sqlite:///{db}"
    ledger = Ledger()
    rng = random.Random()
    token: str | None = None
    outcomes: dict[str, int] = {}
    kills = 0

    async def round_(served_url: str, served_token: str, run: str, proc: subprocess.Popen[str]) -> None:
        stop = asyncio.Event()
        tasks = [asyncio.create_task(_client(served_url, served_token, ledger.feed, run, t, stop,
                                             random.Random(rng.random()))) for t in range(TASKS)]
        await asyncio.sleep(rng.uniform(0.1, 0.7))
        proc.send_signal(signal.SIGKILL)  # in the middle of requests
        proc.wait()
        await asyncio.sleep(0.05)
        stop.set()
        for done in await asyncio.gather(*tasks):
            for status, n in done.items():
                outcomes[status] = outcomes.get(status, 0) + n

    for kill in range(KILLS):
        with serve(url, tmp_path, "--no-janitor", "--max-auth-failures", "1000000", token=token) as served:
            token = served.token
            assert token is not None
            asyncio.run(round_(served.url, token, f"r{kill}", served.proc))
            kills += 1
    assert outcomes.get("200", 0) > 0 and set(outcomes) <= {"200", "404", "409", "no answer"}, outcomes

    assert sqlite_integrity(db) == "ok"

    async def check() -> None:
        async with await botmemory.open(url) as store:
            report = await verify(store, ledger)
        assert report.violations == [], report.violations[:20]
        assert report.lost == [], f"{len(report.lost)} acknowledged writes lost, e.g. {report.lost[:10]}"
        record("http_crash.sqlite", kills=kills, clients=TASKS, requests=sum(outcomes.values()),
               unanswered=outcomes.get("no answer", 0), integrity="ok", **report.figures)

    asyncio.run(check())
