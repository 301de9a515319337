"""PostgreSQL and Redis servers that the reliability tests start, kill, freeze and restart.

The shared servers on 5432/6379 belong to everyone's tests; these belong to
one test process: a PostgreSQL cluster made with ``initdb`` in a temporary
directory (binaries from ``/usr/lib/postgresql/*/bin``, ``pg_config
--bindir`` or ``PATH``; run as the ``postgres`` user when the tests run as
root, since ``initdb`` refuses root) and ``redis-server`` processes with
their own directory and AOF settings, each on a free port of 127.0.0.1.

CI needs the server binaries installed (Debian: ``postgresql`` and
``redis-server``), not running services. Without them the tests skip, or
fail with ``CI=true``.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import IN_CI

__all__ = ["PostgresCluster", "RedisServer", "free_port", "own_postgres", "require_binary"]


def free_port() -> int:
    """A port nobody listens on right now (others may take it later: callers retry)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def require_binary(what: str, path: str | None) -> str:
    """``path``, or skip (fail with CI=true) naming what is missing."""
    if path is None:
        message = f"{what} is not installed (needed to start a server of the test's own)"
        if IN_CI:
            pytest.fail(f"required in CI: {message}")
        pytest.skip(message)
    return path


def _pg_bindir() -> str | None:
    if env := os.environ.get("BOTMEMORY_PG_BIN"):
        return env
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return os.path.dirname(found[-1])
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False).stdout.strip()
        if out and os.path.exists(os.path.join(out, "initdb")):
            return out
    initdb = shutil.which("initdb")
    return os.path.dirname(initdb) if initdb else None


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (PostgreSQL's backends and helpers)."""
    out = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.split("/")[2]))
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _claim(directory: Path) -> None:
    """Mark ``directory`` as this test process's, after removing servers whose test process died.

    A test run killed hard (SIGKILL, a CI timeout) cannot stop its servers; the next run finds
    their directories in /tmp with a dead owner and stops what still runs there.
    """
    for stale in [*Path("/tmp").glob("botmemory-pg-*"), *Path("/tmp").glob("botmemory-redis-*")]:
        try:
            owner = int((stale / "owner").read_text())
        except (OSError, ValueError):
            continue
        if _alive(owner):
            continue
        for pidfile in (stale / "data" / "postmaster.pid", stale / "redis.pid"):
            with contextlib.suppress(OSError, ValueError, IndexError, ProcessLookupError, PermissionError):
                os.kill(int(pidfile.read_text().split()[0]), signal.SIGKILL)
        shutil.rmtree(stale, ignore_errors=True)
    (directory / "owner").write_text(str(os.getpid()))


def _signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


class PostgresCluster:
    """A PostgreSQL cluster of the test's own, with fsync on (as in production)."""

    def __init__(self, bindir: str) -> None:
        self.bindir = bindir
        self.base = Path(tempfile.mkdtemp(prefix="botmemory-pg-", dir="/tmp"))
        _claim(self.base)
        self.base.chmod(0o755)
        self.data = self.base / "data"
        self.log = self.base / "server.log"
        self.as_postgres = os.geteuid() == 0
        if self.as_postgres:
            shutil.chown(self.base, "postgres")
        self.port = free_port()
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C",
                  "--no-sync")
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(
                f"\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{self.base}'\n"
                "fsync = on\nsynchronous_commit = on\nmax_connections = 80\nshared_buffers = 16MB\n"
                "log_min_messages = warning\nlog_checkpoints = off\n"
            )
        self.frozen: list[int] = []

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [os.path.join(self.bindir, tool), *args]
        if self.as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        if check and result.returncode != 0:
            raise RuntimeError(f"{tool} failed ({result.returncode}): {result.stderr or result.stdout}")
        return result

    def postmaster(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def running(self) -> bool:
        pid = self.postmaster()
        if pid is None:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    def start(self) -> None:
        """Start (after a crash: PostgreSQL replays its WAL first); waits until it accepts connections."""
        for attempt in range(5):
            result = self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", f"-p {self.port}",
                               "-w", "-t", "120", "start", check=False)
            if result.returncode == 0:
                return
            if "could not bind" in self.log.read_text(errors="replace") and attempt < 4:
                self.port = free_port()  # someone took the port meanwhile
                continue
            raise RuntimeError(f"pg_ctl start failed: {result.stderr}\n{self.log.read_text(errors='replace')[-2000:]}")

    def stop(self, mode: str = "fast") -> None:
        """``immediate`` is a crash: no checkpoint, every backend killed, recovery at the next start."""
        self.thaw()
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "120", "stop", check=False)

    def processes(self) -> list[int]:
        pid = self.postmaster()
        return [] if pid is None else [pid, *_children(pid)]

    def freeze(self) -> None:
        """SIGSTOP the postmaster and every backend: connections stay open, nothing answers."""
        self.frozen = self.processes()
        _signal_all(self.frozen, signal.SIGSTOP)

    def thaw(self) -> None:
        _signal_all(self.frozen, signal.SIGCONT)
        self.frozen = []

    def ensure_running(self) -> None:
        self.thaw()
        if not self.running():
            self.start()

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)


_cluster: PostgresCluster | None = None


def own_postgres() -> PostgresCluster:
    """The test process's own PostgreSQL cluster (created once, removed at exit), running."""
    global _cluster
    if _cluster is None:
        bindir = require_binary("PostgreSQL (initdb, pg_ctl)", _pg_bindir())
        _cluster = PostgresCluster(bindir)
        atexit.register(_cluster.destroy)
        _cluster.start()
    _cluster.ensure_running()
    return _cluster


class RedisServer:
    """A ``redis-server`` of the test's own, optionally with AOF persistence.

    Args:
        appendfsync: ``"always"`` or ``"everysec"`` (AOF on), or None (no persistence).
        wrap: a command prefix (e.g. strace) to run the server under.
    """

    def __init__(self, appendfsync: str | None = None, wrap: list[str] | None = None) -> None:
        self.binary = require_binary("redis-server", shutil.which("redis-server"))
        self.appendfsync = appendfsync
        self.wrap = wrap or []
        self.dir = Path(tempfile.mkdtemp(prefix="botmemory-redis-", dir="/tmp"))
        _claim(self.dir)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.frozen = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, wrap: list[str] | None = None) -> None:
        persistence = ["--appendonly", "no"]
        if self.appendfsync is not None:
            persistence = ["--appendonly", "yes", "--appendfsync", self.appendfsync]
        for attempt in range(5):
            cmd = [*(self.wrap if wrap is None else wrap), self.binary, "--port", str(self.port),
                   "--bind", "127.0.0.1", "--dir", str(self.dir), "--save", "", *persistence,
                   "--daemonize", "no", "--protected-mode", "no", "--logfile", str(self.dir / "server.log"),
                   "--pidfile", str(self.dir / "redis.pid")]
            self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if self._wait_ready():
                return
            self.kill()
            if attempt < 4 and "Address already in use" in self.log():
                self.port = free_port()
                continue
            raise RuntimeError(f"redis-server did not start: {self.log()[-2000:]}")

    def log(self) -> str:
        try:
            return (self.dir / "server.log").read_text(errors="replace")
        except OSError:
            return ""

    def _wait_ready(self, within: float = 60.0) -> bool:
        """Until PING answers PONG (and the AOF is loaded: Redis answers LOADING before)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(64).startswith(b"+PONG"):
                        return True
            except OSError:
                pass
            time.sleep(0.02)
        return False

    @property
    def pid(self) -> int:
        """The redis-server's pid (under a wrapper such as strace: the traced child)."""
        assert self.proc is not None
        if not self.wrap:
            return self.proc.pid
        for _ in range(200):
            children = _children(self.proc.pid)
            if children:
                return children[0]
            time.sleep(0.01)
        raise RuntimeError("the wrapped redis-server has no process")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the server and wait until it is gone (SIGKILL: a crash)."""
        if self.proc is None:
            return
        self.thaw()
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid if self.proc.poll() is None else self.proc.pid, sig)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def freeze(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        if self.frozen and self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGCONT)
        self.frozen = False

    def destroy(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)
