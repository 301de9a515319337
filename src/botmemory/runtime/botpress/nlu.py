"""A deterministic intent matcher over ``intents/``, ``qna/`` and ``entities/``.

Not a language model: enough for flows that branch on
``event.nlu.intent.name``, for the QnA module's answers and for slots.

- Text is normalised (Unicode NFKD without accents, case-folded,
  punctuation and spaces collapsed) and split into tokens.
- A message equal to an utterance after normalising gets that intent with
  confidence 1; otherwise the intent's confidence is its best token overlap
  (Jaccard: shared tokens / all tokens of message and utterance); the best
  intent at or above ``THRESHOLD`` wins (ties: the name that sorts first),
  else ``none``.
- Only intents of the active NLU contexts are considered (``global`` when
  none is active), as in Botpress 12.
- QnA entries (``qna/*.json``) are intents named ``__qna__<id>``.
- List entities (values and synonyms, whole words) and pattern entities
  (regular expressions) fill ``event.nlu.entities``; an intent's slots take
  the first entity of their kinds (``any``: the whole message).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = ["NONE_INTENT", "THRESHOLD", "Entity", "Intent", "Matcher", "QnaEntry", "normalise", "tokens"]

#: Minimum token overlap for an intent (and a QnA answer: Botpress's MIN_CONFIDENCE) to be chosen.
THRESHOLD: Final = 0.5
NONE_INTENT: Final = "none"
QNA_PREFIX: Final = "__qna__"

_SLOT_MARKUP_RE: Final = re.compile(r"\[([^\[\]]+)\]\(([^()]+)\)")
_NOT_WORD_RE: Final = re.compile(r"[\W_]+", re.UNICODE)


def normalise(text: str) -> str:
    """Lower case, no accents, punctuation as spaces, single spaces."""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(_NOT_WORD_RE.sub(" ", stripped.casefold()).split())


def tokens(text: str) -> frozenset[str]:
    """The set of normalised tokens of ``text``."""
    return frozenset(normalise(text).split())


def strip_slot_markup(utterance: str) -> str:
    """``I want a [large](size) pizza`` -> ``I want a large pizza``."""
    return _SLOT_MARKUP_RE.sub(lambda m: m.group(1), utterance)


@dataclass(slots=True)
class Intent:
    """An intent: utterances per language (normalised), contexts and slots."""

    name: str
    contexts: tuple[str, ...] = ("global",)
    utterances: dict[str, list[tuple[str, frozenset[str]]]] = field(default_factory=dict)
    slots: list[dict[str, Any]] = field(default_factory=list)

    def add_utterances(self, language: str, texts: Iterable[str]) -> None:
        bucket = self.utterances.setdefault(language, [])
        for text in texts:
            if isinstance(text, str):
                plain = normalise(strip_slot_markup(text))
                if plain:
                    bucket.append((plain, frozenset(plain.split())))


@dataclass(slots=True)
class QnaEntry:
    """A QnA item: answers per language and/or a redirect."""

    id: str
    answers: dict[str, list[str]]
    action: str
    redirect_flow: str
    redirect_node: str
    enabled: bool

    @property
    def intent_name(self) -> str:
        return QNA_PREFIX + self.id


@dataclass(slots=True)
class Entity:
    """A list or pattern entity."""

    name: str
    kind: str  # list | pattern
    values: list[tuple[str, list[str]]] = field(default_factory=list)  # list: (value, [normalised forms])
    pattern: re.Pattern[str] | None = None


@dataclass(slots=True)
class Matcher:
    """Every intent, QnA entry and entity of one bot."""

    intents: dict[str, Intent] = field(default_factory=dict)
    qna: dict[str, QnaEntry] = field(default_factory=dict)
    entities: dict[str, Entity] = field(default_factory=dict)

    def intent_names(self) -> list[str]:
        return sorted(self.intents)

    def rank(self, text: str, language: str, contexts: Sequence[str]) -> list[tuple[str, float]]:
        """Every intent of the active contexts with a confidence > 0, best first."""
        message = normalise(text)
        if not message:
            return []
        words = frozenset(message.split())
        active = set(contexts) or {"global"}
        scored: list[tuple[str, float]] = []
        for name in sorted(self.intents):
            intent = self.intents[name]
            if not active.intersection(intent.contexts):
                continue
            best = 0.0
            for plain, utterance_words in intent.utterances.get(language, ()):
                if plain == message:
                    best = 1.0
                    break
                union = len(words | utterance_words)
                if union:
                    best = max(best, len(words & utterance_words) / union)
            if best > 0:
                scored.append((name, round(best, 6)))
        scored.sort(key=lambda item: (-item[1], item[0]))
        return scored

    def understand(self, text: str, language: str, contexts: Sequence[str]) -> dict[str, Any]:
        """``event.nlu`` for a message."""
        ranked = self.rank(text, language, contexts)
        included = list(contexts) or ["global"]
        intents: list[dict[str, Any]] = [
            {"name": name, "confidence": confidence, "context": self._context_of(name, included)}
            for name, confidence in ranked
        ]
        top = intents[0] if ranked and ranked[0][1] >= THRESHOLD else None
        intent = top if top is not None else {"name": NONE_INTENT, "confidence": 1.0, "context": "global"}
        entities = self.extract_entities(text)
        slots: dict[str, Any] = {}
        found = self.intents.get(str(intent["name"]))
        if found is not None:
            for slot in found.slots:
                value = self._slot_value(slot, entities, text)
                if value is not None:
                    slots[str(slot.get("name"))] = value
        return {
            "intent": intent,
            "intents": intents,
            "language": language,
            "detectedLanguage": language,
            "includedContexts": included,
            "entities": entities,
            "slots": slots,
            "errored": False,
            "ambiguous": len(intents) > 1 and intents[0]["confidence"] == intents[1]["confidence"],
        }

    def _context_of(self, name: str, included: list[str]) -> str:
        intent = self.intents.get(name)
        if intent is None:
            return "global"
        for context in intent.contexts:
            if context in included:
                return context
        return intent.contexts[0] if intent.contexts else "global"

    def extract_entities(self, text: str) -> list[dict[str, Any]]:
        """List and pattern entities found in ``text`` (whole words for lists), in name order."""
        found: list[dict[str, Any]] = []
        message = f" {normalise(text)} "
        for name in sorted(self.entities):
            entity = self.entities[name]
            if entity.kind == "list":
                for value, forms in entity.values:
                    for form in forms:
                        if form and f" {form} " in message:
                            found.append(_entity(name, "list", value, form))
                            break
            elif entity.pattern is not None:
                match = entity.pattern.search(text)
                if match is not None:
                    found.append(_entity(name, "pattern", match.group(), match.group()))
        return found

    @staticmethod
    def _slot_value(slot: dict[str, Any], entities: list[dict[str, Any]], text: str) -> dict[str, Any] | None:
        kinds = slot.get("entities") or []
        if not isinstance(kinds, list):
            return None
        for entity in entities:
            if entity["name"] in kinds:
                return {
                    "name": slot.get("name"),
                    "value": entity["data"]["value"],
                    "source": entity["meta"]["source"],
                    "entity": entity,
                    "confidence": 1.0,
                }
        if "any" in kinds and text.strip():
            entity = _entity("any", "any", text, text)
            return {"name": slot.get("name"), "value": text, "source": text, "entity": entity, "confidence": 1.0}
        return None


def _entity(name: str, kind: str, value: str, source: str) -> dict[str, Any]:
    return {
        "name": name,
        "type": kind,
        "meta": {"confidence": 1.0, "source": source, "start": 0, "end": len(source)},
        "data": {"value": value, "unit": "", "extras": {}},
    }
