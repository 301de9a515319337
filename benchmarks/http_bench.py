"""Scenario ``http``: ``botmemory serve`` under load from a separate process, next to the same work in-process
and next to a minimal Starlette endpoint reading the same key with raw sqlite3.

On one SQLite file (the default backend) with the example bot:

- ``bm-http``: ``botmemory serve`` (one worker), driven by ``benchmarks.http_load``
  in its own process: KVS ``GET`` and ``PUT`` of one 200-byte key, and
  conversation turns of the example bot (eight-message conversations);
- ``minimal-starlette``: ``benchmarks.http_minimal`` (one worker, same uvicorn
  settings) answering the same key's ``GET`` with raw sqlite3: no auth, no
  validation, no metrics;
- ``bm-inprocess``: the same get, set and turns through the library in this process.

GET rounds of the two servers alternate, so load from other processes falls on
both alike; the goals compare round with round.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from time import perf_counter_ns
from typing import Any

import orjson

import botmemory
from botmemory import Runtime

from .config import VALUE, Config
from .measure import percentile
from .scenarios import Column, Log, Row, scenario

__all__ = ["http_scenario"]

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "bots" / "example"
SCRIPT = ("hi", "Ada", "my favourite colour is blue", "hello there", "stats", "call me Bo", "anything", "bye")
BOT = "bench"
KEY = "bench/key"
CONCURRENCY = 4


def _bots(root: Path) -> Path:
    bots = root / "bots"
    shutil.copytree(EXAMPLE, bots / BOT)
    yaml = bots / BOT / "bot.yaml"
    yaml.write_text(yaml.read_text(encoding="utf-8").replace("id: example", f"id: {BOT}"), encoding="utf-8")
    return bots


class _Process:
    """A child process whose first stdout lines we read (a server announcing itself)."""

    def __init__(self, args: list[str], cwd: Path, until: str) -> None:
        self.proc = subprocess.Popen(
            args,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert self.proc.stdout is not None
        self.lines: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"{args[:4]} exited: {self.lines}")
            self.lines.append(line.rstrip("\n"))
            if re.search(until, line):
                return
        raise TimeoutError(f"{args[:4]} did not start")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def _load(spec: dict[str, Any]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.http_load", orjson.dumps(spec).decode()],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=True,
    )
    result: dict[str, Any] = orjson.loads(done.stdout)
    if result["error_count"]:
        raise RuntimeError(f"load run answered errors: {result['errors']}")
    return result


async def _in_process(url: str, bots: Path, ops: int) -> dict[str, float]:
    store = await botmemory.open(url)
    try:
        kvs = store.bot(BOT).kvs
        out: dict[str, float] = {}
        for op, call in (("get", lambda: kvs.get_entry(KEY)), ("put", lambda: kvs.set(KEY, VALUE, expiry=3600))):
            for _ in range(min(200, ops)):
                await call()
            times = []
            for _ in range(ops):
                start = perf_counter_ns()
                await call()
                times.append(perf_counter_ns() - start)
            out[f"{op}_rps"] = len(times) / (sum(times) / 1e9)
            out[f"{op}_p50"] = statistics.median(times) / 1000
            out[f"{op}_p99"] = percentile(times, 99)
        return out
    finally:
        await store.close()


async def _turns_in_process(runtime: Runtime, turns: int, tag: str) -> dict[str, float]:
    """Turns/s with CONCURRENCY tasks, each a user holding conversations one after another (as the load process)."""
    times: list[int] = []
    per = turns // CONCURRENCY

    async def user(c: int) -> None:
        for i in range(per):
            start = perf_counter_ns()
            await runtime.converse(BOT, user_id=f"{tag}{c}-{i // len(SCRIPT)}", text=SCRIPT[i % len(SCRIPT)])
            times.append(perf_counter_ns() - start)

    started = perf_counter_ns()
    await asyncio.gather(*(user(c) for c in range(CONCURRENCY)))
    elapsed = (perf_counter_ns() - started) / 1e9
    return {"rps": len(times) / elapsed, "p50_us": statistics.median(times) / 1000, "p99_us": percentile(times, 99)}


@scenario(
    "http",
    "HTTP: botmemory serve (1 worker, load from another process) vs in-process vs a minimal Starlette endpoint",
    [
        Column("get_rps", "GET req/s"),
        Column("get_p50", "GET p50 µs", "us"),
        Column("get_p99", "GET p99 µs", "us"),
        Column("put_rps", "PUT req/s"),
        Column("put_p99", "PUT p99 µs", "us"),
        Column("turns", "turns/s"),
        Column("turns_p50", "turn p50 µs", "us"),
        Column("turns_p99", "turn p99 µs", "us"),
    ],
)
async def http_scenario(config: Config, log: Log) -> list[Row]:
    """The three rows described in the module docstring."""
    wanted = [t for t in ("bm-http", "minimal-starlette", "bm-inprocess") if config.wants(t, "http")]
    if not wanted:
        return []
    try:
        import uvicorn  # noqa: F401
        from starlette.applications import Starlette  # noqa: F401
    except ImportError as exc:
        return [Row("http", "bm-http", "botmemory serve", "http", None, skipped=f"{exc.name} not installed")]
    ops = config.ops
    rounds = max(1, min(config.rounds, 5))
    with tempfile.TemporaryDirectory(prefix="bm-http-") as tmp:
        root = Path(tmp)
        bots = _bots(root)
        url = f"sqlite:///{root / 'bench.db'}"
        seed = await botmemory.open(url)
        await seed.bot(BOT).kvs.set(KEY, VALUE, expiry=3600)
        await seed.close()
        inproc = await _in_process(url, bots, ops)
        log(f"  in-process: get {inproc['get_rps']:,.0f}/s, set {inproc['put_rps']:,.0f}/s")

        ours = _Process(
            [
                sys.executable,
                "-m",
                "botmemory",
                "--store",
                url,
                "--bots",
                str(bots),
                "serve",
                "--port",
                "0",
                "--no-janitor",
            ],
            root,
            r"^serving until",
        )
        minimal = _Process([sys.executable, "-m", "benchmarks.http_minimal", str(root / "bench.db")], root, r"^\d+$")
        try:
            text = "\n".join(ours.lines)
            port = int(re.search(r"http://127\.0\.0\.1:(\d+)/ui/", text).group(1))  # type: ignore[union-attr]
            token = re.search(r"shown only this once\): (\S+)", text).group(1)  # type: ignore[union-attr]
            auth = {"Authorization": f"Bearer {token}"}
            min_port = int(minimal.lines[-1])
            base = {"requests": ops, "concurrency": CONCURRENCY, "warmup": 100, "body": None}
            get_ours = {
                **base,
                "port": port,
                "method": "GET",
                "path": f"/api/v1/bots/{BOT}/kvs/bench%2Fkey",
                "headers": auth,
            }
            get_min = {**base, "port": min_port, "method": "GET", "path": f"/kv/{BOT}/{KEY}", "headers": {}}
            ours_rounds, min_rounds = [], []
            for _ in range(rounds):
                ours_rounds.append(_load(get_ours))
                min_rounds.append(_load(get_min))
            put = _load(
                {
                    **base,
                    "port": port,
                    "method": "PUT",
                    "path": f"/api/v1/bots/{BOT}/kvs/bench%2Fkey?expiry=1h",
                    "headers": {**auth, "Content-Type": "application/json"},
                    "body": orjson.dumps(VALUE).decode(),
                }
            )
            store = await botmemory.open(url)
            runtime = await Runtime.open(store, bots)
            turns_n = max(
                len(SCRIPT) * CONCURRENCY, (min(ops, 2_000) // (len(SCRIPT) * CONCURRENCY)) * len(SCRIPT) * CONCURRENCY
            )
            await _turns_in_process(runtime, len(SCRIPT) * CONCURRENCY, "warm")
            converse_rounds, inproc_turns = [], []
            for r in range(rounds):
                inproc_turns.append(await _turns_in_process(runtime, turns_n, f"in{r}-"))
                converse_rounds.append(
                    _load(
                        {
                            **base,
                            "requests": turns_n,
                            "warmup": len(SCRIPT) if r == 0 else 0,
                            "port": port,
                            "method": "POST",
                            "path": f"/api/v1/bots/{BOT}/converse/r{r}-",
                            "headers": {**auth, "Content-Type": "application/json"},
                            "converse": list(SCRIPT),
                        }
                    )
                )
            await store.close()
        finally:
            ours.stop()
            minimal.stop()

    def med(results: list[dict[str, Any]], key: str) -> float:
        return statistics.median(r[key] for r in results)

    http_row = Row(
        "http",
        "bm-http",
        "botmemory serve (HTTP)",
        "http",
        None,
        {
            "get_rps": med(ours_rounds, "rps"),
            "get_p50": med(ours_rounds, "p50_us"),
            "get_p99": med(ours_rounds, "p99_us"),
            "put_rps": put["rps"],
            "put_p99": put["p99_us"],
            "turns": med(converse_rounds, "rps"),
            "turns_p50": med(converse_rounds, "p50_us"),
            "turns_p99": med(converse_rounds, "p99_us"),
        },
        rounds={"get_rps": [r["rps"] for r in ours_rounds], "turns": [r["rps"] for r in converse_rounds]},
    )
    minimal_row = Row(
        "http",
        "minimal-starlette",
        "minimal Starlette + raw sqlite3 (HTTP)",
        "http",
        None,
        {"get_rps": med(min_rounds, "rps"), "get_p50": med(min_rounds, "p50_us"), "get_p99": med(min_rounds, "p99_us")},
        rounds={"get_rps": [r["rps"] for r in min_rounds]},
    )
    inproc_row = Row(
        "http",
        "bm-inprocess",
        "botmemory in-process (same SQLite file)",
        "http",
        None,
        {
            **{k: inproc[k] for k in ("get_rps", "get_p50", "get_p99", "put_rps", "put_p99")},
            "turns": med(inproc_turns, "rps"),
            "turns_p50": med(inproc_turns, "p50_us"),
            "turns_p99": med(inproc_turns, "p99_us"),
        },
        rounds={"turns": [r["rps"] for r in inproc_turns]},
    )
    log(
        f"  HTTP GET {http_row.metrics['get_rps']:,.0f}/s vs minimal {minimal_row.metrics['get_rps']:,.0f}/s "
        f"({http_row.metrics['get_rps'] / minimal_row.metrics['get_rps']:.2f}x); PUT {put['rps']:,.0f}/s; "
        f"converse {http_row.metrics['turns']:,.0f} turns/s vs in-process {inproc_row.metrics['turns']:,.0f} "
        f"({http_row.metrics['turns'] / inproc_row.metrics['turns']:.2f}x); HTTP GET vs in-process get "
        f"{http_row.metrics['get_rps'] / inproc['get_rps']:.2f}x"
    )
    return [r for r in (http_row, minimal_row, inproc_row) if r.target in wanted]
