"""YAML with line numbers, so that load errors can say ``flows/main.yaml:3``.

``load_yaml(text, file)`` parses with ``yaml.SafeLoader`` (no Python tags)
into ``LineDict``/``LineList``, plain ``dict``/``list`` subclasses that also
remember the 1-based line of the mapping and of each key's value. Duplicate
keys, which YAML silently resolves as "last one wins", are errors here.
"""

from __future__ import annotations

from typing import Any

import yaml

__all__ = ["BotLoadError", "LineDict", "LineList", "load_yaml", "plain"]


class BotLoadError(Exception):
    """A bot folder cannot be loaded; the message starts with ``file:line:``."""

    def __init__(self, file: str, line: int | None, message: str) -> None:
        self.file = file
        self.line = line
        self.message = message
        super().__init__(f"{file}:{line}: {message}" if line else f"{file}: {message}")


class LineDict(dict[Any, Any]):
    """A YAML mapping: ``line`` of the mapping, ``lines[key]`` of each value."""

    line: int
    lines: dict[Any, int]

    def line_of(self, key: Any) -> int:
        """The line of ``key``'s value, or of the mapping when the key is absent."""
        return self.lines.get(key, self.line)


class LineList(list[Any]):
    """A YAML sequence: ``line`` of the sequence, ``lines[i]`` of each item."""

    line: int
    lines: list[int]


class _Loader(yaml.SafeLoader):
    """SafeLoader whose mappings and sequences carry line numbers."""


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)
    result = LineDict()
    result.line = node.start_mark.line + 1
    result.lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise BotLoadError("", key_node.start_mark.line + 1, "a mapping key must be a scalar") from None
        if key in result:
            raise BotLoadError("", key_node.start_mark.line + 1, f"duplicate key {key!r}")
        result[key] = loader.construct_object(value_node, deep=True)
        result.lines[key] = value_node.start_mark.line + 1
    return result


def _construct_sequence(loader: _Loader, node: yaml.SequenceNode) -> LineList:
    result = LineList(loader.construct_object(child, deep=True) for child in node.value)
    result.line = node.start_mark.line + 1
    result.lines = [child.start_mark.line + 1 for child in node.value]
    return result


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def load_yaml(text: str, file: str) -> Any:
    """Parse one YAML document.

    Args:
        text: the file's content.
        file: the name used in error messages (relative to the bot folder).

    Returns:
        The document, with ``LineDict``/``LineList`` for mappings and sequences.

    Raises:
        BotLoadError: bad YAML or a duplicate key, with the line.
    """
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader subclass
    except BotLoadError as exc:
        raise BotLoadError(file, exc.line, exc.message) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        # an unterminated construct is reported at the end of the stream, past the last line
        line = min(mark.line + 1, max(len(text.splitlines()), 1)) if mark is not None else None
        raise BotLoadError(file, line, f"bad YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise BotLoadError(file, None, f"bad YAML: {exc}") from None


def plain(value: Any) -> Any:
    """``value`` with every LineDict/LineList turned into a plain dict/list (the codec wants exact types)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value
