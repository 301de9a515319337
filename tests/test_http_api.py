"""The HTTP API in process (httpx's ASGI transport): endpoints, auth, isolation, cursors, metrics, janitor."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from typer.testing import CliRunner

import botmemory
from botmemory.cli import app as cli_app
from botmemory.http.app import run_janitor_once
from botmemory.http.state import Lease, create_token, list_tokens
from botmemory.testing import FakeClock
from botmemory.testing.contract import dump_store
from http_app import Api, assert_error, running_app

BOT = "example"


@pytest.fixture
async def api(clock: FakeClock) -> AsyncIterator[Api]:
    store = await botmemory.open("memory://", clock=clock)
    try:
        async with running_app(store) as running:
            yield running
    finally:
        await store.close()


# -- auth --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer "},
        {"Authorization": "Bearer"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer bm_000000000000_" + "x" * 43},
        {"Authorization": "Bearer nonsense"},
    ],
)
async def test_a1_a3_missing_or_bad_token_is_401(api: Api, headers: dict[str, str]) -> None:
    response = await api.client.get(f"/api/v1/bots/{BOT}/kvs", headers=headers)
    assert_error(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_a3_scheme_is_case_insensitive_and_extra_spaces_are_tolerated(api: Api) -> None:
    for header in (f"bearer {api.admin}", f"Bearer  {api.admin}", f"BEARER {api.admin} "):
        response = await api.client.get(f"/api/v1/bots/{BOT}/kvs", headers={"Authorization": header})
        assert response.status_code == 200, header


@pytest.mark.parametrize("param", ["token", "access_token", "api_key", "Token"])
async def test_a3_tokens_in_query_strings_are_refused(api: Api, param: str) -> None:
    response = await api.call("GET", f"/api/v1/bots/{BOT}/kvs", params={param: api.admin})
    error = assert_error(response, 400)
    assert "query string" in error["message"]


async def test_a4_too_many_failures_from_one_address_is_429(clock: FakeClock) -> None:
    store = await botmemory.open("memory://", clock=clock)
    try:
        async with running_app(store, max_auth_failures=5) as api:
            for _ in range(5):
                assert_error(await api.call("GET", "/api/v1/bots", token="bm_000000000000_" + "y" * 43), 401)
            response = await api.call("GET", "/api/v1/bots")  # even a good token waits now
            assert_error(response, 429)
            assert int(response.headers["retry-after"]) >= 1
    finally:
        await store.close()


async def test_healthz_readyz_need_no_token_metrics_needs_admin(api: Api) -> None:
    for path in ("/healthz", "/readyz", "/api/v1/healthz", "/api/v1/readyz"):
        assert (await api.client.get(path)).status_code == 200, path
    assert_error(await api.client.get("/metrics"), 401)
    assert_error(await api.call("GET", "/metrics", token=api.bot_token), 403)
    response = await api.call("GET", "/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")


def _bot_routes(api: Api) -> list[tuple[str, str]]:
    """Every (method, path) of the OpenAPI document that names a bot."""
    spec = api.app.openapi()
    out = []
    for path, methods in spec["paths"].items():
        if "{bot}" in path:
            out.extend((method.upper(), path) for method in methods)
    return out


async def test_a2_a_bots_token_never_reaches_another_bot(api: Api) -> None:
    other = await api.store.bot("other").kvs.set("k", 1)
    await api.store.bot("other").memory.set_user_variable("u", "name", "Bo")
    before = await dump_store(api.store)
    routes = _bot_routes(api)
    assert len(routes) >= 20
    for method, template in routes:
        path = re.sub(r"\{(\w+)(:path)?\}", lambda m: "other" if m.group(1) == "bot" else "x", template)
        kwargs: dict[str, Any] = {}
        if method in ("PUT", "POST"):
            kwargs = {"content": b'{"text": "hi"}', "headers": {"Content-Type": "application/json"}}
        response = await api.call(method, path, token=api.bot_token, **kwargs)
        assert_error(response, 404)
    assert await dump_store(api.store) == before
    assert other == 1
    # the token works on its own bot, and sees only it
    listing = await api.call("GET", "/api/v1/bots", token=api.bot_token)
    assert [b["id"] for b in listing.json()["bots"]] == [BOT]
    assert (await api.call("GET", f"/api/v1/bots/{BOT}/kvs", token=api.bot_token)).status_code == 200


async def test_global_kvs_needs_an_admin_token(api: Api) -> None:
    assert_error(await api.call("GET", "/api/v1/global/kvs", token=api.bot_token), 403)
    assert_error(await api.put_json("/api/v1/global/kvs/k", "1", token=api.bot_token), 403)
    assert (await api.put_json("/api/v1/global/kvs/settings/x", '{"a": 1}')).json()["version"] == 1
    assert (await api.call("GET", "/api/v1/global/kvs/settings/x")).json()["value"] == {"a": 1}
    assert await api.store.global_kvs.get("settings/x") == {"a": 1}


# -- tokens -------------------------------------------------------------------------------------


async def test_token_created_by_the_cli_works_at_once_and_revocation_is_immediate(api: Api, tmp_path: Any) -> None:
    token, info = await create_token(api.store, bot=BOT, name="ci")  # what `token create` calls
    assert (await api.call("GET", f"/api/v1/bots/{BOT}/kvs", token=token)).status_code == 200
    stored = [t for t in await list_tokens(api.store) if t.id == info.id]
    assert stored and token not in str(stored[0].as_dict())
    from botmemory.http.state import revoke_token

    await revoke_token(api.store, info.id)
    assert_error(await api.call("GET", f"/api/v1/bots/{BOT}/kvs", token=token), 401)


def test_token_commands(tmp_path: Any) -> None:
    runner = CliRunner()
    store = ["--store", f"sqlite:///{tmp_path / 't.db'}"]
    created = runner.invoke(cli_app, [*store, "--json", "token", "create", "--bot", "shop", "--name", "n1"])
    assert created.exit_code == 0, created.output
    import json

    data = json.loads(created.output)
    assert data["token"].startswith(f"bm_{data['id']}_") and data["scope"] == "bot" and data["bot"] == "shop"
    listed = runner.invoke(cli_app, [*store, "--json", "token", "list"])
    assert json.loads(listed.output)[0]["id"] == data["id"] and data["token"] not in listed.output
    assert runner.invoke(cli_app, [*store, "token", "create"]).exit_code == 2
    assert runner.invoke(cli_app, [*store, "token", "create", "--bot", "../x"]).exit_code == 2
    assert runner.invoke(cli_app, [*store, "token", "revoke", data["id"]]).exit_code == 0
    assert runner.invoke(cli_app, [*store, "token", "revoke", data["id"]]).exit_code == 2
    assert json.loads(runner.invoke(cli_app, [*store, "--json", "token", "list"]).output) == []


# -- UI session and CSRF ------------------------------------------------------------------------


async def test_ui_session_cookie_and_csrf(api: Api) -> None:
    client = api.client
    assert_error(await client.post("/ui/login", json={"token": "bm_000000000000_" + "z" * 43}), 401)
    assert_error(
        await client.post(
            "/ui/login", content=b"token=x", headers={"Content-Type": "application/x-www-form-urlencoded"}
        ),
        415,
    )
    response = await client.post("/ui/login", json={"token": api.bot_token})
    assert response.status_code == 200
    set_cookie = response.headers["set-cookie"]
    assert "HttpOnly" in set_cookie and "SameSite=strict" in set_cookie.replace("Strict", "strict")
    csrf = response.json()["csrf"]
    assert (await client.get(f"/api/v1/bots/{BOT}/kvs")).status_code == 200  # the cookie signs in
    assert_error(await client.get("/api/v1/bots/other/kvs"), 404)  # with the token's rights
    put = {"content": b"1", "headers": {"Content-Type": "application/json"}}
    assert_error(await client.put(f"/api/v1/bots/{BOT}/kvs/k", **put), 403)
    assert_error(
        await client.put(
            f"/api/v1/bots/{BOT}/kvs/k", content=b"1", headers={**put["headers"], "X-CSRF-Token": "forged"}
        ),
        403,
    )
    ok = await client.put(f"/api/v1/bots/{BOT}/kvs/k", content=b"1", headers={**put["headers"], "X-CSRF-Token": csrf})
    assert ok.status_code == 200
    assert (await client.get("/ui/session")).json()["scope"] == "bot"
    # a forged cookie is nobody
    client.cookies.set("botmemory_session", "eyJ0IjoiYSJ9.forged")
    assert_error(await client.get(f"/api/v1/bots/{BOT}/kvs"), 401)


async def test_one_time_login_code(api: Api) -> None:
    from botmemory.http.state import create_login_code

    admin = next(t for t in await list_tokens(api.store) if t.is_admin)
    code = await create_login_code(api.store, admin.id)
    assert (await api.client.post("/ui/login", json={"code": code})).json()["scope"] == "admin"
    api.client.cookies.clear()
    assert_error(await api.client.post("/ui/login", json={"code": code}), 401)


# -- converse --------------------------------------------------------------------------------


async def test_converse_answers_the_botpress_shape_and_continues(api: Api) -> None:
    first = await api.call("POST", f"/api/v1/bots/{BOT}/converse/u1", json={"text": "hi"})
    assert first.status_code == 200
    body = first.json()
    assert set(body) == {"responses", "conversation_id"}
    assert body["responses"][0] == {"type": "text", "text": "Hi! I'm the example bot. What's your name?"}
    second = (await api.call("POST", f"/api/v1/bots/{BOT}/converse/u1", json={"text": "Ada"})).json()
    assert second["conversation_id"] == body["conversation_id"]
    assert "Nice to meet you, Ada!" in second["responses"][0]["text"]
    user = await api.call("GET", f"/api/v1/bots/{BOT}/users/u1/variables/firstname")
    assert user.json()["value"] == "Ada" and user.json()["version"] == 1
    assert_error(await api.call("POST", "/api/v1/bots/nobot/converse/u1", json={"text": "hi"}), 404)
    assert_error(await api.call("POST", f"/api/v1/bots/{BOT}/converse/u1", json={"text": 5}), 422)
    assert_error(await api.call("POST", f"/api/v1/bots/{BOT}/converse/u1", json={"text": "x", "bot_id": "o"}), 422)


async def test_converse_cannot_join_another_users_conversation(api: Api) -> None:
    alice = (await api.call("POST", f"/api/v1/bots/{BOT}/converse/alice", json={"text": "hi"})).json()
    await api.call("POST", f"/api/v1/bots/{BOT}/converse/alice", json={"text": "Alice"})
    response = await api.call(
        "POST", f"/api/v1/bots/{BOT}/converse/bob", json={"text": "hi", "conversation_id": alice["conversation_id"]}
    )
    assert_error(response, 404)


# -- the KVS ----------------------------------------------------------------------------------


async def test_kvs_crud_versions_expiry_and_paths(api: Api, clock: FakeClock) -> None:
    base = f"/api/v1/bots/{BOT}/kvs"
    assert (
        await api.put_json(f"{base}/orders/42", '{"total": 12.5, "items": []}', params={"expiry": "30m"})
    ).json() == {"key": "orders/42", "version": 1}
    got = (await api.call("GET", f"{base}/orders/42")).json()
    assert got["value"] == {"total": 12.5, "items": []} and got["version"] == 1 and 1799 < got["ttl"] <= 1800
    assert (await api.put_json(f"{base}/orders/42", '"tea"', params={"path": "items[0]", "if_version": 1})).json()[
        "version"
    ] == 2
    assert (await api.call("GET", f"{base}/orders/42", params={"path": "items[0]"})).json()["value"] == "tea"
    assert_error(await api.call("GET", f"{base}/orders/42", params={"path": "nope"}), 404)
    assert_error(await api.put_json(f"{base}/orders/42", "1", params={"if_version": 1}), 409)
    assert_error(await api.put_json(f"{base}/orders/42", "1", params={"expiry": "5 fortnights"}), 400)
    assert_error(await api.put_json(f"{base}/orders/42", "1", params={"expiry": "1h", "keep_ttl": "true"}), 400)
    clock.advance(1800)
    assert_error(await api.call("GET", f"{base}/orders/42"), 404)
    assert_error(await api.call("DELETE", f"{base}/orders/42"), 404)
    assert (await api.put_json(f"{base}/a%2Fb", "null")).json()["key"] == "a/b"
    assert (await api.call("GET", f"{base}/a/b")).json()["value"] is None
    assert (await api.call("DELETE", f"{base}/a/b")).json() == {"deleted": True}


async def test_kvs_listing_pages_with_signed_cursors(api: Api) -> None:
    kvs = api.store.bot(BOT).kvs
    keys = [f"p/{i:03d}" for i in range(25)]
    await kvs.set_many(dict.fromkeys(keys, 1))
    await kvs.set("q", 1)
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"prefix": "p/", "limit": 10}
        if cursor:
            params["cursor"] = cursor
        page = (await api.call("GET", f"/api/v1/bots/{BOT}/kvs", params=params)).json()
        seen += page["keys"]
        cursor = page["cursor"]
        if cursor is None:
            break
    assert seen == keys
    first = (await api.call("GET", f"/api/v1/bots/{BOT}/kvs", params={"prefix": "p/", "limit": 10})).json()["cursor"]
    payload, mac = first.split(".")
    for forged in (first[:-2] + "AA", payload + "." + mac[::-1], "x.y", "not-a-cursor", payload):
        assert_error(await api.call("GET", f"/api/v1/bots/{BOT}/kvs", params={"prefix": "p/", "cursor": forged}), 400)
    # a cursor of one listing is no good for another prefix or bot
    assert_error(await api.call("GET", f"/api/v1/bots/{BOT}/kvs", params={"prefix": "q", "cursor": first}), 400)
    assert_error(await api.call("GET", "/api/v1/global/kvs", params={"prefix": "p/", "cursor": first}), 400)
    for limit in (0, -1, 10**9, "x"):
        assert_error(await api.call("GET", f"/api/v1/bots/{BOT}/kvs", params={"limit": limit}), 422)


async def test_kvs_batch(api: Api) -> None:
    url = f"/api/v1/bots/{BOT}/kvs:batch"
    body = {"set": {"a": 1, "b": [2]}, "expiry": "1h", "delete": ["c"], "get": ["a", "b", "missing"]}
    await api.store.bot(BOT).kvs.set("c", 3)
    result = (await api.call("POST", url, json=body)).json()
    assert result == {"versions": {"a": 1, "b": 1}, "deleted": 1, "values": {"a": 1, "b": [2]}}
    for bad in ({"get": [1]}, {"get": [None]}, {"delete": [[]]}, {"set": {"a": 1}, "owner": "x"}):
        assert_error(await api.call("POST", url, json=bad), 422)
    before = await dump_store(api.store)
    assert_error(await api.call("POST", url, json={"set": {"ok": 1, "bad\n": 2}}), 400)  # all or nothing
    assert await dump_store(api.store) == before


# -- dialog memory, users, audit ------------------------------------------------------------------


async def test_memory_scopes_and_encoded_ids(api: Api) -> None:
    root = f"/api/v1/bots/{BOT}"
    assert (await api.put_json(f"{root}/users/a%2Fb/variables/name", '"AB"')).status_code == 200
    assert (await api.put_json(f"{root}/users/a/variables/name", '"A"')).status_code == 200
    assert (
        await api.put_json(f"{root}/conversations/c1/variables/topic", '"billing"', params={"expiry": "10m"})
    ).status_code == 200
    assert (await api.put_json(f"{root}/variables/visits", "7")).status_code == 200
    memory = api.store.bot(BOT).memory
    assert await memory.get_user_variable("a/b", "name") == "AB"
    assert await memory.get_user_variable("a", "name") == "A"
    assert await memory.get_conversation_variable("c1", "topic") == "billing"
    assert (await api.call("GET", f"{root}/users/a%2Fb/variables/name")).json()["value"] == "AB"
    listing = (await api.call("GET", f"{root}/users/a%2Fb/variables")).json()["variables"]
    assert [(v["name"], v["value"]) for v in listing] == [("name", "AB")]
    conv = (await api.call("GET", f"{root}/conversations/c1/variables/topic")).json()
    assert conv["ttl"] is not None and conv["ttl"] <= 600
    assert (await api.call("GET", f"{root}/variables")).json()["variables"][0]["name"] == "visits"
    users = (await api.call("GET", f"{root}/users")).json()
    assert users == {"users": ["a/b", "a"], "cursor": None}  # in the order of their encoded keys
    assert (await api.call("DELETE", f"{root}/users/a/variables/name")).status_code == 200
    assert_error(await api.call("GET", f"{root}/users/a/variables/name"), 404)
    assert await memory.get_user_variable("a/b", "name") == "AB"


async def test_users_list_pages(api: Api) -> None:
    memory = api.store.bot(BOT).memory
    ids = [f"u{i:02d}" for i in range(7)]
    for uid in ids:
        await memory.set_user_variable(uid, "a", 1)
        await memory.set_user_variable(uid, "b", 2)
    seen, cursor = [], None
    while True:
        params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = (await api.call("GET", f"/api/v1/bots/{BOT}/users", params=params)).json()
        seen += page["users"]
        cursor = page["cursor"]
        if not cursor:
            break
    assert seen == ids


async def test_export_forget_hold_release_audit(api: Api) -> None:
    root = f"/api/v1/bots/{BOT}/users/u1"
    await api.call("POST", f"/api/v1/bots/{BOT}/converse/u1", json={"text": "hi"})
    await api.call("POST", f"/api/v1/bots/{BOT}/converse/u1", json={"text": "Ada"})
    export = (await api.call("GET", f"{root}/export")).json()
    assert export["user"]["firstname"]["value"] == "Ada" and len(export["conversations"]) == 1
    assert (await api.call("POST", f"{root}:hold", json={"reason": "case 7"})).json() == {"user_id": "u1", "held": True}
    assert_error(await api.call("POST", f"{root}:forget", params={"dry_run": "true"}), 409)
    stats = (await api.call("GET", f"/api/v1/bots/{BOT}/stats")).json()
    assert stats["held_users"][0]["user_id"] == "u1" and stats["held_users"][0]["reason"] == "case 7"
    assert (await api.call("POST", f"{root}:release")).json()["held"] is False
    assert_error(await api.call("POST", f"{root}:release"), 404)
    dry = (await api.call("POST", f"{root}:forget", params={"dry_run": "true"})).json()
    assert dry["dry_run"] is True and dry["counts"]["user"] == 2
    assert (await api.call("GET", f"{root}/variables/firstname")).status_code == 200
    done = (await api.call("POST", f"{root}:forget")).json()
    assert done["dry_run"] is False and "Ada" not in str(done)
    assert_error(await api.call("GET", f"{root}/variables/firstname"), 404)
    records = (await api.call("GET", f"/api/v1/bots/{BOT}/audit", params={"user": "u1", "reason": "forget"})).json()[
        "records"
    ]
    assert records and all(r["reason"] == "forget" for r in records) and "Ada" not in str(records)
    held = (await api.call("GET", f"/api/v1/bots/{BOT}/audit", params={"reason": "hold", "since": "1d"})).json()[
        "records"
    ]
    assert len(held) == 1
    assert_error(await api.call("GET", f"/api/v1/bots/{BOT}/audit", params={"since": "soon"}), 400)
    assert_error(await api.call("GET", f"/api/v1/bots/{BOT}/audit", params={"reason": "whim"}), 422)


async def test_bots_and_conversations_listing(api: Api) -> None:
    await api.call("POST", f"/api/v1/bots/{BOT}/converse/u1", json={"text": "hi"})
    bots = (await api.call("GET", "/api/v1/bots")).json()["bots"]
    assert bots == [{"id": BOT, "name": "Example bot", "mounted": True, "load_error": None}]
    conversations = (await api.call("GET", f"/api/v1/bots/{BOT}/conversations")).json()
    assert conversations["conversations"][0]["user_id"] == "u1" and conversations["conversations"][0]["live"]


# -- metrics and the janitor ------------------------------------------------------------------------


async def test_metrics_count_requests_turns_store_calls_and_expired_reads(api: Api, clock: FakeClock) -> None:
    await api.call("POST", f"/api/v1/bots/{BOT}/converse/u1", json={"text": "hi"})
    await api.put_json(f"/api/v1/bots/{BOT}/kvs/short", "1", params={"expiry": "1s"})
    clock.advance(2)
    assert_error(await api.call("GET", f"/api/v1/bots/{BOT}/kvs/short"), 404)
    assert_error(await api.call("GET", f"/api/v1/bots/{BOT}/kvs/never-there"), 404)
    text = (await api.call("GET", "/metrics")).text
    assert 'botmemory_turns_total{bot="example"} 1.0' in text
    assert "botmemory_expired_reads_refused_total 1.0" in text
    assert (
        'botmemory_http_requests_total{method="POST",route="/api/v1/bots/{bot}/converse/{user_id}",status="200"} 1.0'
        in text
    )
    assert re.search(r"botmemory_turn_store_calls_total [1-9]", text)
    assert 'botmemory_store_calls_total{op="get"}' in text
    assert "botmemory_http_request_duration_seconds_bucket" in text


async def test_janitor_runs_under_a_lease_one_replica_at_a_time(api: Api, clock: FakeClock) -> None:
    state = api.app.state.server
    await api.store.bot(BOT).kvs.set("gone", 1, expiry="1s")
    clock.advance(5)
    other_replica = Lease(api.store, "janitor", ttl=600)
    assert await other_replica.try_acquire()
    assert await run_janitor_once(state, Lease(api.store, "janitor", ttl=600)) is None  # skipped
    await other_replica.release()
    report = await run_janitor_once(state, Lease(api.store, "janitor", ttl=600))
    assert report is not None and report["purged"] == 1
    text = (await api.call("GET", "/metrics")).text
    assert "botmemory_janitor_runs_total 1.0" in text and "botmemory_janitor_skipped_total 1.0" in text
    assert 'botmemory_janitor_deleted_total{reason="purged"} 1.0' in text
    stats = (await api.call("GET", f"/api/v1/bots/{BOT}/stats")).json()
    assert sum(b["deleted"] for b in stats["janitor_deletions"]) == 1


async def test_errors_of_the_framework_use_the_one_shape(api: Api) -> None:
    assert_error(await api.call("GET", "/api/v1/nothing-here"), 404)
    assert_error(await api.call("PATCH", f"/api/v1/bots/{BOT}/kvs/k"), 405)
    assert_error(await api.call("GET", f"/api/v1/bots/{BOT}/kvs", params={"limit": "many"}), 422)


async def test_the_lifespan_runs_the_janitor_every_interval(clock: FakeClock) -> None:
    store = await botmemory.open("memory://", clock=clock)
    try:
        await store.bot(BOT).kvs.set("gone", 1, expiry="1s")
        clock.advance(5)
        async with running_app(store, janitor=True, janitor_interval=0.02) as api:
            for _ in range(500):  # polls the server's own loop (real time), not an expiry
                if api.app.state.server.janitor_last_run is not None:
                    break
                await asyncio.sleep(0.01)
            assert api.app.state.server.janitor_report["purged"] == 1
            assert "botmemory_janitor_runs_total" in (await api.call("GET", "/metrics")).text
    finally:
        await store.close()
