"""Botpress conditions: the JavaScript subset, checked against a real JavaScript engine (node).

The differential test runs one ``node`` process for the module and feeds it
Hypothesis-generated expressions and contexts; the runtime itself never
needs node (``runtime/botpress/jsexpr.py`` parses and evaluates in Python).
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from botmemory.runtime.botpress.jsexpr import ConditionError, compile_condition
from botmemory.runtime.botpress.jsvalues import UNDEFINED, JSFunction, JSTypeError, number_to_string

NODE = shutil.which("node")

_NODE_SCRIPT = r"""
const readline = require('readline');
const rl = readline.createInterface({ input: process.stdin });
function enc(v) {
  if (v === undefined) return {t: 'undefined'};
  if (v === null) return {t: 'null'};
  if (typeof v === 'number') return {t: 'number', v: Object.is(v, -0) ? '-0' : String(v)};
  if (typeof v === 'string') return {t: 'string', v};
  if (typeof v === 'boolean') return {t: 'boolean', v};
  if (typeof v === 'function') return {t: 'function'};
  return {t: 'object', v: JSON.stringify(v)};
}
rl.on('line', line => {
  const {expr, ctx} = JSON.parse(line);
  let out;
  try {
    const fn = new Function('event', 'user', 'session', 'temp', 'bot', 'state', 'workflow', 'return (' + expr + ');');
    out = enc(fn(ctx.event, ctx.user, ctx.session, ctx.temp, ctx.bot, ctx.state, ctx.workflow));
  } catch (e) {
    out = e instanceof TypeError ? {t: 'TypeError'} : {t: 'Error', v: String(e)};
  }
  process.stdout.write(JSON.stringify(out) + '\n');
});
"""


class Node:
    def __init__(self) -> None:
        assert NODE is not None
        self.proc = subprocess.Popen(
            [NODE, "-e", _NODE_SCRIPT], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, encoding="utf-8"
        )

    def evaluate(self, expr: str, ctx: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"expr": expr, "ctx": ctx}) + "\n")
        self.proc.stdin.flush()
        result: dict[str, Any] = json.loads(self.proc.stdout.readline())
        return result

    def close(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=10)
        self.proc.stdout.close()


@pytest.fixture(scope="module")
def node() -> Iterator[Node]:
    if NODE is None:
        pytest.skip("node is not installed (the differential test's oracle)")
    engine = Node()
    yield engine
    engine.close()


def ours(expr: str, ctx: dict[str, Any]) -> dict[str, Any]:
    try:
        value = compile_condition(expr).evaluate(ctx)
    except JSTypeError:
        return {"t": "TypeError"}
    if value is UNDEFINED:
        return {"t": "undefined"}
    if value is None:
        return {"t": "null"}
    if isinstance(value, bool):
        return {"t": "boolean", "v": value}
    if isinstance(value, int | float):
        return {"t": "number", "v": "-0" if value == 0 and math.copysign(1, value) < 0 else number_to_string(value)}
    if isinstance(value, str):
        return {"t": "string", "v": value}
    if isinstance(value, JSFunction):
        return {"t": "function"}
    return {"t": "object", "v": json.dumps(value, separators=(",", ":"), ensure_ascii=False)}


# -- generators -----------------------------------------------------------------------
KEYS = ["a", "b", "n", "s", "list", "o", "length", "$r", "skill-choice-ret", "0", "1"]
ROOTS = ["temp", "user", "session", "event", "bot"]
STRINGS = [
    "",
    " ",
    "0",
    "1",
    "10",
    "9",
    "-1",
    "1e3",
    "0x1f",
    " 12 ",
    "1_0",
    "abc",
    "ABC",
    "Abc",
    "true",
    "null",
    "Hé",
    "é",
    "😀",
    "a,b",
    "[object Object]",
    "NaN",
    "Infinity",
    ".5",
    "5.",
]

numbers = st.one_of(st.integers(-20, 20), st.sampled_from([0.5, -0.5, 1.5, 1e21, 1e-7, 123456.789, 2**53]))
scalars = st.one_of(st.none(), st.booleans(), numbers, st.sampled_from(STRINGS))
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(KEYS), inner, max_size=3)),
    max_leaves=8,
)
contexts = st.fixed_dictionaries({root: st.dictionaries(st.sampled_from(KEYS), values, max_size=5) for root in ROOTS})


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


literals = st.one_of(
    st.integers(0, 30).map(str),
    st.sampled_from(["0.5", "1e3", "0x1F", ".5", "1.50"]),
    st.sampled_from(STRINGS).map(_quote),
    st.sampled_from(STRINGS).map(lambda s: json.dumps(s, ensure_ascii=False)),
    st.sampled_from(["true", "false", "null", "undefined"]),
)


@st.composite
def paths(draw: st.DrawFn) -> str:
    expr = draw(st.sampled_from(ROOTS))
    for _ in range(draw(st.integers(0, 3))):
        key = draw(st.sampled_from(KEYS))
        style = draw(st.integers(0, 2))
        if style == 0 and key.replace("$", "a").isidentifier():
            expr += "." + key
        elif style == 1 and key.isdigit():
            expr += f"[{key}]"
        else:
            expr += f"[{_quote(key)}]"
    return expr


def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    binary = st.tuples(inner, st.sampled_from(["===", "!==", "==", "!=", "<", "<=", ">", ">=", "&&", "||"]), inner)
    return st.one_of(
        binary.map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        inner.map(lambda e: f"!{e}"),
        inner.map(lambda e: f"-({e})"),
        inner.map(lambda e: f"Number({e})"),
        inner.map(lambda e: f"String({e})"),
        inner.map(lambda e: f"({e}).length"),
        inner.map(lambda e: f"({e}).toString()"),
        inner.map(lambda e: f"({e}).toLowerCase()"),
        st.tuples(inner, inner).map(lambda t: f"({t[0]}).includes({t[1]})"),
    )


expressions = st.recursive(st.one_of(literals, paths()), extend, max_leaves=6)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expr=expressions, ctx=contexts)
def test_same_value_as_node(node: Node, expr: str, ctx: dict[str, Any]) -> None:
    expected = node.evaluate(expr, ctx)
    assert expected["t"] != "Error", (expr, expected)
    assert ours(expr, ctx) == expected, expr


@pytest.mark.parametrize(
    ("expr", "ctx", "expected"),
    [
        ("temp['skill-choice-invalid-count'] <= undefined", {"temp": {}}, False),
        ("Number(temp['skill-choice-invalid-count']) > Number(3)", {"temp": {"skill-choice-invalid-count": "4"}}, True),
        ("user.nickname !== undefined", {"user": {"nickname": "Ada"}}, True),
        ("session.extractedSlots.topping && true", {"session": {}}, False),  # TypeError: false
        ("temp.$r === 0", {"temp": {"$r": 0}}, True),
        ("event.nlu.intent.name === 'forget'", {"event": {"nlu": {"intent": {"name": "forget"}}}}, True),
        ("", {}, False),
        ("lastNode=success-1", {}, False),
    ],
)
def test_conditions_of_real_bots(expr: str, ctx: dict[str, Any], expected: bool) -> None:
    assert compile_condition(expr).test(ctx) is expected


def test_last_node_compares_the_previous_node() -> None:
    condition = compile_condition("lastNode=success-1")
    assert condition.test({}, last_node="success-1")
    assert not condition.test({}, last_node="success-2")


@pytest.mark.parametrize(
    "expr",
    [
        "temp.a + 1",
        "temp.a = 1",
        "typeof temp.a",
        "eval('1')",
        "process.exit()",
        "temp.constructor.constructor('return 1')()",
        "temp.a.map(x => x)",
        "temp[temp.key]",
        "Number",
        "new Date()",
        "temp.a ? 1 : 2",
        "`x`",
        "temp.a; temp.b",
        "temp.a.includes()",
        "(temp.a",
        "012",
        "foo.bar",
        "require('fs')",
        "temp?.a",
    ],
)
def test_outside_the_subset_is_refused(expr: str) -> None:
    with pytest.raises(ConditionError):
        compile_condition(expr)


def test_deep_nesting_is_refused_not_a_recursion_error() -> None:
    with pytest.raises(ConditionError):
        compile_condition("!" * 5000 + "true")
    with pytest.raises(ConditionError):
        compile_condition("(" * 5000 + "true" + ")" * 5000)
