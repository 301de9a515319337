"""One turn's state: Botpress's ``event.state`` (``user``, ``session``, ``temp``) over botmemory's memory.

The dialog engine (``engine``) runs instructions against a ``Turn``; the
built-in actions (``actions``) read and write it. It lives apart from both so
that neither imports the other for it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

import orjson

from ...errors import InvalidInputError, ValueTypeError
from ..actions import BotSDK
from .content import SILENT_REPLY_TYPES
from .jsvalues import UNDEFINED
from .model import BotpressBot

if TYPE_CHECKING:
    from ...memory import Scope

__all__ = ["Turn"]

_MEMORY_SCOPES: Final = {"user": "user", "session": "conversation", "bot": "global"}


class _Tracked:
    """A memory scope loaded into a dict that bot code may change, and what the store holds."""

    __slots__ = ("data", "handle", "snapshot")

    def __init__(self, handle: Scope, data: dict[str, Any]) -> None:
        self.handle = handle
        self.data = data
        self.snapshot = {k: _encode(v) for k, v in data.items()}


def _encode(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise ValueTypeError(f"not a JSON value: {exc}") from None


class Turn:
    """What one incoming message (or timeout) works on: Botpress's ``event.state`` over botmemory.

    Attributes:
        bot: the loaded bot.
        temp: the flow's ``temp`` (kept in the session row).
        context: the dialog context (``currentFlow``, ``currentNode``, ``queue``, ``jumpPoints`` …).
        nlu_contexts: active NLU contexts ``[{"context", "ttl"}]``.
        event: the Botpress event (``event.state`` holds ``user``, ``session``, ``temp`` once loaded).
        replies: reply dicts so far.
        delay_ms: pending ``wait`` time, put on the next reply.
    """

    def __init__(
        self,
        bot: BotpressBot,
        bp: BotSDK,
        user_id: str,
        conversation_id: str,
        blob: Mapping[str, Any] | None,
        now: float,
        event_type: str = "text",
        text: str = "",
    ) -> None:
        blob = blob or {}
        self.bot = bot
        self.bp = bp
        self.user_id = user_id
        self.conversation_id = conversation_id
        self.now = now
        self.temp: dict[str, Any] = dict(blob.get("temp") or {})
        self.context: dict[str, Any] = dict(blob.get("context") or {})
        self.nlu_contexts: list[dict[str, Any]] = [c for c in blob.get("nluContexts") or [] if isinstance(c, dict)]
        self.messages = int(blob.get("messages") or 0)
        self.replies: list[dict[str, Any]] = []
        self.delay_ms = 0
        self.stacktrace: list[dict[str, str]] = []
        self.steps = 0
        self.flow_ended = False
        self.session_reset = False
        self._scopes: dict[str, _Tracked] = {}
        self.event_state: dict[str, Any] = {"temp": self.temp, "context": self.context, "__stacktrace": self.stacktrace}
        self.event: dict[str, Any] = {
            "id": uuid.uuid4().hex,
            "type": event_type,
            "channel": "api",
            "direction": "incoming" if event_type != "timeout" else "internal",
            "botId": bot.id,
            "target": user_id,
            "threadId": conversation_id,
            "payload": {"type": "text", "text": text} if event_type == "text" else {},
            "preview": text,
            "createdOn": now,
            "nlu": {
                "intent": {"name": "none", "confidence": 1.0, "context": "global"},
                "intents": [],
                "entities": [],
                "slots": {},
                "includedContexts": ["global"],
                "language": bot.language,
            },
            "state": self.event_state,
        }

    # -- memory -------------------------------------------------------------------
    def _handle(self, scope: str) -> Scope:
        owner = {"user": self.user_id, "session": self.conversation_id}.get(scope)
        return self.bp.memory.scope(_MEMORY_SCOPES[scope], owner)

    async def scope_dict(self, scope: str) -> dict[str, Any]:
        """The scope (``user``, ``session``, ``bot``) as a dict, loaded on first use; ``temp`` as is."""
        if scope == "temp":
            return self.temp
        tracked = self._scopes.get(scope)
        if tracked is None:
            handle = self._handle(scope)
            tracked = self._scopes[scope] = _Tracked(handle, await handle.items())
            self.event_state[scope] = tracked.data
        return tracked.data

    async def load(self, roots: frozenset[str] | set[str] | tuple[str, ...] = ("user", "session", "bot")) -> None:
        for scope in roots:
            if scope in _MEMORY_SCOPES:
                await self.scope_dict(scope)

    async def get_var(self, scope: str, name: str) -> Any:
        """A variable, or ``UNDEFINED``."""
        if scope == "temp":
            return self.temp.get(name, UNDEFINED)
        tracked = self._scopes.get(scope)
        if tracked is not None:
            return tracked.data.get(name, UNDEFINED)
        missing = object()
        value = await self._handle(scope).get(name, missing)
        return UNDEFINED if value is missing else value

    async def set_var(self, scope: str, name: str, value: Any, expiry: Any = None) -> None:
        """Write a variable through the store (``temp``: the flow state)."""
        if scope == "temp":
            self.temp[name] = value
            return
        if value is UNDEFINED:
            await self.delete_var(scope, name)
            return
        await self._handle(scope).set(name, value, expiry)
        tracked = self._scopes.get(scope)
        if tracked is not None:
            tracked.data[name] = value
            tracked.snapshot[name] = _encode(value)

    async def delete_var(self, scope: str, name: str) -> None:
        if scope == "temp":
            self.temp.pop(name, None)
            return
        await self._handle(scope).delete(name)
        tracked = self._scopes.get(scope)
        if tracked is not None:
            tracked.data.pop(name, None)
            tracked.snapshot.pop(name, None)

    async def sync(self) -> None:
        """Write what bot code changed in the loaded scopes (``event.state.user.x = …``) through the store."""
        for tracked in self._scopes.values():
            for name, value in list(tracked.data.items()):
                encoded = _encode(value)
                if tracked.snapshot.get(name) != encoded:
                    if not isinstance(name, str):
                        raise InvalidInputError(f"variable names must be strings, got {name!r}")
                    await tracked.handle.set(name, value)
                    tracked.snapshot[name] = encoded
            for name in [n for n in tracked.snapshot if n not in tracked.data]:
                await tracked.handle.delete(name)
                del tracked.snapshot[name]

    async def reset_session(self) -> None:
        """``resetSession``: the session's variables and ``temp`` are discarded; the dialog goes on."""
        await self.sync()
        users = self.bp.bot.users
        await users.end_conversation(self.conversation_id, user_id=self.user_id, reason="reset_session")
        tracked = self._scopes.get("session")
        if tracked is not None:
            tracked.data.clear()
            tracked.snapshot.clear()
        self.temp.clear()
        self.session_reset = True

    async def view(self, roots: frozenset[str], reads_state: bool) -> dict[str, Any]:
        """What conditions and templates see, with the memory they read loaded."""
        await self.load(("user", "session", "bot") if reads_state else roots)
        if len(self.bot.languages) > 1 and "user" not in self._scopes:
            await self.scope_dict("user")  # the reply's language is user.language
        view: dict[str, Any] = {
            "event": self.event,
            "user": self._scopes["user"].data if "user" in self._scopes else {},
            "session": self._scopes["session"].data if "session" in self._scopes else {},
            "temp": self.temp,
            "bot": self._scopes["bot"].data if "bot" in self._scopes else {},
            "workflow": {},
        }
        if self.bot.version == 11:
            view["state"] = self.temp  # v11's session state is what v12 calls temp
        return view

    def language(self) -> str | None:
        user = self._scopes.get("user")
        value = user.data.get("language") if user is not None else None
        return value if isinstance(value, str) and value else None

    def bot_logger(self) -> logging.Logger:
        return self.bp.logger

    def blob(self) -> dict[str, Any]:
        """What the session row keeps of this turn."""
        return {"temp": self.temp, "context": self.context, "nluContexts": self.nlu_contexts, "messages": self.messages}

    def reply(self, reply: dict[str, Any]) -> None:
        if reply.get("type") in SILENT_REPLY_TYPES:
            return
        if self.delay_ms:
            reply["delay"] = self.delay_ms
            self.delay_ms = 0
        self.replies.append(reply)
