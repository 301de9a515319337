"""Mustache templates as Botpress rendered them (mustache.js 4), rendered once.

Parsing uses ``chevron``'s tokenizer (tags, sections, set delimiters,
standalone lines); rendering is done here because the values are
JavaScript's (``jsvalues``): ``{{n}}`` of ``1.0`` prints ``1``, arrays print
``a,b``, objects ``[object Object]``, a missing name prints nothing, and
names are looked up as mustache.js 4 looks them up (``a.b.c`` through the
context stack, ``text.length`` on strings).

Escaping: ``{{x}}`` escapes as mustache.js does (``& < > " ' / ` =``);
``{{{x}}}`` and ``{{&x}}`` do not. ``escape=False`` (action arguments)
turns escaping off, so arguments are stored as the user typed them.

A template is rendered once. Botpress re-rendered the output up to three
times, so a user who typed ``{{event.botId}}`` saw it evaluated; here the
output of a render is never parsed again. Partials render as nothing, as
mustache.js does without partials; lambdas cannot occur in JSON data.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

from chevron.tokenizer import tokenize  # type: ignore[import-untyped]

from .jsvalues import UNDEFINED, get_property, has_property, is_nullish, to_boolean, to_string

__all__ = ["MAX_RENDERED_CHARS", "Template", "TemplateError", "escape_html"]

#: Rendering stops with an error beyond this many characters.
MAX_RENDERED_CHARS: Final = 100_000
_MAX_NESTING: Final = 64

_ENTITIES: Final = str.maketrans(
    {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;", "/": "&#x2F;", "`": "&#x60;", "=": "&#x3D;"}
)


class TemplateError(ValueError):
    """A template that does not parse, or a render over the size limit."""


def escape_html(text: str) -> str:
    """mustache.js's ``escapeHtml``."""
    return text.translate(_ENTITIES)


# A parsed template: a list of items, each ("text", str) | ("var", name, escaped)
# | ("section", name, inverted, items).
_Item = tuple[Any, ...]


def _parse(source: str) -> tuple[list[_Item], set[str]]:
    root: list[_Item] = []
    stack: list[tuple[str, list[_Item]]] = []
    current = root
    names: set[str] = set()
    try:
        tokens = list(tokenize(source))
    except Exception as exc:  # chevron raises ChevronError, and IndexError on "{{}}"
        message = str(exc).replace("\n", " ").strip() or type(exc).__name__
        raise TemplateError(f"template syntax error: {message}") from None
    for kind, key in tokens:
        if kind == "literal":
            current.append(("text", key))
        elif kind in ("variable", "no escape"):
            names.add(key)
            current.append(("var", key, kind == "variable"))
        elif kind in ("section", "inverted section"):
            if len(stack) >= _MAX_NESTING:
                raise TemplateError("template sections nested too deeply")
            names.add(key)
            items: list[_Item] = []
            current.append(("section", key, kind == "inverted section", items))
            stack.append((key, current))
            current = items
        elif kind == "end":
            if not stack:  # pragma: no cover - chevron refuses it first
                raise TemplateError(f"template syntax error: unopened section {key!r}")
            _, current = stack.pop()
        # comments, partials (no partials: nothing) and set-delimiter tokens render nothing
    return root, names


class _Context:
    __slots__ = ("parent", "view")

    def __init__(self, view: Any, parent: _Context | None = None) -> None:
        self.view = view
        self.parent = parent

    def lookup(self, name: str) -> Any:
        """mustache.js 4's ``Context.prototype.lookup``."""
        if name == ".":
            return self.view
        context: _Context | None = self
        while context is not None:
            hit = False
            value: Any = UNDEFINED
            if "." in name[1:]:
                value = context.view
                names = name.split(".")
                index = 0
                while not is_nullish(value) and index < len(names):
                    if index == len(names) - 1:
                        hit = has_property(value, names[index])
                    value = get_property(value, names[index])
                    index += 1
            else:
                view = context.view
                if isinstance(view, dict | list) or (isinstance(view, str) and not is_nullish(view)):
                    hit = has_property(view, name) and isinstance(view, dict | list)
                    value = get_property(view, name) if not is_nullish(view) else UNDEFINED
            if hit:
                return value
            context = context.parent
        return UNDEFINED


class Template:
    """A compiled Mustache template.

    Attributes:
        source: the template text.
        names: every tag name it uses (``user.nickname``, ``temp.$r`` …).
        roots: the first segment of each name (what memory it reads).
        reads_state: whether it may read ``event.state`` (or the whole event).
        is_static: no tags at all (rendering returns the source).
    """

    __slots__ = ("_items", "is_static", "names", "reads_state", "roots", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self._items, names = _parse(source)
        self.names = frozenset(names)
        self.roots = frozenset(name.split(".", 1)[0] for name in names)
        self.reads_state = any(n in (".", "event", "state") or n.startswith(("event.state", "state.")) for n in names)
        # no tags (comments and partials count: they render as nothing)
        self.is_static = all(item[0] == "text" for item in self._items) and (
            "".join(item[1] for item in self._items) == source
        )

    def __repr__(self) -> str:
        return f"<Template {self.source!r}>"

    def render(self, view: Mapping[str, Any], *, escape: bool = True) -> str:
        """Render once with ``view`` (the root context).

        Raises:
            TemplateError: the output would exceed ``MAX_RENDERED_CHARS``.
        """
        if self.is_static:
            return self.source
        out: list[str] = []
        self._render(self._items, _Context(dict(view)), escape, out, [0])
        return "".join(out)

    def _render(self, items: Iterable[_Item], context: _Context, escape: bool, out: list[str], size: list[int]) -> None:
        for item in items:
            kind = item[0]
            if kind == "text":
                self._emit(item[1], out, size)
            elif kind == "var":
                value = context.lookup(item[1])
                if is_nullish(value):
                    continue
                text = to_string(value)
                self._emit(
                    escape_html(text) if escape and item[2] and isinstance(value, str | list | dict | bool) else text,
                    out,
                    size,
                )
            else:
                _, name, inverted, children = item
                value = context.lookup(name)
                if inverted:
                    if not to_boolean(value) or (isinstance(value, list) and not value):
                        self._render(children, context, escape, out, size)
                    continue
                if not to_boolean(value):
                    continue
                if isinstance(value, list):
                    for element in value:
                        self._render(children, _Context(element, context), escape, out, size)
                elif isinstance(value, dict | str | int | float) and not isinstance(value, bool):
                    self._render(children, _Context(value, context), escape, out, size)
                else:
                    self._render(children, context, escape, out, size)

    @staticmethod
    def _emit(text: str, out: list[str], size: list[int]) -> None:
        size[0] += len(text)
        if size[0] > MAX_RENDERED_CHARS:
            raise TemplateError(f"rendered text longer than {MAX_RENDERED_CHARS} characters")
        out.append(text)
