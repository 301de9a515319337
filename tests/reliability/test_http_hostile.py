"""Isolation and hostile input through the HTTP API (issue 16, item 5), on every backend.

- **The BOLA matrix**: every endpoint of the app (enumerated from its routes,
  so a new endpoint is covered at once: the test fails while an endpoint is
  missing from the matrix) x {another bot's token, no token, a malformed
  ``Authorization``, a revoked token, an expired session cookie, a forged
  session cookie, the cookie of a revoked token} -> 404 (or 403 for
  admin-only endpoints) for the other bot's token, 401 for the rest; never
  2xx, never 5xx; and the data (every namespace's rows and the tokens, read
  through the library) unchanged.
- **run_http**: the HTTP rows of ``spec/bad-inputs.md`` (the request catalogue
  of ``tests/test_http_bad_inputs.py``, plus A1/A3/A7 here) on every backend:
  4xx, never 5xx, in the one error shape, the data unchanged.

memory:// and SQLite always; PostgreSQL and Redis (own schema / key prefix)
when their servers answer (required with ``CI=true``). The app runs in
process (``tests/http_app.py``); schemathesis against a live ``botmemory
serve`` is ``tests/test_http_schemathesis.py``.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

import botmemory
from botmemory import Limits
from botmemory.backends.wrapper import BackendWrapper
from botmemory.http.auth import COOKIE
from botmemory.http.state import TOKENS_NS, create_token, revoke_token
from botmemory.testing.backends import open_test_store
from botmemory.testing.contract import dump_store
from conftest import require_backend
from http_app import Api, assert_error, running_app
from reliability_suite import record
from test_http_bad_inputs import CASES, Req

BACKENDS = [
    "memory",
    "sqlite",
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("redis", marks=pytest.mark.redis),
]

VICTIM = "example"  # a mounted bot: converse would really run if a check let the call through
INTRUDER = "intruder"

#: endpoints anyone may call without a token (liveness, the UI's static page, the docs, sign-in)
PUBLIC = {
    ("GET", "/"),
    ("GET", "/ui"),
    ("GET", "/ui/"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/api/v1/healthz"),
    ("GET", "/api/v1/readyz"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/docs/oauth2-redirect"),
    ("POST", "/ui/login"),  # takes a token in its body: refused with 401 when it is wrong (test_http_api.py)
}
#: endpoints that need an admin token: a bot's token gets 403
ADMIN_ONLY = {
    ("GET", "/metrics"),
    ("GET", "/api/v1/metrics"),
    ("GET", "/api/v1/global/kvs"),
    ("POST", "/api/v1/global/kvs:batch"),
    ("GET", "/api/v1/global/kvs/{key}"),
    ("PUT", "/api/v1/global/kvs/{key}"),
    ("DELETE", "/api/v1/global/kvs/{key}"),
}
#: endpoints about the caller itself, not about a bot: a bot's token may use them, and what they
#: answer must not name the victim
SELF = {
    ("GET", "/api/v1/bots"),  # lists only the token's own bots
    ("GET", "/ui/session"),  # 401 without a session cookie
    ("POST", "/ui/logout"),  # clears the caller's own cookie; changes no data
}

#: what fills each path parameter: names that hold the victim's data
FILL = {"bot": VICTIM, "key": "k", "user": "u", "user_id": "u", "conversation": "c", "name": "topic"}
#: a body each state-changing endpoint would accept from a rightful caller
BODIES: dict[str, bytes] = {
    "converse": b'{"text": "hi"}',
    "kvs:batch": b'{"set": {"k": 2}, "delete": ["k"]}',
    ":hold": b'{"reason": "bola"}',
}


def _backend_label(store: Any) -> str:
    """``memory``, ``sqlite``, ``postgres`` or ``redis``: the backend behind the runtime's metering wrapper."""
    inner = store.backend
    while isinstance(inner, BackendWrapper):
        inner = inner.inner
    return type(inner).__name__.removesuffix("Backend").lower()


def endpoints(app: FastAPI) -> set[tuple[str, str]]:
    """Every (method, path template) the app routes, from its routes and its OpenAPI document."""
    found: set[tuple[str, str]] = set()

    def walk(routes: list[Any]) -> None:
        for route in routes:
            inner = getattr(route, "original_router", None)  # FastAPI's included routers
            if inner is not None:
                walk(inner.routes)
                continue
            path, methods = getattr(route, "path", None), getattr(route, "methods", None)
            if path is None or methods is None:  # mounts: the UI's static files, no auth, no data
                continue
            path = re.sub(r"\{(\w+):path\}", r"{\1}", path)
            found.update((m, path) for m in methods if m != "HEAD")

    walk(app.router.routes)
    for path, operations in app.openapi()["paths"].items():
        found.update((m.upper(), path) for m in operations)
    return found


def _request(method: str, template: str) -> tuple[str, bytes | None]:
    path = re.sub(r"\{(\w+)\}", lambda m: FILL[m.group(1)], template)
    if method not in ("PUT", "POST"):
        return path, None
    return path, next((b for suffix, b in BODIES.items() if suffix in template), b'"x"')


async def _seed(store: botmemory.Store) -> None:
    for bot in (VICTIM, "victim2"):
        await store.bot(bot).kvs.set("k", {"secret": bot})
        await store.bot(bot).memory.set_user_variable("u", "topic", bot)
        await store.bot(bot).memory.set_conversation_variable("c", "topic", bot)
        await store.bot(bot).memory.set_global_variable("topic", bot)
    await store.bot(INTRUDER).kvs.set("mine", 1)
    await store.global_kvs.set("k", {"shared": True})


async def snapshot(store: botmemory.Store) -> dict[str, Any]:
    """Every namespace's rows and the tokens (a revoked token must stay revoked)."""
    tokens = store.private_kvs(TOKENS_NS)
    return {"data": await dump_store(store), "tokens": sorted([k async for k in tokens.keys()])}


@pytest.fixture(params=BACKENDS)
async def api(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Api]:
    if request.param in ("postgres", "redis"):
        require_backend(request.param)
    async with open_test_store(request.param, tmp_path, limits=Limits(max_keys_per_bot=50)) as store:
        await _seed(store)
        async with running_app(store, max_auth_failures=10**9) as running:
            yield running


def _credentials(api: Api, intruder: str, revoked: str, revoked_id: str) -> dict[str, dict[str, str]]:
    auth = api.app.state.server.auth
    admin_id = api.admin.split("_")[1]
    expired = auth.seal("session", {"t": admin_id, "e": time.time() - 1, "n": "x"})
    forged = auth.seal("session", {"t": admin_id, "e": time.time() + 3600, "n": "x"})[:-4] + "AAAA"
    of_revoked = auth.seal("session", {"t": revoked_id, "e": time.time() + 3600, "n": "x"})
    return {
        "other_bots_token": {"Authorization": f"Bearer {intruder}"},
        "no_token": {},
        "empty_bearer": {"Authorization": "Bearer "},
        "unknown_token": {"Authorization": "Bearer bm_000000000000_" + "y" * 43},
        "revoked_token": {"Authorization": f"Bearer {revoked}"},
        "expired_session": {"Cookie": f"{COOKIE}={expired}"},
        "forged_session": {"Cookie": f"{COOKIE}={forged}"},
        "revoked_token_session": {"Cookie": f"{COOKIE}={of_revoked}"},
    }


def _expected(credential: str, endpoint: tuple[str, str]) -> tuple[int, ...]:
    if credential != "other_bots_token":
        return (401,)
    if endpoint in ADMIN_ONLY:
        return (403,)
    if endpoint in SELF:
        return (200, 401)
    return (404,)


async def test_the_bola_matrix(api: Api) -> None:
    everything = endpoints(api.app)
    bots = {e for e in everything if "{bot}" in e[1]}
    unclassified = everything - PUBLIC - ADMIN_ONLY - SELF - bots
    assert unclassified == set(), f"endpoints missing from the BOLA matrix: {sorted(unclassified)}"
    assert len(bots) >= 25 and everything >= PUBLIC | ADMIN_ONLY | SELF  # the lists name real endpoints

    intruder, _ = await create_token(api.store, bot=INTRUDER)
    revoked, revoked_info = await create_token(api.store, bot=VICTIM)
    await revoke_token(api.store, revoked_info.id)
    credentials = _credentials(api, intruder, revoked, revoked_info.id)
    before = await snapshot(api.store)

    calls = 0
    failures = []
    for endpoint in sorted(everything - PUBLIC):
        method, template = endpoint
        path, body = _request(method, template)
        for credential, headers in credentials.items():
            response = await api.client.request(method, path, content=body, headers={**JSON, **headers})
            calls += 1
            wanted = _expected(credential, endpoint)
            if response.status_code not in wanted:
                failures.append(f"{method} {path} with {credential}: {response.status_code} {response.text[:120]}")
            elif response.status_code != 200:
                assert_error(response, wanted)
            elif VICTIM in response.text:
                failures.append(f"{method} {path} with {credential} named the victim: {response.text[:200]}")
    assert failures == []
    assert await snapshot(api.store) == before
    # the control: the same reads with a rightful token find the victim's data (the 404s above were refusals)
    for method, template in sorted(e for e in everything if e[0] == "GET" and "{bot}" in e[1]):
        path, _ = _request(method, template)
        response = await api.client.get(path, headers={"Authorization": f"Bearer {api.bot_token}"})
        assert response.status_code == 200, (path, response.status_code, response.text)
    backend = _backend_label(api.store)
    record(
        f"hostile.http_bola.{backend}",
        endpoints=len(everything - PUBLIC),
        credentials=len(credentials),
        calls=calls,
        reached_other_bot=0,
        server_errors=0,
        data_changes=0,
    )


# -- run_http: the catalogue ------------------------------------------------------------------------


async def run_http(api: Api, case: Req, token: str | None = None) -> httpx.Response:
    """One catalogue row's request (``test_http_bad_inputs.Req``), sent with a rightful token by default."""
    headers = {"Authorization": f"Bearer {token or api.admin}", **(case.headers or {})}
    return await api.client.request(case.method, case.path, content=case.body, params=case.params, headers=headers)


KVS = f"/api/v1/bots/{VICTIM}/kvs"
JSON = {"Content-Type": "application/json"}
#: auth rows (A1, A3) as raw Authorization headers / query strings, sent without the rightful token
AUTH_CASES: list[tuple[str, dict[str, str], dict[str, str]]] = [
    ("A1", {}, {}),
    ("A1", {"Authorization": "Bearer "}, {}),
    ("A1", {"Authorization": "Bearer"}, {}),
    ("A1", {"Authorization": "Basic dXNlcjpwYXNz"}, {}),
    ("A3", {"Authorization": "Bearer x"}, {}),
    ("A3", {"Authorization": "Bearer bm_000000000000_" + "y" * 43 + "\t"}, {}),
    ("A3", {"Authorization": "Token abc"}, {}),
]


async def test_the_catalogue_through_http(api: Api) -> None:
    """Every HTTP row of bad-inputs.md on this backend: 4xx in the one shape, never 5xx, data unchanged."""
    before = await snapshot(api.store)
    sent = 0
    rows = set()
    for case in CASES:
        response = await run_http(api, case)
        sent += 1
        rows.add(case.row)
        assert response.status_code in case.status, (case, response.status_code, response.text)
        assert_error(response, case.status)
    for row, headers, params in AUTH_CASES:
        for method, path, body in (("GET", KVS, None), ("PUT", f"{KVS}/k", b"1"), ("DELETE", f"{KVS}/k", None)):
            response = await api.client.request(method, path, content=body, params=params, headers={**JSON, **headers})
            sent += 1
            rows.add(row)
            assert_error(response, 401)
    for param in ("token", "access_token", "api_key"):  # A3: tokens in query strings are refused before routing
        response = await api.client.get(
            KVS, params={param: api.admin}, headers={"Authorization": f"Bearer {api.admin}"}
        )
        sent += 1
        assert_error(response, 400)
    assert await snapshot(api.store) == before

    # A7: a key flood stops at the bot's quota (507), and other bots still write
    flooded = 0
    for i in range(60):
        response = await api.client.put(
            f"/api/v1/bots/flood/kvs/k{i}", content=b"1", headers={"Authorization": f"Bearer {api.admin}", **JSON}
        )
        sent += 1
        if response.status_code == 507:
            assert_error(response, 507)
            flooded += 1
        else:
            assert response.status_code == 200, response.text
    assert flooded == 10  # 50 keys allowed, 10 refused
    assert (
        await api.client.put(
            f"{KVS}/after-flood", content=b"1", headers={"Authorization": f"Bearer {api.admin}", **JSON}
        )
    ).status_code == 200
    assert len([k async for k in api.store.bot("flood").kvs.keys()]) == 50
    backend = _backend_label(api.store)
    record(f"hostile.http_catalogue.{backend}", rows=len(rows | {"A7"}), requests=sent, server_errors=0, data_changes=0)
