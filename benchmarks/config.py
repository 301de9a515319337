"""What a run measures: sizes, counts, the value written and the keys used."""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace

import orjson

__all__ = ["EXPIRY_SECONDS", "NAMESPACE", "VALUE", "VALUE_BYTES", "Config", "make_keys"]

#: Every write in every row expires in one hour, like a typical session value.
EXPIRY_SECONDS = 3600

#: The bot id / namespace every row writes to.
NAMESPACE = "bench-bot"


def _value(size: int) -> dict[str, object]:
    """A JSON dict shaped like a user's memory whose compact encoding is ``size`` bytes."""
    value: dict[str, object] = {
        "firstname": "Ada",
        "lang": "en",
        "visits": 17,
        "premium": True,
        "tags": ["vip", "beta"],
        "last_order": {"id": 4711, "total": 99.5},
        "notes": "",
    }
    pad = size - len(orjson.dumps(value))
    if pad < 0:
        raise ValueError(f"value size {size} is too small")
    value["notes"] = "n" * pad
    return value


VALUE = _value(200)
VALUE_BYTES = len(orjson.dumps(VALUE))
assert VALUE_BYTES == 200


def make_keys(n: int, seed: int) -> list[str]:
    """``n`` distinct plain KVS keys in a reproducible shuffled order.

    Not the dialog-memory layout (``storage/users/<id>/...``): writes there
    also pass the retention layer's erasure guard (one more read per write),
    which is not what the KVS-against-raw-driver ratios are about.
    """
    keys = [f"orders/{i:07d}" for i in range(n)]
    random.Random(seed).shuffle(keys)
    return keys


@dataclass(frozen=True)
class Config:
    """Sizes and counts of one run (the defaults are the full run).

    Attributes:
        sizes: numbers of keys in the store (N) for the key-value rows.
        ops: operations per timed round (capped at N).
        rounds: timed rounds per measurement; the median is reported.
        warmup: untimed operations before the timed rounds.
        latency_ops: individually timed operations for p50/p99.
        tasks: concurrent asyncio tasks in the concurrent-writers scenario.
        concurrent_writes: writes per round in that scenario.
        concurrent_keys: keys in the store for that scenario.
        only: keep only rows whose target id or family contains one of these.
        profile: run the breakdown of the slowest botmemory row.
        profile_row: ``(target id, "set" | "get")`` to break down instead of the slowest row.
        seed: seed of every random choice (keys, order).
    """

    sizes: tuple[int, ...] = (10_000, 100_000)
    ops: int = 10_000
    rounds: int = 5
    warmup: int = 1_000
    latency_ops: int = 5_000
    tasks: int = 64
    concurrent_writes: int = 20_000
    concurrent_keys: int = 10_000
    only: tuple[str, ...] = field(default=())
    profile: bool = True
    profile_row: tuple[str, str] | None = None
    seed: int = 7

    @classmethod
    def quick(cls, n: int = 1_000) -> Config:
        """A small smoke run: N keys, and every count scaled down to match."""
        return cls(
            sizes=(n,),
            ops=n,
            rounds=3,
            warmup=min(200, n),
            latency_ops=min(500, n),
            tasks=64,
            concurrent_writes=max(n, 64),
            concurrent_keys=n,
        )

    def with_(self, **changes: object) -> Config:
        """A copy with some fields changed."""
        return replace(self, **changes)  # type: ignore[arg-type]

    def wants(self, *names: str) -> bool:
        """Whether ``--only`` keeps a row known by any of ``names``."""
        if not self.only:
            return True
        return any(want in name for want in self.only for name in names)
