"""Record concurrent KVS histories and check that they are linearizable.

A history is what clients saw: for every operation, when it was invoked,
when it returned (or that it never did) and what it returned. It is
*linearizable* when every operation can be given one instant between its
invocation and its return such that, taken in that order, the results are
those of a single, sequential key-value store. An operation whose outcome is
unknown (its client was killed, or it failed with a ``StoreError``, which
may or may not have been applied) is *pending*: it may take effect at any
instant after its invocation, or never, and its result is not checked.

The checker is the Wing & Gong search with Lowe's memoisation, as Knossos
and Porcupine implement it: a depth-first search over the operations that
could come next, which caches every (set of operations linearized, state)
pair it has seen, so each is explored once. Linearizability is local
(Herlihy & Wing), so each key is checked on its own, which keeps the
searches small.

The model is one register per key with the KVS's versions (api.md): a new
key starts at version 1, every write adds 1, a key re-created after delete
starts again at 1.

=========  ==================  ========================================
kind       argument            result
=========  ==================  ========================================
``get``    ``None``            ``None`` (absent) or ``[value, version]``
``set``    value               the new version
``cas``    ``[version, value]`` the new version, or ``"conflict"``
``incr``   amount              the new value, or ``"type-error"``
``delete`` ``None``            whether a value existed
=========  ==================  ========================================

Recording, from any number of processes (one JSON line per event, written
as the event happens, so a killed client leaves its last operation
pending)::

    recorder = HistoryRecorder(client="w3", write=sys.stdout.buffer.write)
    result = await record_op(recorder, kvs, "cas", "k1", [2, 7])
    ...
    history = read_history(lines)          # lines of every client, any order
    verdict = check(history)
    assert verdict.ok, verdict.explain()
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from ..errors import StoreError, ValueTypeError, VersionConflictError
from ..kvs import KVS

__all__ = [
    "KINDS",
    "CheckBudgetExceeded",
    "HistoryRecorder",
    "Op",
    "Verdict",
    "check",
    "check_key",
    "read_history",
    "record_op",
]

KINDS: Final = ("get", "set", "cas", "incr", "delete")

#: the state of one key: absent, or (canonical JSON of the value, version)
State = tuple[bytes, int] | None


@dataclass(frozen=True)
class Op:
    """One operation as a client saw it.

    Attributes:
        client: who issued it (a process, task or thread name).
        kind: one of ``KINDS``.
        key: the key it touched.
        arg: see the module's table.
        invoke: when it was invoked (any clock shared by every client,
            e.g. ``time.monotonic_ns()``).
        ret: when it returned, or ``None`` when it is pending (unknown outcome).
        result: see the module's table; ignored for a pending operation.
    """

    client: str
    kind: str
    key: str
    arg: Any
    invoke: float
    ret: float | None
    result: Any = None

    @property
    def pending(self) -> bool:
        return self.ret is None

    def __str__(self) -> str:
        end = "…" if self.ret is None else f"{self.ret:.0f}"
        got = "?" if self.ret is None else _show(self.result)
        return f"[{self.invoke:.0f}, {end}] {self.client}: {self.kind}({self.key!r}, {_show(self.arg)}) -> {got}"


def _show(value: Any) -> str:
    text = orjson.dumps(value).decode() if not isinstance(value, bytes) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _canon(value: Any) -> bytes:
    """A hashable form of a JSON value that keeps 1, 1.0 and True apart."""
    return orjson.dumps(value)


def step(state: State, op: Op) -> tuple[bool, State]:
    """Apply ``op`` to ``state`` in the register model.

    Returns whether the operation's recorded result is the one the model
    gives (always true for a pending operation), and the state afterwards.
    """
    check_result = not op.pending
    kind, result = op.kind, op.result
    if kind == "get":
        if not check_result:
            return True, state
        if state is None:
            return result is None, state
        if not isinstance(result, list | tuple) or len(result) != 2:
            return False, state
        return (_canon(result[0]), result[1]) == state, state
    if kind == "set":
        version = 1 if state is None else state[1] + 1
        return (not check_result or result == version), (_canon(op.arg), version)
    if kind == "cas":
        expected, value = op.arg
        matches = state is None if expected == 0 else state is not None and state[1] == expected
        if not matches:
            return (not check_result or result == "conflict"), state
        version = 1 if state is None else state[1] + 1
        return (not check_result or result == version), (_canon(value), version)
    if kind == "incr":
        if state is None:
            current: Any = 0
        else:
            current = orjson.loads(state[0])
            if type(current) is not int:  # bools and floats are not what the workload counts
                return (not check_result or result == "type-error"), state
        number = current + op.arg
        version = 1 if state is None else state[1] + 1
        return (not check_result or (type(result) is int and result == number)), (_canon(number), version)
    if kind == "delete":
        return (not check_result or result is (state is not None)), None
    raise ValueError(f"unknown operation kind {kind!r}")


class CheckBudgetExceeded(Exception):
    """The search explored more states than allowed: no verdict."""


@dataclass
class Verdict:
    """The outcome of :func:`check`.

    Attributes:
        ok: every key's history is linearizable.
        keys: number of keys checked.
        ops: number of operations checked (pending ones included).
        pending: number of pending operations.
        explored: search states visited, over all keys.
        failed: every key whose history is not linearizable.
        key: the first of them, if any.
        history: that key's operations, in invocation order.
        longest: the longest linearizable prefix found for that key (the
            operations in the order the search placed them); the next
            operation that had to follow could not.
    """

    ok: bool
    keys: int = 0
    ops: int = 0
    pending: int = 0
    explored: int = 0
    failed: list[str] = field(default_factory=list)
    key: str | None = None
    history: list[Op] = field(default_factory=list)
    longest: list[Op] = field(default_factory=list)

    def explain(self, limit: int = 40) -> str:
        """A readable account of a failed check (empty when ``ok``)."""
        if self.ok:
            return ""
        lines = [f"key {self.key!r}: no linearization of {len(self.history)} operations"]
        lines.append(f"longest linearizable prefix ({len(self.longest)} operations), ending with:")
        lines += [f"  {op}" for op in self.longest[-10:]]
        placed = set(map(id, self.longest))
        rest = [op for op in self.history if id(op) not in placed and not op.pending]
        lines.append("completed operations that could not be placed after it:")
        lines += [f"  {op}" for op in rest[:limit]]
        return "\n".join(lines)


def check(history: Iterable[Op], *, max_states: int = 5_000_000) -> Verdict:
    """Check a whole history, key by key.

    Args:
        history: operations of every client, in any order.
        max_states: give up (``CheckBudgetExceeded``) after visiting this
            many search states on one key.

    Returns:
        The verdict over every key; ``ok`` is false when one key fails.
    """
    by_key: dict[str, list[Op]] = {}
    for op in history:
        if op.kind not in KINDS:
            raise ValueError(f"unknown operation kind {op.kind!r}")
        by_key.setdefault(op.key, []).append(op)
    verdict = Verdict(ok=True)
    for key in sorted(by_key):
        ops = by_key[key]
        ok, explored, longest = _search(ops, max_states)
        verdict.keys += 1
        verdict.ops += len(ops)
        verdict.pending += sum(op.pending for op in ops)
        verdict.explored += explored
        if not ok:
            verdict.failed.append(key)
            if verdict.ok:
                verdict.ok = False
                verdict.key = key
                verdict.history = sorted(ops, key=lambda op: op.invoke)
                verdict.longest = longest
    return verdict


def check_key(ops: list[Op], *, max_states: int = 5_000_000) -> bool:
    """Whether the operations of one key form a linearizable history."""
    return _search(ops, max_states)[0]


def _search(ops: list[Op], max_states: int) -> tuple[bool, int, list[Op]]:
    """Wing & Gong / Lowe on one key; returns (ok, states explored, longest prefix)."""
    # Events: a call and a return per operation, in time order. At equal
    # times calls come first, so operations that touch are concurrent (never
    # a false alarm). A pending operation returns at infinity.
    events: list[tuple[float, int, int]] = []
    for i, op in enumerate(ops):
        if op.ret is not None and op.ret < op.invoke:
            raise ValueError(f"operation returns before it is invoked: {op}")
        events.append((op.invoke, 0, i))
        events.append((math.inf if op.ret is None else op.ret, 1, i))
    events.sort()
    # A doubly linked list over nodes 1..m between the sentinels 0 and m+1,
    # so that lifting an operation (its call and return nodes) and putting it
    # back are O(1) and exactly reversible.
    m = len(events)
    head, tail = 0, m + 1
    nxt = [*range(1, m + 2), tail]
    prv = [head, *range(0, m + 1)]
    is_call = [False] * (m + 2)
    op_of = [0] * (m + 2)
    match = [0] * (m + 2)
    call_node: dict[int, int] = {}
    for node, (_, ret, i) in enumerate(events, start=1):
        op_of[node] = i
        if ret:
            match[call_node[i]] = node
        else:
            is_call[node] = True
            call_node[i] = node

    def lift(node: int) -> None:
        r = match[node]
        nxt[prv[node]] = nxt[node]
        prv[nxt[node]] = prv[node]
        nxt[prv[r]] = nxt[r]
        prv[nxt[r]] = prv[r]

    def unlift(node: int) -> None:
        r = match[node]
        nxt[prv[r]] = r
        prv[nxt[r]] = r
        nxt[prv[node]] = node
        prv[nxt[node]] = node

    state: State = None
    linearized = 0
    seen: set[tuple[int, State]] = set()
    calls: list[tuple[int, State, int]] = []
    longest: list[int] = []
    explored = 0
    entry = nxt[head]
    while True:
        if entry == tail:
            return True, explored, [ops[op_of[n]] for n, _, _ in calls]
        i = op_of[entry]
        if is_call[entry]:
            ok, after = step(state, ops[i])
            if ok:
                done = linearized | (1 << i)
                if (done, after) not in seen:
                    explored += 1
                    if explored > max_states:
                        raise CheckBudgetExceeded(f"more than {max_states} states for key {ops[0].key!r}")
                    seen.add((done, after))
                    calls.append((entry, state, linearized))
                    if len(calls) > len(longest):
                        longest = [n for n, _, _ in calls]
                    state, linearized = after, done
                    lift(entry)
                    entry = nxt[head]
                    continue
            entry = nxt[entry]
        else:
            # The first return met: every operation before it is a call. A
            # pending one returns at infinity, so every completed operation
            # has been placed: the remaining pending ones need never happen.
            if ops[i].pending:
                return True, explored, [ops[op_of[n]] for n, _, _ in calls]
            if not calls:
                return False, explored, [ops[op_of[n]] for n in longest]
            entry, state, linearized = calls.pop()
            unlift(entry)
            entry = nxt[entry]


# -- recording --------------------------------------------------------------------


class HistoryRecorder:
    """Writes one client's events as JSON lines through ``write``.

    Each event is one ``write`` call of one short line, so several processes
    can share a pipe (writes under ``PIPE_BUF`` bytes are atomic) and a
    client killed mid-operation leaves its invocation without a return: a
    pending operation.

    Args:
        client: the client's name in the history.
        write: called with each line (bytes, newline-terminated).
        clock: the shared clock of every client (default
            ``time.monotonic_ns``, which is system-wide on Linux).
    """

    def __init__(
        self, client: str, write: Callable[[bytes], Any], clock: Callable[[], float] = time.monotonic_ns
    ) -> None:
        self.client = client
        self._write = write
        self._clock = clock
        self._seq = itertools.count()

    def invoke(self, kind: str, key: str, arg: Any) -> str:
        """Record an invocation; returns its id."""
        op_id = f"{self.client}/{next(self._seq)}"
        self._emit({"e": "i", "id": op_id, "c": self.client, "op": kind, "k": key, "a": arg, "t": self._clock()})
        return op_id

    def ok(self, op_id: str, result: Any) -> None:
        """Record a return with its result."""
        self._emit({"e": "r", "id": op_id, "t": self._clock(), "r": result})

    def unknown(self, op_id: str) -> None:
        """Record that the operation failed with an unknown outcome (it stays pending)."""
        self._emit({"e": "u", "id": op_id, "t": self._clock()})

    def _emit(self, event: dict[str, Any]) -> None:
        self._write(orjson.dumps(event) + b"\n")


def read_history(lines: Iterable[bytes | str]) -> list[Op]:
    """Operations from the lines of any number of recorders (any interleaving).

    An invocation without a return, or whose outcome was recorded as
    unknown, is pending. A torn last line (a client killed mid-write) is
    ignored.
    """
    invoked: dict[str, dict[str, Any]] = {}
    returned: dict[str, dict[str, Any]] = {}
    for line in lines:
        if not line.strip():
            continue
        try:
            event = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if event["e"] == "i":
            invoked[event["id"]] = event
        elif event["e"] == "r":
            returned[event["id"]] = event
    ops = []
    for op_id, ev in invoked.items():
        back = returned.get(op_id)
        ops.append(
            Op(
                client=ev["c"],
                kind=ev["op"],
                key=ev["k"],
                arg=ev["a"],
                invoke=ev["t"],
                ret=None if back is None else back["t"],
                result=None if back is None else back["r"],
            )
        )
    return ops


async def record_op(recorder: HistoryRecorder, kvs: KVS, kind: str, key: str, arg: Any = None) -> Any:
    """Run one operation of the model on ``kvs`` and record it.

    A ``StoreError`` (timeout, lost connection: the write may or may not
    have happened) is recorded as unknown and re-raised; any other
    exception is not a result of the model and is re-raised unrecorded.
    """
    op_id = recorder.invoke(kind, key, arg)
    try:
        if kind == "get":
            entry = await kvs.get_entry(key)
            result: Any = None if entry is None else [entry.value, entry.version]
        elif kind == "set":
            result = await kvs.set(key, arg)
        elif kind == "cas":
            try:
                result = await kvs.set(key, arg[1], if_version=arg[0])
            except VersionConflictError:
                result = "conflict"
        elif kind == "incr":
            try:
                result = await kvs.incr(key, arg)
            except ValueTypeError:
                result = "type-error"
        elif kind == "delete":
            result = await kvs.delete(key)
        else:
            raise ValueError(f"unknown operation kind {kind!r}")
    except StoreError:
        recorder.unknown(op_id)
        raise
    recorder.ok(op_id, result)
    return result
