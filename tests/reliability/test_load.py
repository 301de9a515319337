"""Load (issue 16, item 7): SQLite under 8 writer processes, and a soak that watches memory and descriptors.

- Eight processes write 200-byte JSON values into one SQLite file as fast as
  they can, one write after the other, for ``WRITE_SECONDS``; the writes per
  second and the latency percentiles are recorded and printed, for
  ``synchronous=normal`` (the default) and ``full``. The goal is >= 1,000
  writes/s with p99 < 50 ms; it is reported, not asserted: the machine (2
  cores) is shared with other test runs, so timings are not the code's alone
  (the load average is recorded next to each figure).
- ``botmemory serve`` (one uvicorn worker, SQLite) under ``benchmarks.http_load``
  (4 keep-alive connections in a process of its own): req/s and p50/p99 for
  PUT, GET and converse, against the goal of >= 300 req/s with p99 < 250 ms,
  reported the same way; in the soak the server process runs a mixed HTTP
  load for ``SOAK_SECONDS`` with its memory and descriptors watched.
- The soak runs a mixed workload on a bounded key space, one process per
  backend at once, for ``SOAK_SECONDS`` (10 minutes under ``make soak``),
  sampling the resident memory and the open descriptors every second: both
  must stay flat after the warm-up (the first quarter): a leak grows with the
  work done (tens of thousands of calls even in the CI-sized run), while the
  bounds (8 MiB or 10 %, 8 descriptors) leave room for allocator noise and
  pools that open their last connection late.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from botmemory.testing.backends import POSTGRES_URL, REDIS_URL, unique_suffix
from conftest import require_backend
from reliability_suite import SOAK, record, size

WORKER = Path(__file__).with_name("load_worker.py")
WRITERS = 8
WRITE_SECONDS = size(4.0, 30.0)
SOAK_SECONDS = size(20.0, 600.0)
FDS_SLACK = 8


def _percentile(sorted_values: list[int], q: float) -> float:
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))] / 1000.0


@pytest.mark.parametrize("synchronous", ["normal", "full"])
def test_sqlite_eight_writer_processes(tmp_path: Path, synchronous: str) -> None:
    url = f"sqlite:///{tmp_path / 'load.db'}?synchronous={synchronous}"
    start = time.monotonic() + 2.0  # every writer opens its store first, then all start together
    procs = [
        subprocess.Popen([sys.executable, str(WORKER), "writer", url, str(start), str(WRITE_SECONDS), str(i)],
                         stdout=subprocess.PIPE, cwd=WORKER.parent)
        for i in range(WRITERS)
    ]
    results = []
    for proc in procs:
        out, _ = proc.communicate(timeout=120 + WRITE_SECONDS)
        assert proc.returncode == 0
        results.append(orjson.loads(out))
    latencies = sorted(x for r in results for x in r["latencies_us"])
    writes = len(latencies)
    assert writes > 0
    figures = {
        "writers": WRITERS,
        "seconds": WRITE_SECONDS,
        "writes": writes,
        "writes_per_s": round(writes / WRITE_SECONDS),
        "p50_ms": round(_percentile(latencies, 0.50), 2),
        "p99_ms": round(_percentile(latencies, 0.99), 2),
        "max_ms": round(latencies[-1] / 1000.0, 1),
        "goal": ">= 1000 writes/s, p99 < 50 ms",
        "goal_met": writes / WRITE_SECONDS >= 1000 and _percentile(latencies, 0.99) < 50,
    }
    record(f"load.sqlite_8_writers.{synchronous}", **figures)


def _soak_targets(tmp_path: Path) -> dict[str, tuple[str, dict[str, Any]]]:
    targets: dict[str, tuple[str, dict[str, Any]]] = {
        "memory": ("memory://", {}),
        "sqlite": (f"sqlite:///{tmp_path / 'soak.db'}", {}),
    }
    require_backend("postgres")
    targets["postgres"] = (POSTGRES_URL, {"schema": unique_suffix()})
    require_backend("redis")
    targets["redis"] = (REDIS_URL, {"prefix": f"botmemory-test:{unique_suffix()}:"})
    return targets


def _drop(name: str, url: str, options: dict[str, Any], tmp_path: Path) -> None:
    import asyncio

    from botmemory.testing.backends import open_test_store

    async def go() -> None:
        async with open_test_store(name, tmp_path, **options):
            pass

    asyncio.run(go())


@pytest.mark.postgres
@pytest.mark.redis
def test_soak_memory_and_descriptors_stay_flat(tmp_path: Path) -> None:
    targets = _soak_targets(tmp_path)
    procs = {
        name: subprocess.Popen([sys.executable, str(WORKER), "soak", url, orjson.dumps(options).decode(),
                                str(SOAK_SECONDS)], stdout=subprocess.PIPE, cwd=WORKER.parent)
        for name, (url, options) in targets.items()
    }
    try:
        outputs = {name: proc.communicate(timeout=300 + SOAK_SECONDS)[0] for name, proc in procs.items()}
    finally:
        for name, (url, options) in targets.items():
            if name in ("postgres", "redis"):
                _drop(name, url, options, tmp_path)
    problems = []
    for name, out in outputs.items():
        assert procs[name].returncode == 0, name
        lines = [orjson.loads(line) for line in out.splitlines()]
        samples, done = lines[:-1], lines[-1]
        assert done["done"] and len(samples) >= SOAK_SECONDS * 0.5, (name, len(samples))
        warm = [s for s in samples if s["t"] >= SOAK_SECONDS / 4]  # after the warm-up: caches, pools, key space full
        first, last = warm[0], done
        rss_growth = (last["rss"] - first["rss"]) / 2**20
        # least-squares slope of the resident memory over the warm part, MiB per minute
        n = len(warm)
        mean_t = sum(s["t"] for s in warm) / n
        mean_r = sum(s["rss"] for s in warm) / n
        var = sum((s["t"] - mean_t) ** 2 for s in warm) or 1.0
        slope = sum((s["t"] - mean_t) * (s["rss"] - mean_r) for s in warm) / var * 60 / 2**20
        fds = sorted({s["fds"] for s in warm} | {done["fds"]})
        record(
            f"soak.{name}",
            seconds=SOAK_SECONDS,
            ops=done["ops"],
            ops_per_s=round(done["ops"] / SOAK_SECONDS),
            rss_mib_start=round(samples[0]["rss"] / 2**20, 1),
            rss_mib_after_warmup=round(first["rss"] / 2**20, 1),
            rss_mib_end=round(last["rss"] / 2**20, 1),
            rss_growth_mib=round(rss_growth, 2),
            rss_slope_mib_per_min=round(slope, 3),
            fds_seen=fds,
        )
        if rss_growth > max(8.0, 0.1 * first["rss"] / 2**20):
            problems.append(f"{name}: resident memory grew by {rss_growth:.1f} MiB after the warm-up")
        # a bounded pool may open late (SQLite: up to two more read connections of 3 descriptors
        # each, when reads meet a busy writer); a leak grows with the work and goes far beyond
        if done["fds"] - first["fds"] > FDS_SLACK:
            problems.append(f"{name}: open descriptors went from {first['fds']} to {done['fds']}")
    assert problems == []


# -- the HTTP server ----------------------------------------------------------------------------------

HTTP_REQUESTS = size(2000, 20000)
HTTP_CONCURRENCY = 4
ROOT = Path(__file__).resolve().parents[2]


def _http_load(port: int, token: str, method: str, path: str, body: str | None, requests: int) -> dict[str, Any]:
    """``benchmarks.http_load`` (keep-alive HTTP/1.1 over raw asyncio streams) in a process of its own."""
    spec = {"port": port, "method": method, "path": path, "body": body, "requests": requests,
            "concurrency": HTTP_CONCURRENCY, "warmup": 50,
            "headers": {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}}
    done = subprocess.run([sys.executable, "-m", "benchmarks.http_load", orjson.dumps(spec).decode()], cwd=ROOT,
                          capture_output=True, text=True, timeout=600, check=True)
    result: dict[str, Any] = orjson.loads(done.stdout)
    assert result["error_count"] == 0, result["errors"]
    return result


def test_http_server_one_worker(tmp_path: Path) -> None:
    """``botmemory serve`` (one uvicorn worker, SQLite) under keep-alive clients: req/s and p99 per request kind.

    The goal (>= 300 req/s with p99 < 250 ms) is reported with the figures, not asserted (see the module).
    """
    from http_load import process_resources
    from http_server import serve

    with serve(f"sqlite:///{tmp_path / 'http.db'}", tmp_path, "--no-janitor") as served:
        assert served.token is not None
        port = int(served.url.rsplit(":", 1)[1])
        kvs = "/api/v1/bots/example/kvs"
        before = process_resources(served.proc.pid)
        runs = {
            "put": _http_load(port, served.token, "PUT", f"{kvs}/load", '{"text": "' + "x" * 150 + '"}',
                              HTTP_REQUESTS // 2),
            "get": _http_load(port, served.token, "GET", f"{kvs}/load", None, HTTP_REQUESTS),
            "converse": _http_load(port, served.token, "POST", "/api/v1/bots/example/converse/u",
                                   '{"text": "hello"}', HTTP_REQUESTS // 4),
        }
        after = process_resources(served.proc.pid)
    for kind, result in runs.items():
        record(f"load.http_one_worker.{kind}", requests=HTTP_REQUESTS // {"put": 2, "get": 1, "converse": 4}[kind],
               connections=HTTP_CONCURRENCY, req_per_s=round(result["rps"]), p50_ms=round(result["p50_us"] / 1000, 2),
               p99_ms=round(result["p99_us"] / 1000, 2), goal=">= 300 req/s, p99 < 250 ms",
               goal_met=result["rps"] >= 300 and result["p99_us"] < 250_000)
    record("load.http_one_worker.server", rss_mib_before_after=[round(before["rss_kib"] / 1024, 1),
                                                                round(after["rss_kib"] / 1024, 1)],
           fds_before_after=[before["fds"], after["fds"]])


@pytest.mark.skipif(not SOAK, reason="the server's soak runs under make soak (BOTMEMORY_SOAK=1)")
def test_http_server_soak_memory_and_descriptors_stay_flat(tmp_path: Path) -> None:
    """The server process under a mixed HTTP load for ``SOAK_SECONDS``: resident memory and descriptors flat."""
    from http_load import process_resources
    from http_server import serve

    kinds = [("PUT", "/api/v1/bots/example/kvs/k{}", '{"v": 1}'), ("GET", "/api/v1/bots/example/kvs/k{}", None),
             ("GET", "/api/v1/bots/example/kvs?prefix=k&limit=20", None),
             ("POST", "/api/v1/bots/example/converse/u{}", '{"text": "hello"}'),
             ("PUT", "/api/v1/bots/example/users/u{}/variables/name", '"Ada"')]
    samples: list[dict[str, Any]] = []
    requests = 0
    with serve(f"sqlite:///{tmp_path / 'soak.db'}", tmp_path, "--no-janitor") as served:
        assert served.token is not None
        port = int(served.url.rsplit(":", 1)[1])
        began = time.monotonic()
        i = 0
        while (t := time.monotonic() - began) < SOAK_SECONDS:
            method, path, body = kinds[i % len(kinds)]
            _http_load(port, served.token, method, path.format(i // len(kinds) % 50), body, 400)  # bounded keys
            requests += 400 + 50 * HTTP_CONCURRENCY
            samples.append({"t": t, **process_resources(served.proc.pid)})
            i += 1
    warm = [s for s in samples if s["t"] >= SOAK_SECONDS / 4]
    first, last = warm[0], samples[-1]
    growth = (last["rss_kib"] - first["rss_kib"]) / 1024
    n = len(warm)
    mean_t = sum(s["t"] for s in warm) / n
    mean_r = sum(s["rss_kib"] for s in warm) / n
    var = sum((s["t"] - mean_t) ** 2 for s in warm) or 1.0
    slope = sum((s["t"] - mean_t) * (s["rss_kib"] - mean_r) for s in warm) / var * 60 / 1024
    # "soak.<name>": a row of RELIABILITY.md's soak table beside the library's processes
    record("soak.http_server", seconds=SOAK_SECONDS, ops=requests, ops_per_s=round(requests / SOAK_SECONDS),
           rss_mib_start=round(samples[0]["rss_kib"] / 1024, 1), rss_mib_after_warmup=round(first["rss_kib"] / 1024, 1),
           rss_mib_end=round(last["rss_kib"] / 1024, 1), rss_growth_mib=round(growth, 2),
           rss_slope_mib_per_min=round(slope, 3), fds_seen=sorted({s["fds"] for s in warm} | {last["fds"]}))
    assert growth <= max(8.0, 0.1 * first["rss_kib"] / 1024), f"resident memory grew by {growth:.1f} MiB"
    assert last["fds"] - first["fds"] <= FDS_SLACK, (first["fds"], last["fds"])
