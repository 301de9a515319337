"""Templates and conditions: Jinja2 in a locked-down sandbox.

Bot authors write templates (``"Hi {{ user.firstname }}"``) and conditions
(``"user.visits > 3"``) in flow files. Both are compiled once, at load time,
by one ``SandboxedEnvironment`` that is stricter than Jinja's default
sandbox:

- the only callables are ``len``, ``int``, ``float``, ``str``, ``bool``,
  ``abs``, ``min``, ``max`` and ``round`` (no methods, no macros, no
  ``range``, no globals such as ``lipsum`` or ``cycler``), so
  ``"".__class__.__mro__`` chains and ``range(10**9)`` cannot run;
- attributes starting with ``_`` are refused (statically at load time when
  they are written literally, and by the sandbox at run time otherwise);
- ``include``/``import``/``extends`` are refused at load time;
- ``*``, ``**`` and ``%`` are intercepted so that ``"a" * 10**9``,
  ``10 ** 10 ** 10`` and ``"%*s" % (10**9, "")`` fail instead of eating the
  machine; filters are a safe subset (no ``center``, ``indent``, ``format``,
  ``wordwrap``, ``batch``, ``slice`` …), and rendered text is capped;
- what the user's text can make expensive is bounded too (``Budget``):
  ``~`` and ``+``, ``join`` and ``replace`` refuse to build a string or list
  longer than ``MAX_BUILT_LENGTH``; ``{% for %}`` loops share one budget of
  ``MAX_LOOP_ITERATIONS`` per render (three nested loops over a
  400-character message would be 64 million); and a render stops after
  ``MAX_RENDER_SECONDS``. The syntax tree is rewritten at compile time for
  this: every loop iterates through the budget, every ``~`` goes through a
  size check. A template with a loop is rendered on a worker thread by the
  runtime (``Value.threaded``), so while it runs the event loop keeps
  serving other conversations.

User text is data: it reaches templates as ``event.text`` and is never
compiled. Autoescape is off (the output is chat text, not HTML). A missing
variable renders as an empty string and is false in a condition (also when
compared: ``user.age > 3`` is false when ``age`` is unset).

``user``, ``conversation`` and ``global`` read memory at the moment a
template renders: each compiled template knows, from its syntax tree, which
variables it reads, and the runtime fetches exactly those (one ``get_many``
on the bot's KVS) right before rendering, so a ``say`` after
``incrGlobalVariable`` shows the new value. A template that uses a scope as a
whole (``{% for k in user %}``, ``user[temp.name]``) fetches that scope's
``items()``.
"""

from __future__ import annotations

import contextvars
import math
import operator
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from jinja2 import ChainableUndefined, TemplateSyntaxError, UndefinedError, nodes, pass_eval_context
from jinja2.environment import TemplateExpression
from jinja2.exceptions import SecurityError
from jinja2.nodes import EvalContext
from jinja2.parser import Parser
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment
from jinja2.visitor import NodeTransformer

__all__ = [
    "ALLOWED_CALLS",
    "MAX_BUILT_LENGTH",
    "MAX_LOOP_ITERATIONS",
    "MAX_RENDERED_CHARS",
    "MAX_RENDER_SECONDS",
    "MEMORY_SCOPES",
    "Condition",
    "Template",
    "TemplateError",
    "Variables",
    "compile_condition",
    "compile_template",
    "compile_value",
    "environment",
]

#: The only functions a template or condition may call.
ALLOWED_CALLS: Final[dict[str, Callable[..., Any]]] = {
    "len": len,
    "int": int,
    "float": float,
    "str": str,
    "bool": bool,
    "abs": abs,
    "min": min,
    "max": max,
    "round": round,
}
_ALLOWED_IDS: Final = frozenset(id(f) for f in ALLOWED_CALLS.values())

#: Names in scope whose values come from dialog memory.
MEMORY_SCOPES: Final = ("user", "conversation", "global")

#: Rendering stops with an error beyond this many characters.
MAX_RENDERED_CHARS: Final = 100_000

#: ``~``, ``+``, ``join`` and ``replace`` refuse results longer than this (characters or items):
#: the largest value the store takes (1 MiB) fits, a doubling chain does not.
MAX_BUILT_LENGTH: Final = 1_048_576

#: ``{% for %}`` iterations one render may make, all loops together.
MAX_LOOP_ITERATIONS: Final = 100_000

#: Seconds one render (or one condition or expression) may take.
MAX_RENDER_SECONDS: Final = 0.5

# Results of * and ** beyond these sizes are refused before they are built.
_MAX_SEQUENCE_RESULT = 100_000
_MAX_POW_BITS = 4_096

_SAFE_FILTERS: Final = (
    *("abs", "capitalize", "count", "d", "default", "dictsort", "first", "float", "int", "join", "last"),
    *("length", "list", "lower", "max", "min", "replace", "reverse", "round", "sort", "string", "sum"),
    *("title", "trim", "truncate", "unique", "upper", "wordcount", "tojson", "striptags", "select"),
    *("reject", "selectattr", "rejectattr", "map", "attr", "e", "escape"),
)

# exactly one "{{ … }}" and nothing around it (whitespace control "{{- -}}" excluded)
_WHOLE_EXPRESSION_RE = re.compile(r"\{\{(?![-+])((?:(?!\{\{|\}\}).)*?)(?<![-+])\}\}", re.DOTALL)


class TemplateError(Exception):
    """A template or condition failed to compile or to render (message says why)."""


class Missing(ChainableUndefined):
    """A missing variable: renders as ``""``, is false, and compares false.

    Chainable, so ``user.profile.city`` is missing rather than an error when
    ``profile`` is; comparisons with ``<``/``>`` are false instead of a
    ``TypeError``, so a condition on an unset variable is simply not taken.
    """

    __slots__ = ()

    def __lt__(self, other: Any) -> bool:  # type: ignore[override]
        return False

    __le__ = __gt__ = __ge__ = __lt__  # type: ignore[assignment]


class Budget:
    """What one render may still spend: loop iterations and time (see the module docstring)."""

    __slots__ = ("deadline", "iterations_left")

    def __init__(self, seconds: float = MAX_RENDER_SECONDS, iterations: int = MAX_LOOP_ITERATIONS) -> None:
        self.deadline = time.perf_counter() + seconds
        self.iterations_left = iterations

    def check_time(self) -> None:
        if time.perf_counter() > self.deadline:
            raise SecurityError(f"rendering took more than {MAX_RENDER_SECONDS:g}s")

    def loop(self, iterable: Iterable[Any]) -> Iterator[Any]:
        for item in iterable:
            self.iterations_left -= 1
            if self.iterations_left < 0:
                raise SecurityError(f"more than {MAX_LOOP_ITERATIONS} loop iterations in one render")
            if not self.iterations_left & 255:
                self.check_time()
            yield item


_budget: contextvars.ContextVar[Budget | None] = contextvars.ContextVar("botmemory_template_budget", default=None)


def _bounded_loop(iterable: Any) -> Any:
    """What every ``{% for %}`` iterates over (the tree is rewritten to call this)."""
    budget = _budget.get()
    return iterable if budget is None else budget.loop(iterable)


def _too_long(length: int, what: str) -> None:
    if length > MAX_BUILT_LENGTH:
        raise SecurityError(f"{what} would be longer than {MAX_BUILT_LENGTH}")
    budget = _budget.get()
    if budget is not None:
        budget.check_time()


def _bounded_concat(parts: list[Any]) -> str:
    """``a ~ b ~ c`` (the tree is rewritten to call this): Jinja's ``str_join``, size-checked first."""
    texts = [part if isinstance(part, str) else str(part) for part in parts]
    _too_long(sum(len(t) for t in texts), "a ~ concatenation")
    return "".join(texts)


def _sized(value: Any) -> int | None:
    try:
        return len(value)
    except TypeError:
        return None


class _Bounds(NodeTransformer):
    """Rewrites a parsed tree so that loops spend the render's budget and ``~`` is size-checked."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = nodes.Filter(node.iter, _LOOP_FILTER, [], [], None, None, lineno=node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        items = nodes.List(list(node.nodes), lineno=node.lineno)
        return nodes.Filter(items, _CONCAT_FILTER, [], [], None, None, lineno=node.lineno)


# names no template can spell as a filter (not identifiers), so users cannot call them
_LOOP_FILTER: Final = "botmemory:loop"
_CONCAT_FILTER: Final = "botmemory:concat"


def _bound(tree: nodes.Template, env: SandboxedEnvironment) -> nodes.Template:
    bounded = _Bounds().visit(tree)
    assert isinstance(bounded, nodes.Template)
    bounded.set_environment(env)
    return bounded


class _Environment(SandboxedEnvironment):
    """The sandbox with the call whitelist and size-checked operators."""

    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def compile_expression(self, source: str, undefined_to_none: bool = True) -> TemplateExpression:
        # jinja2.Environment.compile_expression, with the tree bounded (``_Bounds``) before it is compiled
        parser = Parser(self, source, state="variable")
        try:
            expr = parser.parse_expression()
            if not parser.stream.eos:
                raise TemplateSyntaxError("chunk after expression", parser.stream.current.lineno, None, None)
        except TemplateSyntaxError:
            self.handle_exception(source=source)
        body = [nodes.Assign(nodes.Name("result", "store"), expr, lineno=1)]
        template = self.from_string(_bound(nodes.Template(body, lineno=1), self))
        return TemplateExpression(template, undefined_to_none)

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if attr.startswith("_") or attr in ("mro", "gi_frame", "cr_frame", "f_globals", "format", "format_map"):
            return False
        return super().is_safe_attribute(obj, attr, value)

    def unsafe_undefined(self, obj: Any, attribute: str) -> Any:
        # Jinja returns an Undefined that renders as "" unless used further;
        # an attempt to reach a private attribute should fail the turn instead.
        raise SecurityError(f"access to attribute {attribute!r} of {type(obj).__name__!r} is not allowed")

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        if id(__obj) not in _ALLOWED_IDS:
            raise SecurityError(
                f"calling {getattr(__obj, '__name__', type(__obj).__name__)!r} is not allowed; "
                f"only {', '.join(ALLOWED_CALLS)}"
            )
        return __obj(*args, **kwargs)

    def call_binop(self, context: Context, operator_: str, left: Any, right: Any) -> Any:
        if operator_ == "*":
            for seq, times in ((left, right), (right, left)):
                if (
                    isinstance(seq, str | list | tuple)
                    and isinstance(times, int)
                    and len(seq) * max(times, 0) > _MAX_SEQUENCE_RESULT
                ):
                    raise SecurityError("repetition result too large")
            return left * right
        if operator_ == "**":
            if (
                isinstance(left, int)
                and isinstance(right, int)
                and abs(left) > 1
                and max(abs(left).bit_length() - 1, 1) * right > _MAX_POW_BITS
            ):
                raise SecurityError("power result too large")
            return left**right
        if operator_ == "+":
            if isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple):
                _too_long(len(left) + len(right), "a + result")
            return left + right
        if isinstance(left, str):
            raise SecurityError("%-formatting of strings is not allowed")
        return operator.mod(left, right)


def _build_environment() -> _Environment:
    env = _Environment(autoescape=False, undefined=Missing, keep_trailing_newline=True)
    env.globals.clear()
    env.globals.update(ALLOWED_CALLS)
    filters = {name: env.filters[name] for name in _SAFE_FILTERS}
    join, replace = filters["join"], filters["replace"]

    @pass_eval_context
    def bounded_join(eval_ctx: EvalContext, value: Any, d: str = "", attribute: Any = None) -> str:
        items = _sized(value)
        if items is not None and isinstance(d, str):
            _too_long(max(items - 1, 0) * len(d), "a join")
        result: str = join(eval_ctx, value, d, attribute)
        _too_long(len(result), "a join")
        return result

    @pass_eval_context
    def bounded_replace(eval_ctx: EvalContext, s: Any, old: Any, new: Any, count: Any = None) -> str:
        if isinstance(s, str) and isinstance(old, str) and isinstance(new, str):
            times = len(s) + 1 if old == "" else s.count(old)
            if count is not None and isinstance(count, int):
                times = min(times, max(count, 0))
            _too_long(len(s) + times * max(len(new) - len(old), 0), "a replace")
        result: str = replace(eval_ctx, s, old, new, count)
        return result

    filters["join"], filters["replace"] = bounded_join, bounded_replace
    filters[_LOOP_FILTER], filters[_CONCAT_FILTER] = _bounded_loop, _bounded_concat
    env.filters = filters
    return env


environment: Final = _build_environment()


class Variables:
    """A read-only mapping shown to templates as ``user``, ``temp``, ``event`` …

    ``user.firstname`` and ``user["firstname"]`` both read the entry; a
    missing one is ``Missing``. Deliberately not a ``Mapping``: it has no
    public attributes at all, so a variable named ``items`` or ``keys`` is
    never shadowed by a method. ``{% for name in user %}``, ``len(user)``
    and ``"x" in user`` work.
    """

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._data = data

    def __getitem__(self, name: str) -> Any:
        return self._data[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, name: object) -> bool:
        return name in self._data

    def __repr__(self) -> str:
        return repr(dict(self._data))

    def __str__(self) -> str:
        return str(dict(self._data))


@dataclass(frozen=True, slots=True)
class Reads:
    """Which memory a compiled template reads: names per scope, or a whole scope."""

    names: dict[str, frozenset[str]] = field(default_factory=dict)
    whole: frozenset[str] = frozenset()

    def is_empty(self) -> bool:
        return not self.names and not self.whole


def _analyse(tree: nodes.Node, source: str) -> Reads:
    """Refuse unsafe constructs and find which memory variables the tree reads."""
    for bad in tree.find_all((nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)):
        raise TemplateError(f"line {bad.lineno}: include/import/extends are not allowed")
    for attr in tree.find_all(nodes.Getattr):
        if attr.attr.startswith("_") or attr.attr == "mro":
            raise TemplateError(f"line {attr.lineno}: access to {attr.attr!r} is not allowed")
    for item in tree.find_all(nodes.Getitem):
        if isinstance(item.arg, nodes.Const) and isinstance(item.arg.value, str) and item.arg.value.startswith("_"):
            raise TemplateError(f"line {item.lineno}: access to {item.arg.value!r} is not allowed")
    for call in tree.find_all(nodes.Call):
        if not (isinstance(call.node, nodes.Name) and call.node.name in ALLOWED_CALLS):
            raise TemplateError(f"line {call.lineno}: only {', '.join(ALLOWED_CALLS)} may be called")
    names: dict[str, set[str]] = {}
    handled: set[int] = set()
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        base = node.node  # type: ignore[attr-defined]
        if not (isinstance(base, nodes.Name) and base.name in MEMORY_SCOPES and base.ctx == "load"):
            continue
        if isinstance(node, nodes.Getattr):
            name: object = node.attr
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            name = node.arg.value
        else:
            continue
        if isinstance(name, str):
            names.setdefault(base.name, set()).add(name)
            handled.add(id(base))
    whole = {
        n.name for n in tree.find_all(nodes.Name) if n.name in MEMORY_SCOPES and id(n) not in handled
    }
    return Reads({k: frozenset(v) for k, v in names.items() if k not in whole}, frozenset(whole))


def _merge(a: Reads, b: Reads) -> Reads:
    whole = a.whole | b.whole
    names: dict[str, frozenset[str]] = {}
    for scope in MEMORY_SCOPES:
        merged = a.names.get(scope, frozenset()) | b.names.get(scope, frozenset())
        if merged and scope not in whole:
            names[scope] = merged
    return Reads(names, whole)


def _short(source: str) -> str:
    text = repr(source)
    return text if len(text) <= 120 else text[:117] + "..."


def _syntax_message(exc: TemplateSyntaxError) -> str:
    return f"line {exc.lineno}: {exc.message}" if exc.lineno and exc.lineno > 1 else str(exc.message)


class Template:
    """A compiled text template.

    Attributes:
        source: the template text as written.
        reads: the memory variables it reads (see ``Reads``).
    """

    __slots__ = ("_template", "has_loops", "reads", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        try:
            tree = environment.parse(source)
            self.reads = _analyse(tree, source)
            #: a loop can cost up to MAX_RENDER_SECONDS: the runtime renders such templates on a thread
            self.has_loops = tree.find(nodes.For) is not None
            self._template = environment.from_string(_bound(tree, environment))
        except TemplateSyntaxError as exc:
            raise TemplateError(f"template syntax error: {_syntax_message(exc)}") from exc

    def render(self, context: Mapping[str, Any]) -> str:
        """Render with ``context`` (``event``, ``user``, ``conversation``, ``global``, ``temp``).

        Raises:
            TemplateError: a sandbox violation, an undefined operation, an
                over-long result or any other error while rendering.
        """
        parts: list[str] = []
        size = 0
        token = _budget.set(Budget())
        try:
            for chunk in self._template.generate(dict(context)):
                size += len(chunk)
                if size > MAX_RENDERED_CHARS:
                    raise TemplateError(f"rendered text longer than {MAX_RENDERED_CHARS} characters")
                parts.append(chunk)
        except TemplateError:
            raise
        except Exception as exc:  # the sandbox, undefined values, bad types: all one kind of failure
            raise TemplateError(f"template {_short(self.source)} failed: {type(exc).__name__}: {exc}") from exc
        finally:
            _budget.reset(token)
        return "".join(parts)


class Expression:
    """A compiled Jinja2 expression (the value of a condition or a whole-``{{ }}`` argument)."""

    __slots__ = ("_fn", "reads", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        try:
            tree = environment.parse("{{ " + source + " }}")
            self.reads = _analyse(tree, source)
            self._fn = environment.compile_expression(source, undefined_to_none=False)
        except TemplateSyntaxError as exc:
            raise TemplateError(f"expression syntax error in {source!r}: {_syntax_message(exc)}") from exc

    def evaluate(self, context: Mapping[str, Any]) -> Any:
        """The expression's value (``Missing`` for an unset variable).

        Raises:
            TemplateError: a sandbox violation or any other evaluation error.
        """
        token = _budget.set(Budget())
        try:
            return self._fn(**context)
        except Exception as exc:
            raise TemplateError(f"expression {_short(self.source)} failed: {type(exc).__name__}: {exc}") from exc
        finally:
            _budget.reset(token)


class Condition(Expression):
    """A transition's ``when``: true or false, never an exception for a missing variable."""

    __slots__ = ()

    def test(self, context: Mapping[str, Any]) -> bool:
        """Whether the condition holds; a missing variable makes it false.

        Raises:
            TemplateError: a sandbox violation or an error not due to a
                missing variable (e.g. ``int("x")``).
        """
        token = _budget.set(Budget())
        try:
            return bool(self._fn(**context))
        except UndefinedError:
            return False  # arithmetic on a missing variable: "a missing variable is false"
        except Exception as exc:
            raise TemplateError(f"condition {_short(self.source)} failed: {type(exc).__name__}: {exc}") from exc
        finally:
            _budget.reset(token)


class Value:
    """An action argument: a constant, a text template, or a whole expression.

    A string that is exactly one ``{{ expression }}`` keeps the expression's
    type (``"{{ temp.count + 1 }}"`` gives an int, ``"{{ temp.items }}"`` a
    list; a missing variable gives ``None``); any other string with template
    syntax renders to text; lists and dicts are walked; other values are
    constants.
    """

    __slots__ = ("_kind", "_payload", "reads")

    def __init__(self, kind: str, payload: Any, reads: Reads) -> None:
        self._kind = kind
        self._payload = payload
        self.reads = reads

    @property
    def is_constant(self) -> bool:
        return self._kind == "const"

    @property
    def threaded(self) -> bool:
        """Whether resolving may take up to ``MAX_RENDER_SECONDS`` (a template with a loop): off the event loop."""
        kind, payload = self._kind, self._payload
        if kind == "template":
            return bool(payload.has_loops)
        if kind == "list":
            return any(v.threaded for v in payload)
        if kind == "dict":
            return any(v.threaded for v in payload.values())
        return False

    @property
    def constant(self) -> Any:
        """The value when ``is_constant`` (otherwise meaningless)."""
        return self._payload

    def resolve(self, context: Mapping[str, Any]) -> Any:
        """The argument's value for this turn (JSON-compatible types only)."""
        kind, payload = self._kind, self._payload
        if kind == "const":
            return payload
        if kind == "template":
            return payload.render(context)
        if kind == "expression":
            return _to_json(payload.evaluate(context))
        if kind == "list":
            return [v.resolve(context) for v in payload]
        return {k: v.resolve(context) for k, v in payload.items()}


def _to_json(value: Any) -> Any:
    """Plain JSON types from an expression's result (Missing → None, str subclasses → str)."""
    if isinstance(value, ChainableUndefined):
        return None
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else value
    if isinstance(value, Mapping):
        return {str(k): _to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_json(v) for v in value]
    return value  # the codec refuses it with a clear ValueTypeError


def compile_template(source: str) -> Template:
    """Compile a text template (``say``); raises ``TemplateError`` on bad syntax or unsafe constructs."""
    return Template(source)


def compile_condition(source: str) -> Condition:
    """Compile a condition; raises ``TemplateError`` on bad syntax or unsafe constructs."""
    return Condition(source)


def compile_value(raw: Any, *, text: bool = False) -> Value:
    """Compile an action argument (see ``Value``); raises ``TemplateError``.

    With ``text=True`` (``say``'s text) a string is always a text template:
    ``"{{ temp.missing }}"`` renders as ``""``, as it would inside a sentence.
    """
    if isinstance(raw, str):
        if "{{" not in raw and "{%" not in raw and "{#" not in raw:
            return Value("const", raw, Reads())
        match = None if text else _WHOLE_EXPRESSION_RE.fullmatch(raw)
        if match is not None:
            expr = Expression(match.group(1).strip())
            return Value("expression", expr, expr.reads)
        template = Template(raw)
        return Value("template", template, template.reads)
    if isinstance(raw, list):
        items = [compile_value(v) for v in raw]
        if all(v.is_constant for v in items):
            return Value("const", [v.constant for v in items], Reads())
        reads = Reads()
        for v in items:
            reads = _merge(reads, v.reads)
        return Value("list", items, reads)
    if isinstance(raw, dict):
        entries = {str(k): compile_value(v) for k, v in raw.items()}
        if all(v.is_constant for v in entries.values()):
            return Value("const", {k: v.constant for k, v in entries.items()}, Reads())
        reads = Reads()
        for v in entries.values():
            reads = _merge(reads, v.reads)
        return Value("dict", entries, reads)
    return Value("const", raw, Reads())


def merge_reads(*reads: Reads) -> Reads:
    """The union of several ``Reads``."""
    result = Reads()
    for r in reads:
        result = _merge(result, r)
    return result
