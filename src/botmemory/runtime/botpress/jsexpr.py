"""Botpress transition conditions: a parser and evaluator of a JavaScript subset.

Botpress evaluated each condition with ``new Function(...)`` (or in a
``vm2`` sandbox). botmemory never runs JavaScript: it parses the subset
below once, when the bot loads, and evaluates the tree with JavaScript's
coercion rules (``jsvalues``). Anything outside the subset is a load error.

The subset (``spec/botpress.md``, "Conditions and templates"):

- literals: numbers (``12``, ``1.5``, ``.5``, ``1e3``, ``0x1F``), strings in
  ``'…'`` or ``"…"`` with JavaScript escapes, ``true false null undefined``;
- the names ``event user session temp bot state workflow``, with member
  access ``.name`` and ``['name']`` / ``[0]`` (literal keys only);
- ``=== !== == != < <= > >= && || !`` with JavaScript's coercions and
  short-circuit values, unary ``-`` and ``+`` (so ``temp.n > -1`` reads as
  written), and parentheses;
- ``Number(x)``, ``String(x)``, ``x.length``, ``x.toString()``,
  ``x.includes(y)``, ``x.toLowerCase()``.

A ``TypeError`` while evaluating (a property of ``undefined`` or ``null``,
calling what is not a function) makes the condition false, as Botpress's
``catch (err) { if (err instanceof TypeError) return false }`` did.
``lastNode=<name>`` (the choice skill's "one flow" transitions) is
recognised as a whole condition by ``compile_condition``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from .jsvalues import (
    UNDEFINED,
    JSTypeError,
    call_method,
    get_property,
    less_than,
    loose_equals,
    number_to_string,
    strict_equals,
    to_boolean,
    to_number,
    to_string,
)

__all__ = ["ROOTS", "Condition", "ConditionError", "compile_condition", "compile_expression"]

#: The names a condition may start from.
ROOTS: Final = frozenset({"event", "user", "session", "temp", "bot", "state", "workflow"})

_METHODS: Final = {"toString": 0, "toLowerCase": 0, "includes": 1}
_GLOBAL_FUNCTIONS: Final = frozenset({"Number", "String"})
_KEYWORDS: Final = {"true": True, "false": False, "null": None, "undefined": UNDEFINED}
_MAX_SOURCE: Final = 10_000
_MAX_DEPTH: Final = 100

_TOKEN_RE: Final = re.compile(
    r"""
    (?P<space>[ \t\n\r\v\f\u00a0\ufeff]+)
  | (?P<number>0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)
  | (?P<string>"(?:[^"\\\n\r]|\\(?:\r\n|[\s\S]))*"|'(?:[^'\\\n\r]|\\(?:\r\n|[\s\S]))*')
  | (?P<name>[A-Za-z_$][A-Za-z0-9_$]*)
  | (?P<punct>===|!==|==|!=|<=|>=|&&|\|\||[<>!().\[\],+-])
    """,
    re.VERBOSE,
)
_SIMPLE_ESCAPES: Final = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "v": "\v", "0": "\0"}


class ConditionError(ValueError):
    """A condition that is not in the subset (the message says where and why)."""


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # number, string, name, punct, end
    text: str
    value: Any
    pos: int


def _unescape(body: str, pos: int) -> str:
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        nxt = body[i + 1]
        if nxt in "\r\n\u2028\u2029":  # line continuation
            i += 3 if body[i + 1 : i + 3] == "\r\n" else 2
            continue
        if nxt == "0" and (i + 2 >= len(body) or not body[i + 2].isdigit()):
            out.append("\0")
            i += 2
            continue
        if nxt in _SIMPLE_ESCAPES and nxt != "0":
            out.append(_SIMPLE_ESCAPES[nxt])
            i += 2
            continue
        if nxt == "x":
            digits = body[i + 2 : i + 4]
            if not re.fullmatch(r"[0-9a-fA-F]{2}", digits):
                raise ConditionError(f"bad \\x escape at {pos + i}")
            out.append(chr(int(digits, 16)))
            i += 4
            continue
        if nxt == "u":
            if body[i + 2 : i + 3] == "{":
                end = body.find("}", i + 3)
                digits = body[i + 3 : end] if end > 0 else ""
                if not re.fullmatch(r"[0-9a-fA-F]{1,6}", digits) or int(digits, 16) > 0x10FFFF:
                    raise ConditionError(f"bad \\u escape at {pos + i}")
                out.append(chr(int(digits, 16)))
                i = end + 1
                continue
            digits = body[i + 2 : i + 6]
            if not re.fullmatch(r"[0-9a-fA-F]{4}", digits):
                raise ConditionError(f"bad \\u escape at {pos + i}")
            out.append(chr(int(digits, 16)))
            i += 6
            continue
        if nxt.isdigit():
            raise ConditionError(f"octal escapes are not in the subset (at {pos + i})")
        out.append(nxt)  # \' \" \\ and any other character stand for themselves
        i += 2
    # JavaScript strings are UTF-16: a pair of \u surrogate escapes is one character
    return "".join(out).encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")


def _tokenize(source: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(source):
        match = _TOKEN_RE.match(source, pos)
        if match is None:
            raise ConditionError(f"unexpected character {source[pos]!r} at {pos}")
        kind = match.lastgroup or ""
        text = match.group()
        if kind == "number":
            if match.end() < len(source) and re.match(r"[A-Za-z0-9_$]", source[match.end()]):
                raise ConditionError(f"bad number {text + source[match.end()]!r} at {pos}")
            value: Any = float(int(text, 0)) if text[:2].lower() in ("0x", "0o", "0b") else float(text)
            if text[0] == "0" and len(text) > 1 and text[1].isdigit():
                raise ConditionError(f"numbers with a leading zero are not in the subset (at {pos})")
            tokens.append(_Token("number", text, value, pos))
        elif kind == "string":
            tokens.append(_Token("string", text, _unescape(text[1:-1], pos + 1), pos))
        elif kind in ("name", "punct"):
            tokens.append(_Token(kind, text, None, pos))
        pos = match.end()
    tokens.append(_Token("end", "", None, len(source)))
    return tokens


# -- the tree: tuples, evaluated by _eval ------------------------------------
# ("lit", value) ("root", name) ("get", obj, key) ("call", name, arg | None)
# ("method", obj, name, args) ("not", x) ("neg", x) ("pos", x)
# ("and", a, b) ("or", a, b) ("cmp", op, a, b)
Node = tuple[Any, ...]


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source
        self.tokens = _tokenize(source)
        self.i = 0
        self.depth = 0
        self.roots: set[str] = set()
        self.event_state = False  # reads event.state (the same objects as user, session, temp)

    def peek(self) -> _Token:
        return self.tokens[self.i]

    def take(self) -> _Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def expect(self, text: str) -> _Token:
        token = self.take()
        if token.text != text or token.kind not in ("punct", "name"):
            raise ConditionError(f"expected {text!r} at {token.pos}, found {token.text or 'the end'!r}")
        return token

    def at(self, *texts: str) -> bool:
        token = self.peek()
        return token.kind == "punct" and token.text in texts

    def parse(self) -> Node:
        if not self.tokens[0:1] or self.peek().kind == "end":
            raise ConditionError("empty condition")
        node = self.or_()
        token = self.peek()
        if token.kind != "end":
            raise ConditionError(f"unexpected {token.text!r} at {token.pos}")
        return node

    def nested(self, parse: Callable[[], Node]) -> Node:
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise ConditionError("condition nested too deeply")
        try:
            return parse()
        finally:
            self.depth -= 1

    def or_(self) -> Node:
        node = self.and_()
        while self.at("||"):
            self.take()
            node = ("or", node, self.and_())
        return node

    def and_(self) -> Node:
        node = self.equality()
        while self.at("&&"):
            self.take()
            node = ("and", node, self.equality())
        return node

    def equality(self) -> Node:
        node = self.relational()
        while self.at("===", "!==", "==", "!="):
            op = self.take().text
            node = ("cmp", op, node, self.relational())
        return node

    def relational(self) -> Node:
        node = self.unary()
        while self.at("<", "<=", ">", ">="):
            op = self.take().text
            node = ("cmp", op, node, self.unary())
        return node

    def unary(self) -> Node:
        if self.at("!", "-", "+"):
            op = self.take().text
            operand = self.nested(self.unary)
            return ({"!": "not", "-": "neg", "+": "pos"}[op], operand)
        return self.postfix()

    def postfix(self) -> Node:
        node = self.primary()
        path: list[str] | None = [node[1]] if node[0] == "root" else None
        while True:
            if self.at("."):
                self.take()
                token = self.take()
                if token.kind != "name":
                    raise ConditionError(f"expected a property name at {token.pos}")
                if self.at("("):
                    node = self.method(node, token)
                    path = None
                    continue
                node = ("get", node, token.text)
                key = token.text
            elif self.at("["):
                self.take()
                token = self.take()
                if token.kind == "string":
                    key = token.value
                elif token.kind == "number":
                    key = number_to_string(token.value)
                else:
                    raise ConditionError(f"only literal keys may go between [ ] (at {token.pos})")
                self.expect("]")
                if self.at("("):
                    raise ConditionError(f"calling {key!r} is not in the subset (at {token.pos})")
                node = ("get", node, key)
            elif self.at("("):
                raise ConditionError(
                    f"only Number(), String() and the subset's methods may be called (at {self.peek().pos})"
                )
            else:
                break
            if path is not None:
                path.append(key)
                if path[:2] == ["event", "state"]:
                    self.event_state = True
        return node

    def method(self, receiver: Node, name: _Token) -> Node:
        if name.text not in _METHODS:
            raise ConditionError(f"method {name.text!r} is not in the subset (at {name.pos})")
        args = self.arguments()
        if len(args) != _METHODS[name.text]:
            raise ConditionError(f"{name.text}() takes {_METHODS[name.text]} argument(s) (at {name.pos})")
        return ("method", receiver, name.text, tuple(args))

    def arguments(self) -> list[Node]:
        self.expect("(")
        args: list[Node] = []
        if not self.at(")"):
            args.append(self.nested(self.or_))
            while self.at(","):
                self.take()
                args.append(self.nested(self.or_))
        self.expect(")")
        return args

    def primary(self) -> Node:
        token = self.take()
        if token.kind in ("number", "string"):
            return ("lit", token.value)
        if token.kind == "name":
            if token.text in _KEYWORDS:
                return ("lit", _KEYWORDS[token.text])
            if token.text in _GLOBAL_FUNCTIONS:
                if not self.at("("):
                    raise ConditionError(f"{token.text} may only be called (at {token.pos})")
                args = self.arguments()
                if len(args) > 1:
                    raise ConditionError(f"{token.text}() takes at most one argument (at {token.pos})")
                return ("call", token.text, args[0] if args else None)
            if token.text in ROOTS:
                self.roots.add(token.text)
                if token.text == "event" and not (self.at(".") or self.at("[")):
                    self.event_state = True  # the whole event, state included
                return ("root", token.text)
            raise ConditionError(
                f"unknown name {token.text!r} at {token.pos} (the subset knows {', '.join(sorted(ROOTS))})"
            )
        if token.kind == "punct" and token.text == "(":
            node = self.nested(self.or_)
            self.expect(")")
            return node
        raise ConditionError(f"unexpected {token.text or 'end of condition'!r} at {token.pos}")


def _eval(node: Node, scope: Mapping[str, Any]) -> Any:
    kind = node[0]
    if kind == "lit":
        return node[1]
    if kind == "root":
        return scope.get(node[1], UNDEFINED)
    if kind == "get":
        return get_property(_eval(node[1], scope), node[2])
    if kind == "cmp":
        op, a, b = node[1], _eval(node[2], scope), _eval(node[3], scope)
        if op == "===":
            return strict_equals(a, b)
        if op == "!==":
            return not strict_equals(a, b)
        if op == "==":
            return loose_equals(a, b)
        if op == "!=":
            return not loose_equals(a, b)
        if op == "<":
            return less_than(a, b) is True
        if op == ">":
            return less_than(b, a) is True
        if op == "<=":
            return less_than(b, a) is False
        return less_than(a, b) is False  # >=
    if kind == "and":
        left = _eval(node[1], scope)
        return _eval(node[2], scope) if to_boolean(left) else left
    if kind == "or":
        left = _eval(node[1], scope)
        return left if to_boolean(left) else _eval(node[2], scope)
    if kind == "not":
        return not to_boolean(_eval(node[1], scope))
    if kind == "neg":
        return -to_number(_eval(node[1], scope))
    if kind == "pos":
        return to_number(_eval(node[1], scope))
    if kind == "call":
        arg = UNDEFINED if node[2] is None else _eval(node[2], scope)
        if node[1] == "Number":
            return 0.0 if node[2] is None else to_number(arg)
        return "" if node[2] is None else to_string(arg)
    if kind == "method":
        receiver = _eval(node[1], scope)
        args = [_eval(arg, scope) for arg in node[3]]
        return call_method(receiver, node[2], args)
    raise AssertionError(f"unknown node {kind!r}")


class Condition:
    """A compiled condition.

    Attributes:
        source: the condition as written.
        roots: the names it reads (``user``, ``temp`` …).
        reads_state: whether it reads ``event.state`` (so memory must be loaded).
        last_node: for ``lastNode=<name>``, the name; else None.
    """

    __slots__ = ("_tree", "last_node", "reads_state", "roots", "source")

    def __init__(
        self, source: str, tree: Node | None, roots: frozenset[str], reads_state: bool, last_node: str | None = None
    ) -> None:
        self.source = source
        self._tree = tree
        self.roots = roots
        self.reads_state = reads_state
        self.last_node = last_node

    def __repr__(self) -> str:
        return f"<Condition {self.source!r}>"

    def evaluate(self, scope: Mapping[str, Any]) -> Any:
        """The expression's JavaScript value.

        Raises:
            JSTypeError: where JavaScript throws a ``TypeError``.
        """
        if self._tree is None:
            return UNDEFINED
        return _eval(self._tree, scope)

    def test(self, scope: Mapping[str, Any], last_node: str | None = None) -> bool:
        """Whether the transition is taken (a ``TypeError`` makes it false)."""
        if self.last_node is not None:
            return self.last_node == last_node
        try:
            return to_boolean(self.evaluate(scope))
        except JSTypeError:
            return False


_TRUE = Condition("true", ("lit", True), frozenset(), False)
_LAST_NODE_RE = re.compile(r"lastNode=(.*)", re.DOTALL)


def compile_expression(source: str) -> Condition:
    """Parse an expression of the subset (no ``lastNode=`` form).

    Raises:
        ConditionError: the expression is not in the subset.
    """
    if not isinstance(source, str):
        raise ConditionError(f"a condition must be a string, got {type(source).__name__}")
    if len(source) > _MAX_SOURCE:
        raise ConditionError(f"condition longer than {_MAX_SOURCE} characters")
    parser = _Parser(source)
    tree = parser.parse()
    return Condition(source, tree, frozenset(parser.roots), parser.event_state)


def compile_condition(source: Any) -> Condition:
    """Compile a transition's condition (``None`` or blank: never true, as in Botpress).

    Raises:
        ConditionError: the condition is not in the subset.
    """
    if source is None or (isinstance(source, str) and not source.strip()):
        return Condition("" if source is None else source, None, frozenset(), False)
    if source == "true":
        return _TRUE
    if isinstance(source, str):
        match = _LAST_NODE_RE.fullmatch(source)
        if match is not None:
            return Condition(source, None, frozenset(), False, last_node=match.group(1))
    return compile_expression(source)
