"""The reference of the ``http`` scenario: a minimal Starlette endpoint reading one key with raw sqlite3.

``python -m benchmarks.http_minimal DB_PATH`` serves ``GET /kv/{ns}/{key:path}``
on a free loopback port (printed on stdout) with the same uvicorn settings as
``botmemory serve`` (one worker, no access log): it reads the row from the
botmemory SQLite file with the standard library's driver, checks its expiry,
and answers ``{"key", "value"}``. No auth, no validation, no metrics: the
floor that botmemory's own endpoint is compared with.
"""

from __future__ import annotations

import socket
import sqlite3
import sys
import time

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


def build(db_path: str) -> Starlette:
    connection = sqlite3.connect(db_path, check_same_thread=False, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")

    async def read(request: Request) -> Response:
        ns, key = request.path_params["ns"], request.path_params["key"]
        row = connection.execute("SELECT value, expires_at FROM kv WHERE ns = ? AND key = ?", (ns, key)).fetchone()
        if row is None or (row[1] is not None and row[1] <= time.time()):
            return Response(b'{"error":"not found"}', status_code=404, media_type="application/json")
        return Response(orjson.dumps({"key": key, "value": orjson.loads(row[0])}), media_type="application/json")

    return Starlette(routes=[Route("/kv/{ns}/{key:path}", read)])


def main() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # as serve: TCP_NODELAY
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    print(sock.getsockname()[1], flush=True)
    config = uvicorn.Config(build(sys.argv[1]), log_level="warning", access_log=False, server_header=False)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
