"""What the user's text can make a template cost is bounded (issue 11, item 4).

Measured with ``python -m benchmarks.template_cost`` (see the README): three
nested loops over a 400-character message took 2.3 s of blocked event loop
before (6 s in the walk that found it), a ``~`` doubling chain built an
0.8 GB string (1.6 GB peak RSS); now both end the turn with the error
message within milliseconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import botmemory
from botmemory import Runtime
from botmemory.runtime.templates import (
    MAX_BUILT_LENGTH,
    MAX_LOOP_ITERATIONS,
    TemplateError,
    Variables,
    compile_template,
    compile_value,
)
from runtime_bots import texts, write_bot

ERROR = "that was too much"

LOOPS = (
    "{% for a in event.text %}{% for b in event.text %}{% for c in event.text %}"
    "{% endfor %}{% endfor %}{% endfor %}done"
)


def _chain(doublings: int, op: str = "~") -> str:
    sets = "{% set s0 = event.text %}" + "".join(
        f"{{% set s{i} = s{i - 1} {op} s{i - 1} %}}" for i in range(1, doublings + 1)
    )
    return sets + f"{{{{ s{doublings} | length }}}}"


def ctx(**scopes: dict[str, object]) -> dict[str, Variables]:
    return {name: Variables(scopes.get(name, {})) for name in ("event", "user", "conversation", "global", "temp")}


FLOW = """\
start: listen
nodes:
  listen:
    on_receive:
      - remember: {text: "{{ event.text }}"}
    next:
      - when: "temp.mode == 'loops'"
        goto: loops
      - when: "temp.mode == 'concat'"
        goto: concat
      - when: "temp.mode == 'plus'"
        goto: plus
      - goto: fine
  loops:
    on_enter:
      - say: @LOOPS@
    next: [{goto: listen}]
  concat:
    on_enter:
      - say: @CONCAT@
    next: [{goto: listen}]
  plus:
    on_enter:
      - say: @PLUS@
    next: [{goto: listen}]
  fine:
    on_enter:
      - say: "{% for w in temp.words %}{{ loop.index }}:{{ w }}{% if not loop.last %},{% endif %}{% endfor %}"
    next: [{goto: listen}]
"""
for _name, _template in (("@LOOPS@", LOOPS), ("@CONCAT@", _chain(12)), ("@PLUS@", _chain(12, "+"))):
    FLOW = FLOW.replace(_name, repr(_template))

ACTIONS = """\
async def remember(ctx, text):
    mode = text.split()[0]
    return {"mode": mode, "words": text.split()}
"""


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[Runtime]:
    write_bot(tmp_path, "costly", bot_yaml=f"error_message: {ERROR!r}\n", flows={"main": FLOW},
              actions={"a": ACTIONS})
    store = await botmemory.open("memory://")
    try:
        rt = await Runtime.open(store, tmp_path)
        assert rt.load_errors == {}, rt.load_errors
        await rt.converse("costly", user_id="u", text="start", conversation_id="c")
        yield rt
    finally:
        await store.close()


async def test_nested_loops_over_the_users_text_end_the_turn_without_blocking(runtime: Runtime) -> None:
    stall = 0.0
    stop = False

    async def ticker() -> None:
        nonlocal stall
        last = time.perf_counter()
        while not stop:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            stall, last = max(stall, now - last), now

    tick = asyncio.ensure_future(ticker())
    replies = await runtime.converse("costly", user_id="u", text="loops " + "x" * 400, conversation_id="c")
    stop = True
    await tick
    assert texts(replies) == [ERROR]
    assert stall < 1.0  # was 2.3 s (the whole render) before; about 10 ms now
    assert texts(await runtime.converse("costly", user_id="u", text="a b", conversation_id="c")) == ["1:a,2:b"]


@pytest.mark.parametrize("mode", ["concat", "plus"])
async def test_doubling_chains_end_the_turn_with_the_error_message(runtime: Runtime, mode: str) -> None:
    text = f"{mode} " + "x" * 400  # 406 characters doubled 12 times: 1.7 million
    assert texts(await runtime.converse("costly", user_id="u", text=text, conversation_id="c")) == [ERROR]


@pytest.mark.parametrize(
    "source",
    [
        LOOPS,
        _chain(12),
        _chain(12, "+"),
        "{{ (event.text | join('y' * 100000)) | length }}",
        "{{ (event.text | replace('', 'y' * 10000)) | length }}",
    ],
    ids=["loops", "concat", "plus", "join", "replace"],
)
def test_costly_templates_are_refused_at_render_time(source: str) -> None:
    template = compile_template(source)
    started = time.perf_counter()
    with pytest.raises(TemplateError):
        template.render(ctx(event={"text": "x" * 400 * (2 if "join" in source else 1)}))
    assert time.perf_counter() - started < 1.0


def test_expressions_are_bounded_too() -> None:
    big = "x" * (MAX_BUILT_LENGTH // 2 + 1)
    for source in ("{{ temp.s ~ temp.s }}", "{{ temp.s + temp.s }}", "{{ [temp.s, temp.s] | join }}"):
        with pytest.raises(TemplateError, match="longer than"):
            compile_value(source).resolve(ctx(temp={"s": big}))
    assert compile_value("{{ temp.s ~ '!' }}").resolve(ctx(temp={"s": "hi"})) == "hi!"
    assert compile_value("{{ temp.n + 1 }}").resolve(ctx(temp={"n": 1})) == 2
    assert compile_value("{{ temp.a + temp.b }}").resolve(ctx(temp={"a": [1], "b": [2]})) == [1, 2]


def test_loops_within_the_budget_behave_as_jinja_loops() -> None:
    template = compile_template(
        "{% for k in temp.d %}{{ k }}{% endfor %}|{% for x in temp.none %}x{% else %}empty{% endfor %}|"
        "{% for a, b in temp.pairs %}{{ a }}{{ b }}{% endfor %}|{% for i in temp.items %}"
        "{{ loop.index }}/{{ loop.length }}{% endfor %}|{{ temp.items | join('-') }}|{{ 'a-b' | replace('-', '+') }}"
    )
    rendered = template.render(ctx(temp={"d": {"p": 1, "q": 2}, "pairs": [[1, 2], [3, 4]], "items": [7, 8, 9]}))
    assert rendered == "pq|empty|1234|1/32/33/3|7-8-9|a+b"
    # the whole budget is usable: 100,000 iterations in one render
    side = round(MAX_LOOP_ITERATIONS ** (1 / 2)) - 1
    nested = compile_template("{% for a in temp.s %}{% for b in temp.s %}{% endfor %}{% endfor %}ok")
    assert nested.render(ctx(temp={"s": "x" * side})) == "ok"
