"""Flows: nodes, actions and transitions, parsed and checked at load time.

A flow file (``flows/<name>.yaml``)::

    start: ask_name
    nodes:
      ask_name:
        on_enter:                      # runs when the node is entered
          - say: "Hi! What's your name?"
        on_receive:                    # runs on the next user message
          - setUserVariable: {name: firstname, value: "{{ event.text }}"}
        next:                          # tried in order; no `when` = always
          - when: "user.firstname"
            goto: greet                # a node of this flow, or END
          - flow: other                # the start node of another flow (temp kept)

Everything a run could trip on is checked here, with the file and line:
unknown actions and arguments, unknown nodes and flows, template syntax
and sandbox violations, constant expiries and variable names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from ..errors import InvalidInputError
from ..expiry import check_expiry_arg
from ..keys import validate_key
from .actions import ActionSpec
from .templates import Condition, Reads, TemplateError, Value, compile_condition, compile_value, merge_reads
from .yamlsource import BotLoadError, LineDict, LineList, plain

__all__ = [
    "END",
    "ActionCall",
    "Flow",
    "Node",
    "Transition",
    "UnknownActionError",
    "check_references",
    "parse_flow",
]

#: The transition target that ends the conversation.
END: Final = "END"

_NODE_KEYS: Final = frozenset({"on_enter", "on_receive", "next"})
_TRANSITION_KEYS: Final = frozenset({"when", "goto", "flow"})


@dataclass(frozen=True, slots=True)
class ActionCall:
    """One action in ``on_enter``/``on_receive``, with compiled arguments."""

    spec: ActionSpec
    args: dict[str, Value]
    where: str
    reads: Reads

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(frozen=True, slots=True)
class Transition:
    """``when`` (None = always) then ``goto`` a node / ``END``, or enter ``flow``."""

    condition: Condition | None
    goto: str | None
    flow: str | None
    where: str


@dataclass(frozen=True, slots=True)
class Node:
    """A node of a flow. ``on_receive`` is None when the node does not wait for a message."""

    name: str
    on_enter: tuple[ActionCall, ...]
    on_receive: tuple[ActionCall, ...] | None
    next: tuple[Transition, ...]
    where: str


@dataclass(frozen=True, slots=True)
class Flow:
    """A named set of nodes with a start node."""

    name: str
    file: str
    start: str
    nodes: dict[str, Node] = field(default_factory=dict)


class UnknownActionError(BotLoadError):
    """A flow calls an action that is neither built in nor defined in ``actions/*.py``."""

    def __init__(self, file: str, line: int | None, action: object, why: str = "") -> None:
        self.action = action
        super().__init__(file, line, f"unknown action {action!r}" + (f": {why}" if why else ""))


def _fail(file: str, line: int | None, message: str) -> BotLoadError:
    return BotLoadError(file, line, message)


def _parse_action(item: Any, line: int, file: str, actions: Mapping[str, ActionSpec]) -> ActionCall:
    where = f"{file}:{line}"
    if not isinstance(item, dict) or len(item) != 1:
        raise _fail(file, line, "an action is a mapping with one key, the action's name, e.g. `- say: \"Hi\"`")
    ((name, raw_args),) = item.items()
    spec = actions.get(name) if isinstance(name, str) else None
    if spec is None:
        raise UnknownActionError(file, line, name)
    if raw_args is None:
        raw_args = {}
    elif not isinstance(raw_args, dict):
        if spec.shorthand is None:
            raise _fail(file, line, f"the arguments of {name!r} must be a mapping")
        raw_args = {spec.shorthand: raw_args}
    args_line = raw_args.line_of if isinstance(raw_args, LineDict) else (lambda _key: line)
    for key in raw_args:
        if not isinstance(key, str):
            raise _fail(file, args_line(key), f"{name}: argument names must be strings, got {key!r}")
    if spec.required is not None:
        missing = sorted(spec.required - raw_args.keys())
        if missing:
            raise _fail(file, line, f"{name}: missing argument(s) {', '.join(missing)}")
        unknown = sorted(raw_args.keys() - spec.required - spec.optional)
        if unknown:
            raise _fail(file, args_line(unknown[0]), f"{name}: unknown argument(s) {', '.join(unknown)}")
    problem = spec.check_call(raw_args.keys())
    if problem is not None:
        raise _fail(file, line, f"{name}: cannot be called with these arguments: {problem}")
    compiled: dict[str, Value] = {}
    for key, raw in raw_args.items():
        try:
            value = compile_value(plain(raw), text=key in spec.text_args)
        except TemplateError as exc:
            raise _fail(file, args_line(key), f"{name}.{key}: {exc}") from None
        if value.is_constant:
            try:
                if key in spec.names:
                    if key == "output" and not isinstance(value.constant, str):
                        raise InvalidInputError(f"output must be a string, got {value.constant!r}")
                    validate_key(value.constant, None, key)
                if key in spec.expiry_args:
                    check_expiry_arg(value.constant)
            except InvalidInputError as exc:
                raise _fail(file, args_line(key), f"{name}.{key}: {exc}") from None
        elif key == "output":
            raise _fail(file, args_line(key), f"{name}.output must be a constant name, not a template")
        compiled[key] = value
    return ActionCall(spec, compiled, where, merge_reads(*(v.reads for v in compiled.values())))


def _parse_actions(
    raw: Any, line: int, file: str, what: str, actions: Mapping[str, ActionSpec]
) -> tuple[ActionCall, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise _fail(file, line, f"{what} must be a list of actions")
    lines = raw.lines if isinstance(raw, LineList) else [line] * len(raw)
    return tuple(_parse_action(item, item_line, file, actions) for item, item_line in zip(raw, lines, strict=True))


def _parse_transition(raw: Any, line: int, file: str) -> Transition:
    if not isinstance(raw, dict):
        raise _fail(file, line, "a transition is a mapping: {when?, goto | flow}")
    unknown = sorted(str(k) for k in raw.keys() - _TRANSITION_KEYS)
    if unknown:
        raise _fail(file, line, f"unknown transition key(s) {', '.join(unknown)}")
    goto, flow = raw.get("goto"), raw.get("flow")
    if (goto is None) == (flow is None):
        raise _fail(file, line, "a transition needs exactly one of goto (a node or END) and flow")
    target = goto if goto is not None else flow
    if not isinstance(target, str) or not target:
        raise _fail(file, line, f"transition target must be a name, got {target!r}")
    condition = None
    when = raw.get("when")
    if "when" in raw:
        if isinstance(when, bool):
            when = "true" if when else "false"
        if not isinstance(when, str) or not when.strip():
            raise _fail(file, line, f"when must be an expression string, got {when!r}")
        try:
            condition = compile_condition(when)
        except TemplateError as exc:
            raise _fail(file, raw.line_of("when") if isinstance(raw, LineDict) else line, str(exc)) from None
    target_line = raw.line_of("goto" if goto is not None else "flow") if isinstance(raw, LineDict) else line
    return Transition(condition, goto, flow, f"{file}:{target_line}")


def _parse_node(name: str, raw: Any, line: int, file: str, actions: Mapping[str, ActionSpec]) -> Node:
    if raw is None:
        raw = LineDict()
        raw.line, raw.lines = line, {}
    if not isinstance(raw, LineDict):
        raise _fail(file, line, f"node {name!r} must be a mapping with on_enter, on_receive, next")
    unknown = sorted(str(k) for k in raw.keys() - _NODE_KEYS)
    if unknown:
        raise _fail(file, raw.line_of(unknown[0]), f"node {name!r}: unknown key(s) {', '.join(unknown)}")
    on_enter = _parse_actions(raw.get("on_enter"), raw.line_of("on_enter"), file, "on_enter", actions)
    # `on_receive:` present (even empty) makes the node wait for a message.
    on_receive = (
        _parse_actions(raw.get("on_receive"), raw.line_of("on_receive"), file, "on_receive", actions)
        if "on_receive" in raw
        else None
    )
    raw_next = raw.get("next")
    next_line = raw.line_of("next")
    if raw_next is None:
        transitions: tuple[Transition, ...] = ()
    elif isinstance(raw_next, list):
        lines = raw_next.lines if isinstance(raw_next, LineList) else [next_line] * len(raw_next)
        transitions = tuple(_parse_transition(t, tl, file) for t, tl in zip(raw_next, lines, strict=True))
    else:
        raise _fail(file, next_line, "next must be a list of transitions")
    return Node(name, on_enter, on_receive, transitions, f"{file}:{line}")


def parse_flow(name: str, doc: Any, file: str, actions: Mapping[str, ActionSpec]) -> Flow:
    """Parse and check one flow document (references to other flows are checked later).

    Args:
        name: the flow's name (its file name without ``.yaml``).
        doc: the parsed YAML (``load_yaml``).
        file: the file name for messages, relative to the bot folder.
        actions: every action the bot may call, by name.

    Raises:
        BotLoadError: what is wrong, with file and line.
    """
    if not isinstance(doc, LineDict):
        raise _fail(file, getattr(doc, "line", 1), "a flow file is a mapping with `start` and `nodes`")
    unknown = sorted(str(k) for k in doc.keys() - {"start", "nodes"})
    if unknown:
        raise _fail(file, doc.line_of(unknown[0]), f"unknown key(s) {', '.join(unknown)}")
    raw_nodes = doc.get("nodes")
    if not isinstance(raw_nodes, LineDict) or not raw_nodes:
        raise _fail(file, doc.line_of("nodes"), "`nodes` must be a non-empty mapping of node names")
    start = doc.get("start")
    if not isinstance(start, str):
        raise _fail(file, doc.line_of("start"), "`start` must name the flow's first node")
    flow = Flow(name, file, start)
    for node_name, raw in raw_nodes.items():
        if not isinstance(node_name, str) or not node_name or node_name == END:
            raise _fail(file, raw_nodes.line_of(node_name), f"bad node name {node_name!r}")
        flow.nodes[node_name] = _parse_node(node_name, raw, raw_nodes.line_of(node_name), file, actions)
    if start not in flow.nodes:
        raise _fail(file, doc.line_of("start"), f"unknown node {start!r}")
    for node in flow.nodes.values():
        for t in node.next:
            if t.goto is not None and t.goto != END and t.goto not in flow.nodes:
                raise _fail(file, int(t.where.rsplit(":", 1)[1]), f"unknown node {t.goto!r}")
    return flow


def check_references(flows: Mapping[str, Flow]) -> None:
    """Check every ``flow:`` transition names a loaded flow.

    Raises:
        BotLoadError: the first unknown flow, with file and line.
    """
    for flow in flows.values():
        for node in flow.nodes.values():
            for t in node.next:
                if t.flow is not None and t.flow not in flows:
                    file, line = t.where.rsplit(":", 1)
                    raise _fail(file, int(line), f"unknown flow {t.flow!r}")
