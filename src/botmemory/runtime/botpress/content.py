"""Content elements (``content-elements/*.json``) and their renderers.

Each file ``content-elements/<type>.json`` holds a list of elements
``{"id", "formData"}`` of one content type. A reply is rendered as
Botpress 12 rendered it, with three differences on purpose: every string is
rendered once (Botpress rendered the chosen text again, so user text could
inject ``{{…}}``); the variation is chosen deterministically from a seed
(so a seeded conversation is predictable); and the reply is a botmemory
reply dict rather than a channel payload.

Translation: ``text$en`` keys (and ``{"text": {"en": …}}``) are resolved for
the user's language (``user.language``), else the bot's default language.
v11 bots have untranslated keys and are used as they are.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from .jsvalues import to_boolean
from .mustache import Template, TemplateError

__all__ = [
    "CONTENT_TYPES",
    "SILENT_REPLY_TYPES",
    "ContentElement",
    "ContentError",
    "Renderer",
    "contains_template",
    "pick",
]

#: Content types botmemory renders: content type id -> (reply type, properties).
CONTENT_TYPES: Final[Mapping[str, tuple[str, tuple[str, ...]]]] = {
    "builtin_text": ("text", ("text", "variations", "markdown", "typing")),
    "builtin_single-choice": (
        "single-choice",
        (
            "text",
            "isDropdown",
            "dropdownPlaceholder",
            "choices",
            "markdown",
            "disableFreeText",
            "displayInMessage",
            "typing",
        ),
    ),
    "builtin_image": ("image", ("image", "title", "typing")),
    "builtin_card": ("card", ("title", "subtitle", "image", "actions", "markdown")),
    "builtin_carousel": ("carousel", ("items", "typing")),
    "dropdown": (
        "dropdown",
        (
            "message",
            "buttonText",
            "placeholderText",
            "options",
            "width",
            "displayInKeyboard",
            "allowCreation",
            "allowMultiple",
            "markdown",
            "typing",
        ),
    ),
    "builtin_file": ("file", ("file", "title", "typing")),
    "builtin_audio": ("audio", ("audio", "title", "typing")),
    "builtin_video": ("video", ("video", "title", "typing")),
    "builtin_location": ("location", ("latitude", "longitude", "address", "title", "typing")),
    # a button of a card (Botpress 12's hidden type): said on its own, Botpress's renderer sends nothing
    "builtin_action-button": ("action-button", ("title", "action", "text", "url", "payload")),
}
#: Reply types Botpress renders as no message at all (``renderElement`` returns ``[]``).
SILENT_REPLY_TYPES: Final = frozenset({"action-button"})

# Presentation hints of the Botpress web channel that are not part of a reply.
_DROPPED: Final = frozenset({"variations", "typing"})


class ContentError(ValueError):
    """A content element that cannot be used (unknown type, bad template …)."""


def contains_template(value: str) -> bool:
    """Botpress's test for "render this string": ``{{`` comes before ``}}``."""
    return value.find("{{") < value.find("}}")


@dataclass(slots=True)
class ContentElement:
    """One element: its id, content type and raw ``formData``."""

    id: str
    content_type: str
    form_data: dict[str, Any]
    file: str


def pick(seed: str, count: int) -> int:
    """A deterministic choice in ``range(count)`` for ``seed`` (the variation a seeded turn shows)."""
    digest = hashlib.sha256(seed.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") % count


def _truthy_first(*values: Any) -> Any:
    for value in values:
        if to_boolean(value) if not isinstance(value, bool) else value:
            return value
    return None


@dataclass(slots=True)
class Renderer:
    """Renders elements and ad-hoc content for one bot.

    Attributes:
        elements: every element by id.
        default_language: the bot's ``defaultLanguage``.
        translated: whether elements use ``$lang`` keys (v12) or not (v11).
        templates: every template string compiled at load time.
    """

    elements: dict[str, ContentElement] = field(default_factory=dict)
    default_language: str = "en"
    translated: bool = True
    templates: dict[str, Template] = field(default_factory=dict)

    # -- load time -------------------------------------------------------------
    def compile_strings(self, value: Any, where: str) -> None:
        """Compile every template string inside ``value``.

        Raises:
            ContentError: a template does not parse.
        """
        if isinstance(value, str):
            if contains_template(value) and value not in self.templates:
                try:
                    self.templates[value] = Template(value)
                except TemplateError as exc:
                    raise ContentError(f"{where}: {exc}") from None
        elif isinstance(value, list):
            for item in value:
                self.compile_strings(item, where)
        elif isinstance(value, dict):
            for item in value.values():
                self.compile_strings(item, where)

    def roots_of(self, value: Any) -> tuple[frozenset[str], bool]:
        """The context roots the templates in ``value`` read, and whether they read ``event.state``."""
        roots: set[str] = set()
        state = False

        def walk(item: Any) -> None:
            nonlocal state
            if isinstance(item, str):
                template = self.templates.get(item)
                if template is not None:
                    roots.update(template.roots)
                    state = state or template.reads_state
            elif isinstance(item, list):
                for sub in item:
                    walk(sub)
            elif isinstance(item, dict):
                for sub in item.values():
                    walk(sub)

        walk(value)
        return frozenset(roots), state

    # -- run time ----------------------------------------------------------------
    def template(self, text: str) -> Template | None:
        if not contains_template(text):
            return None
        found = self.templates.get(text)
        if found is None:  # text built at run time (e.g. a Python action's say args)
            found = self.templates[text] = Template(text)
        return found

    def render_value(self, value: Any, view: Mapping[str, Any], *, escape: bool = True) -> Any:
        """Render every template string in ``value`` once."""
        if isinstance(value, str):
            template = self.template(value)
            return value if template is None else template.render(view, escape=escape)
        if isinstance(value, list):
            return [self.render_value(item, view, escape=escape) for item in value]
        if isinstance(value, dict):
            return {key: self.render_value(item, view, escape=escape) for key, item in value.items()}
        return value

    def translate(self, content_type: str, form_data: Mapping[str, Any], language: str | None) -> dict[str, Any]:
        """The properties of ``form_data`` in ``language`` (else the default language)."""
        props = CONTENT_TYPES[content_type][1]
        if not self.translated:
            return dict(form_data)
        lang = language or self.default_language
        default = self.default_language
        result: dict[str, Any] = {}
        for prop in props:
            nested = form_data.get(prop)
            value = _truthy_first(
                form_data.get(f"{prop}${lang}"),
                form_data.get(f"{prop}${default}"),
                nested.get(lang) if isinstance(nested, dict) else None,
                nested.get(default) if isinstance(nested, dict) else None,
            )
            if value is None and nested is not None and not isinstance(nested, dict):
                value = nested  # an untranslated key in a v12 bot: used as it is
            if value is not None:
                result[prop] = value
        return result

    def render(
        self,
        content_type: str,
        form_data: Mapping[str, Any],
        view: Mapping[str, Any],
        *,
        language: str | None,
        seed: str,
        translate: bool = True,
    ) -> dict[str, Any]:
        """A reply dict for ``form_data`` of ``content_type``, rendered once with ``view``."""
        reply_type = CONTENT_TYPES[content_type][0]
        data = self.translate(content_type, form_data, language) if translate else dict(form_data)
        text = data.get("text")
        variations = data.get("variations")
        chosen: Any = text
        if isinstance(variations, list) and variations:
            options = [text, *variations]
            candidate = options[pick(seed, len(options))]
            if to_boolean(candidate):  # an empty variation keeps the main text, as in Botpress
                chosen = candidate
        reply: dict[str, Any] = {"type": reply_type}
        for key, value in data.items():
            if key in _DROPPED:
                continue
            reply[key] = self.render_value(chosen if key == "text" else value, view)
        return reply

    def render_element(
        self, element_id: str, view: Mapping[str, Any], *, language: str | None, seed: str
    ) -> dict[str, Any]:
        """Render content element ``element_id``.

        Raises:
            ContentError: no such element.
        """
        element = self.elements.get(element_id)
        if element is None:
            raise ContentError(f"content element {element_id!r} not found")
        return self.render(element.content_type, element.form_data, view, language=language, seed=seed)

    def raw_choices(self, element_id: str) -> list[Any] | None:
        """``formData.choices`` as stored (untranslated), as the choice skill's number matching reads it."""
        element = self.elements.get(element_id)
        if element is None:
            return None
        choices = element.form_data.get("choices")
        return choices if isinstance(choices, list) else None


RenderFn = Callable[[str, Mapping[str, Any]], dict[str, Any]]
