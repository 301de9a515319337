"""How much of a turn is spent waiting for the store.

The runtime installs ``MeteredBackend``, a backend wrapper, on its store
(``store.wrap_backend(MeteredBackend)``): it adds the time of every backend call to
the ``TurnStats`` of the turn that made it (found through a context variable, so concurrent
turns and the hooks' tasks are counted apart and correctly).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

from ..backends.wrapper import BackendWrapper

__all__ = ["MeteredBackend", "TurnStats", "current_turn"]

T = TypeVar("T")


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


class MeteredBackend(BackendWrapper):
    """A backend wrapper that times every call into ``current_turn`` (a pass-through outside turns).

    Install it with ``store.wrap_backend(MeteredBackend)``: it then declares
    the capabilities of the backend it wraps (``backends.wrapper.wrap``).
    """

    async def _call(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        stats = current_turn.get()
        if stats is None:
            return await fn(*args, **kwargs)
        start = time.perf_counter()
        try:
            return await fn(*args, **kwargs)
        finally:
            stats.store_calls += 1
            stats.store_seconds += time.perf_counter() - start

