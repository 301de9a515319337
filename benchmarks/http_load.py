"""The load process of the ``http`` scenario: keep-alive HTTP/1.1 requests over raw asyncio streams.

``python -m benchmarks.http_load SPEC_JSON`` runs ``concurrency`` connections,
each sending its requests one after the other (closed loop), and prints
``{"rps", "p50_us", "p99_us", "errors"}``. A hand-written client keeps the
load generator's own cost small next to the servers it measures.

SPEC: ``{"port", "method", "path", "headers": {...}, "body": str|null,
"requests", "concurrency", "warmup", "converse": [texts]|null}``; with
``converse``, connection ``c`` plays users ``u<c>-<i>`` through the script,
one conversation after another, POSTing ``{"text": ...}`` to ``path + user``.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time

import orjson


async def _connection(spec: dict, index: int, count: int, times: list[int], errors: list[str]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", spec["port"])
    head = "".join(f"{k}: {v}\r\n" for k, v in spec.get("headers", {}).items())
    script = spec.get("converse")
    try:
        for i in range(count):
            path = spec["path"]
            body = spec.get("body")
            if script:
                turn = i % len(script)
                path = f"{path}u{index}-{i // len(script)}"
                body = orjson.dumps({"text": script[turn]}).decode()
            payload = body.encode() if body is not None else b""
            request = (
                f"{spec['method']} {path} HTTP/1.1\r\nHost: bench\r\n{head}Content-Length: {len(payload)}\r\n\r\n"
            ).encode() + payload
            started = time.perf_counter_ns()
            writer.write(request)
            status_line = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            times.append(time.perf_counter_ns() - started)
            if not status_line.startswith(b"HTTP/1.1 2"):
                errors.append(status_line.decode().strip())
    finally:
        writer.close()


async def run(spec: dict) -> dict:
    concurrency = spec["concurrency"]
    per = spec["requests"] // concurrency
    if spec.get("warmup"):
        await asyncio.gather(*(_connection(spec, c + 1000, spec["warmup"], [], []) for c in range(concurrency)))
    times: list[int] = []
    errors: list[str] = []
    started = time.perf_counter()
    await asyncio.gather(*(_connection(spec, c, per, times, errors) for c in range(concurrency)))
    elapsed = time.perf_counter() - started
    ordered = sorted(times)
    return {
        "rps": len(times) / elapsed,
        "p50_us": statistics.median(ordered) / 1000,
        "p99_us": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] / 1000,
        "errors": errors[:5],
        "error_count": len(errors),
    }


if __name__ == "__main__":
    print(orjson.dumps(asyncio.run(run(orjson.loads(sys.argv[1])))).decode())
