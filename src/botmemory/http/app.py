"""The ASGI app: ``create_app(config)`` (FastAPI), its lifespan, health, readiness and metrics.

The lifespan opens the store (unless one is given), mounts the bots, loads
the signing key and runs the janitor: every ``janitor_interval`` each
replica tries the ``janitor`` lease in the store, and only the one that
gets it runs ``runtime.janitor_once()``, so replicas never sweep at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

from fastapi import FastAPI, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.staticfiles import StaticFiles

from ..errors import StoreError
from ..store import Store
from ..store import open as open_store
from ..version import __version__
from .api import FAST_ROUTES, caller
from .api import router as api_router
from .auth import Authenticator
from .context import ServerConfig, ServerState, clock_from_env, get_state
from .errors import ApiError, error_responses, install_error_handlers
from .metrics import CONTENT_TYPE, ServerMetrics
from .middleware import RequestGuard
from .state import Lease, signing_key
from .ui import STATIC_DIR
from .ui import router as ui_router

__all__ = ["CONFIG_ENV", "app_from_env", "create_app"]

log = logging.getLogger("botmemory.http")

DEFAULT_JANITOR_INTERVAL: Final = 300.0
READY_TIMEOUT: Final = 4.0
#: ``serve --workers N`` hands the config to each worker process in this environment variable.
CONFIG_ENV: Final = "BOTMEMORY_SERVE_CONFIG"

_DESCRIPTION = """\
botmemory's HTTP API: converse with bots, their KVS and dialog memory, users'
export/erasure/legal hold, and the audit log.

Authenticate with `Authorization: Bearer <token>` (`botmemory token create --bot BOT | --admin`).
A bot's token reaches only that bot (other bots answer 404). Errors are always
`{"error": {"code", "message"}}`.
"""


def _interval(runtime: Any, config: ServerConfig) -> float:
    if config.janitor_interval is not None:
        return config.janitor_interval
    intervals = []
    for loaded in runtime.bots.values():
        value = getattr(getattr(loaded, "retention", None), "janitor_interval", None)
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            intervals.append(float(value))
    return min(intervals, default=DEFAULT_JANITOR_INTERVAL)


async def run_janitor_once(state: ServerState, lease: Lease) -> dict[str, Any] | None:
    """One janitor run if this replica gets the lease; its report, or None when another replica has it."""
    if not await lease.try_acquire():
        state.metrics.janitor_skipped.inc()
        return None
    started = time.perf_counter()
    try:
        report = await state.runtime.janitor_once()
    finally:
        with contextlib.suppress(StoreError):
            await lease.release()
    state.metrics.observe_janitor(report, time.perf_counter() - started)
    state.janitor_report = report
    state.janitor_last_run = time.time()
    return report


async def _janitor_loop(state: ServerState, interval: float) -> None:
    lease = Lease(state.store, "janitor", ttl=max(600.0, 4 * interval))
    while True:
        await asyncio.sleep(interval)
        try:
            await run_janitor_once(state, lease)
        except Exception:  # the loop outlives any one failure (a backend outage included)
            log.exception("janitor run failed")


async def _open_runtime(store: Store, config: ServerConfig) -> Any:
    from ..runtime import Runtime

    if Path(config.bots_dir).is_dir():  # noqa: ASYNC240 - once, at start-up
        runtime = await Runtime.open(store, config.bots_dir, lock_wait=config.lock_wait)
    else:
        log.warning("no bots folder at %s: no bot is mounted", config.bots_dir)
        runtime = Runtime(store, {}, {}, lock_wait=config.lock_wait)
    for bot_id, error in sorted(runtime.load_errors.items()):
        log.warning("bot %s not mounted: %s", bot_id, error)
    return runtime


def create_app(config: ServerConfig | None = None, *, store: Store | None = None, runtime: Any = None) -> FastAPI:
    """The botmemory server as an ASGI app.

    Args:
        config: settings; defaults to ``ServerConfig()``.
        store: an open store to serve (the app does not close it); default:
            open ``config.store_url`` in the lifespan.
        runtime: a ``botmemory.Runtime`` over ``store`` (default: mount ``config.bots_dir``).
    """
    config = config or ServerConfig()
    metrics = ServerMetrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own_store = store is None
        the_store = store
        if the_store is None:
            options: dict[str, Any] = {}
            if not config.store_url.startswith("memory:"):
                options["timeout"] = config.timeout
            clock = clock_from_env()  # BOTMEMORY_CLOCK_OFFSET: a moved clock, for tests of clock jumps
            if clock is not None:
                options["clock"] = clock
            the_store = await open_store(config.store_url, **options)
        janitor: asyncio.Task[None] | None = None
        try:
            the_runtime = runtime if runtime is not None else await _open_runtime(the_store, config)
            auth = Authenticator(
                the_store,
                await signing_key(the_store),
                session_ttl=config.session_ttl,
                max_failures=config.max_auth_failures,
                on_failure=metrics.auth_failures.inc,
            )
            state = ServerState(config, the_store, the_runtime, auth, metrics)
            metrics.watch_runtime(lambda: dict(the_runtime.metrics.as_dict()))
            app.state.server = state
            if config.janitor:
                janitor = asyncio.create_task(_janitor_loop(state, _interval(the_runtime, config)))
            yield
        finally:
            if janitor is not None:
                janitor.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await janitor
            if own_store:
                await the_store.close()

    app = FastAPI(
        title="botmemory",
        version=__version__,
        description=_DESCRIPTION,
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
        redirect_slashes=False,
    )
    install_error_handlers(app)

    app.include_router(api_router)
    # the hot paths first, as plain Starlette routes (see api.FAST_ROUTES)
    for position, (path, endpoint, method) in enumerate(FAST_ROUTES):
        app.router.routes.insert(position, _named_route(path, endpoint, method))
    app.include_router(ui_router)
    app.mount("/ui/static", StaticFiles(directory=STATIC_DIR), name="static")
    _system_routes(app)

    limits_store = store
    max_body = config.max_body_bytes
    if max_body is None:
        value_limit = limits_store.limits.max_value_bytes if limits_store is not None else 1_048_576
        max_body = 2 * value_limit + 65_536
    app.add_middleware(RequestGuard, max_body=max_body, metrics=metrics)
    return app


def _named_route(path: str, endpoint: Any, method: str) -> Route:
    """A Starlette route that records itself in the scope, as FastAPI's do (the request metrics' label)."""

    async def named(request: Request) -> Response:
        request.scope["route"] = route
        response: Response = await endpoint(request)
        return response

    route = Route(path, named, methods=[method], name=endpoint.__name__)
    return route


def _system_routes(app: FastAPI) -> None:
    async def healthz() -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    async def readyz(request: Request) -> Response:
        state = get_state(request)
        try:
            await asyncio.wait_for(state.store.global_kvs.exists("readyz"), READY_TIMEOUT)
        except (StoreError, TimeoutError) as exc:
            raise ApiError(
                503, "store_unavailable", f"the store does not answer: {exc or type(exc).__name__}"
            ) from None
        return Response(b'{"status":"ready"}', media_type="application/json")

    async def metrics(request: Request) -> Response:
        who = await caller(request)
        if not who.token.is_admin:
            raise ApiError(403, "forbidden", "metrics need an admin token")
        return Response(get_state(request).metrics.render(), media_type=CONTENT_TYPE)

    ok_json = {"application/json": {"schema": {"type": "object"}}}
    ok_doc: dict[int | str, dict[str, Any]] = {200: {"description": "OK", "content": ok_json}}
    for prefix in ("", "/api/v1"):
        in_schema = prefix == "/api/v1"
        app.add_api_route(
            prefix + "/healthz",
            healthz,
            methods=["GET"],
            response_class=Response,
            include_in_schema=in_schema,
            responses=ok_doc,
            tags=["health"],
            summary="Liveness (no auth)",
        )
        app.add_api_route(
            prefix + "/readyz",
            readyz,
            methods=["GET"],
            response_class=Response,
            include_in_schema=in_schema,
            responses={**ok_doc, **error_responses(503)},
            tags=["health"],
            summary="Readiness: the store answers (no auth)",
        )
        app.add_api_route(
            prefix + "/metrics",
            metrics,
            methods=["GET"],
            response_class=Response,
            include_in_schema=in_schema,
            responses={
                200: {
                    "description": "Prometheus text",
                    "content": {CONTENT_TYPE.split(";")[0]: {"schema": {"type": "string"}}},
                },
                **error_responses(401, 403, 429, 503),
            },
            tags=["health"],
            summary="Prometheus metrics (admin token)",
        )


def app_from_env() -> FastAPI:
    """The app of a ``serve --workers N`` worker process, configured from ``BOTMEMORY_SERVE_CONFIG``."""
    import orjson

    raw = os.environ.get(CONFIG_ENV)
    config = ServerConfig(**orjson.loads(raw)) if raw else ServerConfig()
    return create_app(config)
