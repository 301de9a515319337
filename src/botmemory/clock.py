"""Time as a dependency: every expiry decision asks a ``Clock``."""

from __future__ import annotations

import time
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "NonDecreasingClock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """Anything with ``now() -> float`` (epoch seconds)."""

    def now(self) -> float: ...


class SystemClock:
    """The wall clock (``time.time()``)."""

    __slots__ = ()

    def now(self) -> float:
        return time.time()


class NonDecreasingClock:
    """A clock read so that time never goes back: ``now()`` is the latest of its readings so far.

    A store reads time through one of these. When the clock it wraps steps
    back (an NTP correction, a virtual machine restored, a ``FakeClock`` set
    to an earlier time), the store's time stands still until the clock has
    caught up, so a key that was expired once stays expired ("from then on
    no call returns it", api.md), and no lease or TTL is computed from a time
    earlier than one already used. Remaining TTLs do not grow while the clock
    is behind. Each store keeps its own high-water mark: another process
    whose clock is behind has its own (RELIABILITY.md, "Clock").

    Attributes the wrapped clock has besides ``now`` (``FakeClock.advance``,
    ``FakeClock.set``) are reached through this object; ``clock`` is the
    wrapped clock itself.
    """

    __slots__ = ("_high", "clock")

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._high = float("-inf")

    def now(self) -> float:
        reading = self.clock.now()
        high = self._high
        if reading >= high:
            self._high = reading
            return reading
        return high

    def __getattr__(self, name: str) -> object:
        return getattr(self.clock, name)

    def __repr__(self) -> str:
        return f"NonDecreasingClock({self.clock!r})"
