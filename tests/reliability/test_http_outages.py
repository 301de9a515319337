"""Outages through the HTTP server (issue 16, item 3): ``botmemory serve`` on a backend that goes away.

A ``botmemory serve`` process (``--timeout 2``) on a PostgreSQL cluster or a
``redis-server`` of the test's own, reached through the fault proxy
(``faultproxy.ProxyProcess``), under ``HttpLoad`` (8 clients: unique-key
writes, batches, compare-and-set counters, reads, listings). One server
process lives through every fault in turn: the backend stopped, frozen
(SIGSTOP), the proxy down, and in the soak the proxy resetting, dropping,
half-closing and delaying by 3 s. For each:

- every request answered, within ``ANSWER_WITHIN`` s, with 2xx/404 or
  **503** (the one error shape), never another 5xx or a dropped connection;
- requests failed only while the fault lasted, and the same server process
  answers again by itself (no restart);
- the server process's descriptors (``/proc/<pid>/fd``) other than its
  sockets are what they were before, and its sockets to the backend stay
  within the pool's bound;
- every acknowledged write is there at the end (read through the library).

CI: each fault lasts 3 s (about 30 s for both backends); ``make soak``: 10 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import botmemory
from botmemory.testing.backends import unique_suffix
from faultproxy import ProxyProcess
from http_load import HttpLoad, process_resources
from http_server import Served, serve
from ownservers import RedisServer, own_postgres
from reliability_suite import record, size

TIMEOUT = 2.0
ANSWER_WITHIN = 5.0
FAULT = size(3.0, 10.0)
TASKS = 8


@contextlib.contextmanager
def served_on(backend: str, tmp_path: Path) -> Iterator[tuple[Served, Any, ProxyProcess, str]]:
    """``botmemory serve`` on our own ``backend`` through a fault proxy; (served, server, proxy, direct URL)."""
    if backend == "postgres":
        server: Any = own_postgres()
        direct = f"{server.url}?schema={unique_suffix()}"
    else:
        server = RedisServer(appendfsync="everysec")  # a stopped Redis keeps its data (SIGTERM flushes the AOF)
        server.start()
        direct = server.url
    proxy = ProxyProcess(("127.0.0.1", server.port))
    via_proxy = direct.replace(f":{server.port}/", f":{proxy.port}/")
    try:
        with serve(via_proxy, tmp_path, "--no-janitor", "--max-auth-failures", "1000000",
                   options=("--timeout", str(TIMEOUT))) as served:
            yield served, server, proxy, direct
    finally:
        proxy.close()
        if backend == "postgres":
            server.ensure_running()
        else:
            server.destroy()


def faults(backend: str, server: Any, proxy: ProxyProcess) -> list[tuple[str, Callable[[], Any], Callable[[], Any]]]:
    if backend == "postgres":
        stop: Callable[[], Any] = lambda: server.stop("fast")  # noqa: E731
    else:
        stop = lambda: server.kill(signal.SIGTERM)  # noqa: E731

    def mode(name: str, delay: float = 0.0) -> Callable[[], None]:
        return lambda: proxy.set_mode(name, delay)

    found = [
        ("stopped", stop, server.start),
        ("frozen", server.freeze, server.thaw),
        ("proxy-down", proxy.down, proxy.up),
    ]
    if size(False, True):
        found += [
            ("proxy-reset", mode("reset"), mode("pass")),
            ("proxy-drop", mode("drop"), mode("pass")),
            ("proxy-half-open", mode("half-open"), mode("pass")),
            ("proxy-delay-3s", mode("delay", 3.0), mode("pass")),
        ]
    return found


async def _settled(pid: int, port: int, before: dict[str, int]) -> dict[str, int]:
    """The server's counts once its pool has settled (a proxy may hold a delayed connection a while)."""
    deadline = time.monotonic() + 10
    while True:
        now = process_resources(pid, port)
        if now["fds"] - now["sockets"] == before["fds"] - before["sockets"] or time.monotonic() > deadline:
            return now
        await asyncio.sleep(0.2)


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres),
                                     pytest.param("redis", marks=pytest.mark.redis)])
async def test_the_server_answers_503_and_recovers(backend: str, tmp_path: Path) -> None:
    with served_on(backend, tmp_path) as (served, server, proxy, direct):
        pid = served.proc.pid
        assert served.token is not None
        load = HttpLoad(served.url, served.token, tasks=TASKS)
        load.start()
        try:
            await asyncio.sleep(1.5)
            assert load.failures() == [], load.failures()[:5]
            baseline = process_resources(pid, proxy.port)
            results: dict[str, dict[str, Any]] = {}
            for name, begin, end in faults(backend, server, proxy):
                mark = len(load.calls)
                with ThreadPoolExecutor(1) as pool:
                    loop = asyncio.get_running_loop()
                    began = time.monotonic()
                    await loop.run_in_executor(pool, begin)
                    await asyncio.sleep(FAULT)
                    await loop.run_in_executor(pool, end)
                ended = time.monotonic()
                back = await load.recovered(ended)
                await asyncio.sleep(0.5)
                calls = load.calls[mark:]
                failed = [c for c in calls if c.status not in (200, 404, 409)]
                slowest = max(calls, key=lambda c: c.seconds)
                assert slowest.seconds <= ANSWER_WITHIN, f"{name}: a request took {slowest.seconds:.2f} s: {slowest}"
                assert {c.status for c in failed} <= {503}, f"{name}: {sorted({c.status for c in failed})}"
                assert failed, f"{name}: the fault changed nothing: is it real?"
                assert load.failures(after=back) == [], f"{name}: requests failed after the server recovered"
                assert load.failures(before=began, after=calls[0].started) == [], f"{name}: failed before the fault"
                assert served.proc.poll() is None, "the server died"
                results[name] = {
                    "fault_s": FAULT,
                    "requests": len(calls),
                    "answered_503": len(failed),
                    "slowest_request_s": round(slowest.seconds, 2),
                    "slowest_503_s": round(max(c.seconds for c in failed), 2),
                    "recovered_after_s": round(back - ended, 2),
                }
        finally:
            await load.stop()
        after = await _settled(pid, proxy.port, baseline)
        assert after["fds"] - after["sockets"] == baseline["fds"] - baseline["sockets"], (baseline, after)
        assert after["backend_sockets"] <= TASKS + 2, (baseline, after)
        assert after["threads"] <= baseline["threads"] + 1, (baseline, after)
        async with await botmemory.open(direct) as store:
            assert await load.missing(store) == []
    for name, figures in results.items():
        record(f"http_outage.{backend}.{name}", timeout_s=TIMEOUT, **figures)
    record(f"http_outage.{backend}.server", same_process=True, acked_writes_kept=len(load.acked),
           counters=len(load.counters), fds_before_after=[baseline["fds"], after["fds"]],
           non_socket_fds_before_after=[baseline["fds"] - baseline["sockets"], after["fds"] - after["sockets"]],
           backend_sockets_before_after=[baseline["backend_sockets"], after["backend_sockets"]],
           threads_before_after=[baseline["threads"], after["threads"]])
