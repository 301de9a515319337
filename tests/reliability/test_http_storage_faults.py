"""Storage faults through the HTTP server (issue 16, item 2): ``botmemory serve`` on a SQLite file that fails.

- Full disk: the database on a small tmpfs (root only, as in
  ``test_storage_faults.py``), the rest filled with a ballast file: every
  kind of write answers **507** (``store_full``), every read 200 with what was
  acknowledged; once the ballast is gone the *same* server process writes
  again.
- ``strace --inject`` attached to the server process (every thread):
  ``pwrite64`` failing with ``EIO`` -> **503**, with ``ENOSPC`` -> **507**;
  reads 200 throughout; after strace detaches, writes succeed again. The
  server is then SIGKILLed and the file checked (``integrity_check``, every
  acknowledged write).
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

import botmemory
from http_server import Served, serve
from reliability_suite import record
from test_storage_faults import _fill, _small_tmpfs, inject
from workload import sqlite_integrity

BOT = "example"
KVS = f"/api/v1/bots/{BOT}/kvs"
ANSWER_WITHIN = 10.0


def _writes(tag: str) -> list[tuple[str, str, dict[str, Any]]]:
    """One request per kind of write: (name, method + path, httpx arguments)."""
    big = {f"{tag}/many/{i}": i for i in range(40)}
    return [
        ("put", f"PUT {KVS}/{tag}/new", {"content": b'{"tag": 1}'}),
        ("put-big", f"PUT {KVS}/{tag}/big", {"content": b'"' + b"x" * 20_000 + b'"'}),
        ("overwrite", f"PUT {KVS}/base/0", {"content": b'"changed"'}),
        ("path", f"PUT {KVS}/doc", {"content": b"1", "params": {"path": f"f.{tag}"}}),
        ("cas", f"PUT {KVS}/base/1", {"content": b"2", "params": {"if_version": 1}}),
        ("batch", f"POST {KVS}:batch", {"json": {"set": big}}),
        ("delete", f"DELETE {KVS}/base/2", {}),
        ("user-variable", f"PUT /api/v1/bots/{BOT}/users/u/variables/{tag}", {"content": b'"x"'}),
        ("global-kvs", f"PUT /api/v1/global/kvs/{tag}", {"content": b"1"}),
    ]


READS = [
    f"GET {KVS}/base/5",
    f"GET {KVS}?prefix=base/&limit=100",
    f"GET /api/v1/bots/{BOT}/users/u/variables",
    f"GET /api/v1/bots/{BOT}/users/u/export",
    f"GET /api/v1/bots/{BOT}/stats",
    "GET /api/v1/readyz",
]


def _call(client: httpx.Client, what: str, **kwargs: Any) -> httpx.Response:
    method, path = what.split(" ", 1)
    started = time.monotonic()
    response = client.request(method, path, **kwargs)
    assert time.monotonic() - started < ANSWER_WITHIN, (what, time.monotonic() - started)
    return response


def _client(served: Served) -> httpx.Client:
    return httpx.Client(base_url=served.url, timeout=60,
                        headers={**served.headers(), "Content-Type": "application/json"})


def _seed(client: httpx.Client) -> dict[str, Any]:
    for i in range(60):
        assert _call(client, f"PUT {KVS}/base/{i}", content=f'{{"i": {i}, "pad": "{"p" * 200}"}}'.encode()).is_success
    assert _call(client, f"PUT {KVS}/doc", content=b'{"f": {}}').is_success
    assert _call(client, f"PUT /api/v1/bots/{BOT}/users/u/variables/name", content=b'"Ada"').is_success
    return {r: _timeless(_call(client, r).json()) for r in READS}


def _timeless(data: Any) -> Any:
    """An answer without its ``ttl`` and ``time`` fields (they move as time passes)."""
    if isinstance(data, dict):
        return {k: _timeless(v) for k, v in data.items() if k not in ("ttl", "time")}
    if isinstance(data, list):
        return [_timeless(v) for v in data]
    return data


def _reads_unchanged(client: httpx.Client, before: dict[str, Any]) -> None:
    for what in READS:
        response = _call(client, what)
        assert response.status_code == 200, (what, response.status_code, response.text)
        if "stats" not in what:
            assert _timeless(response.json()) == before[what], what


def _acked_after() -> dict[str, Any]:
    """What the acknowledged ``_writes("after")`` left in the bot's KVS."""
    return {"after/new": {"tag": 1}, "after/big": "x" * 20_000, "base/0": "changed", "base/1": 2,
            **{f"after/many/{i}": i for i in range(40)}}


def _acked_present(db: Path, acked: dict[str, Any]) -> None:
    async def go() -> None:
        async with await botmemory.open(f"sqlite:///{db}") as store:
            found = await store.bot(BOT).kvs.get_many(list(acked))
            assert {k: found.get(k) for k in acked} == acked

    asyncio.run(go())


def test_a_full_disk_answers_507_and_reads_go_on(tmp_path: Path) -> None:
    with _small_tmpfs("8m") as mount:
        db = mount / "full.db"
        statuses: dict[str, int] = {}
        with serve(f"sqlite:///{db}", tmp_path, "--no-janitor", options=("--timeout", "5")) as served, \
                _client(served) as client:
            before = _seed(client)
            pid = served.proc.pid
            _fill(mount / "ballast")
            for attempt in range(2):  # twice: the first failure left nothing half done
                for name, what, kwargs in _writes(f"full{attempt}"):
                    response = _call(client, what, **kwargs)
                    statuses[name] = response.status_code
                    assert response.status_code == 507, (name, response.status_code, response.text)
                    assert response.json()["error"]["code"] == "store_full"
                _reads_unchanged(client, before)
            (mount / "ballast").unlink()
            for name, what, kwargs in _writes("after"):
                response = _call(client, what, **kwargs)
                assert response.is_success, (name, response.status_code, response.text)
            acked = _acked_after()
            assert served.proc.pid == pid and served.proc.poll() is None
        assert sqlite_integrity(db) == "ok"
        _acked_present(db, acked)
    record("http_storage.full_disk", write_kinds=len(statuses), answered=sorted(set(statuses.values())),
           reads="200, unchanged", writes_after_space_returned="2xx, same process", integrity="ok")


CASES = [
    # (id, syscalls, errno, every write answers)
    ("write-EIO", "pwrite64", "EIO", 503),
    ("write-ENOSPC", "pwrite64", "ENOSPC", 507),
]


@pytest.mark.parametrize(("syscalls", "errno", "status"), [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_injected_faults_answer_503_or_507(tmp_path: Path, syscalls: str, errno: str, status: int) -> None:
    db = tmp_path / "faults.db"
    answered: dict[str, int] = {}
    acked: dict[str, Any] = {}
    with serve(f"sqlite:///{db}", tmp_path, "--no-janitor", options=("--timeout", "5")) as served, \
            _client(served) as client:
        before = _seed(client)
        pid = served.proc.pid
        with inject(pid, syscalls, errno):
            for name, what, kwargs in _writes("fault"):
                response = _call(client, what, **kwargs)
                answered[name] = response.status_code
                assert response.status_code == status, (name, response.status_code, response.text)
            _reads_unchanged(client, before)
        for name, what, kwargs in _writes("after"):  # strace is gone: the same process writes again
            response = _call(client, what, **kwargs)
            assert response.is_success, (name, response.status_code, response.text)
        acked = _acked_after()
        assert served.proc.poll() is None
        served.proc.send_signal(signal.SIGKILL)  # a crash right after the faults: recovery is part of the test
        served.proc.wait()
    assert sqlite_integrity(db) == "ok"
    _acked_present(db, acked)
    record(f"http_storage.inject.{syscalls}.{errno}", answered=sorted(set(answered.values())), reads=200,
           writes_after_detach="2xx, same process", integrity="ok")
