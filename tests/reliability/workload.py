"""The acknowledged-write workload of the crash tests, and the checks after the crashes.

A client (a child process that gets SIGKILLed, or tasks of the test process
whose server gets killed) writes through the public API and reports every
write as a line, *after* the call returned (an acknowledgement) and, for
writes whose effect can be seen even when unacknowledged, also *before*
(an intent):

==========================  ==============================================
``U <key>``                 ``set`` of a unique key acknowledged
``b I <counter>``           ``incr`` about to be called
``I <counter> <value>``     ``incr`` acknowledged, returning ``value``
``b M <group>``             ``set_many`` of ``<group>/a``, ``/b``, ``/c`` about to be called
``M <group>``               that ``set_many`` acknowledged
``P <doc> <field> <n>``     path ``set`` of ``<doc>``'s ``<field>`` to ``n`` acknowledged
==========================  ==============================================

:class:`Ledger` reads the lines; :func:`verify` then checks the store:
every acknowledged write is there, each counter equals its acknowledged
increments plus some of the increments whose outcome is unknown (never
more), and every ``set_many`` ever attempted is there whole or not at all.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import botmemory
from botmemory.errors import StoreError

__all__ = ["BOT", "COUNTERS", "Ledger", "Report", "run_workload", "verify"]

BOT = "crash"
COUNTERS = [f"c/{i}" for i in range(4)]
_GROUP_KEYS = ("a", "b", "c")


async def run_workload(
    store: botmemory.Store,
    emit: Callable[[str], None],
    run: str,
    task: int,
    *,
    stop: asyncio.Event | None = None,
    tolerate: bool = False,
    seed: int | None = None,
) -> int:
    """Write until ``stop`` is set (or forever); returns the number of failed calls.

    With ``tolerate``, a ``StoreError`` (the server is down) is counted and the
    loop goes on; otherwise it propagates.
    """
    kvs = store.bot(BOT).kvs
    rng = random.Random(seed)
    failures = 0
    i = 0
    while stop is None or not stop.is_set():
        i += 1
        pick = rng.random()
        try:
            if pick < 0.4:
                key = f"u/{run}/{task}/{i}"
                await kvs.set(key, {"k": key, "pad": "x" * (i % 64)})
                emit(f"U {key}")
            elif pick < 0.6:
                counter = rng.choice(COUNTERS)
                emit(f"b I {counter}")
                value = await kvs.incr(counter)
                emit(f"I {counter} {value}")
            elif pick < 0.75:
                group = f"m/{run}/{task}/{i}"
                emit(f"b M {group}")
                await kvs.set_many({f"{group}/{k}": group for k in _GROUP_KEYS})
                emit(f"M {group}")
            else:
                doc = f"d/{run}/{task}/{i // 100}"
                await kvs.set(doc, i, path=(f"n{i}",))
                emit(f"P {doc} n{i} {i}")
        except StoreError:
            if not tolerate:
                raise
            failures += 1
            await asyncio.sleep(0.02)  # the server is away: do not spin
    return failures


@dataclass
class Ledger:
    """What the clients reported, with the time (``time.monotonic()``) of each acknowledgement."""

    unique: dict[str, float] = field(default_factory=dict)
    incr_tried: Counter[str] = field(default_factory=Counter)
    incr_acked: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    groups_tried: set[str] = field(default_factory=set)
    groups_acked: dict[str, float] = field(default_factory=dict)
    paths: dict[tuple[str, str], tuple[int, float]] = field(default_factory=dict)
    lines: int = 0

    def feed(self, line: str, at: float | None = None) -> None:
        at = time.monotonic() if at is None else at
        self.lines += 1
        parts = line.split(" ")
        tag = parts[0]
        if tag == "U":
            self.unique[parts[1]] = at
        elif tag == "b":
            if parts[1] == "I":
                self.incr_tried[parts[2]] += 1
            else:
                self.groups_tried.add(parts[2])
        elif tag == "I":
            self.incr_acked.setdefault(parts[1], []).append((int(parts[2]), at))
        elif tag == "M":
            self.groups_acked[parts[1]] = at
        elif tag == "P":
            self.paths[(parts[1], parts[2])] = (int(parts[3]), at)
        else:
            raise AssertionError(f"unknown workload line {line!r}")

    @property
    def acked(self) -> int:
        return (
            len(self.unique)
            + sum(len(v) for v in self.incr_acked.values())
            + len(self.groups_acked)
            + len(self.paths)
        )


@dataclass
class Report:
    """What :func:`verify` found.

    ``lost`` lists acknowledged writes that are missing, as (what, when it
    was acknowledged); ``violations`` everything else that must never happen
    (a half-applied ``set_many``, a counter above its increments, a wrong
    value).
    """

    acked: int
    lost: list[tuple[str, float]]
    violations: list[str]
    figures: dict[str, Any]


async def _chunks(kvs: botmemory.KVS, keys: list[str]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for i in range(0, len(keys), 500):
        found.update(await kvs.get_many(keys[i : i + 500]))
    return found


async def verify(store: botmemory.Store, ledger: Ledger, *, lossy: bool = False) -> Report:
    """Check the store against the ledger.

    With ``lossy`` (a backend allowed to lose recent acknowledged writes, such
    as Redis with ``appendfsync everysec``), a counter value returned twice is
    a lost increment (the counter went back, then counted again), reported
    in ``lost`` with the time of its first acknowledgement, not a violation.
    """
    kvs = store.bot(BOT).kvs
    lost: list[tuple[str, float]] = []
    violations: list[str] = []

    stored = await _chunks(kvs, list(ledger.unique))
    for key, at in ledger.unique.items():
        if key not in stored:
            lost.append((f"set {key}", at))
        elif stored[key].get("k") != key:
            violations.append(f"{key} holds {stored[key]!r}")

    committed_unacked = 0
    lost_incr = 0
    for counter in COUNTERS:
        acked = ledger.incr_acked.get(counter, [])
        tried = ledger.incr_tried[counter]
        value = await kvs.get(counter, default=0)
        values = [v for v, _ in acked]
        if len(set(values)) != len(values):
            if not lossy:
                violations.append(f"{counter}: two acknowledged increments returned the same value")
            else:
                first: dict[int, float] = {}
                for v, at in sorted(acked, key=lambda pair: pair[1]):
                    if v in first:
                        lost_incr += 1
                        lost.append((f"incr {counter} -> {v} (returned again later)", first[v]))
                    else:
                        first[v] = at
        if value > tried:
            violations.append(f"{counter} = {value}, more than the {tried} increments ever tried")
        # a value returned twice (lossy backends only) stands for one increment that survived
        distinct = sorted({v: at for v, at in sorted(acked, key=lambda pair: pair[1], reverse=True)}.items())
        if value < len(distinct):
            # acknowledged increments are missing: the ones that returned the highest values
            for v, at in distinct[value:]:
                lost_incr += 1
                lost.append((f"incr {counter} -> {v}", at))
        else:
            committed_unacked += value - len(distinct)
        if acked and max(values) > value and value >= len(distinct):
            violations.append(f"{counter} = {value}, but an acknowledged increment returned {max(values)}")

    group_keys = [f"{g}/{k}" for g in sorted(ledger.groups_tried) for k in _GROUP_KEYS]
    stored = await _chunks(kvs, group_keys)
    half = 0
    unacked_applied = 0
    for group in sorted(ledger.groups_tried):
        present = [k for k in _GROUP_KEYS if f"{group}/{k}" in stored]
        if len(present) not in (0, len(_GROUP_KEYS)):
            half += 1
            violations.append(f"set_many {group} half applied: only {present}")
        if any(stored.get(f"{group}/{k}", group) != group for k in present):
            violations.append(f"set_many {group} holds wrong values")
        if group in ledger.groups_acked and not present:
            lost.append((f"set_many {group}", ledger.groups_acked[group]))
        if group not in ledger.groups_acked and present:
            unacked_applied += 1

    docs: dict[str, list[tuple[str, int, float]]] = {}
    for (doc, name), (n, at) in ledger.paths.items():
        docs.setdefault(doc, []).append((name, n, at))
    stored = await _chunks(kvs, list(docs))
    for doc, fields in docs.items():
        value = stored.get(doc, {})
        for name, n, at in fields:
            if name not in value:
                lost.append((f"path set {doc}.{name}", at))
            elif value[name] != n:
                violations.append(f"{doc}.{name} = {value[name]!r}, acknowledged {n}")

    figures = {
        "acked_writes": ledger.acked,
        "acked_sets": len(ledger.unique),
        "acked_incrs": sum(len(v) for v in ledger.incr_acked.values()),
        "acked_set_many": len(ledger.groups_acked),
        "acked_path_sets": len(ledger.paths),
        "lost_acked": len(lost),
        "lost_incr": lost_incr,
        "unacked_incr_committed": committed_unacked,
        "unacked_set_many_committed": unacked_applied,
        "half_applied_set_many": half,
    }
    return Report(ledger.acked, lost, violations, figures)


def sqlite_integrity(db: Path) -> str:
    """``PRAGMA integrity_check`` of an SQLite file: ``"ok"``, or its findings one per line."""
    conn = sqlite3.connect(db)
    try:
        return "\n".join(row[0] for row in conn.execute("PRAGMA integrity_check"))
    finally:
        conn.close()
