"""What request handlers share: the server's settings and the objects its lifespan opened."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

from starlette.requests import Request

from ..errors import InvalidInputError, StoreError
from ..store import DEFAULT_URL, Store

if TYPE_CHECKING:
    from ..runtime import Runtime
    from .auth import Authenticator
    from .metrics import ServerMetrics

__all__ = ["CLOCK_OFFSET_ENV", "OffsetClock", "ServerConfig", "ServerState", "clock_from_env", "get_state"]

#: Moves the clock of the stores ``serve`` opens (for tests of clock jumps): seconds, or ``file:PATH``.
CLOCK_OFFSET_ENV: Final = "BOTMEMORY_CLOCK_OFFSET"
_MAX_OFFSET: Final = 10 * 366 * 86_400.0

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


def _offset(text: str, what: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or abs(value) > _MAX_OFFSET:
        raise InvalidInputError(f"{what} must be a number of seconds within ten years, got {text!r}")
    return value


class OffsetClock:
    """The wall clock moved by ``offset`` seconds, or by the number in ``path`` (re-read when the file changes).

    The file form lets a test step a running server's clock forward and back
    (``BOTMEMORY_CLOCK_OFFSET=file:/tmp/offset``); a file that cannot be read
    or parsed keeps the last offset.
    """

    __slots__ = ("_mtime", "_offset", "_path")

    def __init__(self, offset: float = 0.0, path: str | None = None) -> None:
        self._offset = offset
        self._path = path
        self._mtime = -1
        if path is not None:
            self._offset = _offset(Path(path).read_text(), f"{CLOCK_OFFSET_ENV} file {path}")
            self._mtime = os.stat(path).st_mtime_ns

    @property
    def offset(self) -> float:
        if self._path is not None:
            try:
                mtime = os.stat(self._path).st_mtime_ns
                if mtime != self._mtime:
                    self._offset = _offset(Path(self._path).read_text(), CLOCK_OFFSET_ENV)
                    self._mtime = mtime
            except (OSError, InvalidInputError):
                pass
        return self._offset

    def now(self) -> float:
        return time.time() + self.offset


def clock_from_env() -> OffsetClock | None:
    """The clock ``$BOTMEMORY_CLOCK_OFFSET`` asks for (None when unset: the system clock).

    Raises:
        InvalidInputError: the value is not a finite number of seconds within ten years, or names no
            readable file.
    """
    raw = os.environ.get(CLOCK_OFFSET_ENV, "").strip()
    if not raw:
        return None
    if raw.startswith("file:"):
        try:
            return OffsetClock(path=raw.removeprefix("file:"))
        except OSError as exc:
            raise InvalidInputError(f"{CLOCK_OFFSET_ENV}: cannot read {raw!r}: {exc.strerror or exc}") from None
    return OffsetClock(_offset(raw, CLOCK_OFFSET_ENV))


def get_state(request: Request) -> ServerState:
    """The server state of the app serving ``request``."""
    state: ServerState = request.app.state.server
    return state
