"""A TCP fault proxy for the outage tests: between a store and its server, it plays network faults.

Modes (``set_mode``), for the connections open now and those to come:

- ``pass``: forward both ways.
- ``pause``: forward nothing, keep everything open (a frozen server); what
  arrived meanwhile is delivered when the mode changes back.
- ``drop``: read and discard both ways (a black hole: writes succeed, no
  answer ever comes).
- ``delay``: forward each chunk ``delay`` seconds late.
- ``reset``: abort every connection with a TCP RST, and each new one as soon
  as it is accepted.
- ``half-open``: close the direction towards the client (it reads EOF)
  while the connection to the server stays open and what the client still
  sends is discarded.

``close()`` takes the proxy down (connections refused), ``start()`` brings
it back on the same port.

In the test's own event loop: ``proxy = FaultProxy((host, port)); await
proxy.start()``. In a process of its own, so that its sockets do not count
as the test process's (leak checks): ``python faultproxy.py HOST PORT``
prints ``PORT n`` and then obeys one command a line on stdin (``mode drop``,
``mode delay 0.5``, ``down``, ``up``, ``count``), answering ``ok`` (or the
count) on stdout; :class:`ProxyProcess` drives it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["MODES", "FaultProxy", "ProxyProcess"]

MODES = ("pass", "pause", "drop", "delay", "reset", "half-open")


@dataclass(eq=False)
class _Conn:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    client_eof_sent: bool = False


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST (SO_LINGER 0) instead of a FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class FaultProxy:
    """A TCP forwarder on 127.0.0.1 whose faults a test switches on and off."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self.mode = "pass"
        self.delay = 0.0
        self._server: asyncio.Server | None = None
        self._changed = asyncio.Event()
        self._conns: set[_Conn] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    @property
    def connections(self) -> int:
        return len(self._conns)

    def set_mode(self, mode: str, delay: float = 0.0) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}")
        self.mode, self.delay = mode, delay
        self._changed.set()
        self._changed = asyncio.Event()
        for conn in list(self._conns):
            self._apply(conn)

    # the in-loop interface of tests/test_outage.py
    def pause(self) -> None:
        self.set_mode("pause")

    def resume(self) -> None:
        self.set_mode("pass")

    async def close(self) -> None:
        """Refuse new connections and drop the open ones: the server looks down."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        tasks = set()
        for conn in list(self._conns):
            self._drop(conn, reset=False)
            tasks |= conn.tasks
        await asyncio.gather(*tasks, return_exceptions=True)

    def _apply(self, conn: _Conn) -> None:
        if self.mode == "reset":
            self._drop(conn, reset=True)
        elif self.mode == "half-open" and not conn.client_eof_sent:
            conn.client_eof_sent = True
            with contextlib.suppress(OSError, RuntimeError):
                conn.client.write_eof()

    def _drop(self, conn: _Conn, *, reset: bool) -> None:
        for writer in (conn.client, conn.upstream):
            if writer is not None:
                if reset:
                    _abort(writer)
                else:
                    writer.close()
        for task in conn.tasks:
            task.cancel()
        self._conns.discard(conn)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = _Conn(writer)
        if self.mode == "reset":
            _abort(writer)
            return
        self._conns.add(conn)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            self._drop(conn, reset=False)
            return
        conn.upstream = up_writer
        if conn not in self._conns:  # reset meanwhile
            up_writer.close()
            return
        self._apply(conn)
        for src, dst, to_client in ((reader, up_writer, False), (up_reader, writer, True)):
            task = asyncio.create_task(self._pump(conn, src, dst, to_client))
            conn.tasks.add(task)

    async def _pump(
        self, conn: _Conn, src: asyncio.StreamReader, dst: asyncio.StreamWriter, to_client: bool
    ) -> None:
        try:
            while data := await src.read(65536):
                while self.mode == "pause":
                    await self._changed.wait()
                if self.mode in ("drop", "reset") or (self.mode == "half-open" or conn.client_eof_sent):
                    continue  # discarded
                if self.mode == "delay":
                    await asyncio.sleep(self.delay)
                dst.write(data)
                await dst.drain()
        except (OSError, asyncio.IncompleteReadError, RuntimeError):
            pass
        finally:
            if conn in self._conns:
                self._drop(conn, reset=False)


# -- a proxy in a process of its own ---------------------------------------------------------------


async def _serve(host: str, port: int) -> None:
    proxy = FaultProxy((host, port))
    await proxy.start()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print(f"PORT {proxy.port}", flush=True)
    while line := (await reader.readline()).decode().split():
        answer = "ok"
        if line[0] == "mode":
            proxy.set_mode(line[1], float(line[2]) if len(line) > 2 else 0.0)
        elif line[0] == "down":
            await proxy.close()
        elif line[0] == "up":
            await proxy.start()
        elif line[0] == "count":
            answer = str(proxy.connections)
        print(answer, flush=True)
    await proxy.close()


class ProxyProcess:
    """A :class:`FaultProxy` in a child process, driven through its stdin."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__)), target[0], str(target[1])],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        first = self.proc.stdout.readline().split()
        assert first and first[0] == "PORT", first
        self.port = int(first[1])

    def command(self, *words: object) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(" ".join(map(str, words)) + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def set_mode(self, mode: str, delay: float = 0.0) -> None:
        assert self.command("mode", mode, delay) == "ok"

    def down(self) -> None:
        assert self.command("down") == "ok"

    def up(self) -> None:
        assert self.command("up") == "ok"

    def close(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()


if __name__ == "__main__":
    asyncio.run(_serve(sys.argv[1], int(sys.argv[2])))
