"""Start ``botmemory serve`` in a child process for tests: its URL, admin token and login link."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_BOTS = ROOT / "bots"


@dataclass
class Served:
    proc: subprocess.Popen[str]
    url: str
    token: str | None
    login_link: str | None
    lines: list[str] = field(default_factory=list)

    def headers(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.token}"}

    def rss_kib(self) -> int:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]


def _read_banner(proc: subprocess.Popen[str], deadline: float) -> list[str]:
    """serve's lines on stdout, up to its last one (read on a thread: a pipe read cannot time out)."""
    assert proc.stdout is not None
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    seen: list[str] = []
    while True:
        try:
            line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            raise TimeoutError(f"serve printed no URL in time: {seen!r}") from None
        if line is None:
            raise RuntimeError(f"serve exited with {proc.wait()}: {seen!r}")
        seen.append(line)
        if line == "serving until Ctrl-C":
            return seen


@contextmanager
def serve(
    store_url: str,
    cwd: Path,
    *args: str,
    bots: Path = EXAMPLE_BOTS,
    env: dict[str, str] | None = None,
    token: str | None = None,
    timeout: float = 60.0,
    options: tuple[str, ...] = (),
) -> Iterator[Served]:
    """Run ``botmemory --store URL --bots DIR OPTIONS serve --port 0 ARGS``; yield once it answers /healthz."""
    command = [
        sys.executable,
        "-m",
        "botmemory",
        "--store",
        store_url,
        "--bots",
        str(bots),
        *options,
        "serve",
        "--port",
        "0",
        *args,
    ]
    # stderr (uvicorn's log) goes to a file: an unread pipe would fill and block the server
    log = open(cwd / f"serve-{time.monotonic_ns()}.log", "w+")  # noqa: SIM115
    proc = subprocess.Popen(
        command,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        env={**os.environ, **(env or {})},
    )
    try:
        deadline = time.monotonic() + timeout
        lines = _read_banner(proc, deadline)
        text = "\n".join(lines)
        url = re.search(r"(http://[^/\s]+)/ui/", text).group(1)  # type: ignore[union-attr]
        created = re.search(r"shown only this once\): (\S+)", text)
        link = re.search(r"(http://\S+/ui/#login=\S+)", text)
        served = Served(proc, url, created.group(1) if created else token, link.group(1) if link else None, lines)
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("serve did not become healthy")
            time.sleep(0.05)
        yield served
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()
        log.seek(0)
        served_log = log.read()
        log.close()
        if "Traceback" in served_log:
            print(served_log[-5000:], file=sys.stderr)
