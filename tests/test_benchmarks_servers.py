"""The ``servers`` benchmark scenario runs end to end and leaves nothing behind.

Not a timing test: it checks that every row is measured (or skipped with a
reason), that the goals find their rows, and that each client's schema or
key prefix is gone afterwards.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

from botmemory.testing.backends import POSTGRES_URL, REDIS_URL
from conftest import require_backend

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `benchmarks` is a top-level package of the repository, not of botmemory
    sys.path.insert(0, str(ROOT))

from benchmarks import servers  # noqa: E402
from benchmarks.config import Config  # noqa: E402
from benchmarks.goals import GOALS, evaluate  # noqa: E402

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


async def test_tiny_run_measures_every_row_and_cleans_up(monkeypatch: pytest.MonkeyPatch) -> None:
    require_backend("postgres")
    require_backend("redis")
    import redis.asyncio as aioredis

    schemas: list[str] = []
    prefixes: list[str] = []
    make_unique = servers._unique

    def recording_unique(stem: str) -> str:
        name = make_unique(stem)
        schemas.append(name)
        return name

    monkeypatch.setattr(servers, "_unique", recording_unique)
    unlink = servers._unlink_prefix

    async def recording_unlink(client: Any, prefix: str) -> None:
        prefixes.append(prefix)
        await unlink(client, prefix)

    monkeypatch.setattr(servers, "_unlink_prefix", recording_unlink)
    monkeypatch.setenv("BOTMEMORY_BENCH_SERVER_OPS", "200")
    lines: list[str] = []
    rows = await servers.servers(Config.quick(200).with_(rounds=1), lines.append)

    by_target = {r.target: r for r in rows}
    for target in ("bm-postgres", "raw-psycopg", "bm-redis", "raw-redis", "raw-redis-defaults"):
        row = by_target[target]
        assert row.skipped is None, row.skipped
        assert all(row.metrics[f"{op}_ops"] > 0 for op in ("set", "get", "set_many", "get_many"))
    lg = by_target["lg-postgres"]
    assert lg.skipped is None or "not installed" in lg.skipped
    mine = [g for g in GOALS if g.scenario == "servers"]
    verdicts = [v for v in evaluate(rows, mine) if v.goal.ours in ("bm-postgres", "bm-redis")]
    assert len(verdicts) == len(mine)
    assert all(v.ratio is not None for v in verdicts if "LangGraph" not in v.goal.name or lg.skipped is None)

    # every schema and key prefix the run made is gone
    assert len(schemas) >= 2 and len(prefixes) >= 3
    async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as conn:
        cur = await conn.execute("SELECT nspname FROM pg_namespace WHERE nspname = ANY(%s)", (schemas,))
        assert await cur.fetchall() == []
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        for prefix in prefixes:
            assert [n async for n in client.scan_iter(match=f"{prefix}*", count=1000)] == []
    finally:
        await client.aclose()


async def test_an_unreachable_server_skips_its_rows_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(servers, "POSTGRES_URL", "postgresql://postgres@127.0.0.1:1/test")
    monkeypatch.setattr(servers, "REDIS_URL", "redis://127.0.0.1:1/0")
    rows = await servers.servers(Config.quick(200).with_(rounds=1), lambda line: None)
    assert {r.target for r in rows} == {t.id for t in servers.TARGETS}
    for row in rows:
        assert row.skipped is not None and ("unreachable" in row.skipped or "not installed" in row.skipped)
        assert row.metrics == {}
