"""Botpress's built-in actions and the basic-skills module actions, in Python.

Memory actions write through botmemory's store (``user`` -> user scope,
``session`` -> conversation scope, ``bot``/global -> global scope), so
retention policies, the audit log, export and forget see them; ``temp`` is
the conversation's flow state. Each follows its Botpress source (v12.30.9's
``modules/builtin/src/actions``, v11.0.1's ``data/global/actions``, the
basic-skills module), minus the bugs the spec lists: ``reset*Variable``
deletes that one variable of this bot (Botpress deleted by key prefix,
across bots), and an unparseable expiry is an error (Botpress stored the
value as already expired).

``wait {delay}`` does not sleep: replies are returned together at the end of
a turn, so sleeping would only delay all of them. The delay is added to the
next reply as ``"delay"`` (milliseconds), for a channel that paces messages.
"""

from __future__ import annotations

import math
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Final

from ...errors import InvalidInputError
from ...keys import validate_key
from .jsvalues import UNDEFINED, is_nullish, to_number, to_string
from .model import as_dict, as_str

if TYPE_CHECKING:
    from .model import BotpressBot
    from .turn import Turn

__all__ = [
    "BUILTIN_ACTIONS",
    "MODULE_ACTIONS",
    "SKILL_ACTIONS",
    "action_arguments_problem",
    "builtin_name",
    "ms_duration",
]

Handler = Callable[["Turn", dict[str, Any]], Awaitable[None]]

_MS_RE: Final = re.compile(
    r"(-?(?:\d+)?\.?\d+) *(milliseconds?|msecs?|ms|seconds?|secs?|s|minutes?|mins?|m|hours?|hrs?|h|days?|d|"
    r"weeks?|w|years?|yrs?|y)?",
    re.IGNORECASE,
)
_MS_UNITS: Final = {
    "ms": 0.001,
    "msec": 0.001,
    "millisecond": 0.001,
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hr": 3600.0,
    "hour": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
    "w": 604800.0,
    "week": 604800.0,
    "y": 31557600.0,
    "yr": 31557600.0,
    "year": 31557600.0,
}
_MAX_EXPIRY_S: Final = 36525 * 86400.0


def ms_duration(raw: Any) -> float | None:
    """Seconds for an ``ms``-package duration (``"6 hours"``, ``"2d"``, ``1000`` = ms), or None when unparseable."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int | float):
        return float(raw) / 1000 if math.isfinite(raw) else None
    if not isinstance(raw, str) or len(raw) > 100:
        return None
    match = _MS_RE.fullmatch(raw.strip())
    if match is None:
        return None
    unit = (match.group(2) or "ms").lower()
    unit = unit[:-1] if unit.endswith("s") and unit not in ("ms", "s") else unit
    if unit == "msec":
        unit = "ms"
    factor = _MS_UNITS.get(unit)
    if factor is None:
        return None
    return float(match.group(1)) * factor


def _expiry(raw: Any) -> float | None:
    """A Botpress expiry argument as seconds for the store (None: never).

    Raises:
        InvalidInputError: not ``"never"`` nor an ``ms``-style duration, or not positive.
    """
    if is_nullish(raw) or raw == "" or raw == "never":
        return None
    seconds = ms_duration(raw)
    if seconds is None or seconds <= 0 or seconds > _MAX_EXPIRY_S:
        raise InvalidInputError(f'bad expiry {raw!r}: expected "never" or a duration such as "6 hours"')
    return seconds


def _name(args: Mapping[str, Any], key: str = "name") -> str:
    value = args.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidInputError(f"argument {key!r} must be a non-empty string")
    return value


def _output(turn: Turn, args: Mapping[str, Any], value: Any) -> None:
    output = args.get("output")
    if isinstance(output, str) and output:
        if value is UNDEFINED:
            turn.temp.pop(output, None)  # JSON has no undefined: the key is simply absent
        else:
            turn.temp[output] = value


# -- v12 builtin module -----------------------------------------------------------
_SCOPE_OF_TYPE: Final = {"user": "user", "session": "session", "temp": "temp", "bot": "bot"}


def _type(args: Mapping[str, Any]) -> str:
    kind = args.get("type")
    if kind not in _SCOPE_OF_TYPE:
        raise InvalidInputError(f"type must be one of user, session, temp, bot; got {kind!r}")
    return _SCOPE_OF_TYPE[kind]


async def _set_variable(turn: Turn, args: dict[str, Any]) -> None:
    scope, name = _type(args), _name(args)
    value = args.get("value", UNDEFINED)
    if value == "null" or value == "" or value is UNDEFINED:
        await turn.delete_var(scope, name)
    else:
        await turn.set_var(scope, name, value)


async def _remove_variable(turn: Turn, args: dict[str, Any]) -> None:
    await turn.delete_var(_type(args), _name(args))


async def _get_global(turn: Turn, args: dict[str, Any]) -> None:
    value = await turn.get_var("bot", _name(args))
    output = args.get("output")
    if isinstance(output, str) and output:
        turn.temp[output] = None if value is UNDEFINED else value


async def _set_global(turn: Turn, args: dict[str, Any]) -> None:
    value = args.get("value")
    await turn.set_var("bot", _name(args), value, expiry=_expiry(args.get("expiry")))
    _output(turn, args, value)


async def _reset_global(turn: Turn, args: dict[str, Any]) -> None:
    await turn.delete_var("bot", _name(args))


async def _get_conversations(turn: Turn, args: dict[str, Any]) -> None:
    _output(turn, args, await turn.get_var("user", "numberOfConversations"))


async def _increment_conversations(turn: Turn, args: dict[str, Any]) -> None:
    current = await turn.get_var("user", "numberOfConversations")
    if current is UNDEFINED:
        value: int | float = 0  # Botpress: "Value could be 0"
    else:
        number = to_number(current) + 1
        value = (
            int(number) if math.isfinite(number) and number.is_integer() else (number if math.isfinite(number) else 0)
        )
    await turn.set_var("user", "numberOfConversations", value)
    _output(turn, args, value)


async def _wait(turn: Turn, args: dict[str, Any]) -> None:
    delay = to_number(args.get("delay", 1000))
    turn.delay_ms += int(delay) if math.isfinite(delay) and delay > 0 else 0


async def _reset_session(turn: Turn, args: dict[str, Any]) -> None:
    await turn.reset_session()


def _contexts(args: Mapping[str, Any]) -> list[str]:
    raw = args.get("contexts")
    if not isinstance(raw, str):
        raise InvalidInputError("argument 'contexts' must be a comma-separated string")
    return [c for c in raw.strip().split(",") if c != ""] if raw.strip() else []


async def _append_context(turn: Turn, args: dict[str, Any]) -> None:
    ttl_raw = to_number(args.get("ttl", UNDEFINED))
    ttl = 1000 if math.isnan(ttl_raw) else ttl_raw
    merged = [*turn.nlu_contexts, *({"context": c, "ttl": ttl} for c in _contexts(args))]
    final: list[dict[str, Any]] = []
    for entry in merged:  # one entry per context, the longest ttl kept, first-seen order
        if any(e["context"] == entry["context"] for e in final):
            continue
        best = max((e for e in merged if e["context"] == entry["context"]), key=lambda e: to_number(e["ttl"]))
        final.append(
            {"context": best["context"], "ttl": int(best["ttl"]) if float(best["ttl"]).is_integer() else best["ttl"]}
        )
    turn.nlu_contexts[:] = final


async def _remove_context(turn: Turn, args: dict[str, Any]) -> None:
    remove = set(to_string(args.get("contexts", "")).split(","))
    turn.nlu_contexts[:] = [c for c in turn.nlu_contexts if c.get("context") not in remove]


async def _reset_context(turn: Turn, args: dict[str, Any]) -> None:
    turn.nlu_contexts.clear()


async def _switch_language(turn: Turn, args: dict[str, Any]) -> None:
    await turn.set_var("user", "language", _name(args, "lang").lower())


# -- v11.0.1 global actions ---------------------------------------------------------
def _v11_set(scope: str) -> Handler:
    async def run(turn: Turn, args: dict[str, Any]) -> None:
        value = args.get("value")
        await turn.set_var(scope, _name(args), value, expiry=_expiry(args.get("expiry")))
        _output(turn, args, value)

    return run


def _v11_get(scope: str) -> Handler:
    async def run(turn: Turn, args: dict[str, Any]) -> None:
        _output(turn, args, await turn.get_var(scope, _name(args)))

    return run


def _v11_reset(scope: str) -> Handler:
    async def run(turn: Turn, args: dict[str, Any]) -> None:
        await turn.delete_var(scope, _name(args))

    return run


#: Built-in actions by name (also reachable as ``builtin/<name>``).
BUILTIN_ACTIONS: Final[dict[str, Handler]] = {
    "setVariable": _set_variable,
    "removeVariable": _remove_variable,
    "getGlobalVariable": _get_global,
    "setGlobalVariable": _set_global,
    "resetGlobalVariable": _reset_global,
    "getNumberOfConversations": _get_conversations,
    "incrementNumberOfConversations": _increment_conversations,
    "wait": _wait,
    "resetSession": _reset_session,
    "appendContext": _append_context,
    "removeContext": _remove_context,
    "resetContext": _reset_context,
    "switchLanguage": _switch_language,
    "setUserVariable": _v11_set("user"),
    "getUserVariable": _v11_get("user"),
    "resetUserVariable": _v11_reset("user"),
    "setConversationVariable": _v11_set("session"),
    "getConversationVariable": _v11_get("session"),
    "resetConversationVariable": _v11_reset("session"),
}
# v11.0.1's getGlobalVariable wrote its output like the other v11 getters; v12's takes the same arguments.


def builtin_name(name: str) -> str | None:
    """The built-in action ``name`` refers to (``builtin/setVariable`` -> ``setVariable``), or None."""
    plain = name[len("builtin/") :] if name.startswith("builtin/") else name
    return plain if plain in BUILTIN_ACTIONS else None


# -- basic-skills ----------------------------------------------------------------------
_NUMBER_RE: Final = re.compile(r"^[#).!]?([0-9]{1,2})[#).!]?$")


def _lc(value: Any) -> str:
    return value.lower() if isinstance(value, str) else ""


async def _choice_parse(turn: Turn, args: dict[str, Any]) -> None:
    keywords = as_dict(args.get("keywords"))
    event = turn.event
    preview = as_str(event.get("preview"))
    payload = as_dict(event.get("payload"))
    choice: str | None = None
    number = _NUMBER_RE.match(preview)
    if number:  # basic-skills' matchNumbers: the n-th choice of the element as stored (untranslated)
        choices = turn.bot.renderer.raw_choices(str(args.get("contentId", "")))
        index = int(number.group(1)) - 1
        if choices is not None and 0 <= index < len(choices) and isinstance(choices[index], dict):
            value = choices[index].get("value")
            choice = value if isinstance(value, str) and value else None
    intent = as_dict(as_dict(event.get("nlu")).get("intent")).get("name")
    if not choice:  # matchNLU: keywords "intent:<name>"
        for key, words in keywords.items():
            names = [w[len("intent:") :] for w in words or [] if isinstance(w, str) and w.lower().startswith("intent:")]
            if intent in names:
                choice = key
                break
    if not choice:
        texts = (_lc(preview), _lc(payload.get("text")), _lc(payload.get("payload")))
        for exact in (True, False):  # exact first, then "the message contains the keyword"
            for key, words in keywords.items():
                if any((_lc(w) in texts) if exact else any(_lc(w) in t for t in texts) for w in words or []):
                    choice = key
                    break
            if choice:
                break
    suffix = f"-{args['randomId']}" if args.get("randomId") else ""
    if choice:
        turn.temp[f"skill-choice-valid{suffix}"] = True
        turn.temp[f"skill-choice-ret{suffix}"] = choice
    else:
        turn.temp[f"skill-choice-valid{suffix}"] = False


async def _choice_parse_v11(turn: Turn, args: dict[str, Any]) -> None:
    keywords = as_dict(args.get("keywords"))
    preview = _lc(turn.event.get("preview"))
    choice: str | None = None
    number = _NUMBER_RE.match(preview)
    if number:
        choices = turn.bot.renderer.raw_choices(str(args.get("contentId", "")))
        index = int(number.group(1)) - 1
        if choices is not None and 0 <= index < len(choices) and isinstance(choices[index], dict):
            value = choices[index].get("value")
            choice = value if isinstance(value, str) and value else None
    if not choice:
        for key, words in keywords.items():
            if any(_lc(w) in preview for w in words or []):
                choice = key
                break
    turn.temp["skill-choice-valid"] = bool(choice)
    if choice:
        turn.temp["skill-choice-ret"] = choice


async def _choice_invalid(turn: Turn, args: dict[str, Any]) -> None:
    key = f"skill-choice-invalid-count-{args['randomId']}" if args.get("randomId") else "skill-choice-invalid-count"
    current = turn.temp.get(key)
    number = to_number(current) if current else 0.0
    turn.temp[key] = int(number + 1) if math.isfinite(number) and number.is_integer() else number + 1


async def _slots(turn: Turn) -> dict[str, Any]:
    session = await turn.scope_dict("session")
    slots = session.get("slots")
    if not isinstance(slots, dict):
        slots = session["slots"] = {}
    return slots


async def _slot_fill(turn: Turn, args: dict[str, Any]) -> None:
    slot_name = _name(args, "slotName")
    entities = [e for e in to_string(args.get("entities", "")).split(",") if e]
    slots = await _slots(turn)
    found = turn.event.get("nlu", {}).get("entities") or []
    turn_expiry = args.get("turnExpiry", False)

    def set_slot(entity: dict[str, Any]) -> None:
        if not slots.get(slot_name):
            slots[slot_name] = {
                "name": slot_name,
                "value": entity["data"]["value"],
                "entity": entity,
                "timestamp": int(turn.now * 1000),
                "turns": 0,
                "overwritable": True,
                "expiresAfterTurns": turn_expiry if isinstance(turn_expiry, int | float) else False,
            }
            slots["notFound"] = 0

    if entities and found:
        for entity in found:
            if entity.get("name") in entities:
                set_slot(entity)
    elif "any" in entities:
        text = turn.event.get("payload", {}).get("text") or turn.event.get("preview") or ""
        set_slot(
            {
                "name": "any",
                "type": "any",
                "meta": {"start": 0, "end": len(text)},
                "data": {"extras": {}, "value": text},
            }
        )


async def _slot_not_found(turn: Turn, args: dict[str, Any]) -> None:
    slots = await _slots(turn)
    if not slots.get("notFound"):
        slots["notFound"] = 1
    limit = min(to_number(args.get("retryAttempts", 3)), 10)
    tries = to_number(turn.temp.get("tryFillSlotCount", UNDEFINED))
    if tries < limit:
        turn.temp["tryFillSlotCount"] = int(tries + 1)
    else:
        turn.temp["notExtracted"] = "true"


async def _slot_reset(turn: Turn, args: dict[str, Any]) -> None:
    slots = await _slots(turn)
    slots.pop(to_string(args.get("slotName", UNDEFINED)), None)  # no name: slots["undefined"], as in Botpress


async def _slot_update_contexts(turn: Turn, args: dict[str, Any]) -> None:
    intent = turn.bot.matcher.intents.get(to_string(args.get("intentName", "")))
    contexts = list(intent.contexts) if intent is not None else []
    turn.nlu_contexts[:] = [{"context": c, "ttl": 1000} for c in contexts]
    turn.temp.update({"tryFillSlotCount": 1, "extracted": False, "notExtracted": False, "alreadyExtracted": False})
    turn.temp.pop("valid", None)


async def _call_api(turn: Turn, args: dict[str, Any]) -> None:
    """The CallAPI skill needs the network: without ``actions/basic-skills/call_api.py`` it fails."""
    suffix = f"_{args['randomId']}" if args.get("randomId") else ""
    memory = as_str(args.get("memory"))
    memory = memory if memory in ("temp", "session", "user", "bot") else "temp"
    variable = as_str(args.get("variable")) or "response"
    turn.bot_logger().warning(
        "basic-skills/call_api is not available without actions/basic-skills/call_api.py: "
        "the skill takes its failure transition"
    )
    await turn.set_var(memory, variable, {"status": ""})
    turn.temp[f"valid{suffix}"] = False


async def _send_email(turn: Turn, args: dict[str, Any]) -> None:
    """The SendEmail skill needs SMTP: without ``actions/basic-skills/send_email.py`` it fails."""
    turn.bot_logger().warning(
        "basic-skills/send_email is not available without actions/basic-skills/send_email.py: "
        "the skill takes its failure transition"
    )
    turn.temp["success"] = False


async def _no_agent(turn: Turn, args: dict[str, Any]) -> None:
    """The HitlNext skill needs human agents: without a Python replacement, none is available."""
    turn.bot_logger().warning("hitlnext has no agents here without actions/hitlnext/*.py: the skill exits 'noAgent'")
    turn.temp["hitlnext-noAgent"] = True


#: Actions of skills that need the outside world, accepted only inside their skill's generated flow
#: (``skills/<Skill>-*.flow.json``), by skill.
SKILL_ACTIONS: Final[dict[str, dict[str, Handler]]] = {
    "HitlNext": {"hitlnext/check_agents": _no_agent, "hitlnext/handoff": _no_agent},
}

#: Module actions run natively (a ``actions/<module>/<name>.py`` replaces any of them).
MODULE_ACTIONS: Final[dict[str, Handler]] = {
    "basic-skills/choice_parse_answer": _choice_parse,
    "basic-skills/choice_invalid_answer": _choice_invalid,
    "basic-skills/parse_answer": _choice_parse_v11,
    "basic-skills/invalid_answer": _choice_invalid,
    "skill-choice/parse_answer": _choice_parse_v11,
    "skill-choice/invalid_answer": _choice_invalid,
    "basic-skills/slot_fill": _slot_fill,
    "basic-skills/slot_not_found": _slot_not_found,
    "basic-skills/slot_reset": _slot_reset,
    "basic-skills/slot_update_contexts": _slot_update_contexts,
    "basic-skills/call_api": _call_api,
    "basic-skills/send_email": _send_email,
}

_MEMORY_NAME_ARGS: Final = {
    "setVariable": "name",
    "removeVariable": "name",
    "getGlobalVariable": "name",
    "setGlobalVariable": "name",
    "resetGlobalVariable": "name",
    "setUserVariable": "name",
    "getUserVariable": "name",
    "resetUserVariable": "name",
    "setConversationVariable": "name",
    "getConversationVariable": "name",
    "resetConversationVariable": "name",
}


def action_arguments_problem(name: str, args: Mapping[str, Any], bot: BotpressBot) -> str | None:
    """Why a call with these constant arguments cannot work, or None (templates are checked when they run)."""
    var = _MEMORY_NAME_ARGS.get(name)
    if var is not None:
        value = args.get(var)
        if not isinstance(value, str) or not value:
            return f"argument {var!r} must be a non-empty string"
        if "{{" not in value:
            try:
                validate_key(value, 256, "variable name")
            except InvalidInputError as exc:
                return str(exc)
    if name in ("setVariable", "removeVariable"):
        kind = args.get("type")
        if not (isinstance(kind, str) and ("{{" in kind or kind in _SCOPE_OF_TYPE)):
            return f"type must be one of user, session, temp, bot; got {kind!r}"
    expiry = args.get("expiry")
    setters = ("setGlobalVariable", "setUserVariable", "setConversationVariable")
    if expiry is not None and name in setters and not (isinstance(expiry, str) and "{{" in expiry):
        try:
            _expiry(expiry)
        except InvalidInputError as exc:
            return str(exc)
    if name in ("appendContext", "removeContext") and not isinstance(args.get("contexts"), str):
        return "argument 'contexts' must be a comma-separated string"
    return None
