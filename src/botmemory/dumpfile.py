"""The dump format: a whole store as JSON lines, written and read back exactly.

::

    {"format":"botmemory-dump","version":1,"source":"sqlite","time":"2026-11-29T16:30:00.000Z"}
    {"ns":"example","key":"orders/42","version":3,"expires_at":1800000000.5,"modified_at":1799990000.0,"value":{"total":12.5}}
    ...
    {"end":true,"count":1234}

- One header line, one line per entry, one trailer line with the number of
  entries: a file cut anywhere is detected (no trailer, or a broken line).
- Entries cover every namespace: each bot's KVS (dialog memory included),
  the server-wide KVS (``__global__``) and the runtime's private
  ``__rt/...`` namespaces (sessions, links, holds, audit). Only live
  entries are written: what has expired at the dump's start time is left
  out, as every read leaves it out.
- Entries are sorted by namespace, then key, in code point order (the
  order in which ``dump`` writes them). ``load`` requires it: that is how it
  refuses duplicates in one pass without holding every key in memory.
- ``value`` is the stored JSON itself; ``version``, ``expires_at`` (epoch
  seconds or null) and ``modified_at`` are restored exactly by ``load``.
- Locks and leases are not dumped: they are transient.
- A dump of a store that is being written is not one snapshot: each page
  of keys is read as it is at that moment (expiry is judged at the dump's
  start time throughout).

Loading validates the whole file before writing anything (see
:func:`validate`), then writes it into a staging copy and swaps that in:

1. a manifest is written in ``__rt/load/<id>`` (``id``: the first 24 hex
   digits of the file's SHA-256), naming the targets, the options and the
   progress;
2. the entries are written in batches with ``Backend.restore`` into
   staging namespaces ``__rt/load/<id>/<target namespace>``, which nothing
   reads; after each batch the manifest records the last entry written;
3. one ``Backend.replace_namespaces`` call makes every target namespace hold
   its staging copy (with ``--replace``, the target's old rows go; without,
   the targets were empty) and deletes the manifest, atomically.

So the targets change all at once or not at all, whatever interrupts the
load (Ctrl-C, SIGTERM, SIGKILL, a backend failure): until step 3 they hold
exactly what they held before. An interrupted load leaves its staging copy;
``botmemory load FILE --resume`` goes on from the manifest's last entry and
finishes (restoring an entry twice writes the same row), ``botmemory load
--abort [FILE]`` discards it. ``dump`` leaves staging copies out.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import math
import re
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any, Final

import orjson

from .backends.base import PRIVATE_NS_PREFIX, Row
from .cancellation import stop_if_cancelled
from .codec import encode, loads_strict
from .errors import BotMemoryError, InvalidInputError, StoreError
from .expiry import MAX_EXPIRY_MS
from .keys import GLOBAL_NS, validate_key
from .limits import Limits
from .store import Store

__all__ = [
    "FORMAT",
    "GLOBAL_OWNER",
    "STAGING_PREFIX",
    "VERSION",
    "DumpError",
    "LoadPlan",
    "LoadProgress",
    "abort_loads",
    "file_digest",
    "load",
    "namespace_owner",
    "pending_loads",
    "resume_hint",
    "validate",
    "write_dump",
]

FORMAT: Final = "botmemory-dump"
VERSION: Final = 1
#: How ``--bot`` names the server-wide KVS (as in ``botmemory kvs``).
GLOBAL_OWNER: Final = "@global"

PAGE: Final = 500
#: Namespaces of loads in progress: ``__rt/load/<id>`` (the manifest), ``__rt/load/<id>/<target>`` (staging).
STAGING_PREFIX: Final = f"{PRIVATE_NS_PREFIX}load/"
_MANIFEST: Final = "manifest"
_MAX_KEY_BYTES: Final = 65_536
_INT64_MAX: Final = 2**63 - 1

_HEADER_KEYS: Final = frozenset({"format", "version", "source", "time"})
_ENTRY_KEYS: Final = frozenset({"ns", "key", "value", "version", "expires_at", "modified_at"})
_TRAILER_KEYS: Final = frozenset({"end", "count"})

_BOT_ID_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", re.ASCII)
_PRIVATE_SEGMENT_RE: Final = re.compile(r"[a-z][a-z0-9_-]{0,63}", re.ASCII)


class DumpError(InvalidInputError):
    """A dump file is malformed, truncated or does not fit this store; nothing was written."""

    def __init__(self, line: int | None, message: str) -> None:
        super().__init__(message if line is None else f"line {line}: {message}")
        self.line = line


def namespace_owner(ns: str) -> str | None:
    """Whose data a namespace holds: a bot id, ``@global``, or None for store-wide runtime state.

    ``example`` and ``__rt/sessions/example`` belong to bot ``example``;
    ``__global__`` is the server-wide KVS.
    """
    if ns == GLOBAL_NS:
        return GLOBAL_OWNER
    if ns.startswith(PRIVATE_NS_PREFIX):
        last = ns.rsplit("/", 1)[-1]
        return last if _BOT_ID_RE.fullmatch(last) and ns.count("/") >= 2 else None
    return ns


def _valid_namespace(ns: object) -> bool:
    if not isinstance(ns, str):
        return False
    if ns == GLOBAL_NS or _BOT_ID_RE.fullmatch(ns):
        return True
    if not ns.startswith(PRIVATE_NS_PREFIX):
        return False
    *kinds, last = ns[len(PRIVATE_NS_PREFIX) :].split("/")
    if not kinds:
        return bool(_PRIVATE_SEGMENT_RE.fullmatch(last))
    return all(_PRIVATE_SEGMENT_RE.fullmatch(k) for k in kinds) and bool(_BOT_ID_RE.fullmatch(last))


def _selected(ns: str, owners: frozenset[str] | None) -> bool:
    return not ns.startswith(STAGING_PREFIX) and (owners is None or namespace_owner(ns) in owners)


def _rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# -- dump ------------------------------------------------------------------------


@dataclass(slots=True)
class DumpSummary:
    """What a dump wrote."""

    count: int = 0
    namespaces: dict[str, int] = field(default_factory=dict)


async def count_live(store: Store, owners: frozenset[str] | None = None) -> int:
    """Live entries a dump of ``owners`` (None: everything) would write, for a progress bar."""
    return sum([await store.kvs(ns).count() for ns in await store.namespaces() if _selected(ns, owners)])


async def write_dump(
    store: Store,
    out: IO[bytes],
    *,
    owners: frozenset[str] | None = None,
    advance: Callable[[int], None] | None = None,
) -> DumpSummary:
    """Write the live entries of ``store`` to ``out`` in the dump format, streaming.

    Args:
        store: the store to read.
        out: a binary stream.
        owners: bot ids (and ``@global``) to dump; None for every namespace.
        advance: called with the number of entries written after each page.

    Returns:
        The number of entries written, per namespace.

    Raises:
        StoreError: the backend failed, or returned keys out of order.
    """
    now = store.clock.now()  # one instant: entries live at the dump's start are written
    header = {"format": FORMAT, "version": VERSION, "source": store.backend_name, "time": _rfc3339(now)}
    out.write(orjson.dumps(header) + b"\n")
    summary = DumpSummary()
    for ns in sorted(n for n in await store.namespaces() if _selected(n, owners)):
        kvs = store.kvs(ns)
        after: str | None = None
        written = 0
        while True:
            keys = await kvs.scan_keys("", after, PAGE, at=now)
            if not keys:
                break
            if (after is not None and keys[0] <= after) or any(a >= b for a, b in itertools.pairwise(keys)):
                raise StoreError(f"the {store.backend_name} backend listed keys of {ns!r} out of code point order")
            rows = {row.key: row for row in await kvs.rows(keys, at=now)}
            lines = [_entry_line(ns, rows[k]) for k in keys if k in rows]
            out.write(b"".join(lines))
            written += len(lines)
            if advance is not None:
                advance(len(lines))
            if len(keys) < PAGE:
                break
            after = keys[-1]
        if written:
            summary.namespaces[ns] = written
            summary.count += written
    out.write(orjson.dumps({"end": True, "count": summary.count}) + b"\n")
    return summary


def _entry_line(ns: str, row: Row) -> bytes:
    entry = {
        "ns": ns,
        "key": row.key,
        "version": row.version,
        "expires_at": row.expires_at,
        "modified_at": row.modified_at,
        # the stored bytes as they are: numbers and key order stay exact
        "value": orjson.Fragment(row.value),
    }
    return orjson.dumps(entry) + b"\n"


# -- load: validation ------------------------------------------------------------


@dataclass(slots=True)
class LoadPlan:
    """What a valid dump file will write (computed by :func:`validate`)."""

    source: str = ""
    time: str = ""
    entries: int = 0
    #: namespace -> live entries to write (selected by ``--bot``)
    namespaces: dict[str, int] = field(default_factory=dict)
    skipped_expired: int = 0
    skipped_unselected: int = 0
    #: owner -> entries in the file (every owner, selected or not)
    owners: dict[str, int] = field(default_factory=dict)

    @property
    def to_write(self) -> int:
        """Entries the load writes."""
        return sum(self.namespaces.values())




def _parse(raw: bytes, line: int) -> Any:
    # Fast path for lines exactly as dump writes them: orjson reads them, and
    # writing the result back gives the same bytes only if the line had no
    # duplicate keys, no NaN, no odd number forms and no whitespace. Any
    # other line goes through the strict parser for a precise message.
    try:
        fast = orjson.loads(raw)
        if orjson.dumps(fast) == raw.rstrip(b"\n"):
            return fast
    except (orjson.JSONDecodeError, orjson.JSONEncodeError):
        pass
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise DumpError(line, "not valid UTF-8") from None
    try:
        return loads_strict(text)
    except json.JSONDecodeError as exc:
        raise DumpError(line, f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:
        raise DumpError(line, "value nested too deeply") from None
    except ValueError as exc:
        raise DumpError(line, f"not valid JSON ({exc})") from None


def _number(value: object) -> bool:
    return type(value) in (int, float) and math.isfinite(value)  # type: ignore[arg-type]


def _entry(obj: dict[str, Any], line: int, limits: Limits) -> tuple[str, Row]:
    """Check one entry line; the namespace and the row to restore."""
    ns = obj["ns"]
    if not _valid_namespace(ns) or ns.startswith(STAGING_PREFIX):
        raise DumpError(line, f"invalid namespace {ns!r}")
    key = obj["key"]
    try:
        validate_key(key, _MAX_KEY_BYTES)
    except InvalidInputError as exc:
        raise DumpError(line, str(exc)) from None
    version = obj["version"]
    if type(version) is not int or not 1 <= version <= _INT64_MAX:
        raise DumpError(line, f"version must be an integer >= 1, got {version!r:.40}")
    expires = obj["expires_at"]
    if expires is not None and not (_number(expires) and expires > 0):
        raise DumpError(line, f"expires_at must be null or positive epoch seconds, got {expires!r:.40}")
    modified = obj["modified_at"]
    if not (_number(modified) and modified >= 0):
        raise DumpError(line, f"modified_at must be epoch seconds, got {modified!r:.40}")
    try:
        data = encode(obj["value"], limits)
    except BotMemoryError as exc:
        raise DumpError(line, f"value of key {key!r:.80}: {exc}") from None
    return ns, Row(key, data, version, None if expires is None else float(expires), float(modified))


def _lines(stream: IO[bytes], max_line: int) -> Iterator[tuple[int, bytes]]:
    """Numbered lines, each at most ``max_line`` bytes; the last may lack its newline."""
    number = 0
    while True:
        raw = stream.readline(max_line + 1)
        if not raw:
            return
        number += 1
        if len(raw) > max_line:
            raise DumpError(number, f"longer than {max_line} bytes")
        yield number, raw


def _max_line(limits: Limits) -> int:
    # a value, escaped at worst 6x (\uXXXX), plus a long key and the metadata
    return 6 * limits.max_value_bytes + 6 * _MAX_KEY_BYTES + 1024


def read_entries(
    stream: IO[bytes], limits: Limits, now: float, on_header: Callable[[dict[str, Any]], None] | None = None
) -> Iterator[tuple[int, str, Row]]:
    """Every entry of a dump stream, checked line by line: ``(line number, namespace, row)``.

    Raises:
        DumpError: the first problem, with its line number; the iterator stops.
    """
    previous: tuple[str, str] | None = None
    count = 0
    ended_at: int | None = None
    last_line = 0
    max_expiry = now + MAX_EXPIRY_MS / 1000
    for line, raw in _lines(stream, _max_line(limits)):
        last_line = line
        if ended_at is not None:
            if raw.strip():
                raise DumpError(line, f"data after the trailer line {ended_at}")
            continue
        if not raw.strip():
            raise DumpError(line, "empty line")
        obj = _parse(raw, line)
        if not isinstance(obj, dict):
            raise DumpError(line, "not a JSON object")
        keys = frozenset(obj)
        if line == 1:
            if keys != _HEADER_KEYS or obj["format"] != FORMAT:
                raise DumpError(line, f"not a botmemory dump: the first line must be the {FORMAT} header")
            if obj["version"] != VERSION:
                raise DumpError(
                    line, f"unsupported dump format version {obj['version']!r:.20} (this botmemory reads {VERSION})"
                )
            if not isinstance(obj["source"], str) or not isinstance(obj["time"], str):
                raise DumpError(line, "header source and time must be strings")
            if on_header is not None:
                on_header(obj)
            continue
        if keys == _TRAILER_KEYS:
            if obj["end"] is not True or type(obj["count"]) is not int:
                raise DumpError(line, 'malformed trailer: expected {"end": true, "count": N}')
            if obj["count"] != count:
                raise DumpError(
                    line, f"the trailer says {obj['count']} entries, the file has {count}: truncated or edited"
                )
            ended_at = line
            continue
        if keys != _ENTRY_KEYS:
            missing = sorted(_ENTRY_KEYS - keys)
            extra = sorted(keys - _ENTRY_KEYS)
            raise DumpError(line, f"not an entry (missing {missing}, unexpected {extra})")
        ns, row = _entry(obj, line, limits)
        if previous is not None and (ns, row.key) <= previous:
            what = "duplicate entry" if (ns, row.key) == previous else "entries out of order"
            raise DumpError(line, f"{what}: entries must be sorted by namespace, then key (as dump writes them)")
        if row.expires_at is not None and row.expires_at > max_expiry:
            raise DumpError(line, "expires_at is more than 100 years ahead")
        previous = (ns, row.key)
        count += 1
        yield line, ns, row
    if last_line == 0:
        raise DumpError(None, "empty file: no dump header")
    if ended_at is None:
        raise DumpError(last_line, "truncated: the file ends without the trailer line")


def validate(stream: IO[bytes], limits: Limits, now: float, owners: frozenset[str] | None = None) -> LoadPlan:
    """Read a whole dump and check every line; what a load would write.

    Args:
        stream: the dump, positioned at its start.
        limits: the target store's limits (values must fit them).
        now: the target store's time: entries expired by then are skipped.
        owners: bot ids (and ``@global``) to load; None for everything.

    Raises:
        DumpError: malformed, truncated, out of order, a value over the
            limits, or a ``--bot`` that the file holds no data of.
    """
    plan = LoadPlan()

    def header(obj: dict[str, Any]) -> None:
        plan.source, plan.time = obj["source"], obj["time"]

    for _, ns, row in read_entries(stream, limits, now, header):
        plan.entries += 1
        owner = namespace_owner(ns)
        if owner is not None:
            plan.owners[owner] = plan.owners.get(owner, 0) + 1
        if not _selected(ns, owners):
            plan.skipped_unselected += 1
        elif row.expires_at is not None and row.expires_at <= now:
            plan.skipped_expired += 1
        else:
            plan.namespaces[ns] = plan.namespaces.get(ns, 0) + 1
    if owners is not None:
        absent = sorted(o for o in owners if o not in plan.owners)
        if absent:
            raise DumpError(None, f"the dump holds no data of {', '.join(absent)}")
    return plan


# -- load: writing -----------------------------------------------------------------


@dataclass(slots=True)
class LoadProgress:
    """How far a :func:`load` got (the CLI reads it when the load is interrupted)."""

    load_id: str = ""
    total: int = 0
    staged: int = 0
    #: a staging copy exists in the store (resume or abort it)
    staging: bool = False
    #: the staging copy was swapped in: the load is complete
    done: bool = False


def file_digest(stream: IO[bytes]) -> str:
    """The SHA-256 of a dump stream (read from its start; left at its start)."""
    stream.seek(0)
    digest = hashlib.sha256()
    while chunk := stream.read(1 << 20):
        digest.update(chunk)
    stream.seek(0)
    return digest.hexdigest()


def _manifest_ns(load_id: str) -> str:
    return f"{STAGING_PREFIX}{load_id}"


def _staging_ns(load_id: str, target: str) -> str:
    return f"{STAGING_PREFIX}{load_id}/{target}"


def resume_hint(progress: LoadProgress) -> str:
    """What to do about an interrupted load, for its error message."""
    return (
        f"the store is unchanged; {progress.staged} of {progress.total} entries are staged: "
        "`botmemory load FILE --resume` finishes the load, `botmemory load --abort` discards the staged copy"
    )


async def pending_loads(store: Store) -> list[dict[str, Any]]:
    """The manifests of the loads staged in ``store`` and not swapped in (interrupted ones, or running)."""
    found = []
    for ns in await store.namespaces():
        if ns.startswith(STAGING_PREFIX) and "/" not in ns[len(STAGING_PREFIX) :]:
            manifest = await store.private_kvs(ns).get(_MANIFEST)
            if isinstance(manifest, dict):
                found.append({**manifest, "id": ns[len(STAGING_PREFIX) :]})
    return found


async def abort_loads(store: Store, digest: str | None = None) -> int:
    """Discard the staging copies of interrupted loads (of the file with SHA-256 ``digest``, or all).

    The targets are not touched: they never saw the staged entries.

    Returns:
        How many loads were discarded.
    """
    names = [ns for ns in await store.namespaces() if ns.startswith(STAGING_PREFIX)]
    ids = {ns[len(STAGING_PREFIX) :].split("/", 1)[0] for ns in names}
    if digest is not None:
        ids &= {digest[:24]}
    doomed = {ns: None for ns in names if ns[len(STAGING_PREFIX) :].split("/", 1)[0] in ids}
    if doomed:
        await store.replace_namespaces(doomed)
    return len(ids)


async def _uninterrupted(step: Awaitable[None]) -> None:
    """Run the swap to its end even if the caller is cancelled (Ctrl-C, SIGTERM) meanwhile.

    The swap is one atomic backend call, short next to the load: stopping
    the wait halfway would only leave the caller unsure whether it happened.
    """
    task = asyncio.ensure_future(step)
    while True:
        try:
            await asyncio.shield(task)
            return
        except asyncio.CancelledError:
            if task.done():
                task.result()  # the swap itself failed or was cancelled: say so
                return
            continue


async def _occupied(store: Store, targets: Sequence[str]) -> list[str]:
    return [ns for ns in targets if await store.kvs(ns).count() > 0]


def _occupied_error(occupied: Sequence[str], extra: str = "") -> DumpError:
    shown = ", ".join(repr(ns) for ns in occupied[:5]) + (" …" if len(occupied) > 5 else "")
    return DumpError(
        None,
        f"the store already holds data in {len(occupied)} namespace(s) to load ({shown}); use --replace{extra}",
    )


async def load(
    store: Store,
    stream: IO[bytes],
    plan: LoadPlan,
    *,
    owners: frozenset[str] | None = None,
    replace: bool = False,
    batch: int = PAGE,
    advance: Callable[[int], None] | None = None,
    resume: bool = False,
    progress: LoadProgress | None = None,
) -> None:
    """Write a validated dump into ``store``: all or nothing, whatever interrupts it.

    Refuses (``DumpError``, nothing written) when a namespace to be written
    already holds live entries, unless ``replace``: then its old entries are
    replaced. The entries are staged, then swapped in at once (see the module
    docstring); an interrupted load leaves the targets as they were and its
    staging copy in place, for ``resume=True`` (same file, same options) or
    :func:`abort_loads`.

    Args:
        store: the target store.
        stream: the same dump :func:`validate` checked, at its start.
        plan: what :func:`validate` returned.
        owners: the same selection given to :func:`validate`.
        replace: replace the target namespaces' contents.
        batch: rows per ``Backend.restore`` call.
        advance: called with the number of entries staged after each batch.
        resume: finish an interrupted load of this file instead of starting one.
        progress: filled in as the load goes (what is staged, whether it is done).

    Raises:
        DumpError: targets hold data (without ``replace``), an interrupted
            load of this file is staged (without ``resume``) or there is
            none to resume, or the options differ from the interrupted load's.
        StoreError: the backend failed; the targets are unchanged.
    """
    progress = progress if progress is not None else LoadProgress()
    digest = file_digest(stream)
    load_id = progress.load_id = digest[:24]
    progress.total = plan.to_write
    manifest_kvs = store.private_kvs(_manifest_ns(load_id))
    selection = sorted(owners) if owners is not None else None
    manifest = await manifest_kvs.get(_MANIFEST)
    if isinstance(manifest, dict):
        progress.staging = True
        progress.staged = int(manifest.get("staged", 0))
        if not resume:
            raise DumpError(None, f"an interrupted load of this file is staged in the store: {resume_hint(progress)}")
        if manifest.get("owners") != selection or manifest.get("replace") != replace:
            bots = " ".join(f"--bot {b}" for b in manifest.get("owners") or ()) or "no --bot"
            flag = "--replace" if manifest.get("replace") else "no --replace"
            raise DumpError(None, f"resume with the options of the interrupted load: {bots}, {flag}")
    elif resume:
        raise DumpError(None, "no interrupted load of this file in this store: nothing to resume")
    else:
        manifest = None
    targets = list(plan.namespaces)
    if not replace:
        occupied = await _occupied(store, targets)
        if occupied:
            raise _occupied_error(occupied)
    if manifest is None:
        manifest = {
            "file_sha256": digest,
            "owners": selection,
            "replace": replace,
            "targets": targets,
            "total": plan.to_write,
            "started": store.clock.now(),
            "staged": 0,
            "position": None,
        }
        await manifest_kvs.set(_MANIFEST, manifest)
        progress.staging = True
    position = tuple(manifest["position"]) if isinstance(manifest.get("position"), list) else None
    staged = progress.staged = int(manifest.get("staged", 0)) if position is not None else 0
    if advance is not None and staged:
        advance(staged)
    now = store.clock.now()
    pending: list[Row] = []
    pending_ns: str | None = None

    async def flush() -> None:
        nonlocal staged
        if pending_ns is None or not pending:
            return
        await store.restore(_staging_ns(load_id, pending_ns), pending)
        staged += len(pending)
        await manifest_kvs.set(_MANIFEST, {**manifest, "staged": staged, "position": [pending_ns, pending[-1].key]})
        progress.staged = staged
        if advance is not None:
            advance(len(pending))
        stop_if_cancelled()

    for _, ns, row in read_entries(stream, store.limits, now):
        if ns not in plan.namespaces or (row.expires_at is not None and row.expires_at <= now):
            continue
        if position is not None and (ns, row.key) <= position:
            continue  # staged before the interruption
        if ns != pending_ns or len(pending) >= batch:
            await flush()
            pending = []
            pending_ns = ns
        pending.append(row)
    await flush()
    stop_if_cancelled()  # the last chance to stop: after this, the swap runs to its end
    if not replace:
        occupied = await _occupied(store, targets)  # written meanwhile: the swap would overwrite it
        if occupied:
            raise _occupied_error(occupied, f"; {resume_hint(progress)}")
    moves: dict[str, str | None] = {target: _staging_ns(load_id, target) for target in targets}
    moves[_manifest_ns(load_id)] = None
    await _uninterrupted(store.replace_namespaces(moves))
    progress.done = True
    progress.staging = False


def select_owners(bots: Sequence[str] | None) -> frozenset[str] | None:
    """The ``--bot`` values as a selection (None: everything); ``@global`` is the server-wide KVS."""
    if not bots:
        return None
    for bot in bots:
        if bot != GLOBAL_OWNER and not _BOT_ID_RE.fullmatch(bot):
            raise InvalidInputError(
                f"invalid bot id {bot!r}: must match [A-Za-z0-9][A-Za-z0-9_.-]{{0,63}} or be {GLOBAL_OWNER}"
            )
    return frozenset(bots)
