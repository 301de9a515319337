"""BotMemoryStorage: Bot Framework storage semantics, scopes, retention and GDPR, on every backend.

The Bot Framework's own StorageBaseTests run in a venv of their own
(suites/botbuilder, `make test-botbuilder`); these tests cover what they do not.
"""

from __future__ import annotations

import asyncio

import pytest
from botbuilder.core import ConversationState, StoreItem, TurnContext, UserState
from botbuilder.core.adapters import TestAdapter
from botbuilder.schema import Activity, ActivityTypes, ChannelAccount, ConversationAccount

import botmemory
from botmemory.integrations.botbuilder import BotMemoryStorage, EtagConflictError, LinkConversations
from botmemory.retention import RetentionConfig
from botmemory.testing import FakeClock


class Profile:
    """A custom class kept in state, as bots do (restored as an object, not a dict)."""

    def __init__(self, name: str = "", turns: int = 0) -> None:
        self.name = name
        self.turns = turns


@pytest.fixture
def storage(store: botmemory.Store) -> BotMemoryStorage:
    return BotMemoryStorage(store, bot_id="echo")


async def test_round_trip_of_dicts_objects_and_store_items(storage: BotMemoryStorage) -> None:
    await storage.write({"plain": {"n": 1, "nested": {"list": [1, "a", None]}}, "obj": Profile("Ada", 3)})
    await storage.write({"item": StoreItem(id=7, e_tag="*")})
    got = await storage.read(["plain", "obj", "item", "missing"])
    assert set(got) == {"plain", "obj", "item"}
    assert got["plain"]["nested"] == {"list": [1, "a", None]} and got["plain"]["e_tag"]
    assert isinstance(got["obj"], Profile) and (got["obj"].name, got["obj"].turns) == ("Ada", 3)
    assert isinstance(got["item"], StoreItem) and got["item"].id == 7 and got["item"].e_tag
    # reads return copies: changing one does not change the store
    got["plain"]["n"] = 99
    assert (await storage.read(["plain"]))["plain"]["n"] == 1


async def test_etag_concurrency(storage: BotMemoryStorage) -> None:
    await storage.write({"k": {"count": 1}})
    first = (await storage.read(["k"]))["k"]
    await storage.write({"k": {**first, "count": 2}})  # the current eTag: accepted
    second = (await storage.read(["k"]))["k"]
    assert second["count"] == 2 and second["e_tag"] != first["e_tag"]  # a new eTag on every write

    with pytest.raises(EtagConflictError, match="Etag conflict") as stale:
        await storage.write({"k": {**first, "count": 3}})
    assert isinstance(stale.value, KeyError) and isinstance(stale.value, botmemory.VersionConflictError)
    with pytest.raises(EtagConflictError):
        await storage.write({"k": {"count": 4, "e_tag": "made-up"}})
    with pytest.raises(EtagConflictError):  # an eTag for an item that is gone (deleted meanwhile)
        await storage.write({"gone": {"count": 1, "e_tag": second["e_tag"]}})
    with pytest.raises(botmemory.InvalidInputError, match="etag missing"):
        await storage.write({"other": {"x": 1}, "k": {"count": 5, "e_tag": ""}})
    assert await storage.read(["other", "gone"]) == {}  # refused before anything was written
    assert (await storage.read(["k"]))["k"]["count"] == 2

    await storage.write({"k": {"count": 6, "e_tag": "*"}})  # "*" and no eTag overwrite
    await storage.write({"k": {"count": 7}})
    assert (await storage.read(["k"]))["k"]["count"] == 7


async def test_exactly_one_of_concurrent_writers_with_one_etag_wins(storage: BotMemoryStorage) -> None:
    await storage.write({"race": {"winner": None}})
    etag = (await storage.read(["race"]))["race"]["e_tag"]

    async def writer(i: int) -> bool:
        try:
            await storage.write({"race": {"winner": i, "e_tag": etag}})
        except EtagConflictError:
            return False
        return True

    results = await asyncio.gather(*(writer(i) for i in range(8)))
    assert results.count(True) == 1
    assert (await storage.read(["race"]))["race"]["winner"] == results.index(True)


async def test_keys_that_differ_only_in_escaping_stay_apart(storage: BotMemoryStorage) -> None:
    keys = ["a/b", "a%2Fb", "a*47b", "a%252Fb", " a", "a ", "", "*", "\u00e9", "e\u0301", "x" * 2000]
    await storage.write({k: {"k": k} for k in keys})
    got = await storage.read(keys)
    assert {k: v["k"] for k, v in got.items()} == {k: k for k in keys}
    assert len({storage.location(k) for k in keys}) == len(keys)
    await storage.delete(["a/b", "x" * 2000, "never-written"])
    assert set(await storage.read(keys)) == set(keys) - {"a/b", "x" * 2000}


async def test_null_arguments_are_refused_like_the_bot_framework(storage: BotMemoryStorage) -> None:
    with pytest.raises(Exception, match="Keys are required when reading"):
        await storage.read(None)  # type: ignore[arg-type]
    with pytest.raises(Exception, match="Changes are required when writing"):
        await storage.write(None)  # type: ignore[arg-type]
    assert await storage.read([]) == {}
    await storage.write({})
    await storage.delete([])


def _activity(user: str, conversation: str, text: str) -> Activity:
    return Activity(
        type=ActivityTypes.message,
        channel_id="test",
        from_property=ChannelAccount(id=user),
        recipient=ChannelAccount(id="bot"),
        conversation=ConversationAccount(id=conversation),
        text=text,
    )


async def _turns(storage: BotMemoryStorage, user: str, conversation: str, n: int) -> list[str]:
    user_state, conversation_state = UserState(storage), ConversationState(storage)
    profile = user_state.create_property("profile")
    topic = conversation_state.create_property("topic")

    async def logic(context: TurnContext) -> None:
        p = await profile.get(context, Profile)
        p.turns += 1
        await topic.set(context, context.activity.text)
        await context.send_activity(f"turn {p.turns}")
        await user_state.save_changes(context)
        await conversation_state.save_changes(context)

    adapter = TestAdapter(logic, template_or_conversation=_activity(user, conversation, ""))
    adapter.use(LinkConversations(storage))
    for i in range(n):
        await adapter.process_activity(_activity(user, conversation, f"hello {i}"), logic)
    return [a.text for a in adapter.activity_buffer]


async def test_user_and_conversation_state_live_in_the_scopes(storage: BotMemoryStorage) -> None:
    assert await _turns(storage, "u/1", "c 1", 3) == ["turn 1", "turn 2", "turn 3"]
    bot = storage.bot
    user_vars = await bot.memory.user("u/1").items()
    assert list(user_vars) == ["test/users/u/1"]
    assert user_vars["test/users/u/1"]["document"]["profile"]["turns"] == 3
    conversation_vars = await bot.memory.conversation("c 1").items()
    assert conversation_vars["test/conversations/c 1"]["document"]["topic"] == "hello 2"

    export = await bot.users.export("u/1")
    assert "test/users/u/1" in export["user"] and export["conversations"] == ["c 1"]
    assert "test/conversations/c 1" in export["conversation"]["c 1"]

    receipt = await bot.users.forget("u/1")
    assert receipt["counts"]["user"] == 1 and receipt["counts"]["conversation"] == 1
    assert await storage.read(["test/users/u/1", "test/conversations/c 1"]) == {}
    assert await _turns(storage, "u/1", "c 1", 1) == ["turn 1"]  # the user may come back, as a new one


async def test_a_retention_policy_forgets_idle_users(store: botmemory.Store, clock: FakeClock) -> None:
    storage = BotMemoryStorage(store, bot_id="echo")
    storage.bot.retention = RetentionConfig.parse({"policies": {"user.*": {"expire": "30d", "mode": "sliding"}}})
    await _turns(storage, "idle", "c-idle", 2)
    await _turns(storage, "active", "c-active", 1)
    clock.advance(20 * 86_400)
    await _turns(storage, "active", "c-active", 1)  # a write restarts a sliding policy's timer
    clock.advance(15 * 86_400)
    got = await storage.read(["test/users/idle", "test/users/active"])
    assert list(got) == ["test/users/active"] and got["test/users/active"]["profile"].turns == 2
    assert await _turns(storage, "idle", "c-idle", 1) == ["turn 1"]
