"""Botpress templates: mustache.js 4 escaping and lookups, JavaScript values, rendered once."""

from __future__ import annotations

import pytest

from botmemory.runtime.botpress.mustache import MAX_RENDERED_CHARS, Template, TemplateError

VIEW = {
    "user": {"name": "Tom & 'Jerry' <b>/=`", "tags": ["a", "b"], "n": 1.0, "big": 1e21, "ok": True, "none": None},
    "temp": {"$r": 0, "items": [{"x": 1}, {"x": 2}], "empty": [], "o": {"k": "v"}},
    "event": {"payload": {"text": "{{user.name}}"}},
}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{user.name}}", "Tom &amp; &#39;Jerry&#39; &lt;b&gt;&#x2F;&#x3D;&#x60;"),  # mustache.js's escapeHtml
        ("{{{user.name}}}", "Tom & 'Jerry' <b>/=`"),
        ("{{&user.name}}", "Tom & 'Jerry' <b>/=`"),
        (
            "{{user.tags}} {{user.n}} {{user.big}} {{user.ok}} [{{user.none}}] [{{user.missing}}]",
            "a,b 1 1e+21 true [] []",
        ),
        ("{{temp.$r}}", "0"),
        ("{{#temp.items}}{{x}};{{/temp.items}}", "1;2;"),
        ("{{^temp.empty}}none{{/temp.empty}}{{#temp.$r}}zero is false{{/temp.$r}}", "none"),
        ("{{#temp.o}}{{k}} {{user.tags}}{{/temp.o}}", "v a,b"),
        ("{{user.name.length}}", "20"),
        ("{{temp.o}}", "[object Object]"),
        ("{{event.payload.text}}", "{{user.name}}"),  # user text is data: never rendered a second time
        ("{{! comment }}{{> partial}}x", "x"),
        ("{{=<% %>=}}<%temp.$r%>", "0"),
    ],
)
def test_renders_as_mustache_js(template: str, expected: str) -> None:
    assert Template(template).render(VIEW) == expected


def test_action_arguments_are_not_escaped() -> None:
    assert Template("{{user.name}}").render(VIEW, escape=False) == "Tom & 'Jerry' <b>/=`"


@pytest.mark.parametrize("bad", ["{{#a}}", "{{a", "{{/a}}", "{{#a}}{{/b}}"])
def test_syntax_errors(bad: str) -> None:
    with pytest.raises(TemplateError):
        Template(bad)


def test_output_is_bounded() -> None:
    view = {"temp": {"l": list(range(MAX_RENDERED_CHARS))}}
    with pytest.raises(TemplateError):
        Template("{{#temp.l}}{{#temp.l}}x{{/temp.l}}{{/temp.l}}").render(view)


def test_reads() -> None:
    template = Template("{{user.a}} {{#temp.x}}{{y}}{{/temp.x}}")
    assert {"user", "temp"} <= template.roots
    assert not template.reads_state
    assert Template("{{event.state.user.a}}").reads_state
