"""``Runtime``: mounts the bots of a folder and runs their conversations.

A turn (``converse``) of one conversation:

1. find the conversation (``conversation_id=None``: the user's current one,
   else a new uuid4 hex id); a conversation belongs to the user who started
   it, so a conversation id of another user's conversation raises
   ``ConversationNotFoundError`` (see ``sessions.SessionStore.claim``);
   take its lease (``sessions.ConversationLease``). On a backend with the
   ``TurnBatching`` capability (all built-in ones) the call that takes the
   lease also reads the turn's owner record, session and conversation
   variables (the owner of a given conversation id is checked there, under
   the lease), and its
   writes of those rows are written together, with the lease's release,
   when the turn ends (``turnbatch``): 3 backend calls for a steady-state
   turn, besides what the bot's own hooks and custom actions do;
2. ``before_incoming`` hooks; read the session; a timed-out session is
   ended first (variables discarded, ``after_conversation_end``);
   ``after_incoming`` hooks;
3. no session: start one at the start flow's ``start`` node and run its
   ``on_enter`` (the message is not given to ``on_receive``); otherwise run
   the current node's ``on_receive``;
4. follow transitions: the first whose ``when`` holds; entering a node runs
   its ``on_enter`` and, when the node has no ``on_receive``, its ``next``
   right away; ``END`` ends the session; no transition: wait at the node;
5. save the session (compare-and-set, expiry = now + ``session_timeout``)
   or end it; ``before_outgoing`` hooks on every reply; release the lease
   (with the batched writes; then the erasure guard of the turn's writes,
   checked once).

A failure inside steps 2–5 (template, action, backend, a step limit against
transition loops) answers the bot's ``error_message``, is logged with bot,
flow, node and action, keeps the memory writes made so far, and leaves the
session where the turn began.

Bounds: custom actions and hooks run through ``guard.run_bot_code`` (each
custom action within the bot's ``action_timeout``, each hook within
``hook_timeout``; ``sys.exit()`` there fails the turn instead of the
process), and the whole turn within ``turn_timeout``: past it the turn
answers the error message and the lease is released, whatever the bot's
code is doing.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Collection
from copy import deepcopy
from pathlib import Path
from typing import Any, Final, cast

from ..backends.base import TurnBatching
from ..cancellation import stop_if_cancelled
from ..errors import (
    ConversationNotFoundError,
    InvalidInputError,
    KeyNotFoundError,
    QuotaExceededError,
    StoreError,
    VersionConflictError,
)
from ..keys import validate_key
from ..retention.janitor import Janitor
from ..retention.layout import owners_ns, sessions_ns
from ..retention.users import Users
from ..store import Bot, Store
from .actions import ActionContext, BotSDK
from .botpress import BotpressBot, BotpressEngine, load_botpress_bots
from .flows import END, ActionCall, Transition
from .guard import BotCodeError, run_bot_code
from .hooks import run_hook
from .loader import LoadedBot, load_bots
from .metrics import MeteredBackend, TurnStats, current_turn
from .sessions import ConversationLease, Session, SessionStore
from .templates import MEMORY_SCOPES, Reads, Variables
from .turnbatch import MAX_READ_AHEAD, TurnBackend, TurnBatch

__all__ = ["MAX_STEPS", "Runtime", "TurnError"]

logger = logging.getLogger("botmemory.runtime")

#: Nodes a single turn may enter before it is stopped as a loop.
MAX_STEPS: Final = 100

_LEASE_TTL: Final = 60.0
#: a turn's lease outlives the turn's own bound by this much (store-clock seconds)
_LEASE_MARGIN: Final = 20.0
_JANITOR_BATCH: Final = 100

# Runtime reasons -> the reasons botmemory.retention's audit log records
# ("timeout" is recorded as is: the audit log takes callers' own reasons).
_AUDIT_REASONS: Final = {"end": "end_of_conversation"}


class TurnError(Exception):
    """A turn failed for a reason of the bot's own making (e.g. a transition loop)."""


class _Position:
    """Where the turn is, for the error log."""

    __slots__ = ("action", "flow", "node")

    def __init__(self, flow: str, node: str) -> None:
        self.flow, self.node, self.action = flow, node, "-"


class Runtime:
    """The mounted bots of one bots folder over one store.

    Use ``await Runtime.open(store, "bots/")``; see the module docstring for
    what a turn does.

    Attributes:
        bots: the mounted bots by id.
        load_errors: ``"file:line: message"`` for each bot that failed to load, by bot id.
        metrics: totals over every turn (``turns``, ``errors``, ``store_calls``,
            ``store_seconds``, ``turn_seconds``).
        last_turn: the same counters for the last finished turn.
    """

    def __init__(
        self,
        store: Store,
        bots: dict[str, LoadedBot],
        load_errors: dict[str, str],
        *,
        lock_wait: float = 30.0,
    ) -> None:
        self.store = store
        self.bots = bots
        self.load_errors = load_errors
        self.lock_wait = lock_wait
        self.metrics = TurnStats()
        self.last_turn = TurnStats()
        if not store.has_locks:
            # conversation leases serialise turns across processes: without them two could interleave
            raise InvalidInputError(f"the runtime needs a backend with locks; {store.backend_name} has none")
        # One store, its backend metered, so the store's share of each turn
        # is measurable (metrics.MeteredBackend; a pass-through outside turns),
        # and batched above that: a turn's own rows are read with its lease and
        # written with its release (turnbatch.TurnBackend; a pass-through outside turns).
        store.wrap_backend(MeteredBackend)
        self._turns = store.wrap_backend(TurnBackend)
        self._turns.clock = store.clock
        self._store = store
        self._read_names: dict[str, tuple[str, ...]] = {}
        self._janitor: Any = None  # botmemory.retention.Janitor, made at the first janitor_once
        self._sdk: dict[str, BotSDK] = {}
        self._sessions: dict[str, SessionStore] = {}
        self._closed = False
        self._botpress = BotpressEngine(self)  # runs the turns of Botpress bot folders (runtime/botpress)

    @property
    def batching(self) -> bool:
        """Whether turns read and write their own rows in one call each (the backend's ``TurnBatching``).

        Set it to False to run turns as without the capability, one call per
        read and write (the benchmark measures both).
        """
        return self._turns.batching

    @batching.setter
    def batching(self, on: bool) -> None:
        self._turns.batching = bool(on) and isinstance(self._turns.inner, TurnBatching)

    # -- lifecycle -------------------------------------------------------------
    @classmethod
    async def open(
        cls,
        store: Store,
        bots_dir: str | Path,
        *,
        hook_timeout: float | None = None,
        action_timeout: float | None = None,
        turn_timeout: float | None = None,
        lock_wait: float = 30.0,
        only: Collection[str] | None = None,
    ) -> Runtime:
        """Load every bot under ``bots_dir`` (or those in ``only``) and mount those that load.

        Args:
            store: the store the bots' memory lives in (the runtime does not close it).
            bots_dir: a folder of bot folders (each with a ``bot.yaml``).
            hook_timeout: seconds, overriding every bot's ``hook_timeout``.
            action_timeout: seconds, overriding every bot's ``action_timeout``.
            turn_timeout: seconds, overriding every bot's ``turn_timeout``.
            lock_wait: seconds (real time) a turn waits for its conversation's
                lease before raising ``StoreTimeoutError``.
            only: bot ids to load and mount (None: every bot of the folder);
                the other folders' code is not run.

        Returns:
            The runtime; ``runtime.load_errors`` lists the bots that were not mounted.

        Raises:
            InvalidInputError: ``bots_dir`` is not a directory, or a timeout is not positive.
        """
        overrides = {"hook_timeout": hook_timeout, "action_timeout": action_timeout, "turn_timeout": turn_timeout}
        for name, value in overrides.items():
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < float("inf")
            ):
                raise InvalidInputError(f"{name} must be a positive number of seconds, got {value!r}")
        bots, errors = load_bots(bots_dir, only=only)
        load_botpress_bots(bots_dir, bots, errors, only=only)  # Botpress folders (bot.config.json + flows/)
        for bot in bots.values():
            for name, value in overrides.items():
                if value is not None:
                    setattr(bot, name, float(value))
        runtime = cls(store, bots, errors, lock_wait=lock_wait)
        for bot in list(bots.values()):
            try:
                await runtime._mount(bot)
            except BotCodeError as exc:  # sys.exit() in after_bot_mount: that bot is not mounted
                logger.error("bot %s not mounted: after_bot_mount %s", bot.id, exc)
                del runtime.bots[bot.id]
                runtime.load_errors[bot.id] = f"hooks: after_bot_mount {exc}"
        return runtime

    async def _mount(self, loaded: LoadedBot) -> None:
        bot = self._store.bot(loaded.id)
        if loaded.retention is not None and not isinstance(loaded.retention, dict):
            # Writes through the runtime and through the caller's handle both follow the policies.
            bot.retention = loaded.retention
            self.store.bot(loaded.id).retention = loaded.retention
        self._sdk[loaded.id] = BotSDK(bot)
        self._sessions[loaded.id] = SessionStore(self._store, loaded.id)
        if not isinstance(loaded.retention, dict):
            from ..retention.policy import RetentionConfig, record_declared

            # so that tools writing this bot's data without its folder still apply its policies
            await record_declared(self.store, loaded.id, loaded.retention or RetentionConfig())
        await run_hook(loaded, "after_bot_mount", self._sdk[loaded.id])
        logger.info("bot %s mounted (%d flows)", loaded.id, len(loaded.flows))

    async def close(self) -> None:
        """Unmount every bot (the store stays open: it belongs to the caller)."""
        self._closed = True
        self.bots = {}

    async def __aenter__(self) -> Runtime:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- conversations -----------------------------------------------------------
    def _loaded(self, bot_id: str) -> LoadedBot:
        loaded = self.bots.get(bot_id) if isinstance(bot_id, str) else None
        if loaded is None:
            why = self.load_errors.get(bot_id) if isinstance(bot_id, str) else None
            raise KeyNotFoundError(
                f"bot {bot_id!r} is not mounted" + (f" (load error: {why})" if why else "")
            )
        return loaded

    async def converse(
        self, bot_id: str, *, user_id: str, text: str, conversation_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Send one user message to a bot and return its replies.

        Args:
            bot_id: a mounted bot.
            user_id: the user (any valid id; ``"a/b"``, ``".."`` and ``"%"`` are distinct users).
            text: the message; data, never rendered as a template.
            conversation_id: the conversation, or None for the user's current
                one (a new one when there is none). A new id starts a
                conversation that belongs to this user from then on.

        Returns:
            Reply dicts ``{"type": "text", "text": …, "conversation_id": …}``; a
            failed turn answers one reply with the bot's ``error_message``.

        Raises:
            KeyNotFoundError: the bot is not mounted.
            ConversationNotFoundError: ``conversation_id`` is a conversation
                another user started (the message does not say whose).
            InvalidInputError: a bad user id, conversation id or text.
            StoreTimeoutError: the conversation's lease stayed busy for ``lock_wait`` seconds.
            StoreError: the backend failed before the turn could start.
        """
        loaded = self._loaded(bot_id)
        limits = self.store.limits
        validate_key(user_id, limits.max_id_bytes, "user id")
        if conversation_id is not None:
            validate_key(conversation_id, limits.max_id_bytes, "conversation id")
        if not isinstance(text, str):
            raise InvalidInputError(f"text must be a str, got {type(text).__name__}")
        stats = TurnStats(turns=1)
        token = current_turn.set(stats)
        started = time.perf_counter()
        try:
            sessions = self._sessions[loaded.id]
            # with batching, a given conversation's owner is read under the lease, with the rest of the turn
            check_owner = conversation_id is not None and self._turns.batching
            if conversation_id is None:
                # the user's current conversation was started by this user: no ownership check
                conversation_id = await sessions.current(user_id)
                if conversation_id is None:
                    conversation_id = uuid.uuid4().hex
                    await self._own(loaded, user_id, conversation_id, new=True)
            elif not check_owner:
                await self._own(loaded, user_id, conversation_id)
            lease = ConversationLease(
                self._store, loaded.id, conversation_id, ttl=loaded.turn_timeout + _LEASE_MARGIN, wait=self.lock_wait
            )
            keys = self._read_ahead(loaded, conversation_id) if self._turns.batching else []
            rows = await lease.acquire(read=keys, reader=self._turns.inner)
            batch, tokens = self._turns.begin()
            try:
                self._turns.load(batch, keys, rows)
                if check_owner:
                    await self._own(loaded, user_id, conversation_id)
                replies = await self._bounded_turn(loaded, user_id, text, conversation_id, stats)
            except BaseException:
                await self._end_turn(loaded, conversation_id, batch, tokens, lease)
                raise
            if not await self._end_turn(loaded, conversation_id, batch, tokens, lease):
                stats.errors += 1
                replies = [{"type": "text", "text": loaded.error_message, "conversation_id": conversation_id}]
            return replies
        finally:
            current_turn.reset(token)
            stats.turn_seconds = time.perf_counter() - started
            self.last_turn = stats
            self.metrics.add(stats)

    def _read_ahead(self, loaded: LoadedBot, conversation_id: str) -> list[tuple[str, str]]:
        """What a turn reads ahead: owner, session and the conversation variables the flows name."""
        keys = [(owners_ns(loaded.id), conversation_id), (sessions_ns(loaded.id), conversation_id)]
        suffixes = self._read_names.get(loaded.id)
        if suffixes is None:
            # each name's part of the variable's key, encoded once (a name no variable can have is left out)
            scope = self._store.bot(loaded.id).memory.conversation("x")
            found: list[str] = []
            for name in _conversation_names(loaded):
                try:
                    found.append(scope.key(name)[len(scope.prefix) :])
                except InvalidInputError:
                    continue
            self._read_names[loaded.id] = suffixes = tuple(found)
        if suffixes:
            prefix = self._store.bot(loaded.id).memory.conversation(conversation_id).prefix
            keys += [(loaded.id, prefix + suffix) for suffix in suffixes]
        return keys

    async def _end_turn(
        self, loaded: LoadedBot, conversation_id: str, batch: TurnBatch, tokens: Any, lease: ConversationLease
    ) -> bool:
        """Write the turn's batched rows and release its lease; False (logged) when that failed."""
        release = (lease.name, lease.owner) if lease.lease is not None else None
        lease.lease = None
        try:
            await self._turns.end(batch, tokens, release)
        except (StoreError, VersionConflictError, QuotaExceededError) as exc:
            logger.error(
                "bot %s: writing the end of the turn of conversation %s failed: %s: %s",
                loaded.id, conversation_id, type(exc).__name__, exc,
            )
            return False
        return True

    async def _own(self, loaded: LoadedBot, user_id: str, conversation_id: str, *, new: bool = False) -> None:
        """Make sure ``conversation_id`` is the user's: claim it when it is nobody's yet.

        Args:
            new: the id was just made up (uuid4): claim it without looking first.

        Raises:
            ConversationNotFoundError: another user started it.
        """
        sessions = self._sessions[loaded.id]
        if new and await sessions.claim(conversation_id, user_id):
            await self._link(loaded, user_id, conversation_id)
            return
        owner = await sessions.owner(conversation_id)
        if owner is None:
            if await sessions.claim(conversation_id, user_id):
                await self._link(loaded, user_id, conversation_id)
                return
            owner = await sessions.owner(conversation_id)  # claimed by someone else just now
        if owner != user_id:
            # the same words as for a conversation that never existed: nothing about whose it is
            raise ConversationNotFoundError(f"conversation {conversation_id!r} not found for this user")

    async def current_conversation(self, bot_id: str, user_id: str) -> str | None:
        """The conversation ``converse(conversation_id=None)`` would continue, if its session is live.

        Raises:
            KeyNotFoundError: the bot is not mounted.
        """
        loaded = self._loaded(bot_id)
        validate_key(user_id, self.store.limits.max_id_bytes, "user id")
        sessions = self._sessions[loaded.id]
        current = await sessions.current(user_id)
        if current is None or await sessions.get(current) is None:
            return None
        return current

    async def _bounded_turn(
        self, loaded: LoadedBot, user_id: str, text: str, conversation_id: str, stats: TurnStats
    ) -> list[dict[str, Any]]:
        """``_turn`` within the bot's ``turn_timeout``; past it, the error message."""
        try:
            async with asyncio.timeout(loaded.turn_timeout) as bound:
                return await self._turn(loaded, user_id, text, conversation_id, stats)
        except TimeoutError:
            if not bound.expired():
                raise
        stats.errors += 1
        logger.error(
            "bot %s: turn of conversation %s stopped after turn_timeout %gs; the conversation is free again",
            loaded.id, conversation_id, loaded.turn_timeout,
        )
        return [{"type": "text", "text": loaded.error_message, "conversation_id": conversation_id}]

    async def _turn(
        self, loaded: LoadedBot, user_id: str, text: str, conversation_id: str, stats: TurnStats
    ) -> list[dict[str, Any]]:
        if isinstance(loaded, BotpressBot):  # a Botpress bot folder: its own dialog engine (runtime/botpress)
            return await self._botpress.turn(loaded, user_id, text, conversation_id, stats)
        bp = self._sdk[loaded.id]
        sessions = self._sessions[loaded.id]
        event: dict[str, Any] = {
            "type": "text",
            "text": text,
            "user_id": user_id,
            "conversation_id": conversation_id,
            "bot_id": loaded.id,
        }
        position = _Position(loaded.start_flow, loaded.flows[loaded.start_flow].start)
        try:
            await run_hook(loaded, "before_incoming", bp, event)
            if not isinstance(event.get("text"), str):
                event["text"] = text  # a hook broke it; the message still flows
            found = await sessions.get(conversation_id)
            if found is None:
                stale = await sessions.find_expired(conversation_id)
                if stale is not None:
                    await self._end_session(loaded, conversation_id, stale, "timeout")
            else:
                position.flow, position.node = found[0].flow, found[0].node
            await run_hook(loaded, "after_incoming", bp, event)
            replies = await self._run(loaded, user_id, conversation_id, event, found, position)
            return [await self._outgoing(loaded, bp, event, reply, conversation_id) for reply in replies]
        except Exception as exc:
            stats.errors += 1
            logger.error(
                "bot %s: turn failed at flow=%s node=%s action=%s (conversation %s): %s: %s",
                loaded.id, position.flow, position.node, position.action, conversation_id,
                type(exc).__name__, exc, exc_info=not isinstance(exc, TurnError | BotCodeError),
            )
        error = {"type": "text", "text": loaded.error_message}
        try:
            return [await self._outgoing(loaded, bp, event, error, conversation_id)]
        except BotCodeError as exc:  # before_outgoing called sys.exit() on the error reply too
            logger.error("bot %s: before_outgoing %s; the error message goes out unchanged", loaded.id, exc)
            return [{"type": "text", "text": loaded.error_message, "conversation_id": conversation_id}]

    async def _outgoing(
        self, loaded: LoadedBot, bp: BotSDK, incoming: dict[str, Any], reply: dict[str, Any], conversation_id: str
    ) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": reply.get("type", "text"),
            "text": reply["text"],
            "user_id": incoming["user_id"],
            "conversation_id": conversation_id,
            "bot_id": loaded.id,
            "incoming": incoming,
        }
        await run_hook(loaded, "before_outgoing", bp, out)
        text = out.get("text")
        return {
            "type": out["type"] if isinstance(out.get("type"), str) else "text",
            "text": text if isinstance(text, str) else reply["text"],
            "conversation_id": conversation_id,
        }

    async def _run(
        self,
        loaded: LoadedBot,
        user_id: str,
        conversation_id: str,
        event: dict[str, Any],
        found: tuple[Session, int] | None,
        position: _Position,
    ) -> list[dict[str, Any]]:
        sessions = self._sessions[loaded.id]
        now = self._store.clock.now()
        if found is None:
            session = Session(user_id, position.flow, position.node, {}, now, now)
            version = 0
            await sessions.set_current(user_id, conversation_id)
        else:
            session, version = found
        ctx = ActionContext(self._sdk[loaded.id], user_id, conversation_id, deepcopy(session.temp), event)
        flow = loaded.flows.get(session.flow)
        node = flow.nodes.get(session.node) if flow is not None else None
        if flow is None or node is None:
            # The bot's files changed under a live session: start over rather than fail forever.
            logger.warning(
                "bot %s: session of %s is at %s/%s, which no longer exists; restarting",
                loaded.id, conversation_id, session.flow, session.node,
            )
            flow = loaded.flows[loaded.start_flow]
            node = flow.nodes[flow.start]
            found = None
        position.flow, position.node = flow.name, node.name
        if found is None:
            await self._actions(ctx, node.on_enter, position, loaded.action_timeout)
            waiting = node.on_receive is not None
        else:
            await self._actions(ctx, node.on_receive or (), position, loaded.action_timeout)
            waiting = False
        ended = False
        steps = 0
        while not waiting:
            transition = await self._choose(ctx, node.next, position)
            if transition is None:
                break
            if transition.goto == END:
                ended = True
                break
            steps += 1
            if steps > MAX_STEPS:
                raise TurnError(f"more than {MAX_STEPS} transitions in one turn (a loop?) at {transition.where}")
            if transition.flow is not None:
                flow = loaded.flows[transition.flow]
                node = flow.nodes[flow.start]
            else:
                node = flow.nodes[cast(str, transition.goto)]
            position.flow, position.node, position.action = flow.name, node.name, "-"
            await self._actions(ctx, node.on_enter, position, loaded.action_timeout)
            waiting = node.on_receive is not None
        position.action = "-"
        session.flow, session.node = flow.name, node.name
        if ended:
            await self._end_session(loaded, conversation_id, session, "end")
        else:
            session.temp = ctx.temp
            session.last_activity = now
            await sessions.save(conversation_id, session, version, loaded.session_timeout)
        return ctx.replies

    async def _link(self, loaded: LoadedBot, user_id: str, conversation_id: str) -> None:
        """A conversation the user just claimed: link it to the user (for export and erasure)."""
        await _users(self._store.bot(loaded.id)).link_conversation(user_id, conversation_id)

    async def _actions(
        self, ctx: ActionContext, calls: tuple[ActionCall, ...], position: _Position, action_timeout: float
    ) -> None:
        for call in calls:
            stop_if_cancelled()
            position.action = f"{call.name} ({call.where})"
            context = await self._context(ctx, call.reads)
            if any(value.threaded for value in call.args.values()):
                # a template with a loop may render for up to MAX_RENDER_SECONDS: not on the event loop
                args = await asyncio.to_thread(_resolve, call, context)
            else:
                args = _resolve(call, context)
            if call.spec.bot_code:
                await run_bot_code(call.spec.run(ctx, args), action_timeout, f"action {call.name!r} ({call.where})")
            else:
                await call.spec.run(ctx, args)
        position.action = "-"

    async def _choose(
        self, ctx: ActionContext, transitions: tuple[Transition, ...], position: _Position
    ) -> Transition | None:
        for transition in transitions:
            if transition.condition is None:
                return transition
            position.action = f"when {transition.condition.source!r} ({transition.where})"
            if transition.condition.test(await self._context(ctx, transition.condition.reads)):
                return transition
        position.action = "-"
        return None

    async def _context(self, ctx: ActionContext, reads: Reads) -> dict[str, Any]:
        """What templates see, with memory read now (one ``get_many``, plus ``items()`` for whole scopes)."""
        data: dict[str, dict[str, Any]] = {scope: {} for scope in MEMORY_SCOPES}
        if not reads.is_empty():
            wanted: dict[str, tuple[str, str]] = {}
            for scope, names in reads.names.items():
                handle = ctx.scope(scope)
                for name in names:
                    try:
                        wanted[handle.key(name)] = (scope, name)
                    except InvalidInputError:
                        continue  # a name no variable can have: missing
            if wanted:
                for key, value in (await ctx.kvs.get_many(list(wanted))).items():
                    scope, name = wanted[key]
                    data[scope][name] = value
            for scope in reads.whole:
                data[scope] = await ctx.scope(scope).items()
        context: dict[str, Any] = {scope: Variables(values) for scope, values in data.items()}
        context["event"] = Variables(ctx.event)
        context["temp"] = Variables(ctx.temp)
        return context

    # -- ending conversations ------------------------------------------------------
    async def _end_session(self, loaded: LoadedBot, conversation_id: str, session: Session, reason: str) -> None:
        """Discard the conversation's variables, delete the session, run ``after_conversation_end``."""
        if reason == "timeout" and isinstance(loaded, BotpressBot):  # Botpress: its timeout node/flow runs first
            await self._botpress.timed_out(loaded, conversation_id, session)
        bot = self._store.bot(loaded.id)
        user_id = session.user_id or None  # None: an unreadable row, whose user is unknown
        await _users(bot).end_conversation(conversation_id, user_id=user_id, reason=_AUDIT_REASONS.get(reason, reason))
        sessions = self._sessions[loaded.id]
        await sessions.delete(conversation_id)
        if user_id is not None:
            await sessions.clear_current(user_id, conversation_id)
        event = {
            "type": "conversation_end",
            "bot_id": loaded.id,
            "user_id": session.user_id,
            "conversation_id": conversation_id,
            "reason": reason,
            "flow": session.flow,
            "node": session.node,
        }
        await run_hook(loaded, "after_conversation_end", self._sdk[loaded.id], event)

    async def end_conversation(self, bot_id: str, conversation_id: str, reason: str = "end") -> bool:
        """End a conversation's session now (as if it reached ``END``).

        Its variables are discarded even when it has no session.

        Args:
            bot_id: a mounted bot.
            conversation_id: the conversation.
            reason: passed to ``after_conversation_end`` and the audit log
                (``"end"`` is recorded as ``end_of_conversation``).

        Returns:
            True when a session (live or timed out) was ended.

        Raises:
            KeyNotFoundError: the bot is not mounted.
            StoreTimeoutError: a turn of the conversation held the lease too long.
        """
        loaded = self._loaded(bot_id)
        validate_key(conversation_id, self.store.limits.max_id_bytes, "conversation id")
        sessions = self._sessions[loaded.id]
        async with ConversationLease(self._store, loaded.id, conversation_id, ttl=_LEASE_TTL, wait=self.lock_wait):
            found = await sessions.get(conversation_id)
            session = found[0] if found is not None else await sessions.find_expired(conversation_id)
            if session is None:
                await _users(self._store.bot(loaded.id)).end_conversation(
                    conversation_id, user_id=None, reason=_AUDIT_REASONS.get(reason, reason)
                )
                return False
            try:
                await self._end_session(loaded, conversation_id, session, reason)
            except BotCodeError as exc:  # after_conversation_end called sys.exit(): the session is ended anyway
                logger.error("bot %s: after_conversation_end of %s %s", loaded.id, conversation_id, exc)
            return True

    async def end_timed_out_sessions(self) -> int:
        """End every timed-out session of every mounted bot; returns how many were ended.

        A session whose lease is held (a turn is running) is left for that
        turn or the next run. A backend error on one session is logged and
        the others continue.
        """
        ended = 0
        for loaded in list(self.bots.values()):
            sessions = self._sessions[loaded.id]
            skipped: set[str] = set()
            while True:
                batch = [(c, s) for c, s in await sessions.expired(_JANITOR_BATCH + len(skipped)) if c not in skipped]
                if not batch:
                    break
                for conversation_id, _ in batch:
                    lease = ConversationLease(self._store, loaded.id, conversation_id, ttl=_LEASE_TTL, wait=0)
                    try:
                        if not await lease.try_acquire():
                            skipped.add(conversation_id)
                            continue
                        # re-read under the lease: a message may have ended or renewed it meanwhile
                        session = None if await sessions.get(conversation_id) else await sessions.find_expired(
                            conversation_id
                        )
                        if session is not None:
                            await self._end_session(loaded, conversation_id, session, "timeout")
                            ended += 1
                        else:
                            skipped.add(conversation_id)
                    except StoreError:
                        skipped.add(conversation_id)
                        logger.exception("bot %s: ending timed-out session %s failed", loaded.id, conversation_id)
                    except BotCodeError as exc:  # after_conversation_end called sys.exit(): the session is ended
                        ended += 1
                        logger.error("bot %s: after_conversation_end of %s %s", loaded.id, conversation_id, exc)
                    finally:
                        try:
                            await lease.release()
                        except StoreError:
                            logger.exception("bot %s: releasing a janitor lease failed", loaded.id)
        return ended

    async def janitor_once(self) -> dict[str, Any]:
        """End timed-out sessions, then run the retention janitor (when installed) once.

        Returns:
            Counts: ``sessions_ended``, plus the retention janitor's report
            (``purged``, ``errors``, …) when it ran.
        """
        if self._janitor is None:
            configs = {
                bot_id: loaded.retention
                for bot_id, loaded in self.bots.items()
                if loaded.retention is not None and not isinstance(loaded.retention, dict)
            }
            # one Janitor for the runtime's life: it remembers when it last re-applied policies
            self._janitor = Janitor(self.store, configs, end_timed_out_sessions=self.end_timed_out_sessions)
        report: Any = await self._janitor.run_once()
        result: dict[str, Any] = dict(report.as_dict())
        return result


_CONVERSATION_ACTIONS: Final = frozenset(
    f"{verb}ConversationVariable" for verb in ("set", "get", "incr", "delete")
)


def _conversation_names(loaded: LoadedBot) -> tuple[str, ...]:
    """Conversation variables the bot's flows name (constant names only), for the turns' read-ahead."""
    if isinstance(loaded, BotpressBot):
        return ()
    names: dict[str, None] = {}
    for flow in loaded.flows.values():
        for node in flow.nodes.values():
            for call in (*node.on_enter, *(node.on_receive or ())):
                arg = call.args.get("name")
                if call.name in _CONVERSATION_ACTIONS and arg is not None and arg.is_constant \
                        and isinstance(arg.constant, str):
                    names[arg.constant] = None
                names.update(dict.fromkeys(call.reads.names.get("conversation", ())))
            for transition in node.next:
                if transition.condition is not None:
                    names.update(dict.fromkeys(transition.condition.reads.names.get("conversation", ())))
    return tuple(names)[:MAX_READ_AHEAD]


def _resolve(call: ActionCall, context: dict[str, Any]) -> dict[str, Any]:
    """The action's arguments for this turn (templates rendered)."""
    return {name: value.resolve(context) for name, value in call.args.items()}


def _users(bot: Bot) -> Users:
    """``bot.users`` (retention's erasure, links and conversation ends)."""
    users: Users = bot.users
    return users


