"""``make compat``: the corpus of real Botpress bots (``../shared/botpress-bots``, or $BOTMEMORY_BOTPRESS_CORPUS).

1. every bot without custom JavaScript loads; every bot with custom
   JavaScript fails with an error naming its ``.js`` files, and loads once a
   ``.py`` of the same name is added (shown for v12-welcome-bot's hook and
   health-bot's actions, in temporary copies);
2. every transcript of ``TRANSCRIPTS.json`` replays (replies, reply types,
   user memory after each turn);
3. random conversations on every loaded bot (its utterances, its choices,
   junk, ``{{…}}`` injections) never raise, never render user text, and
   leave memory only in the scopes the spec's table says.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import pytest

import botmemory
from botmemory.runtime.botpress import BotpressLoadError, load_botpress_bot
from botmemory.testing import FakeClock

REPO = Path(__file__).resolve().parent.parent
CORPUS = Path(os.environ.get("BOTMEMORY_BOTPRESS_CORPUS", REPO.parent / "shared" / "botpress-bots"))

if not CORPUS.is_dir() and os.environ.get("CI", "").lower() == "true":
    # CI always has ../shared beside the checkout: a missing corpus there is a failure, not a skip
    raise RuntimeError(f"no Botpress corpus at {CORPUS} (set BOTMEMORY_BOTPRESS_CORPUS)")
pytestmark = pytest.mark.skipif(not CORPUS.is_dir(), reason=f"no Botpress corpus at {CORPUS}")

# The shims a bot needs, by bot folder: file -> Python source.
SHIMS: dict[str, dict[str, str]] = {
    "v12-welcome-bot": {
        "hooks/before_conversation_end/create_end_message.py": (
            "async def before_conversation_end(bp, event):\n"
            "    event['state']['temp']['endMessage'] = 'I will be listening'\n"
        ),
    },
    "health-bot": {
        "actions/builtin/m.py": "async def m(ctx, **args):\n    ctx.temp['bmi'] = 'computed'\n",
        "actions/builtin/f.py": "async def f(ctx, **args):\n    ctx.temp['bmi'] = 'computed'\n",
    },
}

# Turns of TRANSCRIPTS.json written before spec/botpress.md's "QnA and NLU" section: they expect the
# QnA module to stay silent, where the spec (and Botpress) answer outside a flow. Checked against the spec.
QNA_TURNS: dict[tuple[str, int], list[str]] = {
    ("v12-small-talk", 0): ["It is the story of 2 ices cubes in the desert and.... nevermind, they're gone."],
    ("v12-small-talk", 2): ["Hello! Nice to meet you!"],
    ("insurance-demo", 0): [
        ":-)",
        "Hello, welcome to ABC Insurance Virtual Assistant. How can I assist you today?",
        "Are you here with issues regarding",
    ],
    ("insurance-demo", 3): [
        ":-)",
        "Hello, welcome to ABC Insurance Virtual Assistant. How can I assist you today?",
        "Are you here with issues regarding",
    ],
}


def _manifest_js(folder: Path) -> list[str]:
    """The bot's JavaScript that is not a copy of a Botpress built-in (MANIFEST's "needs shims")."""
    from botmemory.runtime.botpress.actions import builtin_name

    found = []
    for path in sorted(folder.rglob("*.js")):
        rel = path.relative_to(folder).as_posix()
        if rel.startswith("actions/") and builtin_name(rel[len("actions/") : -3]) is not None:
            continue
        found.append(rel)
    return found


BOT_FOLDERS = sorted(p.name for p in CORPUS.iterdir() if p.is_dir()) if CORPUS.is_dir() else []


def _copy(bot: str, root: Path, *, shims: bool) -> Path:
    target = root / bot
    shutil.copytree(CORPUS / bot, target)
    for rel, source in (SHIMS.get(bot, {}) if shims else {}).items():
        (target / rel).write_text(source, encoding="utf-8")
    return target


@pytest.mark.parametrize("bot", BOT_FOLDERS)
def test_bot_loads_or_names_its_javascript(bot: str, tmp_path: Path) -> None:
    folder = CORPUS / bot
    js = _manifest_js(folder)
    if not js:
        loaded = load_botpress_bot(folder)
        assert loaded.bp_flows
        return
    with pytest.raises(BotpressLoadError) as info:
        load_botpress_bot(folder)
    message = str(info.value)
    for rel in js:
        assert rel in message, f"{bot}: the load error does not name {rel}: {message}"
    if bot in SHIMS:  # with a .py beside every .js, the same folder loads
        load_botpress_bot(_copy(bot, tmp_path, shims=True))


def _text(reply: dict[str, Any]) -> str | None:
    text = reply.get("text")
    return text.strip() if isinstance(text, str) else None


TRANSCRIPTS = json.loads((CORPUS / "TRANSCRIPTS.json").read_text(encoding="utf-8")) if CORPUS.is_dir() else []


@pytest.mark.parametrize("index", range(len(TRANSCRIPTS)), ids=[t["bot"] for t in TRANSCRIPTS])
async def test_transcript_replays(index: int, tmp_path: Path) -> None:
    transcript = TRANSCRIPTS[index]
    bot = transcript["bot"]
    bots = tmp_path / "bots"
    bots.mkdir()
    _copy(bot, bots, shims=True)
    async with await botmemory.open(f"sqlite:///{tmp_path / 'm.db'}", clock=FakeClock()) as store:
        runtime = await botmemory.Runtime.open(store, bots)
        assert runtime.load_errors == {}
        (bot_id,) = runtime.bots
        for number, turn in enumerate(transcript["turns"]):
            replies = await runtime.converse(bot_id, user_id="u1", text=turn["user"])
            where = f"{bot} turn {number} ({turn['user']!r}): {[_text(r) for r in replies]}"
            override = QNA_TURNS.get((bot, number))
            if override is not None:
                assert [_text(r) for r in replies] == override, where
                continue
            assert len(replies) == len(turn["replies_any_of"]), where
            for reply, options in zip(replies, turn["replies_any_of"], strict=True):
                if isinstance(options, dict):
                    assert reply["type"] == options["type"], where
                else:
                    assert _text(reply) in [o.strip() for o in options], where
            if "reply_types" in turn:
                assert [r["type"] for r in replies] == turn["reply_types"], where
            for name, value in turn.get("memory_after", {}).get("user", {}).items():
                assert await store.bot(bot_id).memory.get_user_variable("u1", name) == value, f"{where}: user.{name}"


def _utterances(folder: Path) -> list[str]:
    found: list[str] = []
    for sub in ("intents", "qna"):
        for path in sorted((folder / sub).glob("*.json")) if (folder / sub).is_dir() else []:
            data = json.loads(path.read_text(encoding="utf-8-sig"))
            data = data.get("data", data)
            texts = data.get("utterances") or data.get("questions") or {}
            for group in texts.values() if isinstance(texts, dict) else [texts]:
                found += [t for t in group if isinstance(t, str)]
    return found


def _choices(folder: Path) -> list[str]:
    found: list[str] = []
    for path in sorted((folder / "flows").rglob("*.flow.json")):
        text = path.read_text(encoding="utf-8")
        for key in ("keywords",):
            for chunk in text.split(f'\\"{key}\\":')[1:]:
                found += [w.strip('\\"') for w in chunk.split("]")[0].split(",") if w.strip()]
    return [c for c in found if c and "{" not in c][:200]


INJECTIONS = ["{{event.botId}}", "{{{user}}}", "{{#temp}}x{{/temp}}", "{{=<% %>=}}<%event.botId%>", "{{> p}}", "{{"]


@pytest.mark.parametrize("bot", [b for b in BOT_FOLDERS if not _manifest_js(CORPUS / b) or b in SHIMS])
async def test_random_conversations(bot: str, tmp_path: Path) -> None:
    bots = tmp_path / "bots"
    bots.mkdir()
    folder = _copy(bot, bots, shims=True)
    words = _utterances(folder) + _choices(folder) + ["1", "2", "3", "yes", "no", "", "  ", "🤖", "a" * 500]
    rng = random.Random(f"compat/{bot}")
    clock = FakeClock()
    async with await botmemory.open("memory://", clock=clock) as store:
        runtime = await botmemory.Runtime.open(store, bots)
        assert runtime.load_errors == {}
        (bot_id,) = runtime.bots
        loaded = runtime.bots[bot_id]
        users = [f"user-{n}" for n in range(3)]
        for step in range(250):
            user = rng.choice(users)
            injection = rng.choice(INJECTIONS)
            text = rng.choice(
                [rng.choice(words) if words else "hi", injection, f"{rng.choice(words or ['x'])} {injection}"]
            )
            if rng.random() < 0.05:
                clock.advance(loaded.session_timeout + 1)  # the session times out
            replies = await runtime.converse(bot_id, user_id=user, text=text)
            for reply in replies:
                assert reply["text"] != loaded.error_message if "text" in reply else True, (bot, step, text, replies)
                rendered = json.dumps(reply, ensure_ascii=False)
                # user text is never rendered: an injected tag never turns into the bot's id
                if "{{" in text:
                    assert bot_id not in rendered or bot_id in json.dumps(
                        [e.form_data for e in loaded.renderer.elements.values()], ensure_ascii=False
                    ), (bot, text, reply)
        # memory sits where the spec's table says: user, conversation and global scopes of this bot only
        keys = [k async for k in store.bot(bot_id).kvs.keys()]
        for key in keys:
            assert key.startswith(("storage/users/", "storage/conversation/", "storage/global/")), key
        assert [b for b in await store.bots() if b != bot_id] == []
        await runtime.janitor_once()
        clock.advance(loaded.session_timeout + 1)
        report = await runtime.janitor_once()
        assert report.get("sessions_ended", 0) >= 0
        assert [k async for k in store.bot(bot_id).kvs.keys("storage/conversation/")] == []
