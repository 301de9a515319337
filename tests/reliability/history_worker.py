"""One client of the linearizability test: ``python history_worker.py URL OPTIONS_JSON CLIENT SEED OPS``.

Runs OPS random operations (get, set, compare-and-set, incr, delete) on a
few keys of one bot through the public API and records each invocation and
return on stdout (``botmemory.testing.linearizability.HistoryRecorder``), so
a SIGKILL leaves the operation in flight pending.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
from typing import Any

import orjson

import botmemory
from botmemory.errors import StoreError
from botmemory.testing.linearizability import HistoryRecorder, record_op

KEYS = ["k0", "k1", "k2"]


async def main(url: str, options: dict[str, Any], client: str, seed: int, ops: int) -> None:
    rng = random.Random(seed)
    recorder = HistoryRecorder(client, lambda line: os.write(1, line))
    seen: dict[str, int] = {}  # the last version this client saw per key: good guesses for compare-and-set
    async with await botmemory.open(url, **options) as store:
        kvs = store.bot("lin").kvs
        os.write(1, b'{"e":"ready"}\n')
        for _ in range(ops):
            key = rng.choice(KEYS)
            kind = rng.choices(["get", "set", "cas", "incr", "delete"], [4, 2, 3, 3, 1])[0]
            arg: Any = None
            if kind == "set":
                arg = rng.randrange(100)
            elif kind == "incr":
                arg = rng.choice([1, 2, 5])
            elif kind == "cas":
                arg = [rng.choice([0, seen.get(key, 0), seen.get(key, 0) + 1]), rng.randrange(100)]
            try:
                result = await record_op(recorder, kvs, kind, key, arg)
            except StoreError:
                continue  # recorded as unknown: a pending operation
            if kind == "get":
                seen[key] = 0 if result is None else result[1]
            elif kind in ("set", "cas") and result != "conflict":
                seen[key] = result
            elif kind == "delete":
                seen[key] = 0


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], orjson.loads(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])))
