"""Worker processes of the load tests.

``python load_worker.py writer URL START SECONDS INDEX``: wait until
``time.monotonic() >= START`` (every writer starts together), then set keys
one after the other for SECONDS, and print one JSON line: the number of
writes and each write's latency in microseconds.

``python load_worker.py race DIR T0 ROUNDS STEP``: for each round k, wait until
``time.time() >= T0 + k * STEP``, then open the new SQLite file ``DIR/rk.db``
(every worker at once), increment a counter and close.

``python load_worker.py soak URL OPTIONS_JSON SECONDS``: a mixed workload on
a bounded key space (sets with and without expiry, gets, incr, path sets,
set_many, get_many, listing, deletes, memory variables, purges) for
SECONDS, printing a JSON sample of its resident memory and open descriptors
every second, then ``{"done": ...}``.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import time
from typing import Any

import orjson

import botmemory


async def writer(url: str, start: float, seconds: float, index: int) -> None:
    latencies: list[int] = []
    async with await botmemory.open(url) as store:
        kvs = store.bot("load").kvs
        value = {"text": "x" * 150, "n": 0}
        await asyncio.sleep(max(0.0, start - time.monotonic()))
        stop = time.monotonic() + seconds
        i = 0
        while (now := time.monotonic()) < stop:
            i += 1
            value["n"] = i
            await kvs.set(f"w{index}/{i % 5000}", value)
            latencies.append(int((time.monotonic() - now) * 1_000_000))
    sys.stdout.buffer.write(orjson.dumps({"writes": len(latencies), "latencies_us": latencies}) + b"\n")


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def soak(url: str, options: dict[str, Any], seconds: float) -> None:
    rng = random.Random(7)
    ops = 0
    started = time.monotonic()
    next_sample = started
    async with await botmemory.open(url, **options) as store:
        bot = store.bot("soak")
        kvs = bot.kvs
        while (now := time.monotonic()) < started + seconds:
            if now >= next_sample:
                print(orjson.dumps({"t": round(now - started, 2), "rss": _rss(), "fds": _fds(), "ops": ops}).decode(),
                      flush=True)
                next_sample += 1.0
                await store.purge_expired(limit=1000)
            key = f"k{rng.randrange(2000)}"
            pick = rng.random()
            if pick < 0.25:
                await kvs.set(key, {"n": ops, "text": "y" * rng.randrange(400)}, expiry=rng.choice([None, "2s", "1h"]))
            elif pick < 0.5:
                await kvs.get(key)
            elif pick < 0.6:
                await kvs.incr(f"c{rng.randrange(20)}")
            elif pick < 0.67:
                await kvs.set(f"doc{rng.randrange(20)}", ops, path=f"f{rng.randrange(50)}")
            elif pick < 0.72:
                await kvs.set_many({f"m{rng.randrange(500)}": ops for _ in range(5)}, expiry="3s")
            elif pick < 0.8:
                await kvs.get_many([f"k{rng.randrange(2000)}" for _ in range(10)])
            elif pick < 0.83:
                [k async for k in kvs.keys("k1", limit=50)]
            elif pick < 0.9:
                await kvs.delete(key)
            else:
                await bot.memory.set_user_variable(f"u{rng.randrange(200)}", "name", ops, expiry="5s")
            ops += 1
    print(orjson.dumps({"done": True, "ops": ops, "rss": _rss(), "fds": _fds()}).decode(), flush=True)


async def race(directory: str, t0: float, rounds: int, step: float) -> None:
    for k in range(rounds):
        while time.time() < t0 + k * step:
            pass  # spin: the workers must open within microseconds of each other
        async with await botmemory.open(f"sqlite:///{directory}/r{k}.db") as store:
            await store.bot("race").kvs.incr("n")


if __name__ == "__main__":
    if sys.argv[1] == "race":
        asyncio.run(race(sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])))
    elif sys.argv[1] == "writer":
        asyncio.run(writer(sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])))
    else:
        asyncio.run(soak(sys.argv[2], orjson.loads(sys.argv[3]), float(sys.argv[4])))
