"""The rows of spec/bad-inputs.md over HTTP: each bad request is answered 4xx in the one error shape,
quickly, and the store holds exactly what it held before (memory and SQLite backends).

Rows about auth (A1-A4) and cursors/limits (A6) are in test_http_api.py; bodies
that stream past the limit (V1) and huge headers (A5) need a real server and
are in test_http_server.py.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import botmemory
from botmemory.testing import FakeClock
from botmemory.testing.contract import dump_store
from http_app import Api, assert_error, running_app

BOT = "example"
KVS = f"/api/v1/bots/{BOT}/kvs"
USERS = f"/api/v1/bots/{BOT}/users"
JSON = {"Content-Type": "application/json"}


@dataclass(frozen=True)
class Req:
    row: str
    method: str
    path: str
    body: bytes | None = None
    params: dict[str, Any] | None = None
    headers: dict[str, str] | None = None
    status: tuple[int, ...] = (400, 404, 413, 415, 422)


def put(row: str, path: str, body: bytes | str = b"1", **kw: Any) -> Req:
    data = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    return Req(row, "PUT", path, data, headers=kw.pop("headers", JSON), **kw)


CASES: list[Req] = [
    # keys and ids in the path
    put("K1", f"{KVS}/"),
    put("K1", f"{USERS}/%20/variables/x"),
    put("K2", f"{KVS}/%20a"),
    put("K2", f"{KVS}/a%20"),
    put("K2", f"{KVS}/%09"),
    put("K2", f"{USERS}/u/variables/a%20"),
    put("K3", f"{KVS}/{'k' * 513}"),
    put("K3", f"{USERS}/{'u' * 257}/variables/x"),
    put("K4", f"{KVS}/a%00b"),
    put("K4", f"{USERS}/a%00b/variables/x"),
    put("K5", f"{KVS}/a%0Ab"),
    put("K5", f"{KVS}/a%0Db"),
    put("K5", f"{KVS}/a%C2%85b"),
    put("K5", f"{KVS}/a%E2%80%A8b"),
    put("K6", f"{KVS}/a%ED%A0%80b"),  # a lone surrogate, UTF-8-encoded, is not UTF-8
    put("K7", f"{KVS}/%FF"),
    put("K7", f"{USERS}/%C3/variables/x"),
    Req("K7", "GET", f"{KVS}?prefix=%FF"),
    Req("K7", "GET", f"{KVS}?prefix=a%ED%A0%80"),
    put("K14", "/api/v1/bots/__global__/kvs/k"),
    put("K14", "/api/v1/bots/..%2Fx/kvs/k"),
    put("K14", "/api/v1/bots/a%2Fb/kvs/k"),
    put("K15", "/api/v1/bots/example%2F..%2Fother/kvs/k"),
    put("K15", f"{USERS}/u/variables/a%2Fb/extra"),
    put("K15", "/api/v1/bots//kvs/k"),
    Req("K16", "POST", f"{KVS}:batch", b'{"get": [1]}', headers=JSON),
    Req("K16", "POST", f"{KVS}:batch", b'{"get": [true, null]}', headers=JSON),
    Req("K16", "POST", f"{KVS}:batch", b'{"delete": [[]]}', headers=JSON),
    # values
    put("V1", f"{KVS}/big", b'"' + b"x" * 1_048_577 + b'"'),
    put("V2", f"{KVS}/deep", b"[" * 65 + b"]" * 65),
    put("V2", f"{KVS}/deeper", b"[" * 100_000 + b"]" * 100_000),
    put("V4", f"{KVS}/n", b"NaN"),
    put("V4", f"{KVS}/n", b"[Infinity]"),
    put("V4", f"{KVS}/n", b"-Infinity"),
    put("V4", f"{KVS}/n", b"1e400"),
    put("V5", f"{KVS}/n", str(2**63).encode()),
    put("V5", f"{KVS}/n", b"9" * 5000),
    put("V6", f"{KVS}/d", b'{"a": 1, "a": 2}'),
    put("V7", f"{USERS}/u/variables/x", '"\\ud800"'),
    put("V8", f"{KVS}/e", b'"\xff"'),
    put("V8", f"{KVS}/e", b'\xef\xbb\xbf"bom"'),
    put("V8", f"{KVS}/e", '"utf16"'.encode("utf-16")),
    put("V8", f"{KVS}/e", b'"x"', headers={"Content-Type": "text/plain"}),
    put("V8", f"{KVS}/e", b'"x"', headers={}),
    put("V8", f"{KVS}/e", b'"x"', headers={"Content-Type": "application/json; charset=latin-1"}),
    put("V10", f"{KVS}/empty", b""),
    put("V11", f"{KVS}/obj", b"1", params={"path": "__proto__.x"}),
    put("V11", f"{KVS}/obj", b"1", params={"path": "a..b"}),
    put("V11", f"{KVS}/obj", b"1", params={"path": "a[-1]"}),
    put("V11", f"{KVS}/obj", b"1", params={"path": "a[10000000]"}),
    Req("V12", "POST", f"/api/v1/bots/{BOT}/converse/u", b'{"text": "hi", "bot_id": "other"}', headers=JSON),
    Req("V12", "POST", f"{KVS}:batch", b'{"get": ["a"], "scope": "global"}', headers=JSON),
    Req("V12", "POST", f"{USERS}/u:hold", b'{"reason": "x", "owner": "y"}', headers=JSON),
    # expiry
    put("E1", f"{KVS}/t", params={"expiry": "-5m"}),
    put("E1", f"{KVS}/t", params={"expiry": "-1"}),
    put("E2", f"{KVS}/t", params={"expiry": "0s"}),
    put("E2", f"{KVS}/t", params={"expiry": "0"}),
    put("E3", f"{KVS}/t", params={"expiry": "1e309 ms"}),
    put("E3", f"{KVS}/t", params={"expiry": "Infinity"}),
    put("E4", f"{KVS}/t", params={"expiry": "nan"}),
    put("E5", f"{KVS}/t", params={"expiry": "5 fortnights"}),
    put("E5", f"{KVS}/t", params={"expiry": "5 M"}),
    put("E6", f"{KVS}/t", params={"expiry": "forever"}),
    put("E6", f"{KVS}/t", params={"expiry": "Never"}),
    put("E7", f"{KVS}/t", params={"expiry": "36526d"}),
    put("E8", f"{KVS}/t", params={"expiry": " 5m "}),
    put("E8", f"{KVS}/t", params={"expiry": "５m"}),
    put("E9", f"{KVS}/t", params={"expiry": "2000-01-01T00:00:00Z"}),
    put("E10", f"{KVS}/t", params={"expiry": "2030-01-01T00:00:00"}),
    put("E10", f"{KVS}/t", params={"expiry": "2030-02-30T00:00:00Z"}),
    put("E11", f"{KVS}/t", params={"expiry": "5m; DROP TABLE kv"}),
    Req("E", "POST", f"{KVS}:batch", b'{"set": {"a": 1}, "expiry": -1}', headers=JSON),
    # auth-adjacent: limits and cursors
    Req("A6", "GET", KVS, params={"limit": "1000000000"}),
    Req("A6", "GET", KVS, params={"limit": "-1"}),
    Req("A6", "GET", KVS, params={"cursor": "eyJzIjpbXX0.AAAA"}),
]


@pytest.fixture(params=["memory", "sqlite"])
async def api(request: pytest.FixtureRequest, clock: FakeClock, tmp_path: Path) -> AsyncIterator[Api]:
    url = "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'bad.db'}"
    store = await botmemory.open(url, clock=clock)
    try:
        async with running_app(store) as running:
            yield running
    finally:
        await store.close()


async def _seed(store: botmemory.Store) -> None:
    bot = store.bot(BOT)
    await bot.kvs.set("obj", {"a": [1]}, expiry="1h")
    await bot.kvs.set("t", "kept")
    await bot.memory.set_user_variable("u", "x", "kept")
    await store.bot("other").kvs.set("k", "other's")


ROWS = sorted({c.row for c in CASES})


@pytest.mark.parametrize("row", ROWS)
async def test_refused_4xx_and_nothing_changed(api: Api, row: str) -> None:
    await _seed(api.store)
    before = await dump_store(api.store)
    for case in (c for c in CASES if c.row == row):
        started = time.monotonic()
        response = await api.call(
            case.method, case.path, content=case.body, params=case.params, headers=dict(case.headers or {})
        )
        assert time.monotonic() - started < 5, case
        assert response.status_code in case.status, (case, response.status_code, response.text)
        assert_error(response, case.status)
    assert await dump_store(api.store) == before


def test_catalogue_covers_the_http_rows() -> None:
    wanted = {f"K{i}" for i in (1, 2, 3, 4, 5, 6, 7, 14, 15, 16)} | {f"V{i}" for i in (1, 2, 4, 5, 6, 7, 8, 10, 11, 12)}
    wanted |= {f"E{i}" for i in range(1, 12)} | {"A6"}
    assert wanted <= set(ROWS)


async def test_literal_and_encoded_keys_stay_in_their_bot(api: Api) -> None:
    """K8-K13, K15: odd keys are stored exactly, and never reach another bot or scope."""
    keys = ["café", "cafe\u0301", "User", "user", "'; DROP TABLE kv;--", "%", "_", "*", "a:b", "../x", "a/b", "%2F"]
    for key in keys:
        encoded = "".join(f"%{b:02X}" for b in key.encode())
        response = await api.put_json(f"{KVS}/{encoded}", f'"{len(key)}"')
        assert response.status_code == 200, (key, response.text)
        assert response.json()["key"] == key
    listed = (await api.call("GET", KVS, params={"limit": 100})).json()["keys"]
    assert sorted(listed) == sorted(keys)
    assert [k async for k in api.store.bot("other").kvs.keys()] == []
    # %252F is the literal key "%2F", not "/"
    assert (await api.call("GET", f"{KVS}/%252F")).json()["key"] == "%2F"
    # ".." and "//" in a key are literal, inside this bot
    assert (await api.call("GET", f"{KVS}/..%2Fx")).json()["key"] == "../x"
    assert (await api.put_json(f"{KVS}/a//b/", "1")).json()["key"] == "a//b/"
    assert await api.store.bot(BOT).kvs.get("a//b/") == 1
