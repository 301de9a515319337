"""Size limits, checked before anything reaches a backend."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Limits"]


@dataclass(frozen=True, slots=True)
class Limits:
    """Limits on what a store accepts.

    Args:
        max_value_bytes: compact UTF-8 JSON size of a whole stored value.
        max_depth: nesting of arrays/objects (``[[0]]`` has depth 2).
        max_key_bytes: UTF-8 bytes of a key given by a caller.
        max_id_bytes: UTF-8 bytes of a user id, conversation id or variable name.
        max_keys_per_bot: live keys per KVS; ``None`` for no quota.
    """

    max_value_bytes: int = 1_048_576
    max_depth: int = 64
    max_key_bytes: int = 512
    max_id_bytes: int = 256
    max_keys_per_bot: int | None = None

    def __post_init__(self) -> None:
        for name in ("max_value_bytes", "max_depth", "max_key_bytes", "max_id_bytes"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"Limits.{name} must be a positive int, got {v!r}")
        q = self.max_keys_per_bot
        if q is not None and (not isinstance(q, int) or isinstance(q, bool) or q <= 0):
            raise ValueError(f"Limits.max_keys_per_bot must be a positive int or None, got {q!r}")
