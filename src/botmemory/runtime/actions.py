"""Actions: the built-ins named as in the Botpress docs, and the SDK handles.

Built-ins (arguments in parentheses; ``?`` = optional):

- ``setUserVariable``, ``setConversationVariable``, ``setGlobalVariable``
  (``name``, ``value``, ``expiry?``)
- ``getUserVariable``, ``getConversationVariable``, ``getGlobalVariable``
  (``name``, ``output``): the value (``None`` when unset) goes to ``temp[output]``
- ``incrUserVariable``, ``incrConversationVariable``, ``incrGlobalVariable``
  (``name``, ``amount?`` = 1, ``output?``): atomic; the new number goes to
  ``temp[output]`` when ``output`` is given
- ``deleteUserVariable``, ``deleteConversationVariable``,
  ``deleteGlobalVariable`` (``name``)
- ``say`` (``text``), also written ``- say: "text"``

Custom actions live in the bot's ``actions/*.py``: every public
``async def name(ctx, **args)`` there is an action called ``name``. ``ctx``
is an ``ActionContext``: the SDK handles (``ctx.kvs``, ``ctx.global_kvs``,
``ctx.memory``, ``ctx.bot_id``, ``ctx.logger``) plus ``ctx.user_id``,
``ctx.conversation_id``, ``ctx.temp`` (a dict the action may change),
``ctx.event`` (the incoming message) and ``ctx.say(text)`` to reply. The
action returns ``None`` or a dict, whose items are merged into ``temp``
(the Botpress convention for actions that compute something). Anything
else it returns is an error.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from ..errors import ValueTypeError

if TYPE_CHECKING:
    from ..kvs import KVS
    from ..memory import DialogMemory, Scope
    from ..store import Bot

__all__ = ["BUILTIN_ACTIONS", "ActionContext", "ActionSpec", "BotSDK", "custom_action_spec"]


class BotSDK:
    """``bp``: the bot's SDK handle given to hooks (and, through the context, to actions).

    Attributes:
        bot_id: the bot's id.
        kvs: the bot's KVS.
        global_kvs: the server-wide KVS.
        memory: the bot's dialog memory.
        logger: a ``logging.Logger`` named ``botmemory.bots.<bot_id>``.
        bot: the ``botmemory.Bot`` handle (also gives ``bot.users``).
    """

    __slots__ = ("bot", "bot_id", "global_kvs", "kvs", "logger", "memory")

    def __init__(self, bot: Bot) -> None:
        self.bot = bot
        self.bot_id: str = bot.id
        self.kvs: KVS = bot.kvs
        self.global_kvs: KVS = bot.store.global_kvs
        self.memory: DialogMemory = bot.memory
        self.logger = logging.getLogger(f"botmemory.bots.{bot.id}")

    def __repr__(self) -> str:
        return f"<BotSDK {self.bot_id!r}>"


class ActionContext:
    """What an action sees: the SDK handles plus this turn's ids, ``temp`` and event."""

    __slots__ = ("bot", "bot_id", "conversation_id", "event", "global_kvs", "kvs", "logger", "memory", "replies",
                 "temp", "user_id")

    def __init__(
        self, bp: BotSDK, user_id: str, conversation_id: str, temp: dict[str, Any], event: dict[str, Any]
    ) -> None:
        self.bot = bp.bot
        self.bot_id = bp.bot_id
        self.kvs = bp.kvs
        self.global_kvs = bp.global_kvs
        self.memory = bp.memory
        self.logger = bp.logger
        self.user_id = user_id
        self.conversation_id = conversation_id
        self.temp = temp
        self.event = event
        self.replies: list[dict[str, Any]] = []

    def say(self, text: str) -> None:
        """Reply with ``text`` (it goes through ``before_outgoing`` like every reply)."""
        if not isinstance(text, str):
            raise ValueTypeError(f"say() takes a str, got {type(text).__name__}")
        self.replies.append({"type": "text", "text": text})

    def scope(self, scope: str) -> Scope:
        """The memory scope ``"user"``, ``"conversation"`` or ``"global"`` of this turn."""
        owner = {"user": self.user_id, "conversation": self.conversation_id}.get(scope)
        return self.memory.scope(scope, owner)


ActionFn = Callable[[ActionContext, dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class ActionSpec:
    """How an action is called and which arguments the loader accepts.

    Attributes:
        name: the action's name in flow files.
        run: ``await run(ctx, args)`` with the resolved arguments.
        required: arguments that must be given (None: any, for custom actions).
        optional: arguments that may be given.
        names: arguments that must be constant strings (``output``), or
            variable names checked at load time when constant.
        expiry_args: arguments holding an expiry, checked at load time when constant.
    """

    name: str
    run: ActionFn
    required: frozenset[str] | None = None
    optional: frozenset[str] = frozenset()
    names: frozenset[str] = frozenset()
    expiry_args: frozenset[str] = frozenset()
    shorthand: str | None = None  # `- say: "text"` means {text: "text"}
    #: arguments that are always text: a lone ``{{ expr }}`` renders as a template
    #: (a missing variable gives "") instead of keeping the expression's type
    text_args: frozenset[str] = frozenset()
    #: the bot's own code (custom actions): run bounded by ``action_timeout`` (``guard.run_bot_code``)
    bot_code: bool = False
    signature: inspect.Signature | None = None  # of a custom action, to check calls at load time

    def check_call(self, names: Collection[str]) -> str | None:
        """Why calling this action with these argument names cannot work, or None."""
        if self.signature is None:
            return None
        try:
            self.signature.bind(None, **dict.fromkeys(names))
        except TypeError as exc:
            return str(exc)
        return None


def _setter(scope: str) -> ActionFn:
    async def run(ctx: ActionContext, args: dict[str, Any]) -> None:
        await ctx.scope(scope).set(args["name"], args["value"], args.get("expiry"))

    return run


def _getter(scope: str) -> ActionFn:
    async def run(ctx: ActionContext, args: dict[str, Any]) -> None:
        ctx.temp[args["output"]] = await ctx.scope(scope).get(args["name"])

    return run


def _incr(scope: str) -> ActionFn:
    async def run(ctx: ActionContext, args: dict[str, Any]) -> None:
        number = await ctx.scope(scope).incr(args["name"], args.get("amount", 1))
        if "output" in args:
            ctx.temp[args["output"]] = number

    return run


def _deleter(scope: str) -> ActionFn:
    async def run(ctx: ActionContext, args: dict[str, Any]) -> None:
        await ctx.scope(scope).delete(args["name"])

    return run


async def _say(ctx: ActionContext, args: dict[str, Any]) -> None:
    text = args["text"]
    ctx.say(text if isinstance(text, str) else str(text))


def _builtins() -> dict[str, ActionSpec]:
    specs: dict[str, ActionSpec] = {}
    for scope, word in (("user", "User"), ("conversation", "Conversation"), ("global", "Global")):
        specs[f"set{word}Variable"] = ActionSpec(
            f"set{word}Variable", _setter(scope), frozenset({"name", "value"}), frozenset({"expiry"}),
            frozenset({"name"}), frozenset({"expiry"}),
        )
        specs[f"get{word}Variable"] = ActionSpec(
            f"get{word}Variable", _getter(scope), frozenset({"name", "output"}), frozenset(),
            frozenset({"name", "output"}),
        )
        specs[f"incr{word}Variable"] = ActionSpec(
            f"incr{word}Variable", _incr(scope), frozenset({"name"}), frozenset({"amount", "output"}),
            frozenset({"name", "output"}),
        )
        specs[f"delete{word}Variable"] = ActionSpec(
            f"delete{word}Variable", _deleter(scope), frozenset({"name"}), frozenset(), frozenset({"name"}),
        )
    specs["say"] = ActionSpec("say", _say, frozenset({"text"}), shorthand="text", text_args=frozenset({"text"}))
    return specs


#: Every built-in action by name.
BUILTIN_ACTIONS: Final[Mapping[str, ActionSpec]] = _builtins()


def custom_action_spec(name: str, fn: Callable[..., Awaitable[Any]]) -> ActionSpec:
    """Wrap ``async def fn(ctx, **args)`` from ``actions/*.py`` as an action."""

    async def run(ctx: ActionContext, args: dict[str, Any]) -> None:
        result = await fn(ctx, **args)
        if result is None:
            return
        if not isinstance(result, Mapping):
            raise ValueTypeError(f"action {name!r} returned a {type(result).__name__}; expected None or a dict")
        for key, value in result.items():
            if not isinstance(key, str):
                raise ValueTypeError(f"action {name!r} returned a dict with a non-str key {key!r}")
            ctx.temp[key] = value

    try:
        signature: inspect.Signature | None = inspect.signature(fn)
    except (TypeError, ValueError):
        signature = None
    return ActionSpec(name, run, signature=signature, bot_code=True)
