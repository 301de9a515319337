"""What request handlers share: the server's settings and the objects its lifespan opened."""

from __future__ import annotations

import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from starlette.requests import Request

from ..errors import StoreError
from ..store import DEFAULT_URL, Store

if TYPE_CHECKING:
    from ..runtime import Runtime
    from .auth import Authenticator
    from .metrics import ServerMetrics

__all__ = ["ServerConfig", "ServerState", "get_state"]

T = TypeVar("T")


@dataclass
class ServerConfig:
    """Settings of one server process (``botmemory serve``'s options).

    Attributes:
        store_url: the store to open (ignored when the app is given an open store).
        bots_dir: the folder of bots to mount (a missing folder mounts none).
        timeout: seconds a backend call may take before it fails (503).
        max_body_bytes: the largest request body; default twice the store's value limit plus 64 KiB.
        janitor: run the janitor in the app's lifespan.
        janitor_interval: seconds between runs; default the bots' shortest ``janitor_interval``, else 300.
        lock_wait: seconds a turn waits for its conversation's lease (then 503).
        session_ttl: seconds an admin UI session lasts.
        max_auth_failures: failed authentications per client address and minute before 429.
    """

    store_url: str = DEFAULT_URL
    bots_dir: str = "./bots"
    timeout: float = 3.0
    max_body_bytes: int | None = None
    janitor: bool = True
    janitor_interval: float | None = None
    lock_wait: float = 10.0
    session_ttl: float = 8 * 3600.0
    max_auth_failures: int = 30


@dataclass
class ServerState:
    """The objects a running app works with (``app.state.server``)."""

    config: ServerConfig
    store: Store
    runtime: Runtime
    auth: Authenticator
    metrics: ServerMetrics
    janitor_report: dict[str, Any] = field(default_factory=dict)
    janitor_last_run: float | None = None

    async def timed(self, op: str, call: Awaitable[T]) -> T:
        """Await a store call, counting and timing it for ``/metrics``."""
        started = time.perf_counter()
        try:
            result = await call
        except StoreError:
            self.metrics.observe_store(op, time.perf_counter() - started, failed=True)
            raise
        self.metrics.observe_store(op, time.perf_counter() - started)
        return result


def get_state(request: Request) -> ServerState:
    """The server state of the app serving ``request``."""
    state: ServerState = request.app.state.server
    return state
