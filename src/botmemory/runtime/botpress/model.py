"""A loaded Botpress bot: flows, nodes, compiled instructions and the bot itself."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ..loader import LoadedBot
from .content import Renderer
from .jsexpr import Condition
from .nlu import Matcher

__all__ = ["Action", "BotpressBot", "Flow", "Node", "Say", "Transition"]


@dataclass(frozen=True, slots=True)
class Transition:
    """One ``next`` entry: a condition and a target (``""``/``END``: end of flow)."""

    condition: str
    target: str


@dataclass(slots=True)
class Node:
    """A flow node as Botpress reads it."""

    name: str
    type: str | None = None
    on_enter: list[str] = field(default_factory=list)
    on_receive: list[str] | None = None  # None: the node does not wait (v12: null or absent)
    next: list[Transition] = field(default_factory=list)
    flow: str | None = None  # skill-call: the skill's flow
    skill: str | None = None
    content: dict[str, Any] | None = None  # say_something nodes


@dataclass(slots=True)
class Flow:
    """A ``*.flow.json`` file; ``name`` is its path under ``flows/`` (``skills/choice-x.flow.json``)."""

    name: str
    file: str
    start: str
    nodes: dict[str, Node] = field(default_factory=dict)
    catch_all_next: list[Transition] = field(default_factory=list)
    catch_all_on_receive: list[str] = field(default_factory=list)
    timeout_node: str | None = None


@dataclass(frozen=True, slots=True)
class Say:
    """``say #!element {args}`` (``element``), ``say #type {args}`` / ``say @type`` (``content_type``)."""

    element: str | None
    content_type: str | None
    args: dict[str, Any]
    roots: frozenset[str]
    reads_state: bool


ActionFn = Callable[..., Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Action:
    """``name {json args}``: what runs it and which memory its argument templates read."""

    name: str
    kind: str  # builtin | module | custom
    args: dict[str, Any]
    roots: frozenset[str]
    reads_state: bool


@dataclass(slots=True)
class BotpressBot(LoadedBot):
    """A Botpress bot folder, mounted on the same ``Runtime`` as botmemory's own bots.

    The inherited ``flows``/``actions`` (botmemory's YAML model) stay empty;
    everything Botpress lives in the fields below.

    Attributes:
        version: 11 or 12 (the flow semantics followed).
        language: the default language.
        bp_flows: flows by lower-case name (Botpress finds flows case-insensitively).
        instructions: every ``onEnter``/``onReceive`` string, compiled.
        conditions: every transition condition, compiled.
        renderer: content elements and the compiled templates.
        matcher: intents, QnA and entities.
        custom_actions: Python replacements by action name (``actions/<name>.py``).
        bp_hooks: Python hooks by Botpress hook name, in file order.
    """

    version: int = 12
    language: str = "en"
    languages: tuple[str, ...] = ()
    uses_slots: bool = False
    bp_flows: dict[str, Flow] = field(default_factory=dict)
    instructions: dict[str, Say | Action] = field(default_factory=dict)
    conditions: dict[str, Condition] = field(default_factory=dict)
    renderer: Renderer = field(default_factory=Renderer)
    matcher: Matcher = field(default_factory=Matcher)
    custom_actions: dict[str, ActionFn] = field(default_factory=dict)
    bp_hooks: dict[str, list[tuple[str, ActionFn]]] = field(default_factory=dict)

    def find_flow(self, name: str | None) -> Flow | None:
        """The flow ``name`` (``main``, ``main.flow.json``, any case), or None."""
        if not name:
            return None
        key = name if name.endswith(".flow.json") else f"{name}.flow.json"
        return self.bp_flows.get(key.lower())


def as_dict(value: Any) -> dict[str, Any]:
    """``value`` when it is a JSON object, else an empty dict (for reading untrusted JSON)."""
    return value if isinstance(value, dict) else {}


def as_str(value: Any, default: str = "") -> str:
    """``value`` when it is a string, else ``default``."""
    return value if isinstance(value, str) else default
