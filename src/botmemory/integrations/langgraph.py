"""LangGraph: botmemory as a graph's checkpointer and long-term store.

``BotMemorySaver(store, bot_id="agent")`` is a ``BaseCheckpointSaver``
(``graph = builder.compile(checkpointer=saver)``) and
``BotMemoryStore(store, bot_id="agent", ttl=TTLConfig(...))`` a
``BaseStore`` (``builder.compile(store=memory_store)``), over any botmemory
backend. Both take an async ``botmemory.Store`` (use the async methods, or
the blocking ones from another thread than the store's event loop, as with
LangGraph's own async savers) or a ``SyncStore`` from ``botmemory.open_sync``
(every method, from any thread).

Threads are conversations. A thread's checkpoints, channel values and
pending writes are KVS keys under the conversation scope of the thread id
(``storage/conversation/<thread id>/langgraph/...``). A checkpoint put with
``config["configurable"]["user_id"]`` (``user_id_key``) links the thread to
that user (``bot.users.link_conversation``), as can any code; then
``bot.users.export`` lists and ``bot.users.forget`` erases the thread's
checkpoints with the rest of the user's data, and a checkpoint written while
the user is being forgotten is undone by botmemory's erasure guard. Thread
ids that botmemory refuses as conversation ids (empty, surrounding spaces,
control characters, very long) are kept under ``langgraph/threads/`` instead,
outside any user's reach.

Store items whose namespace starts with one of ``user_namespaces`` followed
by a user id (``("memories", user_id, ...)`` for ``[("memories",)]``) are
KVS keys in that user's scope (``storage/users/<user id>/langgraph/store/...``),
so export and forget cover them too; other items live under
``langgraph/store/``. Namespace labels and keys are percent-encoded, so
anything LangGraph accepts (empty keys, spaces, ``*``) is stored.
"""

from __future__ import annotations

import asyncio
import base64
import random
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Coroutine, Iterable, Iterator, Sequence
from contextlib import suppress
from datetime import UTC, datetime
from typing import Any, Final, TypeVar, cast

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_checkpoint_id,
    get_checkpoint_metadata,
)
from langgraph.checkpoint.serde.base import SerializerProtocol
from langgraph.store.base import (
    BaseStore,
    GetOp,
    InvalidNamespaceError,
    Item,
    ListNamespacesOp,
    MatchCondition,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
    TTLConfig,
)

from ..errors import InvalidInputError, InvalidKeyError
from ..kvs import KVS
from ..store import Bot, Store
from ..sync import SyncStore
from .keyparts import HASH_MARK, decode, encode, hashed, part

__all__ = ["BotMemorySaver", "BotMemoryStore"]

T = TypeVar("T")

_PAGE: Final = 200
_USERS_PREFIX: Final = "storage/users/"
_CONVERSATION_PREFIX: Final = "storage/conversation/"
_THREADS_PREFIX: Final = "langgraph/threads/"
_CHECKPOINTS_DIR: Final = "/c/"
_LATEST: Final = "/latest"
# room left in a key after a thread's prefix (namespace, checkpoint id, task id, index)
_THREAD_KEY_ROOM: Final = 330


# -- running the async implementation for blocking callers ---------------------------
class _Bridge:
    """One copy of the logic (async); blocking twins run it on the store's loop."""

    def __init__(self, store: Store | SyncStore, owner: str) -> None:
        self.owner = owner
        self.sync: SyncStore | None
        if isinstance(store, SyncStore):
            self.sync, self.store = store, store.async_store
        elif isinstance(store, Store):
            self.sync, self.store = None, store
        else:
            raise InvalidInputError(
                f"{owner} needs a botmemory Store (botmemory.open) or SyncStore (botmemory.open_sync)"
            )
        # An async store belongs to the loop that uses it (PostgreSQL and Redis pools do).
        self.loop: asyncio.AbstractEventLoop | None = None
        with suppress(RuntimeError):
            self.loop = asyncio.get_running_loop()

    async def run_async(self, coro: Coroutine[Any, Any, T]) -> T:
        if self.sync is None:
            self.loop = asyncio.get_running_loop()
            return await coro
        return await asyncio.to_thread(self.sync.run, coro)

    def run_sync(self, coro: Coroutine[Any, Any, T]) -> T:
        if self.sync is not None:
            return self.sync.run(coro)
        loop = self.loop
        running: asyncio.AbstractEventLoop | None = None
        with suppress(RuntimeError):
            running = asyncio.get_running_loop()
        if loop is None or loop.is_closed() or not loop.is_running():
            coro.close()
            raise InvalidInputError(
                f"blocking calls to {self.owner} over an async Store need its event loop running in another "
                "thread; open the store with botmemory.open_sync() for blocking use, or use the async methods"
            )
        if running is loop:
            coro.close()
            raise InvalidInputError(
                f"blocking calls to {self.owner} are only allowed from another thread than the store's event "
                "loop; from inside it use the async methods (await saver.aget_tuple(...), graph.ainvoke(...))"
            )
        return asyncio.run_coroutine_threadsafe(coro, loop).result()


async def _collect(items: AsyncIterator[T]) -> list[T]:
    return [item async for item in items]


# -- values ----------------------------------------------------------------------------
def _pack(typed: tuple[str, bytes]) -> list[str]:
    kind, data = typed
    return [kind, base64.b64encode(data).decode("ascii")]


def _unpack(packed: Any) -> tuple[str, bytes]:
    kind, data = packed
    return str(kind), base64.b64decode(data)


def _invert(checkpoint_id: str) -> str:
    """A key part whose code point order is the reverse of the ids' order (newest first).

    The id's UTF-8 bytes in hex with every digit ``d`` replaced by ``f - d``,
    then ``~`` (after every hex digit), so a longer id comes before its prefix.
    """
    data = checkpoint_id.encode("utf-8", "surrogatepass")
    if len(data) > 64:
        raise InvalidKeyError(f"checkpoint ids longer than 64 bytes are not supported, got {checkpoint_id[:80]!r}")
    return data.hex().translate(_INVERT) + "~"


def _uninvert(part_: str) -> str:
    return bytes.fromhex(part_[:-1].translate(_INVERT)).decode("utf-8", "surrogatepass")


_INVERT: Final = str.maketrans("0123456789abcdef", "fedcba9876543210")


def _common_prefix(texts: list[str]) -> str:
    first, last = min(texts), max(texts)
    n = 0
    while n < min(len(first), len(last)) and first[n] == last[n]:
        n += 1
    return first[:n]


def _config(thread_id: str, checkpoint_ns: str, checkpoint_id: str) -> RunnableConfig:
    return {"configurable": {"thread_id": thread_id, "checkpoint_ns": checkpoint_ns, "checkpoint_id": checkpoint_id}}


def _version_part(version: str | int | float) -> str:
    # type-tagged, so an int 1 and a str "1" never share a blob
    tag = "s" if isinstance(version, str) else ("i" if isinstance(version, int) else "f")
    return part(tag + (version if isinstance(version, str) else repr(version)))


class BotMemorySaver(BaseCheckpointSaver[str]):
    """A LangGraph checkpointer over one bot of a botmemory store.

    Args:
        store: a ``botmemory.Store`` or a ``SyncStore`` (``botmemory.open_sync``).
        bot_id: the botmemory bot whose memory holds the threads.
        serde: LangGraph serializer (default: LangGraph's ``JsonPlusSerializer``).
        user_id_key: the ``configurable`` (or ``metadata``) key naming the
            user of a thread; a put with it links the thread to that user.
            ``None`` links nothing (link with ``bot.users.link_conversation``).

    Raises:
        InvalidInputError: ``store`` is not a botmemory store.
        InvalidKeyError: ``bot_id`` is invalid.
    """

    def __init__(
        self,
        store: Store | SyncStore,
        *,
        bot_id: str,
        serde: SerializerProtocol | None = None,
        user_id_key: str | None = "user_id",
    ) -> None:
        super().__init__(serde=serde)
        self._bridge = _Bridge(store, "BotMemorySaver")
        self.bot: Bot = self._bridge.store.bot(bot_id)
        self.user_id_key = user_id_key
        self._max_key = self._bridge.store.limits.max_key_bytes
        self._chunk = max(1024, self._bridge.store.limits.max_value_bytes - 4096)
        self._prefixes: dict[str, str] = {}
        self._linked: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._linked_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<BotMemorySaver bot={self.bot.id!r}>"

    @property
    def kvs(self) -> KVS:
        return self.bot.kvs

    # -- key layout -------------------------------------------------------------------
    def thread_prefix(self, thread_id: str) -> str:
        """The KVS prefix of everything the saver keeps for ``thread_id``."""
        tid = str(thread_id)
        cached = self._prefixes.get(tid)
        if cached is not None:
            return cached
        prefix = _THREADS_PREFIX + part(tid) + "/"
        with suppress(InvalidKeyError):
            scoped = self.bot.memory.conversation(tid).prefix + "langgraph/"
            if len(scoped.encode("utf-8")) <= self._max_key - _THREAD_KEY_ROOM:
                prefix = scoped
        if len(self._prefixes) >= 10_000:  # a bound, not an LRU: recomputing is cheap
            self._prefixes.clear()
        self._prefixes[tid] = prefix
        return prefix

    def _ns_prefix(self, thread_id: str, checkpoint_ns: str) -> str:
        return self.thread_prefix(thread_id) + "=" + (part(checkpoint_ns) if checkpoint_ns else "")

    def _checkpoint_key(self, ns_prefix: str, checkpoint_id: str) -> str:
        return ns_prefix + _CHECKPOINTS_DIR + _invert(checkpoint_id)

    @staticmethod
    def _blob_key(ns_prefix: str, channel: str, version: str | int | float) -> str:
        return ns_prefix + "/b/" + part(channel) + "/" + _version_part(version)

    @staticmethod
    def _writes_prefix(ns_prefix: str, checkpoint_id: str) -> str:
        return ns_prefix + "/w/" + _invert(checkpoint_id) + "/"

    # -- big values: split over several keys --------------------------------------------
    def _chunked(self, key: str, packed: list[str], extra: dict[str, Any]) -> dict[str, Any]:
        kind, data = packed
        if len(data) <= self._chunk:
            return {key: {**extra, "t": kind, "b": data}}
        pieces = [data[i : i + self._chunk] for i in range(0, len(data), self._chunk)]
        out: dict[str, Any] = {key: {**extra, "t": kind, "b": pieces[0], "parts": len(pieces)}}
        for i, piece in enumerate(pieces[1:], 1):
            out[f"{key}/{i}"] = piece
        return out

    async def _join(self, found: dict[str, Any]) -> dict[str, tuple[str, bytes]]:
        """Typed payloads of the stored values in ``found`` (fetching the other parts of split ones)."""
        found = {key: v for key, v in found.items() if isinstance(v, dict) and isinstance(v.get("b"), str)}
        more = [f"{key}/{i}" for key, v in found.items() for i in range(1, int(v.get("parts", 1)))]
        rest = await self.kvs.get_many(more) if more else {}
        out: dict[str, tuple[str, bytes]] = {}
        for key, v in found.items():
            pieces = [v["b"], *(rest.get(f"{key}/{i}") for i in range(1, int(v.get("parts", 1))))]
            if any(not isinstance(p, str) for p in pieces):
                continue  # a part expired or was erased meanwhile: the value is gone
            out[key] = (v["t"], base64.b64decode("".join(pieces)))
        return out

    # -- users ------------------------------------------------------------------------------
    async def _link(self, config: RunnableConfig, thread_id: str, new_thread: bool) -> None:
        if self.user_id_key is None:
            return
        user = (config.get("configurable") or {}).get(self.user_id_key)
        if user is None:
            user = (config.get("metadata") or {}).get(self.user_id_key)
        if not isinstance(user, str) or not self.thread_prefix(thread_id).startswith(_CONVERSATION_PREFIX):
            return
        pair = (user, thread_id)
        with self._linked_lock:
            known = pair in self._linked
        # Relinked whenever a thread starts afresh: forget() removes links, and a
        # thread that starts again after it must belong to the user again.
        if known and not new_thread:
            return
        with suppress(InvalidKeyError):  # a user id botmemory refuses links nothing
            await self.bot.users.link_conversation(user, thread_id)
            with self._linked_lock:
                self._linked[pair] = None
                while len(self._linked) > 10_000:
                    self._linked.popitem(last=False)

    # -- async API -----------------------------------------------------------------------------
    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Store a checkpoint, its new channel values and its metadata (one all-or-nothing write)."""
        return await self._bridge.run_async(self._put(config, checkpoint, metadata, new_versions))

    async def _put(
        self, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata, versions: ChannelVersions
    ) -> RunnableConfig:
        conf = config["configurable"]
        thread_id, checkpoint_ns = str(conf["thread_id"]), str(conf.get("checkpoint_ns", ""))
        parent = conf.get("checkpoint_id")
        ns_prefix = self._ns_prefix(thread_id, checkpoint_ns)
        copy: dict[str, Any] = dict(checkpoint)
        values: dict[str, Any] = copy.pop("channel_values", {})
        items: dict[str, Any] = {}
        for channel, version in versions.items():
            typed = self.serde.dumps_typed(values[channel]) if channel in values else ("empty", b"")
            items.update(self._chunked(self._blob_key(ns_prefix, channel, version), _pack(typed), {}))
        record = {
            "thread_id": thread_id,
            "checkpoint_ns": checkpoint_ns,
            "checkpoint_id": checkpoint["id"],
            "parent_id": parent,
            "metadata": _pack(self.serde.dumps_typed(get_checkpoint_metadata(config, metadata))),
        }
        key = self._checkpoint_key(ns_prefix, checkpoint["id"])
        stored = self._chunked(key, _pack(self.serde.dumps_typed(copy)), record)
        items.update(stored)
        # the thread's latest checkpoint, written with it: get_tuple without an id reads one key
        items[ns_prefix + _LATEST] = stored[key] if len(stored) == 1 else {"ref": key}
        await self.kvs.set_many(items)
        await self._link(config, thread_id, parent is None)
        return _config(thread_id, checkpoint_ns, checkpoint["id"])

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Store a task's pending writes for a checkpoint (the same task and index again replaces them)."""
        await self._bridge.run_async(self._put_writes(config, writes, task_id, task_path))

    async def _put_writes(
        self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str
    ) -> None:
        conf = config["configurable"]
        thread_id, checkpoint_ns = str(conf["thread_id"]), str(conf.get("checkpoint_ns", ""))
        prefix = self._writes_prefix(self._ns_prefix(thread_id, checkpoint_ns), conf["checkpoint_id"])
        items: dict[str, Any] = {}
        for idx, (channel, value) in enumerate(writes):
            index = WRITES_IDX_MAP.get(channel, idx)
            extra = {"task_id": task_id, "channel": channel, "idx": index, "path": task_path}
            key = f"{prefix}{part(task_id)}/{index}"
            items.update(self._chunked(key, _pack(self.serde.dumps_typed(value)), extra))
        if items:
            await self.kvs.set_many(items)

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """The checkpoint ``config`` names, or the thread's latest one when it names none."""
        return await self._bridge.run_async(self._get_tuple(config))

    async def _get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        conf = config["configurable"]
        ns_prefix = self._ns_prefix(str(conf["thread_id"]), str(conf.get("checkpoint_ns", "")))
        checkpoint_id = get_checkpoint_id(config)
        if checkpoint_id:
            key = self._checkpoint_key(ns_prefix, checkpoint_id)
            record = await self.kvs.get(key)
        else:
            key = ns_prefix + _LATEST
            record = await self.kvs.get(key)
            if isinstance(record, dict) and "ref" in record:  # a split checkpoint: follow the reference
                key = record["ref"]
                record = await self.kvs.get(key)
            if isinstance(record, dict):
                key = self._checkpoint_key(ns_prefix, record["checkpoint_id"])
        if not isinstance(record, dict):
            return None
        tuples = await self._tuples({key: record})
        return tuples[0] if tuples else None

    async def _reset_latest(self, ns_prefix: str) -> None:
        """Point the namespace's latest key at its newest remaining checkpoint (after deletions)."""
        newest = [k async for k in self.kvs.keys(ns_prefix + _CHECKPOINTS_DIR, limit=1)]
        record = await self.kvs.get(newest[0]) if newest else None
        if isinstance(record, dict):
            await self.kvs.set(ns_prefix + _LATEST, {"ref": newest[0]} if "parts" in record else record)
        else:
            await self.kvs.delete(ns_prefix + _LATEST)

    async def _tuples(self, records: dict[str, Any]) -> list[CheckpointTuple]:
        """Checkpoint tuples of the stored records (in the order given), with values and writes.

        Three round trips whatever the number of records: the writes' keys
        (one scan), then their values and every channel value (one read),
        then the other parts of split values, if any.
        """
        payloads = await self._join(records)
        checkpoints = {key: self.serde.loads_typed(payloads[key]) for key in records if key in payloads}
        blob_keys: dict[str, list[tuple[str, str]]] = {}
        writes_prefixes: dict[str, str] = {}
        for key, checkpoint in checkpoints.items():
            ns_prefix = key.rpartition(_CHECKPOINTS_DIR)[0]
            blob_keys[key] = [
                (channel, self._blob_key(ns_prefix, channel, version))
                for channel, version in checkpoint["channel_versions"].items()
            ]
            writes_prefixes[key] = self._writes_prefix(ns_prefix, records[key]["checkpoint_id"])
        write_keys = await self._write_keys(list(writes_prefixes.values()))
        wanted = list(dict.fromkeys(k for pairs in blob_keys.values() for _, k in pairs))
        found = await self.kvs.get_many(wanted + write_keys) if wanted or write_keys else {}
        values = await self._join(found)
        out: list[CheckpointTuple] = []
        for key, checkpoint in checkpoints.items():
            record = records[key]
            channel_values = {}
            for channel, blob_key in blob_keys[key]:
                typed = values.get(blob_key)
                if typed is not None and typed[0] != "empty":
                    channel_values[channel] = self.serde.loads_typed(typed)
            prefix = writes_prefixes[key]
            stored = [(found[k], values[k]) for k in write_keys if k.startswith(prefix) and k in values]
            # the order live execution applies them in (langgraph's writes_sort_key)
            stored.sort(key=lambda item: (item[0]["path"], item[0]["task_id"], item[0]["idx"]))
            thread_id, checkpoint_ns = record["thread_id"], record["checkpoint_ns"]
            parent_id = record.get("parent_id")
            out.append(
                CheckpointTuple(
                    config=_config(thread_id, checkpoint_ns, record["checkpoint_id"]),
                    checkpoint=cast(Checkpoint, {**checkpoint, "channel_values": channel_values}),
                    metadata=self.serde.loads_typed(_unpack(record["metadata"])),
                    parent_config=_config(thread_id, checkpoint_ns, parent_id) if parent_id else None,
                    pending_writes=[(v["task_id"], v["channel"], self.serde.loads_typed(t)) for v, t in stored],
                )
            )
        return out

    async def _write_keys(self, prefixes: list[str]) -> list[str]:
        """Keys of the pending writes under ``prefixes`` (one scan of the namespace's writes for several)."""
        if not prefixes:
            return []
        scan = prefixes[0] if len(prefixes) == 1 else _common_prefix(prefixes)
        wanted = set(prefixes)
        out = []
        async for k in self.kvs.keys(scan):
            cut = k.rfind("/", 0, k.rfind("/")) + 1  # writes are <prefix><task>/<idx>; parts add "/<n>"
            if k[:cut] in wanted:
                out.append(k)
        return out

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,  # noqa: A002 - LangGraph's parameter name
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        """Checkpoints, newest first, of one thread (and namespace) or of every thread when ``config`` is None.

        Args:
            config: ``thread_id``, optionally ``checkpoint_ns`` and ``checkpoint_id``.
            filter: metadata that the checkpoints must have (equality per key).
            before: only checkpoints older than this one.
            limit: at most this many.
        """
        for item in await self._bridge.run_async(self._list(config, filter, before, limit)):
            yield item

    async def _checkpoint_keys(self, config: RunnableConfig | None, limit: int | None = None) -> list[tuple[str, str]]:
        """``(checkpoint id, key)`` of every checkpoint ``config`` selects, newest first (``limit``: at most)."""
        scans: list[str] = []
        conf = (config or {}).get("configurable") or {}
        if "thread_id" in conf:
            thread_prefix = self.thread_prefix(str(conf["thread_id"]))
            ns = conf.get("checkpoint_ns")
            if ns is None:
                scans.append(thread_prefix)
            else:
                scans.append(self._ns_prefix(str(conf["thread_id"]), str(ns)) + _CHECKPOINTS_DIR)
        else:
            scans += [_CONVERSATION_PREFIX, _THREADS_PREFIX]
        found: list[tuple[str, str]] = []
        for scan in scans:
            # one namespace's checkpoint keys come newest first: a limit can stop the scan early
            async for key in self.kvs.keys(scan, limit=limit if scan.endswith(_CHECKPOINTS_DIR) else None):
                head, sep, tail = key.rpartition(_CHECKPOINTS_DIR)
                if not sep or "/" in tail or not tail.endswith("~") or "/=" not in head:
                    continue
                if scan == _CONVERSATION_PREFIX and "/langgraph/=" not in head:
                    continue
                with suppress(ValueError):
                    found.append((_uninvert(tail), key))
        found.sort(key=lambda pair: pair[0], reverse=True)
        return found

    async def _list(
        self,
        config: RunnableConfig | None,
        filter: dict[str, Any] | None,  # noqa: A002
        before: RunnableConfig | None,
        limit: int | None,
    ) -> list[CheckpointTuple]:
        wanted_id = get_checkpoint_id(config) if config else None
        before_id = get_checkpoint_id(before) if before else None
        narrow = limit if not filter and before_id is None and wanted_id is None else None
        keys = [
            key
            for cid, key in await self._checkpoint_keys(config, narrow)
            if (wanted_id is None or cid == wanted_id) and (before_id is None or cid < before_id)
        ]
        out: list[CheckpointTuple] = []
        for start in range(0, len(keys), _PAGE):
            if limit is not None and len(out) >= limit:
                break
            page = keys[start : start + _PAGE]
            found = await self.kvs.get_many(page)
            records = {}
            for key in page:
                record = found.get(key)
                if not isinstance(record, dict):
                    continue
                if filter:
                    metadata = self.serde.loads_typed(_unpack(record["metadata"]))
                    if not all(metadata.get(k) == v for k, v in filter.items()):
                        continue
                records[key] = record
                if limit is not None and len(out) + len(records) >= limit:
                    break
            out += await self._tuples(records)
        return out if limit is None else out[:limit]

    async def adelete_thread(self, thread_id: str) -> None:
        """Delete every checkpoint and write of the thread (its conversation's variables stay)."""
        await self._bridge.run_async(self.kvs.delete_prefix(self.thread_prefix(str(thread_id))))

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Delete the checkpoints (and their writes) whose metadata ``run_id`` is one of ``run_ids``.

        Reads the metadata of every checkpoint of the bot: a maintenance call, not one for each turn.
        """
        await self._bridge.run_async(self._delete_for_runs({str(r) for r in run_ids}))

    async def _delete_for_runs(self, run_ids: set[str]) -> None:
        if not run_ids:
            return
        keys = [key for _, key in await self._checkpoint_keys(None)]
        touched: set[str] = set()
        for start in range(0, len(keys), _PAGE):
            found = await self.kvs.get_many(keys[start : start + _PAGE])
            for key, record in found.items():
                if not isinstance(record, dict):
                    continue
                metadata = self.serde.loads_typed(_unpack(record["metadata"]))
                if metadata.get("run_id") in run_ids:
                    ns_prefix = key.rpartition(_CHECKPOINTS_DIR)[0]
                    await self.kvs.delete_prefix(self._writes_prefix(ns_prefix, record["checkpoint_id"]))
                    await self.kvs.delete_prefix(key)  # the record and the other parts of a split one
                    touched.add(ns_prefix)
        for ns_prefix in sorted(touched):
            await self._reset_latest(ns_prefix)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy every checkpoint, value and write of one thread to another (whose own are replaced)."""
        await self._bridge.run_async(self._copy(str(source_thread_id), str(target_thread_id)))

    async def _copy(self, source: str, target: str) -> None:
        src, dst = self.thread_prefix(source), self.thread_prefix(target)
        if src == dst:
            return
        await self.kvs.delete_prefix(dst)
        keys = [k async for k in self.kvs.keys(src)]
        users: set[str] = set()
        for start in range(0, len(keys), _PAGE):
            found = await self.kvs.get_many(keys[start : start + _PAGE])
            items: dict[str, Any] = {}
            for key, value in found.items():
                if isinstance(value, dict) and isinstance(value.get("ref"), str):  # a latest key
                    value = {"ref": dst + value["ref"][len(src) :]}
                elif isinstance(value, dict) and value.get("thread_id") == source:
                    value = {**value, "thread_id": target}
                    if self.user_id_key is not None:
                        metadata = self.serde.loads_typed(_unpack(value["metadata"]))
                        if isinstance(metadata.get(self.user_id_key), str):
                            users.add(metadata[self.user_id_key])
                items[dst + key[len(src) :]] = value
            if items:
                await self.kvs.set_many(items)
        for user in sorted(users):
            await self._link({"configurable": {self.user_id_key or "": user}}, target, True)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """Keep only each namespace's latest checkpoint (``"keep_latest"``), or delete the threads (``"delete"``).

        Raises:
            InvalidInputError: an unknown strategy.
        """
        if strategy not in ("keep_latest", "delete"):
            raise InvalidInputError(f"unknown prune strategy {strategy!r}: expected 'keep_latest' or 'delete'")
        await self._bridge.run_async(self._prune([str(t) for t in thread_ids], strategy))

    async def _prune(self, thread_ids: list[str], strategy: str) -> None:
        for thread_id in thread_ids:
            prefix = self.thread_prefix(thread_id)
            if strategy == "delete":
                await self.kvs.delete_prefix(prefix)
                continue
            latest: dict[str, str] = {}  # namespace prefix -> key of its latest checkpoint
            keys = [k async for k in self.kvs.keys(prefix)]
            for key in keys:  # newest first within a namespace
                head, sep, tail = key.rpartition(_CHECKPOINTS_DIR)
                if sep and "/" not in tail and tail.endswith("~"):
                    latest.setdefault(head, key)
            keep: set[str] = set(latest.values()) | {head + _LATEST for head in latest}
            records = await self.kvs.get_many(list(latest.values()))
            for key, record in records.items():
                if not isinstance(record, dict):
                    continue
                checkpoint = self.serde.loads_typed((await self._join({key: record}))[key])
                ns_prefix = key.rpartition(_CHECKPOINTS_DIR)[0]
                keep.update(self._blob_key(ns_prefix, c, v) for c, v in checkpoint["channel_versions"].items())
                keep.add(self._writes_prefix(ns_prefix, record["checkpoint_id"]))
            doomed = [
                k
                for k in keys
                if k not in keep and k.rsplit("/", 1)[0] not in keep and not any(
                    k.startswith(p) for p in keep if p.endswith("/")
                )
            ]
            for start in range(0, len(doomed), _PAGE):
                await self.kvs.delete_many(doomed[start : start + _PAGE])

    # -- blocking twins (any thread but the store's event loop) ---------------------------------
    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """Blocking ``aget_tuple``."""
        return self._bridge.run_sync(self._get_tuple(config))

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,  # noqa: A002
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        """Blocking ``alist``."""
        return iter(self._bridge.run_sync(self._list(config, filter, before, limit)))

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Blocking ``aput``."""
        return self._bridge.run_sync(self._put(config, checkpoint, metadata, new_versions))

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Blocking ``aput_writes``."""
        self._bridge.run_sync(self._put_writes(config, writes, task_id, task_path))

    def delete_thread(self, thread_id: str) -> None:
        """Blocking ``adelete_thread``."""
        self._bridge.run_sync(self.kvs.delete_prefix(self.thread_prefix(str(thread_id))))

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Blocking ``adelete_for_runs``."""
        self._bridge.run_sync(self._delete_for_runs({str(r) for r in run_ids}))

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Blocking ``acopy_thread``."""
        self._bridge.run_sync(self._copy(str(source_thread_id), str(target_thread_id)))

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """Blocking ``aprune``."""
        if strategy not in ("keep_latest", "delete"):
            raise InvalidInputError(f"unknown prune strategy {strategy!r}: expected 'keep_latest' or 'delete'")
        self._bridge.run_sync(self._prune([str(t) for t in thread_ids], strategy))

    def get_next_version(self, current: str | None, channel: None) -> str:
        """Versions as LangGraph's own savers make them: a zero-padded counter and a random part."""
        if current is None:
            current_v = 0
        elif isinstance(current, int):
            current_v = current
        else:
            current_v = int(str(current).split(".")[0])
        return f"{current_v + 1:032}.{random.random():016}"


# ---------------------------------------------------------------------------------------------
# The long-term store
# ---------------------------------------------------------------------------------------------
def _check_labels(namespace: object, what: str) -> tuple[str, ...]:
    if not isinstance(namespace, tuple) or not all(isinstance(label, str) for label in namespace):
        raise InvalidNamespaceError(f"{what} must be a tuple of strings, got {namespace!r}")
    return namespace


def _compare(item_value: Any, filter_value: Any) -> bool:
    """``InMemoryStore``'s filter semantics: nested equality, lists by position, ``$eq/$ne/$gt/$gte/$lt/$lte``."""
    if isinstance(filter_value, dict):
        if any(k.startswith("$") for k in filter_value):
            return all(_operator(item_value, op, v) for op, v in filter_value.items())
        if not isinstance(item_value, dict):
            return False
        return all(_compare(item_value.get(k), v) for k, v in filter_value.items())
    if isinstance(filter_value, list | tuple):
        return (
            isinstance(item_value, list | tuple)
            and len(item_value) == len(filter_value)
            and all(_compare(i, f) for i, f in zip(item_value, filter_value, strict=True))
        )
    return bool(item_value == filter_value)


def _operator(value: Any, op: str, operand: Any) -> bool:
    if op == "$eq":
        return bool(value == operand)
    if op == "$ne":
        return bool(value != operand)
    comparisons = {"$gt": float.__gt__, "$gte": float.__ge__, "$lt": float.__lt__, "$lte": float.__le__}
    if op in comparisons:
        return bool(comparisons[op](float(value), float(operand)))
    raise InvalidInputError(f"unsupported filter operator {op!r}")


def _matches(condition: MatchCondition, namespace: tuple[str, ...]) -> bool:
    path = tuple(condition.path)
    if len(namespace) < len(path):
        return False
    if condition.match_type == "prefix":
        pairs = zip(namespace, path, strict=False)
    elif condition.match_type == "suffix":
        pairs = zip(reversed(namespace), reversed(path), strict=False)
    else:
        raise InvalidInputError(f"unsupported namespace match type {condition.match_type!r}")
    return all(p == "*" or n == p for n, p in pairs)


class _Located:
    """Where one item lives, parsed from its KVS key."""

    __slots__ = ("key", "kvs_key", "namespace", "needs_value")

    def __init__(self, kvs_key: str, namespace: tuple[str, ...], key: str, needs_value: bool) -> None:
        self.kvs_key = kvs_key
        self.namespace = namespace
        self.key = key
        self.needs_value = needs_value  # a hashed label or key: the value has the real one


class BotMemoryStore(BaseStore):
    """A LangGraph ``BaseStore`` with TTL over one bot of a botmemory store.

    Behaves like LangGraph's ``InMemoryStore`` on the same calls, except that
    it persists, expires, and lists only namespaces that hold a live item
    (``InMemoryStore`` also lists namespaces whose items were deleted, or
    that a ``get`` merely looked into); search results come in namespace,
    then key order (``InMemoryStore``: insertion order); ``created_at`` is
    kept when an item is replaced; ``query`` (semantic search) is ignored,
    as by an ``InMemoryStore`` without an index.

    Args:
        store: a ``botmemory.Store`` or a ``SyncStore`` (``botmemory.open_sync``).
        bot_id: the botmemory bot whose KVS holds the items.
        ttl: ``TTLConfig``: ``default_ttl`` (minutes) for puts that give
            none, ``refresh_on_read`` (default True). Expiry is botmemory's:
            an expired item is never returned, and the janitor deletes it.
        user_namespaces: namespace prefixes followed by a user id; those
            items are kept in the user's scope (exported and erased with the
            user). No prefix may be a prefix of another.
        prefix: KVS prefix of the other items.

    Raises:
        InvalidInputError: bad ``user_namespaces`` or ``prefix``.
    """

    supports_ttl = True

    def __init__(
        self,
        store: Store | SyncStore,
        *,
        bot_id: str,
        ttl: TTLConfig | None = None,
        user_namespaces: Iterable[tuple[str, ...]] = (),
        prefix: str = "langgraph/store/",
    ) -> None:
        self._bridge = _Bridge(store, "BotMemoryStore")
        self.bot: Bot = self._bridge.store.bot(bot_id)
        self.ttl_config = ttl
        users = [_check_labels(tuple(u), "a user namespace") for u in user_namespaces]
        for a in users:
            for b in users:
                if a is not b and b[: len(a)] == a:
                    raise InvalidInputError(f"user namespace {a!r} is a prefix of {b!r}: the owner would be ambiguous")
        self.user_namespaces = users
        if not isinstance(prefix, str) or not prefix.endswith("/") or prefix.startswith("storage/"):
            raise InvalidInputError(f"prefix must end with '/' and lie outside storage/, got {prefix!r}")
        self.prefix = prefix
        self._max_key = self._bridge.store.limits.max_key_bytes

    def __repr__(self) -> str:
        return f"<BotMemoryStore bot={self.bot.id!r}>"

    @property
    def kvs(self) -> KVS:
        return self.bot.kvs

    # -- key layout -------------------------------------------------------------------
    def owner(self, namespace: tuple[str, ...]) -> str | None:
        """The user whose scope holds the items of ``namespace``, or None."""
        for users in self.user_namespaces:
            if len(namespace) > len(users) and namespace[: len(users)] == users:
                return namespace[len(users)]
        return None

    def _area(self, user: str | None) -> str | None:
        if user is None:
            return self.prefix
        try:
            return self.bot.memory.user(user).prefix + "langgraph/store/"
        except InvalidKeyError:
            return None  # a user id botmemory refuses: such items live in the common area

    def _area_of(self, namespace: tuple[str, ...]) -> str:
        return self._area(self.owner(namespace)) or self.prefix

    @staticmethod
    def _labels(namespace: Iterable[str]) -> str:
        return "".join(part(label) + "/" for label in namespace)

    def _kvs_key(self, namespace: tuple[str, ...], key: str) -> tuple[str, bool]:
        """The KVS key of an item, and whether the value must carry the real namespace and key."""
        base = self._area_of(namespace) + self._labels(namespace)
        hashed_labels = any(part(label).startswith(HASH_MARK) for label in namespace)
        kvs_key = base + ":" + encode(key)
        if len(kvs_key.encode("utf-8")) <= self._max_key:
            return kvs_key, hashed_labels
        kvs_key = base + ":" + hashed(key)
        if len(kvs_key.encode("utf-8")) > self._max_key:
            raise InvalidKeyError(
                f"namespace {namespace!r} is too long for this store's max_key_bytes ({self._max_key})"
            )
        return kvs_key, True

    def _parse(self, kvs_key: str, area: str) -> _Located | None:
        head, sep, last = kvs_key[len(area) :].rpartition("/")
        if not sep or not last.startswith(":"):
            return None
        labels = head.split("/")
        needs_value = last.startswith(":" + HASH_MARK) or any(label.startswith(HASH_MARK) for label in labels)
        return _Located(kvs_key, tuple(decode(label) for label in labels), decode(last[1:]), needs_value)

    def _scans(self, literal: tuple[str, ...]) -> list[tuple[str, bool]]:
        """KVS prefixes holding every namespace that starts with ``literal``; True: the all-users area."""
        user = self.owner(literal)
        if user is not None:
            area = self._area(user)
            if area is not None:
                return [(area + self._labels(literal), False)]
        scans = [(self.prefix + self._labels(literal), False)]
        if any(users[: len(literal)] == literal or literal[: len(users)] == users for users in self.user_namespaces):
            scans.append((_USERS_PREFIX, True))
        return scans

    async def _locate(self, literal: tuple[str, ...]) -> list[_Located]:
        found: list[_Located] = []
        for scan, all_users in self._scans(literal):
            async for kvs_key in self.kvs.keys(scan):
                if all_users:
                    user_part, slash, rest = kvs_key[len(_USERS_PREFIX) :].partition("/")
                    if not slash or not rest.startswith("langgraph/store/"):
                        continue
                    area = _USERS_PREFIX + user_part + "/langgraph/store/"
                else:
                    area = scan[: len(scan) - len(self._labels(literal))] if literal else scan
                located = self._parse(kvs_key, area)
                if located is not None:
                    found.append(located)
        if any(loc.needs_value for loc in found):
            values = await self.kvs.get_many([loc.kvs_key for loc in found if loc.needs_value])
            for loc in found:
                value = values.get(loc.kvs_key)
                if loc.needs_value and isinstance(value, dict) and "key" in value:
                    loc.namespace = tuple(decode(label) for label in value["namespace"])
                    loc.key = decode(value["key"])
        return [loc for loc in found if loc.namespace[: len(literal)] == literal]

    # -- items ---------------------------------------------------------------------------
    @staticmethod
    def _item(cls: type[Item], namespace: tuple[str, ...], key: str, stored: dict[str, Any]) -> Any:
        return cls(
            namespace=namespace,
            key=key,
            value=stored["value"],
            created_at=datetime.fromtimestamp(stored["created_at"], UTC),
            updated_at=datetime.fromtimestamp(stored["updated_at"], UTC),
        )

    async def _refresh(self, stored: dict[str, dict[str, Any]]) -> None:
        """Restart the TTL of the items read (each by its own TTL)."""
        refresh = [(k, v["ttl"]) for k, v in stored.items() if v.get("ttl")]
        if refresh:
            await asyncio.gather(*(self.kvs.expire(k, ttl * 60.0) for k, ttl in refresh))

    async def _get(self, ops: list[GetOp]) -> list[Item | None]:
        keys = [self._kvs_key(_check_labels(op.namespace, "namespace"), str(op.key))[0] for op in ops]
        found = await self.kvs.get_many(list(dict.fromkeys(keys)))
        out: list[Item | None] = []
        refresh: dict[str, dict[str, Any]] = {}
        for op, key in zip(ops, keys, strict=True):
            stored = found.get(key)
            if not isinstance(stored, dict):
                out.append(None)
                continue
            out.append(self._item(Item, op.namespace, str(op.key), stored))
            if op.refresh_ttl:
                refresh[key] = stored
        await self._refresh(refresh)
        return out

    async def _search(self, op: SearchOp) -> list[SearchItem]:
        prefix = _check_labels(op.namespace_prefix, "namespace prefix")
        located = sorted(await self._locate(prefix), key=lambda loc: (loc.namespace, loc.key))
        start, stop = max(op.offset, 0), max(op.offset, 0) + max(op.limit, 0)
        chosen: list[tuple[_Located, dict[str, Any]]] = []
        if not op.filter:
            located = located[start:stop]
        for page in range(0, len(located), _PAGE):
            batch = located[page : page + _PAGE]
            found = await self.kvs.get_many([loc.kvs_key for loc in batch])
            for loc in batch:
                stored = found.get(loc.kvs_key)
                if isinstance(stored, dict) and (
                    not op.filter or all(_compare(stored["value"].get(k), v) for k, v in op.filter.items())
                ):
                    chosen.append((loc, stored))
            if op.filter and len(chosen) >= stop:
                break
        if op.filter:
            chosen = chosen[start:stop]
        if op.refresh_ttl:
            await self._refresh({loc.kvs_key: stored for loc, stored in chosen})
        return [self._item(SearchItem, loc.namespace, loc.key, stored) for loc, stored in chosen]

    async def _list_namespaces(self, op: ListNamespacesOp) -> list[tuple[str, ...]]:
        conditions = tuple(op.match_conditions or ())
        literal: tuple[str, ...] = ()
        for condition in conditions:
            _check_labels(tuple(condition.path), "namespace path")
            if condition.match_type == "prefix":
                head = []
                for label in condition.path:
                    if label == "*":
                        break
                    head.append(label)
                if len(head) > len(literal):
                    literal = tuple(head)
        namespaces = {loc.namespace for loc in await self._locate(literal)}
        matching = [ns for ns in namespaces if all(_matches(c, ns) for c in conditions)]
        if op.max_depth is not None:
            matching = list({ns[: op.max_depth] for ns in matching})
        return sorted(matching)[op.offset : op.offset + op.limit]

    async def _put(self, ops: list[PutOp]) -> None:
        latest: dict[str, tuple[PutOp, bool]] = {}
        for op in ops:  # the last put of an item in a batch wins, as in InMemoryStore
            namespace = _check_labels(op.namespace, "namespace")
            if not namespace:
                raise InvalidNamespaceError("Namespace cannot be empty.")
            kvs_key, carry = self._kvs_key(namespace, str(op.key))
            latest.pop(kvs_key, None)
            latest[kvs_key] = (op, carry)
        doomed = [k for k, (op, _) in latest.items() if op.value is None]
        writes = {k: pair for k, pair in latest.items() if pair[0].value is not None}
        existing = await self.kvs.get_many(list(writes)) if writes else {}
        now = self._bridge.store.clock.now()
        by_ttl: dict[float | None, dict[str, Any]] = {}
        for kvs_key, (op, carry) in writes.items():
            old = existing.get(kvs_key)
            created = old["created_at"] if isinstance(old, dict) and "created_at" in old else now
            stored: dict[str, Any] = {
                "value": dict(op.value or {}),
                "created_at": created,
                "updated_at": now,
                "ttl": op.ttl,
            }
            if carry:  # percent-encoded: a lone surrogate is no JSON botmemory stores
                stored["namespace"] = [encode(label) for label in op.namespace]
                stored["key"] = encode(str(op.key))
            by_ttl.setdefault(op.ttl, {})[kvs_key] = stored
        for ttl, items in by_ttl.items():
            await self.kvs.set_many(items, expiry=None if ttl is None else ttl * 60.0)
        if doomed:
            await self.kvs.delete_many(doomed)

    async def _batch(self, ops: Iterable[Op]) -> list[Result]:
        ops = list(ops)
        results: list[Result] = [None] * len(ops)
        gets = [(i, op) for i, op in enumerate(ops) if isinstance(op, GetOp)]
        puts: list[PutOp] = []
        # reads see the store as it was before this batch's puts, as in InMemoryStore
        if gets:
            for (i, _), item in zip(gets, await self._get([op for _, op in gets]), strict=True):
                results[i] = item
        for i, op in enumerate(ops):
            if isinstance(op, SearchOp):
                results[i] = await self._search(op)
            elif isinstance(op, ListNamespacesOp):
                results[i] = await self._list_namespaces(op)
            elif isinstance(op, PutOp):
                puts.append(op)
            elif not isinstance(op, GetOp):
                raise InvalidInputError(f"unknown store operation {type(op).__name__}")
        if puts:
            await self._put(puts)
        return results

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        """Run the operations (blocking; any thread but an async store's event loop)."""
        return self._bridge.run_sync(self._batch(list(ops)))

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        """Run the operations: gets, searches and listings first, then the puts."""
        return await self._bridge.run_async(self._batch(list(ops)))
