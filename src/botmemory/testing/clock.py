"""A clock that moves only when told to."""

from __future__ import annotations

import math
import threading

__all__ = ["FakeClock"]


class FakeClock:
    """``now()`` returns a settable time; ``advance(seconds)`` moves it forward.

    Args:
        start: epoch seconds to start at.
    """

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._now = float(start)
        self._lock = threading.Lock()

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        """Move forward by ``seconds`` (≥ 0); returns the new time."""
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"FakeClock.advance needs a finite number >= 0, got {seconds!r}")
        with self._lock:
            self._now += seconds
            return self._now

    def set(self, epoch_seconds: float) -> None:
        """Jump to ``epoch_seconds`` (may go backwards, to test clock skew)."""
        if not math.isfinite(epoch_seconds):
            raise ValueError(f"FakeClock.set needs a finite number, got {epoch_seconds!r}")
        self._now = float(epoch_seconds)

    def __repr__(self) -> str:
        return f"FakeClock({self._now!r})"
