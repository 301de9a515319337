"""Loading a Botpress bot folder: ``bot.config.json``, ``flows/``, content, NLU, Python replacements.

``load_botpress_bot(folder)`` reads everything and checks everything it can
before the bot runs: every instruction parses, every action and content
element exists, every condition is in the JavaScript subset, every template
parses, every target exists. It lists *every* problem (``BotpressLoadError``),
not only the first. Nothing on disk is converted or written.

Custom code: a JavaScript action ``actions/<name>.js`` or hook
``hooks/<hook>/<name>.js`` needs a Python file of the same name beside it
(``<name>.py``): actions define ``async def <name>(ctx, **args)`` (the name
with ``-`` and ``.`` as ``_``, or the file's only public ``async def``),
hooks ``async def <hook>(bp, event)``. A JavaScript file named like a
built-in or natively run module action is that action (v11 bots carry
copies of them, some v12 exports copies of ``basic-skills``): ignored. So
is a JavaScript action no flow calls (Botpress never runs it either; it is
listed only when the bot fails for another reason), and so
are the files Botpress itself skips (a name starting with ``.`` is
disabled) and the unmodified copies of Botpress's own module hooks whose
job this runtime does natively (``hooks/<hook>/builtin/00_dialog_engine.js``
and the like, which exports of v12 bots carry with the ``//CHECKSUM:`` line
Botpress writes on the files it copies; an edited copy is custom code).

An optional ``botmemory.yaml`` beside ``bot.config.json`` holds what
Botpress has no place for: ``retention`` (policies, as in ``bot.yaml``),
``error_message``, ``hook_timeout`` and ``botpress_version`` (11 or 12,
when the folder's own clues are not enough).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import re
from collections.abc import Collection
from pathlib import Path
from typing import Any, Final

import yaml

from ...errors import InvalidInputError
from ...expiry import duration_ms
from ...keys import validate_bot_id
from ..loader import _import, _module_name, _parse_retention
from ..yamlsource import BotLoadError
from .actions import MODULE_ACTIONS, SKILL_ACTIONS, action_arguments_problem, builtin_name
from .content import CONTENT_TYPES, ContentElement, ContentError, Renderer
from .jsexpr import ConditionError, compile_condition
from .model import Action, BotpressBot, Flow, Node, Say, Transition, as_dict, as_str
from .nlu import QNA_PREFIX, Entity, Intent, Matcher, QnaEntry, normalise

__all__ = [
    "HOOKS",
    "KNOWN_SKILLS",
    "BotpressLoadError",
    "is_botpress_folder",
    "load_botpress_bot",
    "load_botpress_bots",
]

logger = logging.getLogger("botmemory.runtime.botpress")

#: Botpress hooks a Python replacement may implement (the others have nothing to hook into here).
HOOKS: Final = (
    "after_bot_mount",
    "before_incoming_middleware",
    "after_incoming_middleware",
    "before_outgoing_middleware",
    "after_event_processed",
    "before_session_timeout",
    "before_conversation_end",
)
#: Skills whose generated flows this runtime runs (``node.skill``).
KNOWN_SKILLS: Final = frozenset({"choice", "Slot", "CallAPI", "SendEmail", "HitlNext"})

#: Botpress's own module hooks (hook, module, file) whose job this runtime does natively: the dialog
#: engine, the NLU contexts, slot extraction, webchat short links. Unmodified copies of them are ignored.
NATIVE_MODULE_HOOKS: Final = frozenset(
    {
        ("after_incoming_middleware", "builtin", "00_dialog_engine.js"),
        ("after_incoming_middleware", "builtin", "01_expire_nlu_contexts.js"),
        ("before_incoming_middleware", "builtin", "apply_nlu_contexts.js"),
        ("after_incoming_middleware", "basic-skills", "05_extract_slots.js"),
        ("after_incoming_middleware", "builtin", "05_extract_slots.js"),
        ("after_bot_mount", "builtin", "00_create_shortlink.js"),
        ("after_bot_unmount", "builtin", "00_delete_shortlink.js"),
    }
)
_CHECKSUM: Final = "//CHECKSUM:"

_MAX_FILE_BYTES: Final = 10 * 1024 * 1024
_DEFAULT_TIMEOUT_S: Final = 1800.0
_IDENT_RE: Final = re.compile(r"[^A-Za-z0-9_]")


class BotpressLoadError(BotLoadError):
    """Everything wrong with a Botpress bot folder (``problems``: one message each)."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        Exception.__init__(self, "; ".join(problems))
        self.file = problems[0].split(":", 1)[0] if problems else ""
        self.line = None
        self.message = "; ".join(problems)


def is_botpress_folder(folder: Path) -> bool:
    """A folder with ``bot.config.json`` and ``flows/`` (and no ``bot.yaml``)."""
    return (folder / "bot.config.json").is_file() and (folder / "flows").is_dir() and not (folder / "bot.yaml").exists()


def _read_json(path: Path, rel: str, problems: list[str]) -> Any:
    try:
        if path.stat().st_size > _MAX_FILE_BYTES:
            problems.append(f"{rel}: larger than {_MAX_FILE_BYTES // (1024 * 1024)} MB")
            return None
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"{rel}: cannot be read: {exc}")
    except json.JSONDecodeError as exc:
        problems.append(f"{rel}:{exc.lineno}: not valid JSON: {exc.msg}")
    return None


def _disabled(path: Path) -> bool:
    """Botpress skips action and hook files whose name starts with ``.`` (``.00_recorder.js``)."""
    return path.name.startswith(".")


def is_unmodified_module_copy(path: Path) -> bool:
    """A file Botpress copied from a module, unchanged: ``//CHECKSUM:<sha256 of the rest>`` on its first line.

    Botpress writes that line (with the server's line ending) when it copies
    a module's hooks into ``data/global``; the hash no longer matches once
    someone edits the file.
    """
    try:
        text = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    if not text.startswith(_CHECKSUM):
        return False
    for eol in ("\r\n", "\n"):
        first, found, rest = text.partition(eol)
        if found and hashlib.sha256(rest.encode("utf-8")).hexdigest() == first[len(_CHECKSUM) :].strip():
            return True
    return False


def _native_module_hook(parts: tuple[str, ...], path: Path) -> bool:
    return len(parts) == 3 and parts in NATIVE_MODULE_HOOKS and is_unmodified_module_copy(path)


def _duration_s(raw: Any) -> float | None:
    """A Botpress ``ms``-style duration (``"5m"``, ``"30 minutes"``) in seconds, or None."""
    from .actions import ms_duration

    seconds = ms_duration(raw)
    return seconds if seconds is not None and seconds > 0 else None


class _Loader:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.problems: list[str] = []
        self.unused_js: list[str] = []
        self.bot: BotpressBot | None = None

    def problem(self, message: str) -> None:
        self.problems.append(message)

    def rel(self, path: Path) -> str:
        return path.relative_to(self.folder).as_posix()

    # -- bot.config.json, botmemory.yaml --------------------------------------------
    def config(self) -> BotpressBot:
        raw = _read_json(self.folder / "bot.config.json", "bot.config.json", self.problems)
        config = raw if isinstance(raw, dict) else {}
        if raw is not None and not isinstance(raw, dict):
            self.problem("bot.config.json: must be a JSON object")
        raw_id = config.get("id") or self.folder.name
        try:
            bot_id = validate_bot_id(raw_id)
        except InvalidInputError as exc:
            self.problem(f"bot.config.json: {exc}")
            bot_id = "invalid"
        dialog = as_dict(config.get("dialog"))
        timeout = _DEFAULT_TIMEOUT_S
        for key in ("sessionTimeoutInterval", "timeoutInterval"):
            if key in dialog:
                seconds = _duration_s(dialog[key])
                if seconds is None:
                    self.problem(f"bot.config.json: dialog.{key} {dialog[key]!r} is not a duration")
                else:
                    timeout = seconds
                    break
        language = config.get("defaultLanguage")
        version = 12 if ("defaultLanguage" in config or "languages" in config) else 11
        bp_version = config.get("botpressVersion")
        if isinstance(bp_version, str) and bp_version[:3] in ("11.", "12."):
            version = int(bp_version[:2])
        languages = config.get("languages")
        bot = BotpressBot(
            languages=tuple(x for x in languages if isinstance(x, str)) if isinstance(languages, list) else (),
            id=bot_id,
            name=str(config.get("name") or bot_id),
            folder=self.folder,
            start_flow="main.flow.json",
            session_timeout=timeout,
            version=version,
            language=language if isinstance(language, str) and language else "en",
        )
        self.extra_config(bot)
        bot.renderer = Renderer(default_language=bot.language, translated=bot.version >= 12)
        return bot

    def extra_config(self, bot: BotpressBot) -> None:
        path = self.folder / "botmemory.yaml"
        if not path.is_file():
            return
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            self.problem(f"botmemory.yaml: cannot be read: {exc}")
            return
        if doc is None:
            return
        if not isinstance(doc, dict):
            self.problem("botmemory.yaml: must be a mapping")
            return
        for key in doc:
            if key not in (
                "retention",
                "error_message",
                "hook_timeout",
                "action_timeout",
                "turn_timeout",
                "botpress_version",
            ):
                self.problem(f"botmemory.yaml: unknown key {key!r}")
        if "error_message" in doc:
            if isinstance(doc["error_message"], str) and doc["error_message"]:
                bot.error_message = doc["error_message"]
            else:
                self.problem("botmemory.yaml: error_message must be a non-empty string")
        for key in ("hook_timeout", "action_timeout", "turn_timeout"):
            if key in doc:
                try:
                    setattr(bot, key, duration_ms(doc[key]) / 1000)
                except InvalidInputError as exc:
                    self.problem(f"botmemory.yaml: bad {key}: {exc}")
        if "botpress_version" in doc:
            if doc["botpress_version"] in (11, 12):
                bot.version = int(doc["botpress_version"])
            else:
                self.problem("botmemory.yaml: botpress_version must be 11 or 12")
        if "retention" in doc:
            try:
                bot.retention = _parse_retention(doc["retention"], 1)
            except BotLoadError as exc:
                self.problem(f"botmemory.yaml: {exc.message}")

    # -- content, NLU -----------------------------------------------------------------
    def content(self, bot: BotpressBot) -> None:
        folder = self.folder / "content-elements"
        if not folder.is_dir():
            return
        for path in sorted(folder.glob("*.json")):
            rel = self.rel(path)
            content_type = path.stem
            if content_type not in CONTENT_TYPES:
                self.problem(
                    f"{rel}: content type {content_type!r} is not one botmemory renders "
                    f"(known: {', '.join(sorted(CONTENT_TYPES))})"
                )
                continue
            data = _read_json(path, rel, self.problems)
            if data is None:
                continue
            if not isinstance(data, list):
                self.problem(f"{rel}: must be a JSON list of content elements")
                continue
            for index, element in enumerate(data):
                if not isinstance(element, dict) or not isinstance(element.get("id"), str):
                    self.problem(f"{rel}: element {index} has no string id")
                    continue
                form_data = element.get("formData")
                if not isinstance(form_data, dict):
                    self.problem(f"{rel}: element {element['id']!r} has no formData object")
                    continue
                bot.renderer.elements[element["id"]] = ContentElement(element["id"], content_type, form_data, rel)
                try:
                    bot.renderer.compile_strings(form_data, f"{rel}: element {element['id']!r}")
                except ContentError as exc:
                    self.problem(str(exc))

    def nlu(self, bot: BotpressBot) -> None:
        matcher = Matcher()
        folder = self.folder / "intents"
        if folder.is_dir():
            for path in sorted(folder.glob("*.json")):
                rel = self.rel(path)
                data = _read_json(path, rel, self.problems)
                if not isinstance(data, dict):
                    if data is not None:
                        self.problem(f"{rel}: must be a JSON object")
                    continue
                name = as_str(data.get("name"), path.stem)
                contexts = data.get("contexts")
                intent = Intent(
                    name=name,
                    contexts=tuple(c for c in contexts if isinstance(c, str))
                    if isinstance(contexts, list)
                    else ("global",),
                    slots=[s for s in data.get("slots") or [] if isinstance(s, dict)],
                )
                utterances = data.get("utterances")
                if isinstance(utterances, list):  # early v12 exports: one list, in the bot's language
                    intent.add_utterances(bot.language, utterances)
                if isinstance(utterances, dict):
                    for language, texts in utterances.items():
                        if isinstance(texts, list):
                            intent.add_utterances(str(language), texts)
                v11_text = path.with_name(f"{path.stem}.utterances.txt")
                if v11_text.is_file():  # v11: one utterance per line, in the bot's language
                    try:
                        lines = v11_text.read_text(encoding="utf-8-sig").splitlines()
                    except (OSError, UnicodeDecodeError) as exc:
                        self.problem(f"{self.rel(v11_text)}: cannot be read: {exc}")
                        lines = []
                    intent.add_utterances(bot.language, lines)
                matcher.intents[name] = intent
        qna_folder = self.folder / "qna"
        if qna_folder.is_dir():
            for path in sorted(qna_folder.glob("*.json")):
                rel = self.rel(path)
                raw = _read_json(path, rel, self.problems)
                data = raw.get("data") if isinstance(raw, dict) else None
                if not isinstance(data, dict):
                    if raw is not None:
                        self.problem(f"{rel}: a QnA item needs a data object")
                    continue
                qna_id = str(raw.get("id") or path.stem) if isinstance(raw, dict) else path.stem
                contexts = data.get("contexts")
                if not isinstance(contexts, list):
                    category = data.get("category")
                    contexts = [category] if isinstance(category, str) and category else ["global"]
                # v11 and early v12 items hold one list, in the bot's default language
                # (Botpress's qna storage migrate11To12 does the same).
                raw_answers = data.get("answers")
                answers = {bot.language: raw_answers} if isinstance(raw_answers, list) else as_dict(raw_answers)
                entry = QnaEntry(
                    id=qna_id,
                    answers={
                        str(k): [a for a in v if isinstance(a, str)] for k, v in answers.items() if isinstance(v, list)
                    },
                    action=str(data.get("action") or "text"),
                    redirect_flow=str(data.get("redirectFlow") or ""),
                    redirect_node=str(data.get("redirectNode") or ""),
                    enabled=data.get("enabled", True) is not False,
                )
                intent = Intent(name=entry.intent_name, contexts=tuple(str(c) for c in contexts))
                questions = data.get("questions")
                if isinstance(questions, list):
                    intent.add_utterances(bot.language, questions)
                if isinstance(questions, dict):
                    for language, texts in questions.items():
                        if isinstance(texts, list):
                            intent.add_utterances(str(language), texts)
                matcher.intents[entry.intent_name] = intent  # the qna/ file wins over a generated __qna__ intent
                matcher.qna[qna_id] = entry
                for answers_list in entry.answers.values():
                    for answer in answers_list:
                        if answer.startswith("#!"):
                            if answer[2:] not in bot.renderer.elements:
                                self.problem(
                                    f"{rel}: answer names content element {answer[2:]!r}, which does not exist"
                                )
                        else:
                            try:
                                bot.renderer.compile_strings(answer, f"{rel}: answer")
                            except ContentError as exc:
                                self.problem(str(exc))
                if "redirect" in entry.action and entry.redirect_flow:
                    # A QnA item left over from a template (its flow deleted) never blocks the bot: it is off.
                    flow = bot.find_flow(entry.redirect_flow)
                    broken = None
                    if flow is None:
                        broken = f"flow {entry.redirect_flow!r}, which does not exist"
                    elif entry.redirect_node and entry.redirect_node not in flow.nodes:
                        broken = f"node {entry.redirect_node!r}, not in {flow.name}"
                    if broken is not None:
                        logger.warning("bot %s: %s redirects to %s: the QnA item is disabled", bot.id, rel, broken)
                        entry.enabled = False
        entities = self.folder / "entities"
        if entities.is_dir():
            for path in sorted(entities.glob("*.json")):
                rel = self.rel(path)
                data = _read_json(path, rel, self.problems)
                if not isinstance(data, dict):
                    continue
                name = as_str(data.get("name"), path.stem)
                kind = data.get("type")
                if kind == "pattern" and isinstance(data.get("pattern"), str) and data["pattern"]:
                    flags = 0 if data.get("matchCase") else re.IGNORECASE
                    try:
                        matcher.entities[name] = Entity(name, "pattern", pattern=re.compile(data["pattern"], flags))
                    except re.error as exc:
                        self.problem(f"{rel}: bad pattern: {exc}")
                elif kind == "list":
                    occurrences = data.get("occurrences", data.get("occurences")) or []
                    values: list[tuple[str, list[str]]] = []
                    for occurrence in occurrences if isinstance(occurrences, list) else []:
                        if isinstance(occurrence, dict) and isinstance(occurrence.get("name"), str):
                            synonyms = [s for s in occurrence.get("synonyms") or [] if isinstance(s, str)]
                            forms = [normalise(occurrence["name"]), *(normalise(s) for s in synonyms)]
                            values.append((occurrence["name"], [f for f in forms if f]))
                    matcher.entities[name] = Entity(name, "list", values=values)
        bot.matcher = matcher

    # -- custom code ------------------------------------------------------------------
    def actions(self, bot: BotpressBot) -> dict[str, str]:
        """Load ``actions/**/*.py``; returns the JavaScript actions that have no Python file (name -> file)."""
        folder = self.folder / "actions"
        missing: dict[str, str] = {}
        if not folder.is_dir():
            return missing
        for path in sorted(folder.rglob("*")):
            if path.suffix not in (".js", ".py") or not path.is_file():
                continue
            if _disabled(path):
                continue
            name = path.relative_to(folder).with_suffix("").as_posix()
            rel = self.rel(path)
            if path.suffix == ".js":
                if path.with_suffix(".py").is_file() or builtin_name(name) is not None or name in MODULE_ACTIONS:
                    continue
                missing[name] = rel
                continue
            try:
                module = _import(path, self.folder, _module_name(bot.id, "bp_actions", name))
            except BotLoadError as exc:
                self.problem(str(exc))
                continue
            wanted = _IDENT_RE.sub("_", path.stem)
            functions = {
                n: f
                for n, f in vars(module).items()
                if not n.startswith("_") and inspect.iscoroutinefunction(f) and f.__module__ == module.__name__
            }
            fn = functions.get(wanted) or (next(iter(functions.values())) if len(functions) == 1 else None)
            if fn is None:
                self.problem(f"{rel}: define async def {wanted}(ctx, **args) (the action {name!r})")
                continue
            bot.custom_actions[name] = fn
        return missing

    def hooks(self, bot: BotpressBot) -> None:
        folder = self.folder / "hooks"
        bot.bp_hooks = {name: [] for name in HOOKS}
        if not folder.is_dir():
            return
        for path in sorted(folder.rglob("*")):
            if path.suffix not in (".js", ".py") or not path.is_file():
                continue
            rel = self.rel(path)
            parts = path.relative_to(folder).parts
            hook = parts[0] if len(parts) > 1 else ""
            if _disabled(path):
                continue
            if path.suffix == ".js":
                if not path.with_suffix(".py").is_file() and not _native_module_hook(parts, path):
                    self.problem(
                        f"{rel}: JavaScript hook with no Python replacement "
                        f"({path.with_suffix('.py').relative_to(self.folder).as_posix()} "
                        f"defining async def {hook or 'HOOK'}(bp, event))"
                    )
                continue
            if hook not in HOOKS:
                self.problem(f"{rel}: {hook!r} is not a hook botmemory runs (known: {', '.join(HOOKS)})")
                continue
            try:
                module = _import(path, self.folder, _module_name(bot.id, "bp_hooks", "_".join(parts)))
            except BotLoadError as exc:
                self.problem(str(exc))
                continue
            fn = getattr(module, hook, None)
            if not inspect.iscoroutinefunction(fn):
                self.problem(f"{rel}: define async def {hook}(bp, event)")
                continue
            bot.bp_hooks[hook].append((rel, fn))
        mount = bot.bp_hooks["after_bot_mount"]
        bot.hooks = {"after_bot_mount": [(file, _mount_adapter(fn, bot.id)) for file, fn in mount]}

    # -- flows --------------------------------------------------------------------------
    def flows(self, bot: BotpressBot) -> None:
        folder = self.folder / "flows"
        for path in sorted(folder.rglob("*.flow.json")):
            rel = self.rel(path)
            name = path.relative_to(folder).as_posix()
            data = _read_json(path, rel, self.problems)
            if data is None:
                continue
            if not isinstance(data, dict) or not isinstance(data.get("nodes"), list):
                self.problem(f"{rel}: a flow is a JSON object with a nodes list")
                continue
            if name.lower() in bot.bp_flows:
                self.problem(f"{rel}: flow {name!r} is defined twice (flow names ignore case)")
                continue
            flow = Flow(name=name, file=rel, start=str(data.get("startNode") or ""))
            catch_all = as_dict(data.get("catchAll"))
            flow.catch_all_next = self.transitions(catch_all.get("next"), rel, "catchAll")
            flow.catch_all_on_receive = self.instruction_list(catch_all.get("onReceive"), rel, "catchAll") or []
            if isinstance(data.get("timeoutNode"), str):
                flow.timeout_node = data["timeoutNode"]
            for index, raw in enumerate(data["nodes"]):
                if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
                    self.problem(f"{rel}: node {index} has no name")
                    continue
                node = self.node(raw, rel)
                if node.name in flow.nodes:
                    self.problem(f"{rel}: node {node.name!r} is defined twice")
                flow.nodes[node.name] = node
            if flow.start not in flow.nodes:
                self.problem(f"{rel}: startNode {flow.start!r} is not a node of the flow")
            bot.bp_flows[name.lower()] = flow
        if bot.find_flow("main.flow.json") is None:
            self.problem("flows/main.flow.json: missing (every conversation starts there)")

    def node(self, raw: dict[str, Any], rel: str) -> Node:
        name = raw["name"]
        where = f"node {name!r}"
        on_receive = raw.get("onReceive")
        node = Node(
            name=name,
            type=raw.get("type") if isinstance(raw.get("type"), str) else None,
            on_enter=self.instruction_list(raw.get("onEnter"), rel, where) or [],
            on_receive=None if on_receive is None else (self.instruction_list(on_receive, rel, where) or []),
            next=self.transitions(raw.get("next"), rel, where),
            flow=raw.get("flow") if isinstance(raw.get("flow"), str) else None,
            skill=raw.get("skill") if isinstance(raw.get("skill"), str) else None,
            content=raw.get("content") if isinstance(raw.get("content"), dict) else None,
        )
        return node

    def instruction_list(self, raw: Any, rel: str, where: str) -> list[str] | None:
        if raw is None:
            return None
        if not isinstance(raw, list):
            self.problem(f"{rel}: {where}: instructions must be a list")
            return []
        result: list[str] = []
        for item in raw:
            if isinstance(item, dict) and isinstance(item.get("name"), str):  # a skill's {type, name, args} form
                text = item["name"]
                if item.get("type") == "say" or text.startswith("#"):
                    text = "say " + text
                if item.get("args"):
                    text = f"{text} {json.dumps(item['args'])}"
                item = text
            if not isinstance(item, str):
                self.problem(f"{rel}: {where}: an instruction must be a string, got {type(item).__name__}")
                continue
            result.append(item)
        return result

    def transitions(self, raw: Any, rel: str, where: str) -> list[Transition]:
        if raw is None:
            return []
        if not isinstance(raw, list):
            self.problem(f"{rel}: {where}: next must be a list")
            return []
        result: list[Transition] = []
        for item in raw:
            if not isinstance(item, dict):
                self.problem(f"{rel}: {where}: a transition must be an object")
                continue
            condition = item.get("condition")
            target = item.get("node")
            if condition is not None and not isinstance(condition, str):
                self.problem(f"{rel}: {where}: condition must be a string")
                continue
            if target is not None and not isinstance(target, str):
                self.problem(f"{rel}: {where}: node must be a string")
                continue
            result.append(Transition(condition or "", target or ""))
        return result

    # -- checks ------------------------------------------------------------------------
    def check(self, bot: BotpressBot, missing_js: dict[str, str]) -> None:
        users_of_js: dict[str, list[str]] = {}
        for flow in bot.bp_flows.values():
            for transitions, where in [(flow.catch_all_next, "catchAll")] + [
                (node.next, f"node {node.name!r}") for node in flow.nodes.values()
            ]:
                for transition in transitions:
                    self.condition(bot, transition.condition, flow, where)
                    self.target(bot, transition.target, flow, where)
            for text in flow.catch_all_on_receive:
                self.instruction(bot, text, flow, "catchAll", missing_js, users_of_js)
            for node in flow.nodes.values():
                where = f"node {node.name!r}"
                for text in node.on_enter + (node.on_receive or []):
                    self.instruction(bot, text, flow, where, missing_js, users_of_js)
                if node.type == "skill-call":
                    bot.uses_slots = bot.uses_slots or node.skill == "Slot"
                    if node.skill not in KNOWN_SKILLS:
                        self.problem(
                            f"{flow.file}: {where}: skill {node.skill!r} is not one botmemory runs "
                            f"(known: {', '.join(sorted(KNOWN_SKILLS))})"
                        )
                    if bot.find_flow(node.flow) is None:
                        self.problem(f"{flow.file}: {where}: the skill's flow {node.flow!r} does not exist")
                if node.type == "say_something" and node.content is not None:
                    content_type = node.content.get("contentType")
                    if content_type not in CONTENT_TYPES:
                        self.problem(
                            f"{flow.file}: {where}: content type {content_type!r} is not one botmemory renders"
                        )
                    else:
                        self.say(bot, f"say @{content_type}", node.content.get("formData") or {}, flow, where)
        for name, file in sorted(missing_js.items()):
            used = users_of_js.get(name)
            message = (
                f"{file}: JavaScript action with no Python replacement "
                f"({file[:-3]}.py defining async def {_IDENT_RE.sub('_', Path(file).stem)}(ctx, **args))"
            )
            if used:
                self.problem(f"{message}; used by {', '.join(used)}")
            else:  # no flow calls it: Botpress never runs it either (listed only if the bot fails anyway)
                self.unused_js.append(message)

    def condition(self, bot: BotpressBot, source: str, flow: Flow, where: str) -> None:
        if source in bot.conditions:
            return
        try:
            bot.conditions[source] = compile_condition(source)
        except ConditionError as exc:
            self.problem(f"{flow.file}: {where}: condition {source!r} is outside the JavaScript subset: {exc}")

    def target(self, bot: BotpressBot, target: str, flow: Flow, where: str) -> None:
        if target in ("", "END") or target.startswith("#"):
            return
        if ".flow.json" in target:
            flow_name, _, node_name = target.partition("#")
            other = bot.find_flow(flow_name)
            if other is None:
                self.problem(f"{flow.file}: {where}: transition to flow {flow_name!r}, which does not exist")
            elif node_name and node_name not in other.nodes:
                self.problem(f"{flow.file}: {where}: transition to node {node_name!r}, not in {other.name}")
            return
        if target not in flow.nodes:
            self.problem(f"{flow.file}: {where}: transition to node {target!r}, not in this flow")

    def instruction(
        self,
        bot: BotpressBot,
        text: str,
        flow: Flow,
        where: str,
        missing_js: dict[str, str],
        users_of_js: dict[str, list[str]],
    ) -> None:
        if text in bot.instructions:
            return
        if text.startswith("say "):
            chunks = text.split(" ")
            params = " ".join(chunks[2:])
            args: Any = {}
            if params.strip():
                try:
                    args = json.loads(params)
                except json.JSONDecodeError:
                    self.problem(f"{flow.file}: {where}: {text!r}: the arguments are not valid JSON")
                    return
            self.say(bot, text, args, flow, where)
            return
        name, _, args_text = text.partition(" ")
        if ":" in name:  # "server:action" (an action server): the action's own name
            name = name.split(":", 1)[1]
        args = {}
        if args_text.strip():
            try:
                args = json.loads(args_text)
            except json.JSONDecodeError:
                self.problem(f"{flow.file}: {where}: {text!r}: the arguments are not valid JSON")
                return
        if not isinstance(args, dict):
            self.problem(f"{flow.file}: {where}: {text!r}: the arguments must be a JSON object")
            return
        if name in bot.custom_actions:
            kind = "custom"
        elif builtin_name(name) is not None:
            kind = "builtin"
            problem = action_arguments_problem(builtin_name(name) or name, args, bot)
            if problem:
                self.problem(f"{flow.file}: {where}: {text!r}: {problem}")
                return
        elif name in MODULE_ACTIONS:
            kind = "module"
            problem = action_arguments_problem(name, args, bot)
            if problem:
                self.problem(f"{flow.file}: {where}: {text!r}: {problem}")
                return
        elif any(
            flow.name.startswith(f"skills/{skill}-") and name in actions for skill, actions in SKILL_ACTIONS.items()
        ):
            kind = "skill"
        elif name in missing_js:
            users_of_js.setdefault(name, []).append(f"{flow.file} {where}")
            return
        elif not name:
            self.problem(
                f"{flow.file}: {where}: an empty instruction {text!r} (Botpress runs it as an action named '', "
                "which does not exist: remove it from the node)"
            )
            return
        else:
            self.problem(
                f"{flow.file}: {where}: unknown action {name!r} (no built-in of that name and no actions/{name}.py)"
            )
            return
        try:
            bot.renderer.compile_strings(args, f"{flow.file}: {where}: {text!r}")
        except ContentError as exc:
            self.problem(str(exc))
            return
        roots, state = bot.renderer.roots_of(args)
        bot.instructions[text] = Action(name, kind, args, roots, state)

    def say(self, bot: BotpressBot, text: str, args: Any, flow: Flow, where: str) -> None:
        if not isinstance(args, dict):
            self.problem(f"{flow.file}: {where}: {text!r}: the arguments must be a JSON object")
            return
        target = text.split(" ")[1] if len(text.split(" ")) > 1 else ""
        content_id = target.lstrip("#") if target.startswith("#") else target
        element: str | None = None
        content_type: str | None = None
        if content_id.startswith("!"):
            element = content_id[1:]
            found = bot.renderer.elements.get(element)
            if found is None:
                self.problem(f"{flow.file}: {where}: content element {element!r} does not exist")
                return
            roots_el, state_el = bot.renderer.roots_of(found.form_data)
        else:
            content_type = content_id[1:] if content_id.startswith("@") else content_id
            if content_type not in CONTENT_TYPES:
                self.problem(
                    f"{flow.file}: {where}: {text!r}: content type {content_type!r} is not one botmemory renders"
                )
                return
            roots_el, state_el = frozenset(), False
        try:
            bot.renderer.compile_strings(args, f"{flow.file}: {where}: {text!r}")
        except ContentError as exc:
            self.problem(str(exc))
            return
        roots, state = bot.renderer.roots_of(args)
        key = text if not text.startswith("say @") else f"{text} {json.dumps(args, sort_keys=True)}"
        bot.instructions[key] = Say(element, content_type, args, roots | roots_el, state or state_el)


def _mount_adapter(fn: Any, bot_id: str) -> Any:
    async def after_bot_mount(bp: Any) -> Any:
        return await fn(bp, {"botId": bot_id})

    return after_bot_mount


def load_botpress_bot(folder: Path | str) -> BotpressBot:
    """Read and check one Botpress bot folder.

    Raises:
        BotpressLoadError: every problem found (``problems``), each naming its file (and node).
    """
    loader = _Loader(Path(folder))
    bot = loader.config()
    loader.content(bot)
    missing_js = loader.actions(bot)
    loader.hooks(bot)
    loader.flows(bot)
    loader.nlu(bot)
    loader.check(bot, missing_js)
    if loader.problems:
        raise BotpressLoadError(loader.problems + loader.unused_js)
    for message in loader.unused_js:
        logger.warning("bot %s: %s; no flow calls it: ignored", bot.id, message)
    return bot


def claimed_id(folder: Path) -> str:
    """The bot id a Botpress folder asks for, as far as it can be read (else the folder's name)."""
    try:
        data = json.loads((folder / "bot.config.json").read_text(encoding="utf-8-sig"))
        if isinstance(data, dict) and data.get("id"):
            return validate_bot_id(data["id"])
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, InvalidInputError):
        pass
    return folder.name


def is_qna_intent(name: str) -> bool:
    return name.startswith(QNA_PREFIX)


def load_botpress_bots(
    bots_dir: Path | str, bots: dict[str, Any], errors: dict[str, str], *, only: Collection[str] | None = None
) -> None:
    """Load every Botpress folder under ``bots_dir`` into ``bots`` / ``errors`` (next to the YAML bots there).

    Two folders with the same bot id: the second in sorted folder order is
    refused, with an error (under its folder's name) naming both. With
    ``only``, folders whose bot id is not in it are not loaded (their code never runs).
    """
    root = Path(bots_dir)
    folders = {bot.folder.resolve(): bot_id for bot_id, bot in bots.items()}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and is_botpress_folder(p)):
        if only is not None and claimed_id(folder) not in only:
            continue
        try:
            bot: BotpressBot | None = load_botpress_bot(folder)
            problems: list[str] = []
        except BotpressLoadError as exc:
            bot, problems = None, list(exc.problems)
        bot_id = bot.id if bot is not None else claimed_id(folder)
        owner = bots.get(bot_id)
        if owner is not None and owner.folder.name < folder.name:
            problems.insert(0, f"bot.config.json: bot id {bot_id!r} is already used by folder {owner.folder.name}")
        elif owner is not None:  # the other folder sorts after this one: it is the second
            del bots[bot_id]
            errors[owner.folder.name] = f"bot id {bot_id!r} is already used by folder {folder.name}"
            folders.pop(owner.folder.resolve(), None)
        if problems:
            key = bot_id if bot_id not in bots and bot_id not in errors else folder.name
            errors[key] = "; ".join(problems)
            logger.error("bot %s not mounted: %s", folder.name, errors[key])
            continue
        assert bot is not None
        bots[bot.id] = bot
