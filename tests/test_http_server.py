"""``botmemory serve`` as a real process: first start, refusal beyond loopback, bodies streamed past the
limit (memory stays flat), huge headers, the backend going down and coming back, and two replicas on
one PostgreSQL and on one Redis."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

import botmemory
from botmemory.testing.backends import POSTGRES_URL, REDIS_URL, unique_suffix
from conftest import require_backend
from http_server import Served, serve
from runtime_bots import write_bot
from test_outage import Proxy, _via

# -- start-up ---------------------------------------------------------------------------------------


def test_first_start_prints_an_admin_token_once_then_only_a_login_link(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'first.db'}"
    with serve(url, tmp_path, "--no-janitor") as first:
        assert first.token is not None and first.login_link is not None
        page = httpx.get(first.url + "/ui/")
        assert page.status_code == 200 and "botmemory admin" in page.text
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert httpx.get(first.url + "/ui/static/app.js").status_code == 200
        bots = httpx.get(first.url + "/api/v1/bots", headers=first.headers()).json()["bots"]
        assert [b["id"] for b in bots] == ["example"]
    with serve(url, tmp_path, "--no-janitor", token=first.token) as second:
        banner = "\n".join(second.lines)
        assert "shown only this once" not in banner and first.token not in banner
        assert second.login_link is not None and second.login_link != first.login_link
        assert httpx.get(second.url + "/api/v1/bots", headers=second.headers()).status_code == 200


def test_beyond_loopback_without_a_token_refuses_to_start(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "botmemory",
            "--store",
            f"sqlite:///{tmp_path / 'x.db'}",
            "serve",
            "--host",
            "0.0.0.0",
            "--port",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done
    assert "token create --admin" in done.stderr and "Traceback" not in done.stderr
    assert done.stdout == ""


# -- bodies and headers on the wire ---------------------------------------------------------------


@pytest.fixture(scope="module")
def sqlite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("wire")
    with serve(f"sqlite:///{folder / 'wire.db'}", folder, "--no-janitor") as served:
        yield served


def _raw(served: Served, request: bytes, body_chunks: Any = (), read: bool = True) -> bytes:
    """Send raw bytes to the server; the status line (or b'' when the server hung up)."""
    host, port = urlsplit(served.url).hostname, urlsplit(served.url).port
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(request)
        try:
            for chunk in body_chunks:
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed: what we want
        if not read:
            return b""
        try:
            return sock.recv(65536)
        except ConnectionResetError:
            return b""


def test_v1_a_chunked_200_mb_body_is_refused_while_it_streams_and_memory_stays_flat(sqlite_server: Served) -> None:
    before = sqlite_server.rss_kib()
    chunk = b"x" * (1 << 20)
    sent = [0]

    def body() -> Iterator[bytes]:
        yield b'"'
        for _ in range(200):
            sent[0] += len(chunk)
            yield chunk
        yield b'"'

    with httpx.Client(timeout=30) as client:
        try:
            response = client.put(
                sqlite_server.url + "/api/v1/bots/example/kvs/big",
                content=body(),
                headers={**sqlite_server.headers(), "Content-Type": "application/json"},
            )
            status = response.status_code
            assert response.json()["error"]["code"] == "body_too_large"
        except httpx.TransportError:
            status = 413  # the server answered 413 and closed while we were still sending
    assert status == 413
    assert sent[0] < 200 * len(chunk)  # refused long before the end
    grown = sqlite_server.rss_kib() - before
    assert grown < 40_000, f"server RSS grew by {grown} KiB"
    assert (
        httpx.get(sqlite_server.url + "/api/v1/bots/example/kvs/big", headers=sqlite_server.headers()).status_code
        == 404
    )


def test_v1_a_declared_huge_body_is_refused_before_it_is_read(sqlite_server: Served) -> None:
    token = sqlite_server.token or ""
    head = (
        "PUT /api/v1/bots/example/kvs/big HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {token}\r\nContent-Length: 104857600\r\n\r\n"
    ).encode()
    started = time.monotonic()
    status = _raw(sqlite_server, head)
    assert status.startswith(b"HTTP/1.1 413"), status[:200]
    assert time.monotonic() - started < 2
    # a Content-Length that lies (small header, then far more bytes) never becomes a stored value
    lying = head.replace(b"104857600", b"3")
    answer = _raw(sqlite_server, lying, [b'"x"' + b"y" * (1 << 20)])
    assert not answer.startswith(b"HTTP/1.1 5"), answer[:200]
    assert httpx.get(sqlite_server.url + "/healthz").status_code == 200


@pytest.mark.parametrize("what", ["10000 headers", "1 MB header"])
def test_a5_huge_headers_are_refused_and_the_server_lives_on(sqlite_server: Served, what: str) -> None:
    if what == "10000 headers":
        extra = "".join(f"X-H{i}: v\r\n" for i in range(10_000))
    else:
        extra = "X-Big: " + "a" * (1 << 20) + "\r\n"
    status = _raw(sqlite_server, f"GET /healthz HTTP/1.1\r\nHost: t\r\n{extra}\r\n".encode())
    assert status == b"" or status.startswith((b"HTTP/1.1 400", b"HTTP/1.1 431")), status[:100]
    assert httpx.get(sqlite_server.url + "/healthz").status_code == 200


# -- the backend goes down and comes back -----------------------------------------------------------


def _shared(name: str) -> tuple[str, str]:
    """A store URL (with its own schema or prefix) for processes to share, and the option string."""
    if name == "postgres":
        return POSTGRES_URL, f"schema={unique_suffix()}"
    return REDIS_URL, f"prefix=botmemory-test:{unique_suffix()}:"


async def _drop(url: str, option: str) -> None:
    key, _, value = option.partition("=")
    store = await botmemory.open(url, **{key: value})
    try:
        await store.backend.drop_everything()  # type: ignore[attr-defined]
    finally:
        await store.close()


@asynccontextmanager
async def _served_async(store_url: str, cwd: Path, *args: str, **kwargs: Any) -> AsyncIterator[Served]:
    # the serve helper blocks while the server starts: run it on a thread, so a proxy on this loop keeps forwarding
    manager = serve(store_url, cwd, *args, **kwargs)
    served = await asyncio.to_thread(manager.__enter__)
    try:
        yield served
    finally:
        await asyncio.to_thread(manager.__exit__, None, None, None)


@pytest.mark.parametrize(
    "name", [pytest.param("redis", marks=pytest.mark.redis), pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def test_backend_down_is_503_within_5_s_and_the_server_recovers(name: str, tmp_path: Path) -> None:
    require_backend(name)
    url, option = _shared(name)
    parts = urlsplit(url)
    proxy = Proxy((parts.hostname or "127.0.0.1", parts.port or (5432 if name == "postgres" else 6379)))
    await proxy.start()
    proxied = f"{_via(url, proxy.port)}?{option}"
    try:
        async with (
            _served_async(proxied, tmp_path, "--no-janitor", env={"BOTMEMORY_TIMEOUT": "1"}) as served,
            httpx.AsyncClient(base_url=served.url, headers=served.headers(), timeout=30) as client,
        ):
            path = "/api/v1/bots/example/kvs/k"
            assert (
                await client.put(path, content=b"1", headers={"Content-Type": "application/json"})
            ).status_code == 200
            for outage in (proxy.pause, proxy.close):  # frozen, then down
                if outage == proxy.close:
                    proxy.resume()
                    await proxy.close()
                else:
                    outage()
                for method, target in (("GET", path), ("POST", "/api/v1/bots/example/converse/u1"), ("GET", "/readyz")):
                    started = time.monotonic()
                    kwargs: dict[str, Any] = {"json": {"text": "hi"}} if method == "POST" else {}
                    response = await client.request(method, target, **kwargs)
                    took = time.monotonic() - started
                    assert response.status_code == 503, (outage, target, response.text)
                    assert response.json()["error"]["code"].startswith("store"), response.text
                    assert took < 5, (target, took)
            await proxy.start()  # back on the same port
            deadline = time.monotonic() + 20
            while (await client.get(path)).status_code != 200:
                assert time.monotonic() < deadline, "the server did not recover"
                await asyncio.sleep(0.2)
            assert (await client.get(path)).json()["value"] == 1
            assert (await client.get("/readyz")).status_code == 200
    finally:
        proxy.resume()
        await proxy.close()
        await _drop(url, option)


# -- two replicas on one store --------------------------------------------------------------------

SEQUENCE_FLOW = """\
start: hello
nodes:
  hello:
    on_enter:
      - say: "ready"
    next:
      - goto: collect
  collect:
    on_receive:
      - append: {item: "{{ event.text }}"}
      - say: "{{ temp.count }}:{{ event.text }}"
    next:
      - goto: collect
"""

APPEND = """\
async def append(ctx, item):
    items = await ctx.memory.get_conversation_variable(ctx.conversation_id, "items", [])
    items = items + [item]
    await ctx.memory.set_conversation_variable(ctx.conversation_id, "items", items)
    return {"count": len(items)}
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", [pytest.param("postgres", marks=pytest.mark.postgres), pytest.param("redis", marks=pytest.mark.redis)]
)
async def test_two_replicas_one_store(name: str, tmp_path: Path) -> None:
    require_backend(name)
    bots = tmp_path / "bots"
    write_bot(bots, "seq", flows={"main": SEQUENCE_FLOW}, actions={"append": APPEND})
    url, option = _shared(name)
    store_url = f"{url}?{option}"
    try:
        async with _served_async(store_url, tmp_path, "--no-janitor", bots=bots) as one:  # noqa: SIM117 - two needs one's token
            async with _served_async(store_url, tmp_path, "--no-janitor", bots=bots, token=one.token) as two:
                assert one.token is not None and two.token == one.token
                clients = [httpx.AsyncClient(base_url=s.url, headers=s.headers(), timeout=30) for s in (one, two)]
                try:
                    first = await clients[1].post("/api/v1/bots/seq/converse/u1", json={"text": "start"})
                    assert first.status_code == 200, first.text  # the admin token of replica one works on two
                    cid = first.json()["conversation_id"]
                    assert first.json()["responses"][0]["text"] == "ready"
                    for i in range(200):
                        reply = await clients[i % 2].post(
                            "/api/v1/bots/seq/converse/u1", json={"text": f"m{i}", "conversation_id": cid}
                        )
                        assert reply.status_code == 200, reply.text
                        assert reply.json()["responses"][0]["text"] == f"{i + 1}:m{i}"
                    items = await clients[0].get(f"/api/v1/bots/seq/conversations/{cid}/variables/items")
                    assert items.json()["value"] == [f"m{i}" for i in range(200)]
                    assert items.json()["version"] == 200
                    # a token made while both run works at once on both
                    made = subprocess.run(
                        [
                            sys.executable,
                            "-m",
                            "botmemory",
                            "--store",
                            store_url,
                            "--json",
                            "token",
                            "create",
                            "--bot",
                            "seq",
                        ],
                        capture_output=True,
                        text=True,
                        timeout=60,
                        check=True,
                    )
                    token = __import__("json").loads(made.stdout)["token"]
                    for served in (one, two):
                        ok = httpx.get(f"{served.url}/api/v1/bots/seq/kvs", headers=served.headers(token))
                        assert ok.status_code == 200
                        assert (
                            httpx.get(f"{served.url}/api/v1/bots/other/kvs", headers=served.headers(token)).status_code
                            == 404
                        )
                finally:
                    for client in clients:
                        await client.aclose()
    finally:
        await _drop(url, option)


async def test_the_listening_socket_gives_connections_without_nagle() -> None:
    """A response written in two parts must not wait for a delayed ACK (it took 44 ms a request)."""
    from botmemory.cli.serve import listening_socket

    sock = listening_socket("127.0.0.1", 0)
    accepted: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        writer.close()

    server = await asyncio.start_server(handle, sock=sock)
    try:
        _reader, writer = await asyncio.open_connection("127.0.0.1", sock.getsockname()[1])
        writer.close()
        for _ in range(100):
            if accepted:
                break
            await asyncio.sleep(0.01)
        assert accepted == [1]
    finally:
        server.close()
        await server.wait_closed()


def test_serve_on_a_memory_store_uses_the_token_it_printed(tmp_path: Path) -> None:
    with serve("memory://", tmp_path, "--no-janitor") as served:
        assert httpx.get(served.url + "/api/v1/bots", headers=served.headers()).status_code == 200
