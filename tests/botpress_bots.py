"""Small Botpress-format bots written for the tests (bot.config.json + flows/*.flow.json + content)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any


def node(
    name: str,
    on_enter: list[str] | None = None,
    on_receive: list[str] | None = None,
    next: list[tuple[str, str]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A flow node; ``next`` is ``[(condition, target), …]``."""
    return {
        "id": name,
        "name": name,
        "onEnter": on_enter or [],
        "onReceive": on_receive,
        "next": [{"condition": c, "node": t} for c, t in (next or [])],
        **extra,
    }


def flow(
    start: str,
    *nodes: dict[str, Any],
    catch_all_next: list[tuple[str, str]] | None = None,
    catch_all_on_receive: list[str] | None = None,
) -> dict[str, Any]:
    return {
        "version": "0.0.1",
        "startNode": start,
        "catchAll": {
            "next": [{"condition": c, "node": t} for c, t in (catch_all_next or [])],
            "onReceive": catch_all_on_receive or [],
        },
        "nodes": list(nodes),
    }


def texts(*pairs: tuple[str, str | dict[str, Any]]) -> list[dict[str, Any]]:
    """builtin_text elements from ``(id, text or formData)``."""
    return [{"id": i, "formData": {"text$en": t} if isinstance(t, str) else t} for i, t in pairs]


def write_bp_bot(
    root: Path,
    folder: str,
    *,
    flows: dict[str, dict[str, Any]],
    config: dict[str, Any] | None = None,
    content: dict[str, list[dict[str, Any]]] | None = None,
    intents: dict[str, dict[str, Any]] | None = None,
    qna: dict[str, dict[str, Any]] | None = None,
    files: dict[str, str] | None = None,
) -> Path:
    """Write a Botpress bot folder ``root/folder``; returns it."""
    target = root / folder
    (target / "flows").mkdir(parents=True, exist_ok=True)
    base = {
        "id": folder,
        "name": folder,
        "version": "12.30.9",
        "defaultLanguage": "en",
        "languages": ["en"],
        "dialog": {"timeoutInterval": "5m"},
    }
    (target / "bot.config.json").write_text(json.dumps({**base, **(config or {})}), encoding="utf-8")
    for name, data in flows.items():
        path = target / "flows" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data), encoding="utf-8")
    for kind, items in (content or {}).items():
        (target / "content-elements").mkdir(exist_ok=True)
        (target / "content-elements" / f"{kind}.json").write_text(json.dumps(items), encoding="utf-8")
    for sub, entries in (("intents", intents), ("qna", qna)):
        for name, data in (entries or {}).items():
            (target / sub).mkdir(exist_ok=True)
            (target / sub / f"{name}.json").write_text(json.dumps(data), encoding="utf-8")
    for rel, text in (files or {}).items():
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return target


def say(replies: list[dict[str, Any]]) -> list[str]:
    return [r.get("text", r["type"]) for r in replies]
