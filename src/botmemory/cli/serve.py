"""``botmemory serve``: the HTTP API and the web admin on uvicorn, until Ctrl-C.

Before the server starts it checks the tokens in the store: with none, a
server bound to a loopback address creates an admin token and prints it
once; bound to any other address it refuses to start (exit 2). On a
loopback address it also prints a one-time login link for the admin UI
(valid 15 minutes, good for one sign-in).

``BOTMEMORY_CLOCK_OFFSET`` moves the clock of the store the server opens,
for tests of clock jumps: a number of seconds (``3600``: an hour ahead), or
``file:PATH`` to read the number from a file whenever the file changes (a
test steps a running server's clock). Unset, the server uses the system clock.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import math
import os
import socket
import sys

import orjson
import typer

from ..errors import InvalidInputError
from ..store import Store
from .context import open_store, settings

__all__ = ["serve"]


def is_loopback(host: str) -> bool:
    """Whether ``host`` is only reachable from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def listening_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (0: a free port) for uvicorn.

    Raises:
        InvalidInputError: the address cannot be bound.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio turns Nagle off (TCP_NODELAY) only on sockets that say they are TCP,
    # and a response written in two parts (head, body) would otherwise wait ~40 ms for a delayed ACK
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise InvalidInputError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


async def _prepare(
    store_url: str, timeout: float | None, loopback: bool, keep: bool
) -> tuple[str | None, str | None, Store | None]:
    """The admin token created now (if any), a one-time login code (on loopback), and the store if ``keep``."""
    from ..http import state

    store: Store = await open_store(store_url, timeout)
    try:
        created = None
        if not await state.has_tokens(store):
            if not loopback:
                raise InvalidInputError(
                    "no API token exists and the server would listen beyond this machine: create one first "
                    "with 'botmemory token create --admin' (or bind to 127.0.0.1)"
                )
            created, _info = await state.create_token(store, admin=True, name="created by serve on first start")
        code = None
        if loopback:
            admins = [t for t in await state.list_tokens(store) if t.is_admin]
            if admins:
                code = await state.create_login_code(store, admins[0].id)
        return created, code, store if keep else None
    finally:
        if not keep:
            await store.close()


def serve(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(3000, "--port", min=0, max=65535, help="Port (0: any free port)."),
    workers: int = typer.Option(1, "--workers", min=1, max=64, help="Worker processes."),
    janitor: bool = typer.Option(True, "--janitor/--no-janitor", help="Run the janitor in the server."),
    janitor_interval: float | None = typer.Option(
        None, "--janitor-interval", metavar="SECONDS", help="Seconds between janitor runs (default: the bots')."
    ),
    access_log: bool = typer.Option(False, "--access-log", help="Log every request."),
    max_auth_failures: int = typer.Option(
        30,
        "--max-auth-failures",
        min=1,
        metavar="N",
        help="Failed authentications per client address and minute before it gets 429.",
    ),
) -> None:
    """Serve the HTTP API (/api/v1) and the web admin (/ui) with the bots of --bots over --store."""
    import uvicorn

    from ..http.app import CONFIG_ENV, create_app
    from ..http.context import ServerConfig

    opts = settings(ctx)
    if janitor_interval is not None and not (math.isfinite(janitor_interval) and 0 < janitor_interval <= 86_400):
        raise InvalidInputError("--janitor-interval must be between 0 and 86400 seconds")
    loopback = is_loopback(host)
    # a memory:// store lives in this process only: the server must use the one the token went into
    in_memory = opts.store_url.startswith("memory:")
    if in_memory and workers > 1:
        raise InvalidInputError("a memory:// store lives in one process: --workers needs sqlite, postgresql or redis")
    # BOTMEMORY_CLOCK_OFFSET (tests of clock jumps): checked now, so a bad value is exit 2, not a failed start
    from ..http.context import CLOCK_OFFSET_ENV, clock_from_env

    if clock_from_env() is not None and in_memory:
        raise InvalidInputError(f"{CLOCK_OFFSET_ENV} needs a sqlite, postgresql or redis store, not memory://")
    created, code, kept = asyncio.run(_prepare(opts.store_url, opts.timeout, loopback, keep=in_memory))

    sock = listening_socket(host, port)
    url = _url(host, sock.getsockname()[1])

    lines = [f"botmemory serve: {url}/ui/ (API: {url}/api/v1, OpenAPI: {url}/openapi.json)"]
    if created is not None:
        lines.append(f"created an admin token (shown only this once): {created}")
    if code is not None:
        lines.append(f"sign in to the admin UI (one-time link, 15 minutes): {url}/ui/#login={code}")
    lines.append("serving until Ctrl-C")
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()

    config = ServerConfig(
        store_url=opts.store_url,
        bots_dir=opts.bots_dir,
        janitor=janitor,
        janitor_interval=janitor_interval,
        max_auth_failures=max_auth_failures,
    )
    if opts.timeout is not None:
        config.timeout = opts.timeout
    common = {"log_level": "info", "access_log": access_log, "timeout_graceful_shutdown": 5, "server_header": False}
    if workers == 1:
        server = uvicorn.Server(uvicorn.Config(create_app(config, store=kept), **common))  # type: ignore[arg-type]
        server.run(sockets=[sock])
        return
    from uvicorn.supervisors import Multiprocess

    os.environ[CONFIG_ENV] = orjson.dumps(dataclasses.asdict(config)).decode()
    uv_config = uvicorn.Config(
        "botmemory.http.app:app_from_env",
        factory=True,
        workers=workers,
        **common,  # type: ignore[arg-type]
    )
    Multiprocess(uv_config, sockets=[sock]).run()
