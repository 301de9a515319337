"""The template sandbox: what flows may compute, and escapes that must fail cleanly."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import botmemory
from botmemory import Runtime
from botmemory.runtime.templates import (
    TemplateError,
    Variables,
    compile_condition,
    compile_template,
    compile_value,
)
from runtime_bots import texts, write_bot

ERROR = "template trouble"


def ctx(**scopes: dict[str, object]) -> dict[str, Variables]:
    names = ("event", "user", "conversation", "global", "temp")
    return {name: Variables(scopes.get(name, {})) for name in names}


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ temp.__globals__ }}",
        "{{ temp['__class__'] }}",
        "{{ x.mro() }}",
        "{{ range(10**9) | list }}",
        "{{ lipsum() }}",
        "{{ cycler(1) }}",
        "{{ ''.join(['a']) }}",
        "{{ 'x'.format(1) }}",
        "{% include 'secrets.txt' %}",
        "{% import 'os' as os %}",
        "{% extends 'base' %}",
        "{{ 'a' | center(1000000000) }}",
        "{{ 'a' | format(1) }}",
        "{% macro m() %}x{% endmacro %}{{ m() }}",
    ],
)
def test_escapes_are_refused_when_compiled(source: str) -> None:
    with pytest.raises(TemplateError):
        compile_template(source)


@pytest.mark.parametrize(
    "source",
    [
        "{{ temp[temp.private] }}",  # a private name reached dynamically
        "{{ temp.s[temp.private] }}",
        "{{ temp.s | attr(temp.private) }}",
        "{{ temp.s * temp.big }}",  # a billion-character string
        "{{ [1] * temp.big }}",
        "{{ 10 ** temp.big }}",
        "{{ (10 ** 10) ** temp.small ** 3 }}",
        "{{ temp.fmt % temp.args }}",  # '%*s' % (10**9, '')
        "{{ int(temp.s) }}",
    ],
)
def test_escapes_fail_at_render_time(source: str) -> None:
    template = compile_template(source)
    values = {"private": "__class__", "s": "abc", "big": 10**9, "small": 50, "fmt": "%*s", "args": [10**9, ""]}
    started = time.perf_counter()
    with pytest.raises(TemplateError):
        template.render(ctx(temp=values))
    assert time.perf_counter() - started < 1.0


def test_allowed_calls_and_filters() -> None:
    template = compile_template(
        "{{ len(temp.items) }} {{ int('4') + 1 }} {{ round(2.567, 1) }} {{ max(temp.items) }} "
        "{{ temp.name | upper }} {{ temp.items | join('-') }} {{ str(abs(-3)) }} {{ bool(0) }} {{ float('1.5') }}"
    )
    rendered = template.render(ctx(temp={"items": [3, 1, 2], "name": "ada"}))
    assert rendered == "3 5 2.6 3 ADA 3-1-2 3 False 1.5"


def test_missing_variables_render_empty_and_are_false() -> None:
    assert compile_template("[{{ user.nick }}][{{ user.a.b.c }}]").render(ctx()) == "[][]"
    for source in ("user.nick", "user.age > 3", "user.age < 3", "user.age + 1 > 3", "user.a.b == 'x'",
                   "not user.a and user.a"):
        assert compile_condition(source).test(ctx()) is False, source
    assert compile_condition("user.age >= 18").test(ctx(user={"age": 30})) is True
    assert compile_condition("not user.nick").test(ctx()) is True
    assert compile_condition("'x' in user").test(ctx(user={"x": 1})) is True


def test_conditions_refuse_calls_outside_the_list() -> None:
    for source in ("range(3)", "temp.items()", "''.join('a')", "__import__('os')", "temp.__class__"):
        with pytest.raises(TemplateError):
            compile_condition(source)


def test_reads_are_found_statically() -> None:
    t = compile_template("{{ user.name }} {{ global['visits'] }} {{ conversation[temp.k] }}")
    assert t.reads.names == {"user": frozenset({"name"}), "global": frozenset({"visits"})}
    assert t.reads.whole == frozenset({"conversation"})


def test_a_whole_expression_keeps_its_type() -> None:
    context = ctx(temp={"n": 4, "items": [1, 2]}, event={"text": "{{ 7*7 }}"})
    assert compile_value("{{ temp.n + 1 }}").resolve(context) == 5
    assert compile_value("{{ temp.items }}").resolve(context) == [1, 2]
    assert compile_value("{{ temp.nothing }}").resolve(context) is None
    assert compile_value("n={{ temp.n }}").resolve(context) == "n=4"
    assert compile_value({"a": ["{{ temp.n }}", "x"]}).resolve(context) == {"a": [4, "x"]}
    # the user's text is a value, never a template
    assert compile_value("{{ event.text }}").resolve(context) == "{{ 7*7 }}"
    assert compile_value(3).resolve(context) == 3


FLOW = """\
start: listen
nodes:
  listen:
    on_receive:
      - remember: {text: "{{ event.text }}"}
    next:
      - when: "temp.mode == 'attr'"
        goto: attr
      - when: "temp.mode == 'big'"
        goto: big
      - when: "temp.mode == 'cond'"
        goto: cond
      - goto: fine
  attr:
    on_enter:
      - say: "{{ temp.s[temp.arg] }}"
    next: [{goto: listen}]
  big:
    on_enter:
      - setUserVariable: {name: huge, value: "{{ temp.s * temp.n }}"}
    next: [{goto: listen}]
  cond:
    next:
      - when: "temp.s[temp.arg]"
        goto: fine
  fine:
    on_enter:
      - say: "fine {{ temp.s }}"
    next: [{goto: listen}]
"""

ACTIONS = """\
async def remember(ctx, text):
    mode, _, arg = text.partition(" ")
    return {"mode": mode, "arg": arg, "s": "abc", "n": 10**9}
"""


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[Runtime]:
    write_bot(tmp_path, "sandbox", bot_yaml=f"error_message: {ERROR!r}\n", flows={"main": FLOW},
              actions={"remember": ACTIONS})
    async with await botmemory.open("memory://") as store:
        rt = await Runtime.open(store, tmp_path)
        assert rt.load_errors == {}
        yield rt


@pytest.mark.parametrize("message", ["attr __class__", "attr __init__", "big", "cond __class__"])
async def test_escapes_inside_a_turn_answer_the_error_message(runtime: Runtime, message: str) -> None:
    await runtime.converse("sandbox", user_id="u", text="start", conversation_id="c")
    assert texts(await runtime.converse("sandbox", user_id="u", text=message, conversation_id="c")) == [ERROR]
    # the conversation stays usable at the same node
    assert texts(await runtime.converse("sandbox", user_id="u", text="ok", conversation_id="c")) == ["fine abc"]
