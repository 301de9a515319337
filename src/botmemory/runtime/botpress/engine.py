"""The Botpress dialog engine on botmemory's runtime: one turn of one conversation.

A port of Botpress 12.30.9's ``DialogEngine``/``DecisionEngine`` (v11.0.1's
where the spec says so), over botmemory's sessions, leases and memory:

1. ``before_incoming_middleware`` hooks; the NLU (intents of the active
   contexts, entities, slots); context TTLs counted down; slots copied into
   ``session.slots``; ``after_incoming_middleware`` hooks.
2. Outside a flow, a QnA answer with confidence >= 0.5 is sent (and a QnA
   redirect jumps into its flow); otherwise the dialog engine runs.
3. The dialog engine works through the node's instruction queue: ``onEnter``,
   a wait when the node has ``onReceive`` (v12: not null; v11: non-empty),
   ``onReceive`` on the next message, then the flow's ``catchAll.next`` and the
   node's ``next``; skill-call nodes enter their skill's flow, ``#`` returns.
   No instruction left, ``END`` or an empty target ends the flow:
   ``before_conversation_end`` hooks, ``conversation_end.flow.json``, then
   ``temp`` and the NLU contexts are cleared (v11.0.1: the session ends).
4. The session row keeps ``temp``, the dialog context (flow, node, queue,
   jump points) and the contexts, with the bot's session timeout. Memory
   (``user``, ``session``, ``bot``) is written through the store as it
   changes, and once more for whatever hooks and Python actions changed in
   ``event.state``.

An instruction that fails sends the conversation to ``error.flow.json``
when the bot has one; otherwise the turn answers the bot's error message,
the memory written so far stays, and the session stays where the turn began.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from typing import TYPE_CHECKING, Any, Final, cast

import orjson

from ...cancellation import stop_if_cancelled
from ...errors import InvalidInputError
from ..actions import ActionContext, custom_action_spec
from ..guard import BotCodeError, run_bot_code
from ..sessions import Session
from .actions import BUILTIN_ACTIONS, MODULE_ACTIONS, SKILL_ACTIONS, builtin_name
from .content import ContentError, pick
from .jsexpr import compile_condition
from .model import Action, BotpressBot, Flow, Node, Say, as_dict, as_str
from .mustache import TemplateError
from .nlu import QNA_PREFIX, THRESHOLD
from .turn import Turn

if TYPE_CHECKING:
    from ..metrics import TurnStats

__all__ = ["BotpressEngine", "Turn"]

logger = logging.getLogger("botmemory.runtime")

#: Instructions one turn may run before it is stopped as a loop.
MAX_INSTRUCTIONS: Final = 2_000
#: A node entered this many times in one turn is a loop (Botpress's InfiniteLoopError).
LOOP_VISITS: Final = 3
_TIMEOUT_FLOW: Final = "timeout.flow.json"
_END_FLOW: Final = "conversation_end.flow.json"
_ERROR_FLOW: Final = "error.flow.json"

# Replies of timeout flows run while a message arrives after the timeout (see BotpressEngine.timed_out).
_timeout_replies: contextvars.ContextVar[list[dict[str, Any]] | None] = contextvars.ContextVar(
    "botpress_timeout_replies", default=None
)


class DialogError(Exception):
    """The dialog cannot go on (a loop, a flow or node that does not exist)."""

    def __init__(self, message: str, *, loop: bool = False) -> None:
        super().__init__(message)
        self.loop = loop


class _Dialog:
    """Botpress's DialogEngine over one ``Turn`` (``processEvent`` as a loop)."""

    def __init__(self, engine: BotpressEngine, turn: Turn) -> None:
        self.engine = engine
        self.turn = turn
        self.bot = turn.bot
        self.v11 = turn.bot.version == 11

    # -- lookup ------------------------------------------------------------------------
    def flow(self, name: str | None) -> Flow:
        flow = self.bot.find_flow(name)
        if flow is None:
            raise DialogError(f"flow {name!r} not found")
        return flow

    def node(self, flow: Flow, name: str | None) -> Node:
        node = flow.nodes.get(name or "")
        if node is None:
            raise DialogError(f"node {name!r} not found in {flow.name}")
        return node

    # -- queue ---------------------------------------------------------------------------
    def transitions(self, flow: Flow, node: Node | None) -> list[dict[str, Any]]:
        if self.v11:
            if node is None or not node.next:
                return []
            items = [*flow.catch_all_next, *node.next]
        else:
            own = node.name if node is not None else None
            items = [t for t in flow.catch_all_next if t.target != own] + (node.next if node else [])
        return [{"type": "transition", "fn": t.condition, "node": t.target} for t in items]

    def build(
        self, node: Node, flow: Flow, *, has_jumped: bool = False, only_transitions: bool = False
    ) -> list[dict[str, Any]]:
        queue: list[dict[str, Any]] = []
        if has_jumped:
            queue += [{"type": "transition", "fn": t.condition, "node": t.target} for t in flow.catch_all_next]
        if not only_transitions:
            queue += [{"type": "on-enter", "fn": fn} for fn in node.on_enter]
            if self.v11:
                receive = [*flow.catch_all_on_receive, *(node.on_receive or [])]
                if receive:
                    queue += [{"type": "wait"}] + [{"type": "on-receive", "fn": fn} for fn in receive]
            elif node.on_receive is not None:
                queue += [{"type": "wait"}]
                queue += [{"type": "on-receive", "fn": fn} for fn in [*flow.catch_all_on_receive, *node.on_receive]]
            if node.type == "say_something" and node.content:
                queue.append(
                    {
                        "type": "on-enter",
                        "fn": f"say @{node.content.get('contentType')}",
                        "args": node.content.get("formData") or {},
                    }
                )
        queue += self.transitions(flow, node)
        return queue

    # -- processEvent ---------------------------------------------------------------------
    async def process(self) -> None:
        turn, ctx = self.turn, self.turn.context
        while True:
            turn.steps += 1
            if turn.steps > MAX_INSTRUCTIONS:
                raise DialogError(f"more than {MAX_INSTRUCTIONS} instructions in one turn (a loop?)")
            if not ctx.get("currentFlow"):
                main = self.flow("main.flow.json")
                ctx.clear()
                ctx.update({"currentFlow": main.name, "currentNode": main.start})
                turn.stacktrace.append({"flow": main.name, "node": main.start})
            flow = self.flow(ctx.get("currentFlow"))
            node = self.node(flow, ctx.get("currentNode"))
            if node.type == "skill-call" and not self.exiting_subflow():
                self.go_to_subflow(flow, node)
                continue
            if ctx.get("hasJumped"):
                queue = self.build(node, flow, has_jumped=True)
                ctx["hasJumped"] = False
            elif ctx.get("queue") is not None:
                queue = list(ctx["queue"])
            else:
                queue = self.build(node, flow)
            if not queue:
                await self.end_flow()
                return
            instruction = queue.pop(0)
            kind = instruction.get("type")
            if kind == "wait":
                ctx["queue"] = queue
                return
            if kind == "transition":
                if not await self.condition(instruction.get("fn")):
                    ctx["queue"] = queue
                    continue
                target = instruction.get("node") or ""
            else:
                target = await self.instruction(instruction)
                if target is None:
                    ctx["queue"] = queue
                    continue
            if not target:
                await self.end_flow()
                return
            ctx["queue"] = None
            try:
                stop = await self.transition(target)
            except DialogError as exc:
                stop = await self.transition_failed(exc, target)
            if stop:
                return

    async def condition(self, source: Any) -> bool:
        condition = self.bot.conditions.get(source) if isinstance(source, str) else None
        if condition is None:
            condition = compile_condition(source)  # from a session saved by an older version of the bot
        if condition.last_node is not None:
            stack = self.turn.stacktrace
            if not stack:
                return False
            last = stack[0] if len(stack) == 1 else stack[-2]
            return condition.test({}, last_node=last["node"])
        view = await self.turn.view(condition.roots, condition.reads_state)
        return condition.test(view)

    async def instruction(self, instruction: dict[str, Any]) -> str | None:
        """Run an onEnter/onReceive instruction; returns a transition target on failure (the error flow), else None."""
        fn = str(instruction.get("fn") or "")
        stop_if_cancelled()
        try:
            if fn.startswith("say "):
                await self.say(fn, instruction.get("args"))
            else:
                await self.action(fn)
            await self.turn.sync()
        except (DialogError, asyncio.CancelledError):
            raise
        except Exception as exc:
            current = self.turn.context.get("currentFlow")
            logger.error(
                "bot %s: %r failed at flow=%s node=%s (conversation %s): %s: %s",
                self.bot.id,
                fn,
                current,
                self.turn.context.get("currentNode"),
                self.turn.conversation_id,
                type(exc).__name__,
                exc,
                exc_info=not isinstance(exc, InvalidInputError | ContentError | TemplateError),
            )
            error_flow = self.turn.temp.get("onErrorFlowTo")
            target = error_flow if isinstance(error_flow, str) and error_flow else _ERROR_FLOW
            if self.bot.find_flow(target.partition("#")[0]) is None or current == _ERROR_FLOW:
                raise
            return target
        return None

    async def say(self, fn: str, node_args: Any) -> None:
        turn = self.turn
        key = fn if node_args is None else f"{fn} {orjson.dumps(node_args, option=orjson.OPT_SORT_KEYS).decode()}"
        say = self.bot.instructions.get(key)
        if not isinstance(say, Say):
            raise DialogError(f"instruction {fn!r} is not part of the bot (its files changed?)")
        view = await turn.view(say.roots, say.reads_state)
        seed = f"{self.bot.id}/{turn.conversation_id}/{turn.messages}/{len(turn.replies)}/{fn}"
        render_view = {**say.args, **view}
        language = turn.language()
        if say.element is not None:
            reply = self.bot.renderer.render_element(say.element, render_view, language=language, seed=seed)
        else:
            content_type = cast(str, say.content_type)
            reply = self.bot.renderer.render(
                content_type, say.args, render_view, language=language, seed=seed, translate=fn.startswith("say @")
            )
        turn.reply(reply)

    async def action(self, fn: str) -> None:
        turn = self.turn
        action = self.bot.instructions.get(fn)
        if not isinstance(action, Action):
            raise DialogError(f"instruction {fn!r} is not part of the bot (its files changed?)")
        view = await turn.view(action.roots, action.reads_state)
        common = {**action.args, **view}
        args = {
            key: self.bot.renderer.render_value(value, common, escape=False) if isinstance(value, str) else value
            for key, value in action.args.items()
        }
        if action.kind == "custom":
            await turn.load()
            ctx = ActionContext(turn.bp, turn.user_id, turn.conversation_id, turn.temp, turn.event)
            where = f"action {action.name!r} ({turn.context.get('currentFlow')} {turn.context.get('currentNode')})"
            spec = custom_action_spec(action.name, self.bot.custom_actions[action.name])
            await run_bot_code(spec.run(ctx, args), self.bot.action_timeout, where)
            for reply in ctx.replies:
                turn.reply(reply)
            return
        if action.kind == "builtin":
            await BUILTIN_ACTIONS[cast(str, builtin_name(action.name))](turn, args)
        elif action.kind == "skill":
            handler = next(h[action.name] for h in SKILL_ACTIONS.values() if action.name in h)
            await handler(turn, args)
        else:
            await MODULE_ACTIONS[action.name](turn, args)

    # -- transitions ------------------------------------------------------------------------
    def detect_loop(self) -> None:
        seen: dict[tuple[str, str], int] = {}
        for entry in self.turn.stacktrace:
            key = (entry["flow"], entry["node"])
            seen[key] = seen.get(key, 0) + 1
            if seen[key] >= LOOP_VISITS:
                raise DialogError(
                    f"infinite loop: {entry['flow']} ({entry['node']}) entered {LOOP_VISITS} times in one turn",
                    loop=True,
                )

    async def transition(self, target: str) -> bool:
        """Botpress's ``_transition``; True when the turn's processing stops here."""
        turn = self.turn
        ctx = turn.context
        self.detect_loop()
        jump_points = [j for j in ctx.get("jumpPoints") or [] if not j.get("used")]
        ctx["jumpPoints"] = jump_points
        if ".flow.json" in target:
            flow_name, _, node_name = target.partition("#")
            flow = self.flow(flow_name)
            node = self.node(flow, node_name or flow.start)
            turn.stacktrace.append({"flow": flow.name, "node": node.name})
            previous = (ctx.get("currentFlow"), ctx.get("currentNode"))
            ctx.clear()
            ctx.update(
                {
                    "currentFlow": flow.name,
                    "currentNode": node.name,
                    "previousFlow": previous[0],
                    "previousNode": previous[1],
                    "jumpPoints": [*jump_points, {"flow": previous[0], "node": previous[1]}],
                }
            )
            return False
        if target.startswith("#"):
            unused = [j for j in jump_points if not j.get("used")]
            if not unused:
                return True  # no flow to return to: stay, as Botpress does
            parent = unused[-1]
            execute = target.startswith("##")
            specific = target[2:] if execute else target[1:]
            if execute:
                parent["executeNode"] = True
            parent["used"] = True
            flow = self.flow(parent["flow"])
            node = self.node(flow, specific or parent["node"])
            queue = (
                self.build(node, flow) if parent.get("executeNode") else self.build(node, flow, only_transitions=True)
            )
            turn.stacktrace.append({"flow": flow.name, "node": node.name})
            ctx.update({"currentFlow": flow.name, "currentNode": node.name, "jumpPoints": jump_points, "queue": queue})
            return False
        if target == "END":
            await self.end_flow()
            return True
        flow = self.flow(ctx.get("currentFlow"))
        self.node(flow, target)
        turn.stacktrace.append({"flow": flow.name, "node": target})
        if not flow.name.startswith("skills/"):
            ctx["previousNode"] = ctx.get("currentNode")
        ctx["currentNode"] = target
        return False

    async def transition_failed(self, exc: DialogError, target: str) -> bool:
        """A transition that cannot be made goes to ``error.flow.json``, as in Botpress (a loop: cleaned first)."""
        turn = self.turn
        current = turn.context.get("currentFlow")
        error_flow = self.bot.find_flow(_ERROR_FLOW)
        if error_flow is None or current == error_flow.name or error_flow.start not in error_flow.nodes:
            raise exc
        logger.warning(
            "bot %s: transition to %r failed at flow=%s node=%s (conversation %s): %s; going to %s",
            self.bot.id,
            target,
            current,
            turn.context.get("currentNode"),
            turn.conversation_id,
            exc,
            error_flow.name,
        )
        if exc.loop:
            self.clean()
            turn.flow_ended = False
            turn.stacktrace.clear()
        self.jump_to(error_flow.name, error_flow.start)
        return False

    def go_to_subflow(self, parent_flow: Flow, parent_node: Node) -> None:
        flow = self.flow(parent_node.flow)
        ctx = self.turn.context
        jump_points = list(ctx.get("jumpPoints") or [])
        ctx.clear()
        ctx.update(
            {
                "currentFlow": flow.name,
                "currentNode": flow.start,
                "previousFlow": parent_flow.name,
                "previousNode": parent_node.name,
                "jumpPoints": [*jump_points, {"flow": parent_flow.name, "node": parent_node.name}],
            }
        )

    def exiting_subflow(self) -> bool:
        ctx = self.turn.context
        used = next((j for j in ctx.get("jumpPoints") or [] if j.get("used")), None)
        if used is None or used.get("executeNode"):
            return False
        return bool(used.get("flow") == ctx.get("currentFlow") and used.get("node") == ctx.get("currentNode"))

    def jump_to(self, flow_name: str, node_name: str | None) -> None:
        flow = self.flow(flow_name)
        node = self.node(flow, node_name or flow.start)
        self.turn.stacktrace.append({"flow": flow.name, "node": node.name})
        ctx = self.turn.context
        ctx.update({"currentFlow": flow.name, "currentNode": node.name, "queue": None, "hasJumped": True})

    def fill_context_for_transition(self, flow: Flow, node: Node) -> None:
        ctx = self.turn.context
        current = (ctx.get("currentFlow"), ctx.get("currentNode"))
        jump_points = list(ctx.get("jumpPoints") or [])
        if current[0]:
            jump_points.append({"flow": current[0], "node": current[1]})
        ctx.update(
            {
                "currentFlow": flow.name,
                "currentNode": node.name,
                "queue": None,
                "previousFlow": current[0] or "",
                "previousNode": current[1] or "",
                "hasJumped": True,
                "jumpPoints": jump_points,
            }
        )

    # -- end of a flow ------------------------------------------------------------------------
    async def end_flow(self) -> None:
        turn = self.turn
        current = (turn.context.get("currentFlow") or "").lower()
        if current == _TIMEOUT_FLOW:
            self.clean()
            return
        if current == _END_FLOW:
            return
        await self.engine.run_hooks(self.bot, "before_conversation_end", turn)
        end_flow = self.bot.find_flow(_END_FLOW)
        if end_flow is not None and end_flow.start in end_flow.nodes:
            self.fill_context_for_transition(end_flow, end_flow.nodes[end_flow.start])
            before = len(turn.context.get("jumpPoints") or [])
            await self.process()
            if len(turn.context.get("jumpPoints") or []) != before:
                return
        self.clean()

    def clean(self) -> None:
        self.turn.context.clear()
        self.turn.temp.clear()
        self.turn.nlu_contexts.clear()
        self.turn.flow_ended = True


class BotpressEngine:
    """Runs Botpress bots' turns for a ``Runtime`` (its sessions, leases, SDK handles and memory)."""

    def __init__(self, runtime: Any) -> None:
        # the Runtime (runtime/engine.py), whose sessions, SDK handles and session ending this reuses
        self.runtime = runtime

    async def run_hooks(self, bot: BotpressBot, name: str, turn: Turn, event: dict[str, Any] | None = None) -> None:
        """Run the bot's Python replacements of Botpress hook ``name``, each bounded by the hook timeout."""
        hooks = bot.bp_hooks.get(name) or []
        if not hooks:
            return
        await turn.load()
        for file, fn in hooks:
            try:
                await run_bot_code(
                    fn(turn.bp, event if event is not None else turn.event), bot.hook_timeout, f"hook {name} in {file}"
                )
            except TimeoutError:
                logger.warning(
                    "bot %s: hook %s in %s took more than %gs; skipped", bot.id, name, file, bot.hook_timeout
                )
            except BotCodeError as exc:  # past hook_timeout, or sys.exit() in the hook
                logger.warning("bot %s: hook %s in %s: %s; skipped", bot.id, name, file, exc)
            except Exception:
                logger.exception("bot %s: hook %s in %s failed; skipped", bot.id, name, file)
        await turn.sync()

    # -- one message ---------------------------------------------------------------------
    async def turn(
        self, bot: BotpressBot, user_id: str, text: str, conversation_id: str, stats: TurnStats
    ) -> list[dict[str, Any]]:
        """Process one user message; returns the reply dicts (each with ``conversation_id``)."""
        runtime = self.runtime
        bp = runtime._sdk[bot.id]
        sessions = runtime._sessions[bot.id]
        now = runtime._store.clock.now()
        replies: list[dict[str, Any]] = []
        found = await sessions.get(conversation_id)  # ownership: Runtime.converse checked it (sessions.owner)
        turn: Turn | None = None
        try:
            if found is None:
                stale = await sessions.find_expired(conversation_id)
                if stale is not None:
                    collected: list[dict[str, Any]] = []
                    token = _timeout_replies.set(collected)
                    try:
                        await runtime._end_session(bot, conversation_id, stale, "timeout")
                    finally:
                        _timeout_replies.reset(token)
                    replies += collected
            blob = found[0].temp if found is not None else None
            turn = Turn(bot, bp, user_id, conversation_id, blob, now, text=text)
            turn.messages += 1
            if found is None:
                await sessions.set_current(user_id, conversation_id)
            await self.process(bot, turn, text)
            replies += turn.replies
            if bot.version == 11 and turn.flow_ended:
                # v11.0.1 bots: the end of the flow ends the session (the seed page's conversation memory)
                session = Session(user_id, "", "", {}, now, now)
                await runtime._end_session(bot, conversation_id, session, "end")
            else:
                started = found[0].started_at if found is not None else now
                session = Session(
                    user_id,
                    turn.context.get("currentFlow") or "",
                    turn.context.get("currentNode") or "",
                    turn.blob(),
                    started,
                    now,
                )
                await sessions.save(conversation_id, session, found[1] if found is not None else 0, bot.session_timeout)
        except Exception as exc:
            stats.errors += 1
            where = turn.context if turn is not None else {}
            logger.error(
                "bot %s: turn failed at flow=%s node=%s (conversation %s): %s: %s",
                bot.id,
                where.get("currentFlow"),
                where.get("currentNode"),
                conversation_id,
                type(exc).__name__,
                exc,
                exc_info=not isinstance(exc, DialogError | InvalidInputError | ContentError | TemplateError),
            )
            replies = [*(turn.replies if turn is not None else []), {"type": "text", "text": bot.error_message}]
        if turn is None:
            turn = Turn(bot, bp, user_id, conversation_id, None, now, text=text)
        return [await self.outgoing(bot, turn, reply, conversation_id) for reply in replies]

    async def process(self, bot: BotpressBot, turn: Turn, text: str) -> None:
        await self.run_hooks(bot, "before_incoming_middleware", turn)
        contexts = [str(c.get("context")) for c in turn.nlu_contexts if c.get("context")]
        payload = turn.event.get("payload")
        said = as_str(as_dict(payload).get("text"), text)
        turn.event["nlu"] = bot.matcher.understand(said, bot.language, contexts)
        # Botpress's builtin after_incoming hook: every context lives `ttl` messages
        for entry in turn.nlu_contexts:
            if isinstance(entry.get("ttl"), int | float) and not isinstance(entry.get("ttl"), bool):
                entry["ttl"] -= 1
        turn.nlu_contexts[:] = [
            c for c in turn.nlu_contexts if not isinstance(c.get("ttl"), int | float) or c["ttl"] > 0
        ]
        if bot.uses_slots:
            await self.extract_slots(turn)
        await self.run_hooks(bot, "after_incoming_middleware", turn)
        dialog = _Dialog(self, turn)
        run_flows = True
        if not turn.context.get("currentFlow"):
            run_flows = await self.qna(bot, turn, dialog)
        if run_flows:
            await dialog.process()
        await turn.sync()
        await self.run_hooks(bot, "after_event_processed", turn)

    async def qna(self, bot: BotpressBot, turn: Turn, dialog: _Dialog) -> bool:
        """The decision engine outside a flow: send the best QnA answer; True when the flows run after it."""
        for intent in turn.event["nlu"].get("intents") or []:
            if intent["confidence"] < THRESHOLD:
                break
            if not intent["name"].startswith(QNA_PREFIX):
                continue
            entry = bot.matcher.qna.get(intent["name"][len(QNA_PREFIX) :])
            if entry is None or not entry.enabled:
                continue
            if "text" in entry.action:
                answers = entry.answers.get(turn.language() or bot.language) or entry.answers.get(bot.language) or []
                if answers:
                    answer = answers[
                        pick(f"{bot.id}/{turn.conversation_id}/{turn.messages}/qna/{entry.id}", len(answers))
                    ]
                    view = await turn.view(frozenset({"user", "session"}), False)
                    seed = f"{bot.id}/{turn.conversation_id}/{turn.messages}/{len(turn.replies)}/qna"
                    if answer.startswith("#!"):
                        turn.reply(bot.renderer.render_element(answer[2:], view, language=turn.language(), seed=seed))
                    else:
                        turn.reply(
                            bot.renderer.render(
                                "builtin_text",
                                {"text": answer},
                                {**view, "text": answer},
                                language=turn.language(),
                                seed=seed,
                                translate=False,
                            )
                        )
            if "redirect" in entry.action and entry.redirect_flow:
                dialog.jump_to(entry.redirect_flow, entry.redirect_node or None)
                return True
            return "text" not in entry.action or not entry.answers
        return True

    async def extract_slots(self, turn: Turn) -> None:
        """basic-skills' after_incoming hook: slots found by the NLU go to ``session.slots``."""
        session = await turn.scope_dict("session")
        slots = session.get("slots")
        if not isinstance(slots, dict):
            slots = session["slots"] = {}
        for slot in list(slots.values()):
            if isinstance(slot, dict) and isinstance(slot.get("turns"), int | float):
                slot["turns"] += 1
                expiry = slot.get("expiresAfterTurns")
                if (
                    isinstance(expiry, int | float)
                    and not isinstance(expiry, bool)
                    and expiry > -1
                    and slot["turns"] >= expiry
                ):
                    slots.pop(slot.get("name"), None)
        for name, value in (turn.event["nlu"].get("slots") or {}).items():
            current = slots.get(name)
            if isinstance(current, dict) and current.get("overwritable") is False:
                continue
            slots["notFound"] = 0
            slots[name] = {
                **value,
                "timestamp": int(turn.now * 1000),
                "turns": 0,
                "overwritable": True,
                "expiresAfterTurns": False,
            }

    async def outgoing(
        self, bot: BotpressBot, turn: Turn, reply: dict[str, Any], conversation_id: str
    ) -> dict[str, Any]:
        if bot.bp_hooks.get("before_outgoing_middleware"):
            event = {
                "type": reply.get("type", "text"),
                "direction": "outgoing",
                "botId": bot.id,
                "target": turn.user_id,
                "threadId": conversation_id,
                "payload": reply,
                "incomingEvent": turn.event,
            }
            await self.run_hooks(bot, "before_outgoing_middleware", turn, event)
            payload = event.get("payload")
            if isinstance(payload, dict) and isinstance(payload.get("type"), str):
                reply = payload
        out = {key: value for key, value in reply.items() if key != "conversation_id"}
        out["conversation_id"] = conversation_id
        return out

    # -- a session that timed out ------------------------------------------------------------
    async def timed_out(self, bot: BotpressBot, conversation_id: str, session: Session) -> None:
        """Before a timed-out session ends: ``before_session_timeout`` hooks, then the timeout node or flow.

        Its replies go to the message that found the session timed out (when
        there is one); the janitor has no one to send them to, so it logs them.
        """
        runtime = self.runtime
        now = runtime._store.clock.now()
        turn = Turn(
            bot,
            runtime._sdk[bot.id],
            session.user_id or "unknown",
            conversation_id,
            session.temp,
            now,
            event_type="timeout",
        )
        started = time.perf_counter()
        try:
            await self.run_hooks(bot, "before_session_timeout", turn)
            dialog = _Dialog(self, turn)
            ctx = turn.context
            ctx["queue"] = None
            flow = bot.find_flow(ctx.get("currentFlow"))
            target: tuple[Flow, Node] | None = None
            if flow is not None:
                if "timeout" in flow.nodes:
                    target = (flow, flow.nodes["timeout"])
                elif flow.timeout_node and flow.timeout_node in flow.nodes:
                    target = (flow, flow.nodes[flow.timeout_node])
            if target is None:
                timeout_flow = bot.find_flow(_TIMEOUT_FLOW)
                if timeout_flow is not None and timeout_flow.start in timeout_flow.nodes:
                    target = (timeout_flow, timeout_flow.nodes[timeout_flow.start])
            if target is not None:
                dialog.fill_context_for_transition(*target)
                await dialog.process()
            await turn.sync()
        except Exception as exc:
            logger.error(
                "bot %s: timeout handling of %s failed: %s: %s", bot.id, conversation_id, type(exc).__name__, exc
            )
        collector = _timeout_replies.get()
        if collector is not None:
            collector.extend(turn.replies)
        elif turn.replies:
            logger.info(
                "bot %s: %d timeout replies of %s had no one to go to (%.3fs)",
                bot.id,
                len(turn.replies),
                conversation_id,
                time.perf_counter() - started,
            )
