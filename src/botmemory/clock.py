"""Time as a dependency: every expiry decision asks a ``Clock``."""

from __future__ import annotations

import time
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """Anything with ``now() -> float`` (epoch seconds)."""

    def now(self) -> float: ...


class SystemClock:
    """The wall clock (``time.time()``)."""

    __slots__ = ()

    def now(self) -> float:
        return time.time()
