"""A Hypothesis state machine that checks a store against a plain-dict model.

:func:`kvs_state_machine` builds a ``RuleBasedStateMachine`` class that
drives random ``set`` (plain, with expiry, with ``keep_ttl``, with a path,
compare-and-set), ``set_if_absent``, ``set_many``, ``get``, ``get_entry``,
``get_many``, ``delete``, ``delete_prefix``, ``incr``, ``expire``,
``persist``, ``keys``, clock advances and ``purge_expired`` against one bot
of a store, and after every step checks that the store and the model agree
and that no expired value is returned or listed::

    from botmemory.testing.backends import open_test_store
    from botmemory.testing.statemachine import kvs_state_machine

    Machine = kvs_state_machine(lambda clock: open_test_store("sqlite", fresh_dir(), clock=clock))
    run_state_machine_as_test(Machine, settings=settings(max_examples=50, stateful_step_count=50))

The store is async; each machine owns one event loop (an ``asyncio.Runner``)
for its whole life, opens a fresh store per test case and closes it in
``teardown``, so it works for any backend, including those whose
connections are bound to the loop that opened them.

The model keeps expired rows until they are deleted, overwritten or purged,
because ``delete_prefix`` and ``purge_expired`` act on them (and
``purge_expired`` counts them).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from typing import Any, ClassVar, TypeVar

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from ..errors import InvalidPathError, ValueTypeError, VersionConflictError
from ..kvs import KVS
from ..store import Store
from .clock import FakeClock
from .contract import assert_same

__all__ = ["KEYS", "StoreFactory", "json_values", "kvs_state_machine"]

T = TypeVar("T")

StoreFactory = Callable[[FakeClock], AbstractAsyncContextManager[Store]]
"""Opens a fresh, empty store that uses the given clock (e.g. ``open_test_store``)."""

#: A small key space, so that operations meet each other often; includes a
#: key that is a prefix of others and keys beyond ASCII and the BMP.
KEYS = ["a", "ab", "a/b", "b", "é", "\U0001f600"]
_PREFIXES = ["", "a", "a/", "é", "\U0001f600", "z"]
_FIELDS = ["x", "y"]
_SECONDS = [1, 2, 5, 30, 60, 120]
_ADVANCES = [0.001, 0.5, 1.0, 2.0, 5.0, 30.0, 60.0, 120.0]

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1

_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=6)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-5, 5)
    | st.integers(_INT64_MIN, _INT64_MAX)
    | st.sampled_from([_INT64_MIN, _INT64_MAX, _INT64_MAX - 1, -0.0, 5e-324, 1.7976931348623157e308])
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text
)

#: Small JSON values of every kind, tuples excluded (they read back as lists).
json_values: st.SearchStrategy[Any] = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_text, children, max_size=3),
    max_leaves=6,
)
_expiries = st.none() | st.sampled_from(_SECONDS)


@dataclass(frozen=True)
class _Row:
    value: Any
    version: int
    expires_at: float | None
    modified_at: float


_KEEP = object()


def kvs_state_machine(open_store: StoreFactory, *, bot_id: str = "state-machine") -> type[RuleBasedStateMachine]:
    """A state machine class that checks the stores ``open_store`` opens.

    Args:
        open_store: called with a ``FakeClock`` once per test case; returns
            an async context manager yielding a fresh, empty store that uses
            that clock, and closing (and removing) it on exit.
        bot_id: the bot whose KVS is driven.

    Returns:
        A new ``RuleBasedStateMachine`` subclass; its class attributes
        ``examples_run`` and ``steps_run`` count what it has done, so a test
        can check that it ran enough steps.
    """

    class KVSMachine(RuleBasedStateMachine):
        examples_run: ClassVar[int] = 0
        steps_run: ClassVar[int] = 0

        def __init__(self) -> None:
            super().__init__()
            self.clock = FakeClock()
            self.model: dict[str, _Row] = {}
            # Hypothesis calls teardown only once __init__ has returned: undo
            # here whatever was opened before a failure.
            self._runner = asyncio.Runner()
            try:
                self._cm = open_store(self.clock)
                self.store: Store = self._runner.run(_enter(self._cm))
                try:
                    self.kvs: KVS = self.store.bot(bot_id).kvs
                except BaseException:
                    self._runner.run(self._cm.__aexit__(None, None, None))
                    raise
            except BaseException:
                self._runner.close()
                raise
            self._checked_once = False
            type(self).examples_run += 1

        def teardown(self) -> None:
            try:
                self._runner.run(self._cm.__aexit__(None, None, None))
            finally:
                self._runner.close()

        # -- model helpers ---------------------------------------------------
        def run(self, coro: Any) -> Any:
            return self._runner.run(coro)

        def live(self, key: str) -> _Row | None:
            row = self.model.get(key)
            if row is None or (row.expires_at is not None and self.clock.now() >= row.expires_at):
                return None
            return row

        def write(self, key: str, value: Any, expires: Any) -> int:
            """Record a write in the model; returns the version the store must report."""
            now = self.clock.now()
            current = self.live(key)
            if expires is _KEEP:
                expires = None if current is None else current.expires_at
            version = 1 if current is None else current.version + 1
            self.model[key] = _Row(value, version, expires, now)
            return version

        def expiry_at(self, seconds: int | None) -> float | None:
            return None if seconds is None else self.clock.now() + seconds

        # -- writes ----------------------------------------------------------
        @rule(key=st.sampled_from(KEYS), value=json_values, expiry=_expiries)
        def set_value(self, key: str, value: Any, expiry: int | None) -> None:
            expected = self.write(key, value, self.expiry_at(expiry))
            assert self.run(self.kvs.set(key, value, expiry=expiry)) == expected

        @rule(key=st.sampled_from(KEYS), value=json_values)
        def set_keep_ttl(self, key: str, value: Any) -> None:
            expected = self.write(key, value, _KEEP)
            assert self.run(self.kvs.set(key, value, keep_ttl=True)) == expected

        @rule(key=st.sampled_from(KEYS), field=st.sampled_from(_FIELDS), value=json_values, expiry=_expiries)
        def set_path(self, key: str, field: str, value: Any, expiry: int | None) -> None:
            current = self.live(key)
            root = None if current is None else current.value
            if root is not None and not isinstance(root, dict):
                with pytest.raises(ValueTypeError):
                    self.run(self.kvs.set(key, value, field, expiry))
                return
            new_root = dict(root or {})
            new_root[field] = value
            expected = self.write(key, new_root, _KEEP if expiry is None else self.expiry_at(expiry))
            assert self.run(self.kvs.set(key, value, field, expiry)) == expected

        @rule(key=st.sampled_from(KEYS), index=st.integers(0, 2), value=json_values)
        def set_list_index(self, key: str, index: int, value: Any) -> None:
            current = self.live(key)
            root = None if current is None else current.value
            call = self.kvs.set(key, value, (index,))
            if root is not None and not isinstance(root, list):
                with pytest.raises(ValueTypeError):
                    self.run(call)
                return
            items = list(root or [])
            if index > len(items):
                with pytest.raises(InvalidPathError):
                    self.run(call)
                return
            if index == len(items):
                items.append(value)
            else:
                items[index] = value
            expected = self.write(key, items, _KEEP)
            assert self.run(call) == expected

        @rule(key=st.sampled_from(KEYS), value=json_values, off_by=st.sampled_from([0, 0, 1, -1]))
        def compare_and_set(self, key: str, value: Any, off_by: int) -> None:
            current = self.live(key)
            version = 0 if current is None else current.version
            asked = max(0, version + off_by)
            if asked != version:
                with pytest.raises(VersionConflictError):
                    self.run(self.kvs.set(key, value, if_version=asked))
                return
            expected = self.write(key, value, None)
            assert self.run(self.kvs.set(key, value, if_version=asked)) == expected

        @rule(key=st.sampled_from(KEYS), value=json_values, expiry=_expiries)
        def set_if_absent(self, key: str, value: Any, expiry: int | None) -> None:
            absent = self.live(key) is None
            if absent:
                self.write(key, value, self.expiry_at(expiry))
            assert self.run(self.kvs.set_if_absent(key, value, expiry=expiry)) is absent

        @rule(
            items=st.dictionaries(st.sampled_from(KEYS), json_values, min_size=1, max_size=3),
            expiry=_expiries,
        )
        def set_many(self, items: dict[str, Any], expiry: int | None) -> None:
            expected = [self.write(k, v, self.expiry_at(expiry)) for k, v in items.items()]
            assert self.run(self.kvs.set_many(items, expiry=expiry)) == expected

        @rule(
            key=st.sampled_from(KEYS),
            amount=st.integers(-3, 3) | st.sampled_from([0.5, -1.25, _INT64_MAX]),
            field=st.none() | st.sampled_from(_FIELDS),
        )
        def incr(self, key: str, amount: int | float, field: str | None) -> None:
            current = self.live(key)
            call = self.kvs.incr(key, amount, path=field)
            if field is None:
                found, number = current is not None, None if current is None else current.value
            else:
                root = None if current is None else current.value
                if root is not None and not isinstance(root, dict):
                    with pytest.raises(ValueTypeError):
                        self.run(call)
                    return
                found = isinstance(root, dict) and field in root
                number = root[field] if isinstance(root, dict) and found else None
            result = _add(found, number, amount)
            if result is None:
                with pytest.raises(ValueTypeError):
                    self.run(call)
                return
            if field is None:
                new_value: Any = result
            else:
                new_value = dict(current.value if current is not None and current.value is not None else {})
                new_value[field] = result
            self.write(key, new_value, _KEEP)
            assert_same(self.run(call), result)

        @rule(key=st.sampled_from(KEYS))
        def delete(self, key: str) -> None:
            was_live = self.live(key) is not None
            self.model.pop(key, None)
            assert self.run(self.kvs.delete(key)) is was_live

        @rule(prefix=st.sampled_from([p for p in _PREFIXES if p]))
        def delete_prefix(self, prefix: str) -> None:
            doomed = [k for k in self.model if k.startswith(prefix)]
            live = sum(1 for k in doomed if self.live(k) is not None)
            for k in doomed:
                del self.model[k]
            assert self.run(self.kvs.delete_prefix(prefix)) == live

        @rule(key=st.sampled_from(KEYS), seconds=st.sampled_from(_SECONDS))
        def expire(self, key: str, seconds: int) -> None:
            current = self.live(key)
            if current is not None:
                self.model[key] = replace(current, expires_at=self.clock.now() + seconds)
            assert self.run(self.kvs.expire(key, seconds)) is (current is not None)

        @rule(key=st.sampled_from(KEYS))
        def persist(self, key: str) -> None:
            current = self.live(key)
            changed = current is not None and current.expires_at is not None
            if changed:
                assert current is not None
                self.model[key] = replace(current, expires_at=None)
            assert self.run(self.kvs.persist(key)) is changed

        @rule(seconds=st.sampled_from(_ADVANCES))
        def advance_clock(self, seconds: float) -> None:
            self.clock.advance(seconds)

        @rule(key=st.sampled_from(KEYS), early=st.sampled_from([0.0, 0.0, 0.001]))
        def advance_to_deadline(self, key: str, early: float) -> None:
            # Random advances rarely land on a deadline; expiry is decided
            # exactly there (expired once now >= expires_at), so go there.
            row = self.model.get(key)
            if row is not None and row.expires_at is not None and row.expires_at - early > self.clock.now():
                self.clock.set(row.expires_at - early)

        @rule(limit=st.integers(1, 4))
        def purge_expired(self, limit: int) -> None:
            now = self.clock.now()
            expired = sorted(
                (row.expires_at, key)
                for key, row in self.model.items()
                if row.expires_at is not None and now >= row.expires_at
            )
            # Which of several expired rows goes first cannot be observed
            # (none is visible); only the count is checked.
            for _, key in expired[:limit]:
                del self.model[key]
            assert self.run(self.store.purge_expired(limit=limit)) == min(limit, len(expired))

        # -- reads -----------------------------------------------------------
        @rule(key=st.sampled_from(KEYS), field=st.none() | st.sampled_from(_FIELDS))
        def get(self, key: str, field: str | None) -> None:
            current = self.live(key)
            missing = object()
            got = self.run(self.kvs.get(key, field, default=missing))
            if current is None:
                assert got is missing, f"{key!r} should be absent, got {got!r}"
            elif field is None:
                assert_same(got, current.value)
            elif isinstance(current.value, dict) and field in current.value:
                assert_same(got, current.value[field])
            else:
                assert got is missing

        @rule(key=st.sampled_from(KEYS))
        def get_entry(self, key: str) -> None:
            current = self.live(key)
            entry = self.run(self.kvs.get_entry(key))
            if current is None:
                assert entry is None
                return
            assert entry is not None and entry.key == key
            assert_same(entry.value, current.value)
            assert entry.version == current.version
            assert entry.modified_at == pytest.approx(current.modified_at, abs=1e-3)
            if current.expires_at is None:
                assert entry.expires_at is None
            else:
                assert entry.expires_at == pytest.approx(current.expires_at, abs=1e-3)

        @rule(key=st.sampled_from(KEYS))
        def ttl(self, key: str) -> None:
            current = self.live(key)
            if current is None:
                with pytest.raises(KeyError):
                    self.run(self.kvs.ttl(key))
                return
            ttl = self.run(self.kvs.ttl(key))
            if current.expires_at is None:
                assert ttl is None
            else:
                assert ttl == pytest.approx(current.expires_at - self.clock.now(), abs=1e-3)
                assert ttl > 0

        @rule(prefix=st.sampled_from(_PREFIXES), limit=st.none() | st.integers(1, 3))
        def keys(self, prefix: str, limit: int | None) -> None:
            expected = sorted(k for k in self.model if k.startswith(prefix) and self.live(k) is not None)
            if limit is not None:
                expected = expected[:limit]
            assert self.run(_collect(self.kvs, prefix, limit)) == expected

        @invariant()
        def store_matches_model(self) -> None:
            if self._checked_once:
                type(self).steps_run += 1
            self._checked_once = True
            live = {k: row.value for k in KEYS if (row := self.live(k)) is not None}
            got = self.run(self.kvs.get_many(KEYS))
            assert sorted(got) == sorted(live), f"live keys {sorted(got)}, model says {sorted(live)}"
            for key, value in live.items():
                assert_same(got[key], value)
            assert self.run(_collect(self.kvs, "", None)) == sorted(live)

    KVSMachine.__name__ = KVSMachine.__qualname__ = "KVSMachine"
    return KVSMachine


def _add(found: bool, current: Any, amount: int | float) -> int | float | None:
    """What ``incr`` yields, or None when it must raise ValueTypeError."""
    if not found:
        current = 0
    elif current is None or isinstance(current, bool) or not isinstance(current, int | float):
        return None
    result = current + amount
    if isinstance(result, int):
        return result if _INT64_MIN <= result <= _INT64_MAX else None
    return result if math.isfinite(result) else None


async def _enter(cm: AbstractAsyncContextManager[T]) -> T:
    return await cm.__aenter__()


async def _collect(kvs: KVS, prefix: str, limit: int | None) -> list[str]:
    return [k async for k in kvs.keys(prefix, limit=limit)]
