"""Backend options in the store URL's query: ``?schema=``, ``?prefix=``, ``?timeout=``.

The query is read by each backend's ``open_backend``: our parameters are
taken out before the URL reaches the driver, the driver's own (libpq's
``sslmode``, redis-py's ``db``) are left in it, any other name is refused, and
a keyword option given to ``botmemory.open`` wins over the URL.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

import botmemory
from botmemory.backends.urlquery import seconds, take_query_options, text
from botmemory.errors import InvalidInputError
from botmemory.testing import FakeClock
from botmemory.testing.backends import POSTGRES_URL, REDIS_URL, unique_suffix
from conftest import require_backend


def _with_query(url: str, query: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{query}"


# -- the query parser ----------------------------------------------------------
def test_ours_are_taken_and_the_drivers_left_as_written() -> None:
    options: dict[str, Any] = {}
    out = take_query_options(
        "postgresql://u@h:5432/db?sslmode=require&schema=bot_a&options=-c%20x%3D1&timeout=2.5#frag",
        {"schema": text, "timeout": seconds},
        options,
        backend="PostgreSQL",
        driver_parameter=lambda name: name in ("sslmode", "options"),
    )
    assert out == "postgresql://u@h:5432/db?sslmode=require&options=-c%20x%3D1#frag"
    assert options == {"schema": "bot_a", "timeout": 2.5}


def test_values_are_percent_decoded_and_plus_stays_a_plus() -> None:
    options: dict[str, Any] = {}
    out = take_query_options("redis://h/0?prefix=a%3Ab+c%2F", {"prefix": text}, options, backend="Redis")
    assert out == "redis://h/0"
    assert options == {"prefix": "a:b+c/"}


def test_a_keyword_option_wins_over_the_url() -> None:
    options: dict[str, Any] = {"timeout": 9}
    take_query_options("sqlite:///x.db?timeout=1", {"timeout": seconds}, options, backend="SQLite")
    assert options == {"timeout": 9}


def test_no_query_leaves_the_url_alone() -> None:
    options: dict[str, Any] = {}
    for url in ("sqlite:///x.db", "sqlite:///x.db?"):
        assert take_query_options(url, {"timeout": seconds}, options, backend="SQLite") == url
    assert options == {}


@pytest.mark.parametrize(
    "query",
    [
        "nosuch=1",  # neither ours nor the driver's
        "timeout=1&timeout=2",  # twice
        "timeout=soon",
        "timeout=nan",
        "timeout=inf",
        "timeout=",
        "prefix=%FF",  # not UTF-8
    ],
)
def test_bad_queries_are_refused(query: str) -> None:
    with pytest.raises(InvalidInputError):
        take_query_options(f"redis://h/0?{query}", {"prefix": text, "timeout": seconds}, {}, backend="Redis")


# -- SQLite ----------------------------------------------------------------------
async def test_sqlite_timeout_from_the_url(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}?timeout=4.5"
    async with await botmemory.open(url) as store:
        assert store.backend.timeout == 4.5  # type: ignore[attr-defined]
        await store.bot("b").kvs.set("k", 1)
        assert await store.bot("b").kvs.get("k") == 1
    assert (tmp_path / "q.db").exists()  # the query is not part of the file name
    async with await botmemory.open(url, timeout=7) as store:
        assert store.backend.timeout == 7  # type: ignore[attr-defined]


@pytest.mark.parametrize("query", ["timeout=0", "timeout=-1", "timeout=x", "mode=ro", "schema=a"])
async def test_sqlite_bad_query(tmp_path: Path, query: str) -> None:
    with pytest.raises(InvalidInputError):
        await botmemory.open(f"sqlite:///{tmp_path / 'q.db'}?{query}")
    assert not (tmp_path / "q.db").exists()


def test_the_cli_store_url_carries_the_options(tmp_path: Path) -> None:
    from botmemory.cli import app

    url = f"sqlite:///{tmp_path / 'cli.db'}?timeout=3"
    result = CliRunner().invoke(app, ["--store", url, "--json", "kvs", "set", "shop", "k", '{"a": 1}'])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(app, ["--store", url, "--json", "kvs", "get", "shop", "k"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["value"] == {"a": 1}
    bad = CliRunner().invoke(app, ["--store", f"sqlite:///{tmp_path / 'cli.db'}?nosuch=1", "kvs", "get", "shop", "k"])
    assert bad.exit_code != 0
    assert "nosuch" in bad.output


# -- PostgreSQL --------------------------------------------------------------------
async def _schemas() -> set[str]:
    async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as conn:
        cur = await conn.execute("SELECT nspname FROM pg_namespace")
        return {r[0] for r in await cur.fetchall()}


async def _drop_schema(schema: str) -> None:
    async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as conn:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.mark.postgres
async def test_postgres_schema_and_timeout_from_the_url_with_libpq_parameters_kept() -> None:
    require_backend("postgres")
    schema = f"urlq_{unique_suffix()}"
    url = _with_query(POSTGRES_URL, f"schema={schema}&timeout=3&sslmode=disable&application_name=urltest")
    try:
        async with await botmemory.open(url, clock=FakeClock()) as store:
            backend: Any = store.backend
            assert (backend.schema, backend.timeout) == (schema, 3.0)
            await store.bot("b").kvs.set("k", {"v": 1})
            assert await store.bot("b").kvs.get("k") == {"v": 1}
        assert schema in await _schemas()
        # the keyword wins: this store works in another schema
        other = f"urlq_{unique_suffix()}"
        try:
            async with await botmemory.open(url, clock=FakeClock(), schema=other) as store:
                assert store.backend.schema == other  # type: ignore[attr-defined]
                assert await store.bot("b").kvs.get("k") is None
        finally:
            await _drop_schema(other)
    finally:
        await _drop_schema(schema)


@pytest.mark.postgres
@pytest.mark.parametrize("query", ["nosuch=1", "schema=Bad-Name", "timeout=0", "prefix=x:"])
async def test_postgres_bad_query(query: str) -> None:
    require_backend("postgres")
    with pytest.raises(InvalidInputError):
        await botmemory.open(_with_query(POSTGRES_URL, query))


# -- Redis -------------------------------------------------------------------------
@pytest.mark.redis
async def test_redis_prefix_and_timeout_from_the_url() -> None:
    require_backend("redis")
    import redis.asyncio as aioredis

    prefix = f"urlq-{uuid.uuid4().hex[:10]}:"
    url = _with_query(REDIS_URL, f"prefix={prefix}&timeout=2")
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        async with await botmemory.open(url, clock=FakeClock()) as store:
            backend: Any = store.backend
            assert (backend.prefix, backend.timeout) == (prefix, 2.0)
            await store.bot("b").kvs.set("k", 1)
        names = [n async for n in client.scan_iter(match=f"{prefix}*")]
        assert names  # the entry and its indexes live under the URL's prefix
        async with await botmemory.open(url, clock=FakeClock(), prefix=prefix + "x:") as store:
            assert await store.bot("b").kvs.get("k") is None  # the keyword's prefix won
        async with await botmemory.open(url, clock=FakeClock()) as store:
            assert await store.bot("b").kvs.get("k") == 1
    finally:
        async for name in client.scan_iter(match=f"{prefix}*"):
            await client.unlink(name)
        await client.aclose()


@pytest.mark.redis
@pytest.mark.parametrize("query", ["nosuch=1", "socket_timeout=1", "max_connections=3", "prefix=", "schema=a"])
async def test_redis_bad_query(query: str) -> None:
    require_backend("redis")
    with pytest.raises(InvalidInputError):
        await botmemory.open(_with_query(REDIS_URL, query))
