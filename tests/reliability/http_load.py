"""An HTTP load for the reliability suite's server tests, and the server process's resource counts.

``HttpLoad`` runs ``tasks`` clients against a live ``botmemory serve``
(``tests/http_server.py``), each request timed and its status kept, and
records every acknowledged (2xx) write: unique keys (``PUT``), two-key
batches (``POST kvs:batch``) and per-task counters incremented by
compare-and-set (``PUT ?if_version=``: the HTTP API has no ``incr``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from reliability_suite import socket_inodes

__all__ = ["HttpCall", "HttpLoad", "process_resources"]

BOT = "example"
#: answers of a healthy server: 404 for a read of a key not written (its write failed), 409 for a
#: compare-and-set whose earlier attempt was applied though its answer was lost
OK = (200, 404, 409)


@dataclass
class HttpCall:
    op: str
    started: float
    seconds: float
    status: int  # 0: no HTTP answer (a transport error)


@dataclass
class HttpLoad:
    """``tasks`` clients calling the API in a loop (a shared connection pool)."""

    url: str
    token: str
    tasks: int = 8
    ops: tuple[str, ...] = ("put", "put", "get", "cas", "batch", "list")
    bot: str = BOT
    calls: list[HttpCall] = field(default_factory=list)
    acked: dict[str, Any] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)  # counter key -> highest acknowledged value
    tag: str = field(default_factory=lambda: f"{time.monotonic_ns()}")
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _client: httpx.AsyncClient | None = None

    def start(self) -> None:
        self._client = httpx.AsyncClient(
            base_url=self.url,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
            timeout=30,
            limits=httpx.Limits(max_connections=self.tasks, max_keepalive_connections=self.tasks),
        )
        self._tasks = [asyncio.create_task(self._run(t)) for t in range(self.tasks)]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)
        if self._client is not None:
            await self._client.aclose()

    async def _run(self, task: int) -> None:
        assert self._client is not None
        client = self._client
        kvs = f"/api/v1/bots/{self.bot}/kvs"
        rng = random.Random()
        counter = f"c/{self.tag}/{task}"
        i = 0
        while not self._stop.is_set():
            i += 1
            op = rng.choice(self.ops)
            started = time.monotonic()
            status = 0
            try:
                if op == "put":
                    key = f"s/{self.tag}/{task}/{i}"
                    response = await client.put(f"{kvs}/{key}", content=str(i))
                    if response.status_code == 200:
                        self.acked[key] = i
                elif op == "get":
                    response = await client.get(f"{kvs}/s/{self.tag}/{task}/{i - 1}")
                elif op == "cas":
                    got = await client.get(f"{kvs}/{counter}")
                    if got.status_code in (200, 404):
                        version = got.json()["version"] if got.status_code == 200 else 0
                        value = got.json()["value"] if got.status_code == 200 else 0
                        response = await client.put(f"{kvs}/{counter}", content=str(value + 1),
                                                    params={"if_version": version})
                        if response.status_code == 200:
                            self.counters[counter] = max(self.counters.get(counter, 0), value + 1)
                    else:
                        response = got
                elif op == "batch":
                    items = {f"m/{self.tag}/{task}/{i}/{k}": i for k in "ab"}
                    response = await client.post(f"{kvs}:batch", json={"set": items})
                    if response.status_code == 200:
                        self.acked.update(items)
                else:
                    response = await client.get(kvs, params={"prefix": f"s/{self.tag}/{task}/", "limit": 5})
                status = response.status_code
            except httpx.TransportError:
                status = 0
            self.calls.append(HttpCall(op, started, time.monotonic() - started, status))
            if status not in OK:
                await asyncio.sleep(0.05)  # the server or its store is away: do not spin

    def failures(self, after: float = 0.0, before: float = float("inf")) -> list[HttpCall]:
        """Calls that did not succeed, started at or after ``after`` and ended before ``before``."""
        return [c for c in self.calls
                if c.status not in OK and after <= c.started and c.started + c.seconds < before]

    async def recovered(self, since: float, within: float = 30.0) -> float:
        """Wait until 20 calls in a row that started after ``since`` succeeded; when the first of them started."""
        deadline = time.monotonic() + within
        while True:
            recent = [c for c in self.calls if c.started >= since]
            if len(recent) >= 20 and all(c.status in OK for c in recent[-20:]):
                streak = len(recent)
                while streak > 0 and recent[streak - 1].status in OK:
                    streak -= 1
                return recent[streak].started
            assert time.monotonic() < deadline, f"no recovery within {within} s: {recent[-5:]}"
            await asyncio.sleep(0.1)

    async def missing(self, store: Any) -> list[str]:
        """Acknowledged writes the store does not hold (read through the library), and counters that went back."""
        kvs = store.bot(self.bot).kvs
        keys = list(self.acked)
        found: dict[str, Any] = {}
        for i in range(0, len(keys), 500):
            found.update(await kvs.get_many(keys[i : i + 500]))
        lost = [k for k in keys if found.get(k) != self.acked[k]]
        values = await kvs.get_many(list(self.counters)) if self.counters else {}
        lost += [k for k, n in self.counters.items() if not isinstance(values.get(k), int) or values[k] < n]
        return lost


def process_resources(pid: int, backend_port: int | None = None) -> dict[str, int]:
    """Descriptors of process ``pid``: all, sockets, sockets to ``backend_port``, threads, RSS (KiB)."""
    to_backend = {f"socket:[{i}]" for i in socket_inodes(backend_port, remote=True)} if backend_port else set()
    fds = sockets = backend = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
            fds += 1
            sockets += link.startswith("socket:")
            backend += link in to_backend
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(status.split("VmRSS:")[1].split()[0])
    threads = int(status.split("Threads:")[1].split()[0])
    return {"fds": fds, "sockets": sockets, "backend_sockets": backend, "threads": threads, "rss_kib": rss}
