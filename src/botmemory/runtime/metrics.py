"""How much of a turn is spent waiting for the store.

The runtime talks to its backend through ``MeteredBackend``, a transparent
proxy that adds the time of every awaited backend call to the ``TurnStats``
of the turn that made it (found through a context variable, so concurrent
turns and the hooks' tasks are counted apart and correctly).
"""

from __future__ import annotations

import functools
import inspect
import time
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

__all__ = ["MeteredBackend", "TurnStats", "current_turn"]


@dataclass(slots=True)
class TurnStats:
    """Counters of one turn (or of everything, for the runtime's totals)."""

    turns: int = 0
    errors: int = 0
    store_calls: int = 0
    store_seconds: float = 0.0
    turn_seconds: float = 0.0

    def add(self, other: TurnStats) -> None:
        self.turns += other.turns
        self.errors += other.errors
        self.store_calls += other.store_calls
        self.store_seconds += other.store_seconds
        self.turn_seconds += other.turn_seconds

    def as_dict(self) -> dict[str, float | int]:
        return {
            "turns": self.turns,
            "errors": self.errors,
            "store_calls": self.store_calls,
            "store_seconds": self.store_seconds,
            "turn_seconds": self.turn_seconds,
        }


#: The stats of the turn running in this context, if any.
current_turn: ContextVar[TurnStats | None] = ContextVar("botmemory_runtime_turn", default=None)


class MeteredBackend:
    """Every coroutine method of ``inner``, timed into ``current_turn``; everything else passed through."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._wrapped: dict[str, Any] = {}

    @property
    def inner(self) -> Any:
        return self._inner

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not inspect.iscoroutinefunction(attr):
            return attr
        wrapped = self._wrapped.get(name)
        if wrapped is None:

            @functools.wraps(attr)
            async def timed(*args: Any, **kwargs: Any) -> Any:
                stats = current_turn.get()
                if stats is None:
                    return await attr(*args, **kwargs)
                start = time.perf_counter()
                try:
                    return await attr(*args, **kwargs)
                finally:
                    stats.store_calls += 1
                    stats.store_seconds += time.perf_counter() - start

            wrapped = self._wrapped[name] = timed
        return wrapped

    def __repr__(self) -> str:
        return f"<MeteredBackend {self._inner!r}>"
