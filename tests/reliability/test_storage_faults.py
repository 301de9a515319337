"""Storage faults on SQLite (issue 16, item 2): a full disk, and write/fsync failing with EIO or ENOSPC.

- Full disk: the test mounts a 4 MiB tmpfs (as root), puts the database
  there, and fills the rest with a ballast file. Every write then fails with
  ``StoreFullError`` (a ``StoreError``) on both durability levels, on the
  inline and on the writer-thread path; every read keeps working and returns
  exactly what was acknowledged; removing the ballast makes the *same* store
  write again, without a restart; the file passes ``PRAGMA integrity_check``
  and holds every acknowledged write.
- Injected faults: a store in a child process (``store_child.py``) gets
  ``strace --inject`` attached, so its ``pwrite64`` or ``fsync``/``fdatasync``
  calls fail with ``EIO`` or ``ENOSPC`` (always, or one call in four). Each
  call either succeeds or fails with a typed ``StoreError`` within seconds,
  reads keep working, and after strace detaches writes succeed again. The
  child is then SIGKILLed (a crash right after the faults) and a fresh
  open checks integrity and every acknowledged write.
- Redis at ``maxmemory`` (``noeviction``) on a server of the test's own: the
  same promises, ``StoreFullError`` included.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

import botmemory
from botmemory import StoreError, StoreFullError
from botmemory.testing.contract import dump_store
from conftest import IN_CI
from ownservers import RedisServer, require_binary
from reliability_suite import record
from workload import sqlite_integrity

CHILD = Path(__file__).with_name("store_child.py")
ANSWER_WITHIN = 10.0  # seconds; a failing write must not hang (the SQLite timeout is 30 s by default)


# -- the acknowledged state ------------------------------------------------------------------


class Expected:
    """What acknowledged writes left in bot ``faults``: key -> value, and the counter's bounds."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.deleted: set[str] = set()
        self.incr_acked = 0
        self.incr_tried = 0
        self.groups_tried: list[list[str]] = []

    def write_ops(self, tag: str) -> list[tuple[dict[str, Any], Any]]:
        """One request per kind of write, and what each leaves behind when acknowledged."""
        big = {f"{tag}/many/{i}": i for i in range(40)}  # > 16 keys: the writer thread's path
        return [
            ({"op": "set", "key": f"{tag}/new", "value": {"tag": tag}}, ("set", f"{tag}/new", {"tag": tag})),
            ({"op": "set", "key": "base/0", "value": tag}, ("set", "base/0", tag)),
            ({"op": "set", "key": f"{tag}/big", "value": "x" * 20_000}, ("set", f"{tag}/big", "x" * 20_000)),
            ({"op": "incr", "key": "counter"}, ("incr",)),
            ({"op": "set_many", "items": {f"{tag}/a": 1, f"{tag}/b": 2}}, ("many", {f"{tag}/a": 1, f"{tag}/b": 2})),
            ({"op": "set_many", "items": big}, ("many", big)),
            ({"op": "set", "key": "doc", "value": tag, "path": f"f.{tag}"}, ("path", "doc", tag)),
            ({"op": "delete", "key": f"base/{len(tag)}"}, ("delete", f"base/{len(tag)}")),
            ({"op": "expire", "key": "base/1", "expiry": "10d"}, ("none",)),
            ({"op": "user_variable", "key": tag, "value": tag}, ("none",)),
        ]

    def tried(self, effect: Any) -> None:
        if effect[0] == "incr":
            self.incr_tried += 1
        elif effect[0] == "many":
            self.groups_tried.append(list(effect[1]))

    def acked(self, effect: Any) -> None:
        kind = effect[0]
        if kind == "set":
            self.values[effect[1]] = effect[2]
            self.deleted.discard(effect[1])
        elif kind == "incr":
            self.incr_acked += 1
        elif kind == "many":
            self.values.update(effect[1])
        elif kind == "path":
            doc = self.values.setdefault(effect[1], {"f": {}})
            doc["f"][effect[2]] = effect[2]
        elif kind == "delete":
            self.values.pop(effect[1], None)
            self.deleted.add(effect[1])

    async def check(self, store: botmemory.Store) -> None:
        kvs = store.bot("faults").kvs
        stored = await kvs.get_many(list(self.values))
        missing = sorted(set(self.values) - set(stored))
        assert missing == [], f"acknowledged writes lost: {missing}"
        wrong = [k for k, v in self.values.items() if k != "doc" and stored[k] != v]
        assert wrong == [], f"acknowledged values changed: {wrong}"
        if "doc" in self.values:
            assert self.values["doc"]["f"].items() <= stored["doc"]["f"].items()
        counter = await kvs.get("counter", default=0)
        assert self.incr_acked <= counter <= self.incr_tried, (self.incr_acked, counter, self.incr_tried)
        for group in self.groups_tried:
            present = await kvs.get_many(group)
            assert len(present) in (0, len(group)), f"set_many half applied: {len(present)} of {len(group)}"


BASE = [{"op": "set", "key": f"base/{i}", "value": {"i": i, "pad": "p" * 200}} for i in range(60)]


def _expect_base(expected: Expected) -> None:
    for req in BASE:
        expected.values[req["key"]] = req["value"]


# -- full disk on a tmpfs -----------------------------------------------------------------------


@contextlib.contextmanager
def _small_tmpfs(size: str = "4m") -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    where = Path(tempfile.mkdtemp(prefix="botmemory-full-", dir="/tmp"))
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        where.rmdir()
        message = f"cannot mount a tmpfs: {result.stderr.strip()}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)
        with contextlib.suppress(OSError):
            where.rmdir()


def _fill(path: Path) -> None:
    """Write zeros until the file system says ENOSPC."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        chunk = b"\0" * 65536
        while True:
            try:
                os.write(fd, chunk)
            except OSError:
                if len(chunk) == 1:
                    break
                chunk = chunk[: len(chunk) // 2]
    finally:
        os.close(fd)


async def _kvs_call(store: botmemory.Store, req: dict[str, Any]) -> Any:
    from store_child import call

    return await call(store, req)


@pytest.mark.parametrize("synchronous", ["normal", "full"])
async def test_full_disk(synchronous: str) -> None:
    with _small_tmpfs() as mount:
        db = mount / "full.db"
        url = f"sqlite:///{db}?synchronous={synchronous}"
        expected = Expected()
        failures: dict[str, str] = {}
        store = await botmemory.open(url, timeout=5)
        try:
            for req in BASE:
                await _kvs_call(store, req)
            _expect_base(expected)
            await _kvs_call(store, {"op": "user_variable", "key": "name", "value": "Ada"})
            before = await dump_store(store)
            _fill(mount / "ballast")

            # every kind of write fails, typed, twice in a row (nothing left half done by the first)
            for attempt in range(2):
                for req, effect in expected.write_ops(f"full{attempt}"):
                    expected.tried(effect)
                    started = time.monotonic()
                    with pytest.raises(StoreError) as caught:
                        await _kvs_call(store, req)
                    assert time.monotonic() - started < ANSWER_WITHIN
                    assert isinstance(caught.value, StoreFullError), repr(caught.value)
                    failures[req["op"]] = type(caught.value).__name__
            # reads keep working and show exactly what was acknowledged
            assert await dump_store(store) == before
            assert await _kvs_call(store, {"op": "get", "key": "base/7"}) == {"i": 7, "pad": "p" * 200}
            assert len(await _kvs_call(store, {"op": "keys", "prefix": "base/"})) == 60
            assert await _kvs_call(store, {"op": "ttl", "key": "base/3"}) is None
            assert (await _kvs_call(store, {"op": "export"}))["user"]["name"]["value"] == "Ada"

            # a second store opened on the full disk can read too
            async with await botmemory.open(url, timeout=5) as other:
                assert await dump_store(other) == before
                with pytest.raises(StoreFullError):
                    await other.bot("faults").kvs.set("other", 1)

            # space comes back: the same store writes again, no restart
            (mount / "ballast").unlink()
            for req, effect in expected.write_ops("after"):
                expected.tried(effect)
                await _kvs_call(store, req)
                expected.acked(effect)
            await expected.check(store)
        finally:
            await store.close()
        assert sqlite_integrity(db) == "ok"
        async with await botmemory.open(url) as again:
            await expected.check(again)
            assert await again.bot("faults").memory.get_user_variable("u", "name") == "Ada"
    record(f"storage.full_disk.{synchronous}", failed_with=sorted(set(failures.values())),
           write_kinds=len(failures), integrity="ok", lost_acked=0)


def test_creating_a_database_on_a_full_disk_leaves_nothing() -> None:
    with _small_tmpfs("1m") as mount:
        _fill(mount / "ballast")

        async def go() -> None:
            with pytest.raises(StoreError):
                await botmemory.open(f"sqlite:///{mount / 'new.db'}")

        import asyncio

        asyncio.run(go())
        assert sorted(p.name for p in mount.iterdir()) == ["ballast"]


# -- faults injected with strace ------------------------------------------------------------------


def _strace() -> str:
    found = shutil.which("strace")
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-q", "strace"], capture_output=True, timeout=600, check=False)
        found = shutil.which("strace")
    return require_binary("strace", found)


class Child:
    """``store_child.py`` on a URL, and its answers."""

    def __init__(self, url: str) -> None:
        self.proc = subprocess.Popen([sys.executable, str(CHILD), url], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=CHILD.parent)
        self.buffer = b""
        assert self._line(60) == {"ready": True}

    def _line(self, within: float) -> Any:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + within
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            while b"\n" not in self.buffer:
                left = deadline - time.monotonic()
                assert left > 0, f"no answer within {within} s"
                if sel.select(left):
                    data = self.proc.stdout.read1(65536)
                    assert data, f"the child died: {self.proc.stderr.read().decode() if self.proc.stderr else ''}"
                    self.buffer += data
        line, self.buffer = self.buffer.split(b"\n", 1)
        return orjson.loads(line)

    def call(self, req: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(orjson.dumps(req) + b"\n")
        self.proc.stdin.flush()
        answer: dict[str, Any] = self._line(ANSWER_WITHIN + 20)
        assert answer["seconds"] < ANSWER_WITHIN, answer
        return answer

    def crash(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


def _tracers(pid: int) -> set[int]:
    out = set()
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        with contextlib.suppress(OSError):
            for line in status.read_text().splitlines():
                if line.startswith("TracerPid:"):
                    out.add(int(line.split()[1]))
    return out


@contextlib.contextmanager
def inject(pid: int, syscalls: str, errno: str, when: str = "") -> Iterator[None]:
    """Make ``syscalls`` of every thread of ``pid`` fail with ``errno`` until the block ends."""
    tracer = subprocess.Popen([_strace(), "-f", "-qq", "-o", "/dev/null", "-e", f"trace={syscalls}",
                               "-e", f"inject={syscalls}:error={errno}{when}", "-p", str(pid)],
                              stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while _tracers(pid) != {tracer.pid}:
            if tracer.poll() is not None:
                stderr = tracer.stderr.read().decode() if tracer.stderr else ""
                pytest.skip(f"strace cannot attach here: {stderr.strip()}")
            assert time.monotonic() < deadline, "strace did not attach"
            time.sleep(0.02)
        yield
    finally:
        tracer.terminate()
        tracer.wait(timeout=30)
        if tracer.stderr is not None:
            tracer.stderr.close()
        deadline = time.monotonic() + 30
        while _tracers(pid) - {0}:
            assert time.monotonic() < deadline, "strace did not detach"
            time.sleep(0.02)


READS: list[dict[str, Any]] = [
    {"op": "get", "key": "base/5"},
    {"op": "get_many", "keys": ["base/6", "base/7"]},
    {"op": "keys", "prefix": "base/"},
    {"op": "ttl", "key": "base/8"},
    {"op": "exists", "key": "base/9"},
    {"op": "export"},
]

CASES = [
    # (id, syscalls, errno, when, synchronous, every write fails with)
    ("write-ENOSPC", "pwrite64", "ENOSPC", "", "normal", "StoreFullError"),
    ("write-EIO", "pwrite64", "EIO", "", "normal", "StoreUnavailableError"),
    ("write-EIO-full", "pwrite64", "EIO", "", "full", "StoreUnavailableError"),
    ("fsync-EIO-full", "fsync,fdatasync", "EIO", "", "full", "StoreUnavailableError"),
    ("fsync-ENOSPC-full", "fsync,fdatasync", "ENOSPC", "", "full", "StoreError"),
    ("fsync-EIO-normal", "fsync,fdatasync", "EIO", "", "normal", None),  # commits do not fsync at NORMAL
    ("write-EIO-1-in-4", "pwrite64", "EIO", ":when=2+4", "normal", "mixed"),
    ("write-ENOSPC-1-in-3-full", "pwrite64", "ENOSPC", ":when=1+3", "full", "mixed"),
]


@pytest.mark.parametrize(("syscalls", "errno", "when", "synchronous", "fails_with"),
                         [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_injected_storage_faults(
    tmp_path: Path, syscalls: str, errno: str, when: str, synchronous: str, fails_with: str | None
) -> None:
    db = tmp_path / "faults.db"
    url = f"sqlite:///{db}?synchronous={synchronous}&timeout=5"
    child = Child(url)
    expected = Expected()
    outcomes: dict[str, int] = {}
    try:
        for req in BASE:
            assert "ok" in child.call(req)
        _expect_base(expected)
        snapshot = {r["key"]: r["value"] for r in BASE}
        with inject(child.proc.pid, syscalls, errno, when):
            for round_ in range(3):
                for req, effect in expected.write_ops(f"fault{round_}"):
                    expected.tried(effect)
                    answer = child.call(req)
                    if "ok" in answer:
                        expected.acked(effect)
                        outcomes["ok"] = outcomes.get("ok", 0) + 1
                        continue
                    assert "StoreError" in answer["mro"], answer
                    outcomes[answer["error"]] = outcomes.get(answer["error"], 0) + 1
            for req in READS:
                answer = child.call(req)
                assert "ok" in answer, answer
            assert child.call({"op": "get", "key": "base/5"})["ok"] == snapshot["base/5"]
        if fails_with is None:
            assert set(outcomes) == {"ok"}, outcomes
        elif fails_with == "mixed":
            assert "ok" in outcomes and len(outcomes) > 1, outcomes
        else:
            assert "ok" not in outcomes, outcomes
            if fails_with != "StoreError":
                assert set(outcomes) == {fails_with}, outcomes
        # strace is gone: the same process writes again
        for req, effect in expected.write_ops("after"):
            expected.tried(effect)
            answer = child.call(req)
            assert "ok" in answer, answer
            expected.acked(effect)
    finally:
        child.crash()  # SIGKILL right after the faults: recovery is part of the test
    assert sqlite_integrity(db) == "ok"

    async def check() -> None:
        async with await botmemory.open(f"sqlite:///{db}") as store:
            await expected.check(store)

    import asyncio

    asyncio.run(check())
    record(f"storage.inject.{syscalls.split(',')[0]}.{errno}{when.replace(':when=', '.every-')}.{synchronous}",
           outcomes=dict(sorted(outcomes.items())), integrity="ok", lost_acked=0)


# -- Redis at maxmemory ---------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _redis_with_maxmemory() -> AsyncIterator[tuple[RedisServer, botmemory.Store]]:
    server = RedisServer()
    server.start()
    try:
        import redis

        admin = redis.Redis(port=server.port)
        admin.config_set("maxmemory-policy", "noeviction")
        admin.close()
        async with await botmemory.open(server.url, timeout=5) as store:
            yield server, store
    finally:
        server.destroy()


@pytest.mark.redis
async def test_redis_at_maxmemory() -> None:
    import redis

    async with _redis_with_maxmemory() as (server, store):
        expected = Expected()
        for req in BASE:
            await _kvs_call(store, req)
        _expect_base(expected)
        admin = redis.Redis(port=server.port)
        try:
            used = int(admin.info("memory")["used_memory"])
            admin.config_set("maxmemory", str(used + 512 * 1024))
            # fill up to the limit with a ballast of plain Redis keys
            i = 0
            with contextlib.suppress(redis.exceptions.OutOfMemoryError):
                while True:
                    admin.set(f"ballast:{i}", b"\0" * 16384)
                    i += 1
            before = await dump_store(store)
            failed: set[str] = set()
            allowed: set[str] = set()
            for req, effect in expected.write_ops("oom"):
                expected.tried(effect)
                try:
                    await _kvs_call(store, req)
                except StoreError as exc:
                    failed.add(type(exc).__name__)
                else:
                    # Redis lets commands that do not grow memory through at maxmemory
                    assert req["op"] in ("delete", "expire"), f"{req['op']} succeeded at maxmemory"
                    expected.acked(effect)
                    allowed.add(req["op"])
            assert failed == {"StoreFullError"}, failed
            # nothing else changed: only what the allowed delete and expire touched
            touched = {"base/3", "base/1"}
            after = await dump_store(store)
            assert {ns: {k: v for k, v in rows.items() if k not in touched} for ns, rows in after.items()} == {
                ns: {k: v for k, v in rows.items() if k not in touched} for ns, rows in before.items()
            }
            admin.delete(*(f"ballast:{n}" for n in range(i)))
            for req, effect in expected.write_ops("after"):
                expected.tried(effect)
                await _kvs_call(store, req)
                expected.acked(effect)
            await expected.check(store)
        finally:
            admin.close()
    record("storage.redis_maxmemory", failed_with=sorted(failed), allowed_at_maxmemory=sorted(allowed), lost_acked=0)
