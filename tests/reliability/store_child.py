"""A store in a process of its own, driven over stdin/stdout: ``python store_child.py URL``.

One JSON object per line in, one per line out: ``{"op": "set", "key": "k",
"value": 1}`` answers ``{"ok": 1}`` or ``{"error": "StoreFullError",
"mro": [...], "message": "..."}``. The storage-fault tests attach strace to
this process to make its system calls fail, which they cannot do to the
test process itself. Only the public API is used.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import orjson

import botmemory


async def call(store: botmemory.Store, req: dict[str, Any]) -> Any:
    kvs = store.bot(req.get("bot", "faults")).kvs
    op = req["op"]
    if op == "set":
        return await kvs.set(req["key"], req["value"], req.get("path"), req.get("expiry"))
    if op == "incr":
        return await kvs.incr(req["key"])
    if op == "set_many":
        return await kvs.set_many(req["items"])
    if op == "delete":
        return await kvs.delete(req["key"])
    if op == "expire":
        return await kvs.expire(req["key"], req["expiry"])
    if op == "user_variable":
        return await store.bot("faults").memory.set_user_variable("u", req["key"], req["value"])
    if op == "get":
        return await kvs.get(req["key"], req.get("path"))
    if op == "get_many":
        return await kvs.get_many(req["keys"])
    if op == "keys":
        return [k async for k in kvs.keys(req.get("prefix", ""))]
    if op == "ttl":
        return await kvs.ttl(req["key"])
    if op == "exists":
        return await kvs.exists(req["key"])
    if op == "export":
        return await store.bot("faults").users.export("u")
    raise ValueError(f"unknown op {op!r}")


async def main(url: str) -> None:
    store = await botmemory.open(url)
    loop = asyncio.get_running_loop()
    out = sys.stdout.buffer
    out.write(b'{"ready": true}\n')
    out.flush()
    while line := await loop.run_in_executor(None, sys.stdin.buffer.readline):
        req = orjson.loads(line)
        started = time.perf_counter()
        try:
            answer: dict[str, Any] = {"ok": await call(store, req)}
        except Exception as exc:
            answer = {"error": type(exc).__name__, "mro": [c.__name__ for c in type(exc).__mro__],
                      "message": str(exc)}
        answer["seconds"] = time.perf_counter() - started
        out.write(orjson.dumps(answer) + b"\n")
        out.flush()
    await store.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
