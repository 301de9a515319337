"""Retention policies: how long each kind of data is kept, declared per bot.

``bot.yaml``::

    retention:
      janitor_interval: 2m          # how often `botmemory serve` runs the janitor (default 5m)
      audit_retention: 365d         # how long audit records are kept (default 365 days)
      policies:
        user.email: {expire: 60d, mode: sliding}   # timer restarts on every write (the default mode)
        user.*: {expire: 365d}
        conversation.*: 1d                         # shorthand for {expire: 1d}
        kvs:carts/*: {expire: 7d, mode: absolute}  # counted from the first write

Patterns: ``user.<name>``, ``user.*``, ``conversation.<name>``,
``conversation.*``, ``global.<name>``, ``global.*`` for dialog-memory
variables, and ``kvs:<glob>`` for raw KVS keys of the bot, where ``*``
matches any run of characters (``/`` included) and every other character is
literal. The most specific pattern wins:

1. for a variable: ``<scope>.<name>`` beats ``<scope>.*``, which beats any
   ``kvs:`` pattern that matches the variable's KVS key;
2. among ``kvs:`` patterns: one without ``*`` beats any glob; then the one
   with more literal characters; then the one declared first.

A policy is the expiry of data written without one; an explicit shorter
expiry wins and a longer one (or "never") is capped. ``sliding``: the
deadline is ``last write + period``. ``absolute``: ``first write + period``;
the first-write time is kept in the private namespace
``__rt/firstwrite/<bot>`` (key = the data's KVS key, value = epoch seconds,
with the same expiry as the data), because a row only records its last
write. A key whose live row predates the policy counts from that row's last
write; a key written again after its absolute deadline starts over.

Periods use the expiry syntax (``botmemory.expiry.duration_ms``). A bad one
(``0d``, ``-1d``, ``abc``, ``never``, more than 100 years), an unknown mode,
pattern or setting raise ``InvalidInputError`` naming the setting: a bad
retention configuration fails closed, it never means "keep forever".
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal

from ..backends.base import PRIVATE_NS_PREFIX
from ..codec import decode, encode
from ..errors import InvalidInputError, InvalidKeyError
from ..expiry import duration_ms
from ..keys import validate_key, validate_prefix
from ..limits import Limits
from ..memory import parse_memory_key

if TYPE_CHECKING:
    from ..store import Store

__all__ = [
    "DEFAULT_AUDIT_RETENTION",
    "DEFAULT_JANITOR_INTERVAL",
    "MODES",
    "Policy",
    "RetentionConfig",
    "declared_config",
    "first_write_time",
    "firstwrite_ns",
    "record_declared",
    "state_ns",
]

DEFAULT_JANITOR_INTERVAL: Final = 300.0
"""Seconds between janitor runs when ``janitor_interval`` is not given."""

DEFAULT_AUDIT_RETENTION: Final = 365 * 86_400.0
"""Seconds an audit record is kept when ``audit_retention`` is not given."""

MODES: Final = ("sliding", "absolute")
_SCOPES: Final = ("user", "conversation", "global")
_SETTINGS: Final = ("janitor_interval", "audit_retention", "policies")
_POLICY_FIELDS: Final = ("expire", "mode")

Mode = Literal["sliding", "absolute"]


def firstwrite_ns(bot_id: str) -> str:
    """The private namespace of first-write times for ``absolute`` policies."""
    return f"{PRIVATE_NS_PREFIX}firstwrite/{bot_id}"


def state_ns(bot_id: str) -> str:
    """The private namespace where the janitor remembers the policies it last applied."""
    return f"{PRIVATE_NS_PREFIX}retention/{bot_id}"


@dataclass(frozen=True, slots=True)
class Policy:
    """One retention rule.

    Attributes:
        pattern: ``user.email``, ``user.*``, ``conversation.*``, ``global.*``, ``kvs:carts/*``…
        expire_ms: the period in milliseconds (1 ms to 100 years).
        mode: ``"sliding"`` (from the last write) or ``"absolute"`` (from the first write).
    """

    pattern: str
    expire_ms: int
    mode: Mode = "sliding"
    # the compiled glob of a kvs: pattern, set by RetentionConfig
    _regex: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    @property
    def period(self) -> float:
        """The period in seconds."""
        return self.expire_ms / 1000

    def as_dict(self) -> dict[str, Any]:
        """``{"pattern", "expire_ms", "mode"}`` for JSON output."""
        return {"pattern": self.pattern, "expire_ms": self.expire_ms, "mode": self.mode}


def _glob_regex(glob: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in glob.split("*")), re.DOTALL)


def _bad(source: str, setting: str, why: str) -> InvalidInputError:
    return InvalidInputError(f"{source}: retention.{setting}: {why}")


def _period_ms(value: object, source: str, setting: str) -> int:
    if isinstance(value, str) and value.strip() in ("never", "none", "forever", "0"):
        raise _bad(source, setting, f"{value!r} is not a retention period (a policy must expire)")
    try:
        return duration_ms(value)
    except InvalidInputError as exc:
        raise _bad(source, setting, str(exc)) from exc


def _check_pattern(pattern: object, source: str) -> str:
    if not isinstance(pattern, str) or not pattern:
        raise _bad(source, "policies", f"pattern {pattern!r} must be a non-empty string")
    if pattern.startswith("kvs:"):
        glob = pattern[4:]
        try:
            if not glob:
                raise InvalidKeyError("empty glob")
            validate_prefix(glob)
        except InvalidKeyError as exc:
            raise _bad(source, f"policies.{pattern}", f"bad KVS key pattern: {exc}") from exc
        return pattern
    scope, dot, name = pattern.partition(".")
    if not dot or scope not in _SCOPES:
        raise _bad(
            source,
            f"policies.{pattern}",
            "unknown pattern: expected user.<name>, user.*, conversation.<name>, conversation.*, "
            "global.<name>, global.* or kvs:<key glob>",
        )
    if name != "*":
        try:
            validate_key(name, 256, "variable name")
        except InvalidKeyError as exc:
            raise _bad(source, f"policies.{pattern}", str(exc)) from exc
        if "*" in name:
            raise _bad(source, f"policies.{pattern}", "only a whole-name '*' is supported in variable patterns")
    return pattern


@dataclass(frozen=True, slots=True)
class RetentionConfig:
    """A bot's retention settings (``bot.yaml``'s ``retention:`` section).

    Attributes:
        janitor_interval: seconds between janitor runs.
        audit_retention: seconds an audit record is kept.
        policies: the policies, in declaration order.
    """

    janitor_interval: float = DEFAULT_JANITOR_INTERVAL
    audit_retention: float = DEFAULT_AUDIT_RETENTION
    policies: list[Policy] = field(default_factory=list)
    _exact: dict[str, Policy] = field(default_factory=dict, compare=False, repr=False)
    _globs: list[Policy] = field(default_factory=list, compare=False, repr=False)

    def __post_init__(self) -> None:
        exact: dict[str, Policy] = {}
        globs: list[tuple[tuple[int, int], Policy]] = []
        for i, policy in enumerate(self.policies):
            if policy.pattern.startswith("kvs:"):
                glob = policy.pattern[4:]
                if "*" not in glob:
                    exact.setdefault(policy.pattern, policy)
                else:
                    literal = len(glob) - glob.count("*")
                    globs.append(((-literal, i), policy))
                    object.__setattr__(policy, "_regex", _glob_regex(glob))
            else:
                exact.setdefault(policy.pattern, policy)
        self._exact.update(exact)
        self._globs.extend(p for _, p in sorted(globs, key=lambda t: t[0]))

    @classmethod
    def empty(cls) -> RetentionConfig:
        """No policies, default intervals."""
        return cls()

    @classmethod
    def parse(cls, mapping: Mapping[str, Any] | None, *, source: str = "bot.yaml") -> RetentionConfig:
        """Build a config from ``bot.yaml``'s ``retention:`` mapping (None or {} = no policies).

        Args:
            mapping: ``{"janitor_interval"?, "audit_retention"?, "policies"?:
                {pattern: {"expire", "mode"?} or a bare period}}``.
            source: named in error messages (a file name).

        Returns:
            The config.

        Raises:
            InvalidInputError: an unknown setting, pattern, field or mode, or
                a bad period (zero, negative, unparseable, "never", more than
                100 years); the message names the setting.
        """
        if mapping is None:
            return cls()
        if not isinstance(mapping, Mapping):
            raise InvalidInputError(f"{source}: retention: expected a mapping, got {type(mapping).__name__}")
        unknown = [k for k in mapping if k not in _SETTINGS]
        if unknown:
            raise _bad(source, str(unknown[0]), f"unknown setting; expected one of {', '.join(_SETTINGS)}")
        interval = DEFAULT_JANITOR_INTERVAL
        if mapping.get("janitor_interval") is not None:
            interval = _period_ms(mapping["janitor_interval"], source, "janitor_interval") / 1000
        audit = DEFAULT_AUDIT_RETENTION
        if mapping.get("audit_retention") is not None:
            audit = _period_ms(mapping["audit_retention"], source, "audit_retention") / 1000
        raw = mapping.get("policies") or {}
        if not isinstance(raw, Mapping):
            raise _bad(source, "policies", f"expected a mapping of pattern to policy, got {type(raw).__name__}")
        policies: list[Policy] = []
        for pattern, spec in raw.items():
            pattern = _check_pattern(pattern, source)
            setting = f"policies.{pattern}"
            if not isinstance(spec, Mapping):
                spec = {"expire": spec}
            bad_fields = [k for k in spec if k not in _POLICY_FIELDS]
            if bad_fields:
                raise _bad(source, f"{setting}.{bad_fields[0]}", "unknown field; expected expire and mode")
            if "expire" not in spec:
                raise _bad(source, f"{setting}.expire", "missing: every policy needs a period")
            expire = _period_ms(spec["expire"], source, f"{setting}.expire")
            mode = spec.get("mode", "sliding")
            if mode not in MODES:
                raise _bad(source, f"{setting}.mode", f"unknown mode {mode!r}; expected sliding or absolute")
            policies.append(Policy(pattern, expire, mode))
        return cls(janitor_interval=interval, audit_retention=audit, policies=policies)

    def policy_for(self, key: str) -> Policy | None:
        """The policy governing the bot's KVS key ``key`` (memory keys included), or None."""
        if not self.policies:
            return None
        parsed = parse_memory_key(key)
        if parsed is not None:
            scope, _owner, name = parsed
            found = self._exact.get(f"{scope}.{name}") or self._exact.get(f"{scope}.*")
            if found is not None:
                return found
        found = self._exact.get("kvs:" + key)
        if found is not None:
            return found
        for policy in self._globs:
            assert policy._regex is not None
            if policy._regex.fullmatch(key):
                return policy
        return None

    def fingerprint(self) -> str:
        """A stable text that changes whenever a policy changes."""
        return json.dumps([p.as_dict() for p in self.policies], sort_keys=True)

    def as_dict(self) -> dict[str, Any]:
        """The settings as JSON-ready data."""
        return {
            "janitor_interval": self.janitor_interval,
            "audit_retention": self.audit_retention,
            "policies": [p.as_dict() for p in self.policies],
        }

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "the store") -> RetentionConfig:
        """The config ``as_dict`` wrote, checked as strictly as ``parse``.

        Raises:
            InvalidInputError: the data is not what ``as_dict`` writes.
        """
        if not isinstance(data, Mapping) or not isinstance(data.get("policies"), list):
            raise InvalidInputError(f"{source}: not a recorded retention config")
        mapping: dict[str, Any] = {
            "janitor_interval": data.get("janitor_interval"),
            "audit_retention": data.get("audit_retention"),
            "policies": {},
        }
        for item in data["policies"]:
            if not isinstance(item, Mapping) or type(item.get("expire_ms")) is not int:
                raise InvalidInputError(f"{source}: not a recorded retention policy: {item!r:.80}")
            mapping["policies"][item.get("pattern")] = {"expire": f"{item['expire_ms']}ms", "mode": item.get("mode")}
        return cls.parse(mapping, source=source)


#: Key, in ``state_ns(bot)``, of the policies a runtime last mounted the bot with.
_DECLARED: Final = "declared"


async def record_declared(store: Store, bot_id: str, config: RetentionConfig) -> None:
    """Remember in the store the policies bot ``bot_id`` runs with (the runtime calls it on mount).

    Tools that write a bot's data without its folder (``botmemory kvs set``
    run elsewhere) read them back with ``declared_config``, so policies apply
    wherever data is written. Written only when they changed.
    """
    kvs = store.private_kvs(state_ns(bot_id))
    data = config.as_dict()
    current = await kvs.get(_DECLARED)
    if isinstance(current, dict) and current.get("config") == data:
        return
    await kvs.set(_DECLARED, {"config": data, "at": store.clock.now()})


async def declared_config(store: Store, bot_id: str) -> RetentionConfig | None:
    """The policies a runtime last mounted bot ``bot_id`` with, or None when none ever did."""
    recorded = await store.private_kvs(state_ns(bot_id)).get(_DECLARED)
    if not isinstance(recorded, dict):
        return None
    try:
        return RetentionConfig.from_dict(recorded.get("config"), source=f"the policies recorded for bot {bot_id!r}")
    except InvalidInputError:
        return None  # written by another version: as good as unknown


async def first_write_time(store: Store, bot_id: str, key: str, now: float, period: float, limits: Limits) -> float:
    """When ``key`` of bot ``bot_id`` was first written, for an ``absolute`` policy of ``period`` seconds.

    Records the time in ``__rt/firstwrite/<bot>`` (expiring with the data)
    when the key is new, was written again after its deadline, or predates
    the policy (then its last write is the best known bound).
    """
    records = store.private_kvs(firstwrite_ns(bot_id))
    row = await store.kvs(bot_id).row(key)
    first: float | None = None
    recorded: float | None = None
    if row is not None:
        rec = await records.row(key)
        if rec is not None:
            value = decode(rec.value)
            if isinstance(value, int | float) and not isinstance(value, bool):
                recorded = first = float(value)
        if first is None:
            first = row.modified_at
    if first is None or first + period <= now:
        first = now
    if recorded != first:
        await records.put_row(key, encode(first, limits), first + period)
    return first
